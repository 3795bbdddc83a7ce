//! OTLP trace export encoding written straight from `SpanData`.
//!
//! The stock exporter converts every span to `opentelemetry-proto`'s generated structs (a
//! `String` allocated for each attribute key and value) and lets prost encode them. This module
//! writes the protobuf wire format of the same `ExportTraceServiceRequest` directly from the
//! SDK's `SpanData` and `Resource`: same fields, same values, same field order, so the bytes are
//! the ones prost would produce for the stock message (the unit tests check both the decoded
//! message and the bytes).
//!
//! Lengths: a length-delimited field's length comes before its content, so it is either
//! computed first or patched in afterwards. Both are used, where each is cheaper (measured with
//! `benches/span_encoding.rs`, 512 HTTP server spans; the figures are in BENCHMARKS.md):
//!
//! - The small messages inside a span (`KeyValue`, `AnyValue`, `ArrayValue`, `Event`, `Link`,
//!   `Status`) and the resource and scope get their size computed just before they are written:
//!   it is arithmetic on string lengths, and patching about 30 lengths per span costs more
//!   (writing the whole span that way measured about 10 % slower).
//! - A `Span`, `ScopeSpans` and `ResourceSpans` are written after a reserved length (2 bytes
//!   for a span, 3 for the containers, the widths their lengths nearly always need), which is
//!   patched with the minimal varint once the content is written; when the guess is wrong, the
//!   content is moved by the difference. A size pre-pass over the spans instead (each span sized
//!   once, kept in a per-batch plan) measured about 17 % slower for the whole encoding.
//!
//! Fixed-width (padded, non-minimal) varints would save the rare move, but would no longer give
//! prost's bytes and would add bytes to every nested message.

use std::{
    ops::Range,
    time::{SystemTime, UNIX_EPOCH},
};

use opentelemetry::{
    Array, InstrumentationScope, KeyValue, Value,
    trace::{SpanId, SpanKind, Status},
};
use opentelemetry_sdk::{Resource, trace::SpanData};

/// Wire types.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// A field key (field number and wire type) for field numbers below 16, which fit in one byte.
const fn key(field: u8, wire_type: u8) -> u8 {
    (field << 3) | wire_type
}

// ExportTraceServiceRequest
const REQUEST_RESOURCE_SPANS: u8 = key(1, LEN);
// ResourceSpans
const RESOURCE_SPANS_RESOURCE: u8 = key(1, LEN);
const RESOURCE_SPANS_SCOPE_SPANS: u8 = key(2, LEN);
const RESOURCE_SPANS_SCHEMA_URL: u8 = key(3, LEN);
// Resource
const RESOURCE_ATTRIBUTES: u8 = key(1, LEN);
// ScopeSpans
const SCOPE_SPANS_SCOPE: u8 = key(1, LEN);
const SCOPE_SPANS_SPANS: u8 = key(2, LEN);
const SCOPE_SPANS_SCHEMA_URL: u8 = key(3, LEN);
// InstrumentationScope
const SCOPE_NAME: u8 = key(1, LEN);
const SCOPE_VERSION: u8 = key(2, LEN);
const SCOPE_ATTRIBUTES: u8 = key(3, LEN);
// Span
const SPAN_TRACE_ID: u8 = key(1, LEN);
const SPAN_SPAN_ID: u8 = key(2, LEN);
const SPAN_TRACE_STATE: u8 = key(3, LEN);
const SPAN_PARENT_SPAN_ID: u8 = key(4, LEN);
const SPAN_NAME: u8 = key(5, LEN);
const SPAN_KIND: u8 = key(6, VARINT);
const SPAN_START_TIME: u8 = key(7, I64);
const SPAN_END_TIME: u8 = key(8, I64);
const SPAN_ATTRIBUTES: u8 = key(9, LEN);
const SPAN_DROPPED_ATTRIBUTES: u8 = key(10, VARINT);
const SPAN_EVENTS: u8 = key(11, LEN);
const SPAN_DROPPED_EVENTS: u8 = key(12, VARINT);
const SPAN_LINKS: u8 = key(13, LEN);
const SPAN_DROPPED_LINKS: u8 = key(14, VARINT);
const SPAN_STATUS: u8 = key(15, LEN);
/// Field 16, fixed32: `(16 << 3) | 5` = 133, two bytes as a varint.
const SPAN_FLAGS: [u8; 2] = [0x85, 0x01];
// Span.Event
const EVENT_TIME: u8 = key(1, I64);
const EVENT_NAME: u8 = key(2, LEN);
const EVENT_ATTRIBUTES: u8 = key(3, LEN);
const EVENT_DROPPED_ATTRIBUTES: u8 = key(4, VARINT);
// Span.Link
const LINK_TRACE_ID: u8 = key(1, LEN);
const LINK_SPAN_ID: u8 = key(2, LEN);
const LINK_TRACE_STATE: u8 = key(3, LEN);
const LINK_ATTRIBUTES: u8 = key(4, LEN);
const LINK_DROPPED_ATTRIBUTES: u8 = key(5, VARINT);
const LINK_FLAGS: u8 = key(6, I32);
// Status
const STATUS_MESSAGE: u8 = key(2, LEN);
const STATUS_CODE: u8 = key(3, VARINT);
// KeyValue
const KEY_VALUE_KEY: u8 = key(1, LEN);
const KEY_VALUE_VALUE: u8 = key(2, LEN);
// AnyValue
const ANY_STRING: u8 = key(1, LEN);
const ANY_BOOL: u8 = key(2, VARINT);
const ANY_INT: u8 = key(3, VARINT);
const ANY_DOUBLE: u8 = key(4, I64);
const ANY_ARRAY: u8 = key(5, LEN);
// ArrayValue
const ARRAY_VALUES: u8 = key(1, LEN);

/// `SpanFlags::SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
/// `SpanFlags::SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
const FLAG_IS_REMOTE: u32 = 0x200;

/// Appends to `buffer` the protobuf encoding of an ExportTraceServiceRequest holding `batch`, grouped by scope, under `resource`.
pub(crate) fn encode_export_request(resource: &Resource, batch: &[SpanData], buffer: &mut Vec<u8>) {
    // The scope groups, in order of first appearance, and each span's group.
    let mut scopes: Vec<&InstrumentationScope> = Vec::new();
    let mut span_scopes: Vec<usize> = Vec::with_capacity(batch.len());
    let mut last = 0;
    for span in batch {
        let scope = &span.instrumentation_scope;
        let index = if scopes.get(last).is_some_and(|s| same_scope(s, scope)) {
            last
        } else if let Some(index) = scopes.iter().position(|s| same_scope(s, scope)) {
            index
        } else {
            scopes.push(scope);
            scopes.len() - 1
        };
        last = index;
        span_scopes.push(index);
    }

    put_patched(buffer, REQUEST_RESOURCE_SPANS, 3, |buffer| {
        put_len_header(buffer, RESOURCE_SPANS_RESOURCE, resource_size(resource));
        for (k, v) in resource.iter() {
            put_key_value(buffer, RESOURCE_ATTRIBUTES, k.as_str(), v);
        }
        for (index, scope) in scopes.iter().enumerate() {
            put_patched(buffer, RESOURCE_SPANS_SCOPE_SPANS, 3, |buffer| {
                put_len_header(buffer, SCOPE_SPANS_SCOPE, scope_size(scope));
                put_scope(buffer, scope);
                for (span, &span_scope) in batch.iter().zip(&span_scopes) {
                    if span_scope == index {
                        put_patched(buffer, SCOPE_SPANS_SPANS, 2, |buffer| {
                            put_span(buffer, span)
                        });
                    }
                }
                put_string_field(
                    buffer,
                    SCOPE_SPANS_SCHEMA_URL,
                    scope.schema_url().unwrap_or_default(),
                );
            });
        }
        put_string_field(
            buffer,
            RESOURCE_SPANS_SCHEMA_URL,
            resource.schema_url().unwrap_or_default(),
        );
    });
}

/// A stretch of a batch cut by [`split`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// These spans, whose request is within the limit.
    Spans(Range<usize>),
    /// The span at `index`: a request holding it alone would be `size` bytes, over the limit, so
    /// it cannot be sent.
    TooLarge { index: usize, size: usize },
}

/// Cuts `batch` into consecutive parts whose requests, as [`encode_export_request`] writes them
/// under `resource`, are at most `limit` bytes each; a span that alone would make a larger
/// request is a [`Part::TooLarge`] of its own.
///
/// A request's size is bounded from above without encoding anything: the resource, once per
/// scope in the request its scope, and each span's exact size (arithmetic on string lengths),
/// with the lengths of the request's containers counted at the width of the largest `u32`
/// varint. A part can so come out a few bytes shorter than the limit allows, never longer.
pub(crate) fn split(resource: &Resource, batch: &[SpanData], limit: usize) -> Vec<Part> {
    /// A container's key and the widest length it can need here.
    const CONTAINER: usize = 1 + 5;
    let base = CONTAINER
        + len_field(resource_size(resource))
        + string_field(resource.schema_url().unwrap_or_default());
    let mut parts = Vec::new();
    let mut start = 0;
    let mut size = base;
    let mut scopes: Vec<&InstrumentationScope> = Vec::new();
    for (index, span) in batch.iter().enumerate() {
        let scope = &span.instrumentation_scope;
        let new_scope = !scopes.iter().any(|s| same_scope(s, scope));
        let scope_cost = CONTAINER
            + len_field(scope_size(scope))
            + string_field(scope.schema_url().unwrap_or_default());
        let span_cost = len_field(span_size(span));
        let cost = span_cost + if new_scope { scope_cost } else { 0 };
        if size + cost <= limit {
            size += cost;
            if new_scope {
                scopes.push(scope);
            }
            continue;
        }
        if start < index {
            parts.push(Part::Spans(start..index));
        }
        scopes.clear();
        let alone = base + scope_cost + span_cost;
        if alone > limit {
            parts.push(Part::TooLarge { index, size: alone });
            start = index + 1;
            size = base;
        } else {
            start = index;
            size = alone;
            scopes.push(scope);
        }
    }
    if start < batch.len() {
        parts.push(Part::Spans(start..batch.len()));
    }
    parts
}

/// Writes a length-delimited field whose content `write` appends: `reserved` bytes are kept for
/// the length and patched with its minimal varint afterwards, moving the content if the length
/// needs fewer or more bytes.
#[inline]
fn put_patched(buffer: &mut Vec<u8>, key: u8, reserved: usize, write: impl FnOnce(&mut Vec<u8>)) {
    buffer.push(key);
    let at = buffer.len();
    buffer.resize(at + reserved, 0);
    let start = buffer.len();
    write(buffer);
    let len = buffer.len() - start;
    let width = varint_len(len as u64);
    if width < reserved {
        buffer.copy_within(start.., at + width);
        buffer.truncate(buffer.len() - (reserved - width));
    } else if width > reserved {
        let end = buffer.len();
        buffer.resize(end + width - reserved, 0);
        buffer.copy_within(start..end, at + width);
    }
    let mut value = len as u64;
    for (i, byte) in buffer[at..at + width].iter_mut().enumerate() {
        *byte = if i + 1 < width {
            value as u8 | 0x80
        } else {
            value as u8
        };
        value >>= 7;
    }
}

/// The stock exporter groups with a `HashMap` keyed by the scope, whose `Eq` compares the
/// attributes regardless of order; this is the same equality, with a cheap in-order check first.
fn same_scope(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    std::ptr::eq(a, b)
        || (a.name() == b.name()
            && a.version() == b.version()
            && a.schema_url() == b.schema_url()
            && a.attributes().eq(b.attributes()))
        || a == b
}

// ---- sizes ----

/// Bytes of `value` as a varint (prost's formula).
#[inline]
fn varint_len(value: u64) -> usize {
    ((((value | 1).leading_zeros() ^ 63) * 9 + 73) / 64) as usize
}

/// Bytes of a length-delimited field with a one-byte key and `len` bytes of content.
#[inline]
fn len_field(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// A proto3 `string`/`bytes` field: omitted when empty.
#[inline]
fn string_field(s: &str) -> usize {
    if s.is_empty() { 0 } else { len_field(s.len()) }
}

/// A proto3 `uint32` field: omitted when zero.
#[inline]
fn uint32_field(value: u32) -> usize {
    if value == 0 {
        0
    } else {
        1 + varint_len(u64::from(value))
    }
}

/// A proto3 `fixed64` field: omitted when zero.
#[inline]
fn fixed64_field(value: u64) -> usize {
    if value == 0 { 0 } else { 9 }
}

fn to_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

// `Value` and `Array` are `#[non_exhaustive]`: their `match`es need a wildcard arm, which a
// variant added by a later opentelemetry release would reach without a compile error. Such a
// value is sent as its text (`Value::as_str`, its `Display`) in a `string_value`, never as an
// empty `AnyValue`: the attribute keeps its information, and the size computed here and the
// bytes written by `put_any_value` come from the same text. (opentelemetry-proto 0.33 has no
// conversion for such a variant either.)

fn any_value_size(value: &Value) -> usize {
    match value {
        Value::Bool(_) => 2,
        Value::I64(v) => 1 + varint_len(*v as u64),
        Value::F64(_) => 9,
        Value::String(v) => len_field(v.as_str().len()),
        Value::Array(array) => match array_size(array) {
            Some(size) => len_field(size),
            None => len_field(value.as_str().len()),
        },
        _ => len_field(value.as_str().len()),
    }
}

/// The content of an `ArrayValue`: one `AnyValue` message per element; `None` for an element
/// type this encoder does not know (a later opentelemetry's), which is sent as text instead.
fn array_size(array: &Array) -> Option<usize> {
    Some(match array {
        Array::Bool(values) => values.len() * len_field(2),
        Array::I64(values) => values
            .iter()
            .map(|v| len_field(1 + varint_len(*v as u64)))
            .sum(),
        Array::F64(values) => values.len() * len_field(9),
        Array::String(values) => values
            .iter()
            .map(|v| len_field(len_field(v.as_str().len())))
            .sum(),
        _ => return None,
    })
}

#[inline]
fn key_value_size(key: &str, value: &Value) -> usize {
    string_field(key) + len_field(any_value_size(value))
}

fn attributes_size(attributes: &[KeyValue]) -> usize {
    attributes
        .iter()
        .map(|kv| len_field(key_value_size(kv.key.as_str(), &kv.value)))
        .sum()
}

fn resource_size(resource: &Resource) -> usize {
    resource
        .iter()
        .map(|(k, v)| len_field(key_value_size(k.as_str(), v)))
        .sum()
}

fn scope_size(scope: &InstrumentationScope) -> usize {
    string_field(scope.name())
        + string_field(scope.version().unwrap_or_default())
        + scope
            .attributes()
            .map(|kv| len_field(key_value_size(kv.key.as_str(), &kv.value)))
            .sum::<usize>()
}

fn span_kind(kind: &SpanKind) -> u8 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn status_parts(status: &Status) -> (&str, u8) {
    match status {
        Status::Unset => ("", 0),
        Status::Ok => ("", 1),
        Status::Error { description } => (description.as_ref(), 2),
    }
}

fn status_size(status: &Status) -> usize {
    let (message, code) = status_parts(status);
    string_field(message) + if code == 0 { 0 } else { 2 }
}

fn event_size(event: &opentelemetry::trace::Event) -> usize {
    fixed64_field(to_nanos(event.timestamp))
        + string_field(&event.name)
        + attributes_size(&event.attributes)
        + uint32_field(event.dropped_attributes_count)
}

fn link_size(link: &opentelemetry::trace::Link, trace_state: &str) -> usize {
    18 + 10
        + string_field(trace_state)
        + attributes_size(&link.attributes)
        + uint32_field(link.dropped_attributes_count)
        + 5 // flags, never zero
}

/// The content of a `Span` message, as [`put_span`] writes it.
fn span_size(span: &SpanData) -> usize {
    let context = &span.span_context;
    let parent = if span.parent_span_id == SpanId::INVALID {
        0
    } else {
        len_field(8)
    };
    len_field(16) // trace id
        + len_field(8) // span id
        + string_field(&context.trace_state().header())
        + parent
        + string_field(&span.name)
        + 2 // kind, never zero
        + fixed64_field(to_nanos(span.start_time))
        + fixed64_field(to_nanos(span.end_time))
        + attributes_size(&span.attributes)
        + uint32_field(span.dropped_attributes_count)
        + span
            .events
            .iter()
            .map(|event| len_field(event_size(event)))
            .sum::<usize>()
        + uint32_field(span.events.dropped_count)
        + span
            .links
            .iter()
            .map(|link| len_field(link_size(link, &link.span_context.trace_state().header())))
            .sum::<usize>()
        + uint32_field(span.links.dropped_count)
        + len_field(status_size(&span.status)) // always written
        + SPAN_FLAGS.len()
        + 4
}

// ---- writers ----

#[inline]
fn put_varint(buffer: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buffer.push(value as u8 | 0x80);
        value >>= 7;
    }
    buffer.push(value as u8);
}

#[inline]
fn put_len_header(buffer: &mut Vec<u8>, key: u8, len: usize) {
    if len < 0x80 {
        buffer.extend_from_slice(&[key, len as u8]);
    } else {
        buffer.push(key);
        put_varint(buffer, len as u64);
    }
}

#[inline]
fn put_bytes(buffer: &mut Vec<u8>, key: u8, bytes: &[u8]) {
    put_len_header(buffer, key, bytes.len());
    buffer.extend_from_slice(bytes);
}

#[inline]
fn put_string_field(buffer: &mut Vec<u8>, key: u8, s: &str) {
    if !s.is_empty() {
        put_bytes(buffer, key, s.as_bytes());
    }
}

#[inline]
fn put_uint32_field(buffer: &mut Vec<u8>, key: u8, value: u32) {
    if value != 0 {
        buffer.push(key);
        put_varint(buffer, u64::from(value));
    }
}

#[inline]
fn put_fixed64_field(buffer: &mut Vec<u8>, key: u8, value: u64) {
    if value != 0 {
        buffer.push(key);
        buffer.extend_from_slice(&value.to_le_bytes());
    }
}

/// An `AnyValue`'s content. A oneof member is written even when it holds its default value.
fn put_any_value(buffer: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(v) => buffer.extend_from_slice(&[ANY_BOOL, u8::from(*v)]),
        Value::I64(v) => {
            buffer.push(ANY_INT);
            put_varint(buffer, *v as u64);
        }
        Value::F64(v) => {
            buffer.push(ANY_DOUBLE);
            buffer.extend_from_slice(&v.to_le_bytes());
        }
        Value::String(v) => put_bytes(buffer, ANY_STRING, v.as_str().as_bytes()),
        Value::Array(array) => match array_size(array) {
            Some(size) => {
                put_len_header(buffer, ANY_ARRAY, size);
                put_array(buffer, array);
            }
            None => put_bytes(buffer, ANY_STRING, value.as_str().as_bytes()),
        },
        // A variant of a later opentelemetry: its text (see `any_value_size`).
        _ => put_bytes(buffer, ANY_STRING, value.as_str().as_bytes()),
    }
}

/// An `ArrayValue`'s content, for an array whose [`array_size`] is known.
fn put_array(buffer: &mut Vec<u8>, array: &Array) {
    match array {
        Array::Bool(values) => {
            for v in values {
                buffer.extend_from_slice(&[ARRAY_VALUES, 2, ANY_BOOL, u8::from(*v)]);
            }
        }
        Array::I64(values) => {
            for v in values {
                put_len_header(buffer, ARRAY_VALUES, 1 + varint_len(*v as u64));
                buffer.push(ANY_INT);
                put_varint(buffer, *v as u64);
            }
        }
        Array::F64(values) => {
            for v in values {
                buffer.extend_from_slice(&[ARRAY_VALUES, 9, ANY_DOUBLE]);
                buffer.extend_from_slice(&v.to_le_bytes());
            }
        }
        Array::String(values) => {
            for v in values {
                let s = v.as_str();
                put_len_header(buffer, ARRAY_VALUES, len_field(s.len()));
                put_bytes(buffer, ANY_STRING, s.as_bytes());
            }
        }
        // Never reached: `put_any_value` sends an array of unknown type as text.
        _ => {}
    }
}

#[inline]
fn put_key_value(buffer: &mut Vec<u8>, field: u8, key: &str, value: &Value) {
    let value_size = any_value_size(value);
    put_len_header(buffer, field, string_field(key) + len_field(value_size));
    put_string_field(buffer, KEY_VALUE_KEY, key);
    put_len_header(buffer, KEY_VALUE_VALUE, value_size);
    put_any_value(buffer, value);
}

fn put_attributes(buffer: &mut Vec<u8>, field: u8, attributes: &[KeyValue]) {
    for kv in attributes {
        put_key_value(buffer, field, kv.key.as_str(), &kv.value);
    }
}

fn put_scope(buffer: &mut Vec<u8>, scope: &InstrumentationScope) {
    put_string_field(buffer, SCOPE_NAME, scope.name());
    put_string_field(buffer, SCOPE_VERSION, scope.version().unwrap_or_default());
    for kv in scope.attributes() {
        put_key_value(buffer, SCOPE_ATTRIBUTES, kv.key.as_str(), &kv.value);
    }
}

fn span_flags(trace_flags: u8, remote: bool) -> u32 {
    u32::from(trace_flags) | FLAG_HAS_IS_REMOTE | if remote { FLAG_IS_REMOTE } else { 0 }
}

fn put_span(buffer: &mut Vec<u8>, span: &SpanData) {
    let context = &span.span_context;
    let trace_state = context.trace_state().header();
    put_bytes(buffer, SPAN_TRACE_ID, &context.trace_id().to_bytes());
    put_bytes(buffer, SPAN_SPAN_ID, &context.span_id().to_bytes());
    put_string_field(buffer, SPAN_TRACE_STATE, &trace_state);
    if span.parent_span_id != SpanId::INVALID {
        put_bytes(buffer, SPAN_PARENT_SPAN_ID, &span.parent_span_id.to_bytes());
    }
    put_string_field(buffer, SPAN_NAME, &span.name);
    buffer.extend_from_slice(&[SPAN_KIND, span_kind(&span.span_kind)]);
    put_fixed64_field(buffer, SPAN_START_TIME, to_nanos(span.start_time));
    put_fixed64_field(buffer, SPAN_END_TIME, to_nanos(span.end_time));
    put_attributes(buffer, SPAN_ATTRIBUTES, &span.attributes);
    put_uint32_field(
        buffer,
        SPAN_DROPPED_ATTRIBUTES,
        span.dropped_attributes_count,
    );
    for event in span.events.iter() {
        put_len_header(buffer, SPAN_EVENTS, event_size(event));
        put_fixed64_field(buffer, EVENT_TIME, to_nanos(event.timestamp));
        put_string_field(buffer, EVENT_NAME, &event.name);
        put_attributes(buffer, EVENT_ATTRIBUTES, &event.attributes);
        put_uint32_field(
            buffer,
            EVENT_DROPPED_ATTRIBUTES,
            event.dropped_attributes_count,
        );
    }
    put_uint32_field(buffer, SPAN_DROPPED_EVENTS, span.events.dropped_count);
    for link in span.links.iter() {
        let link_context = &link.span_context;
        let link_trace_state = link_context.trace_state().header();
        put_len_header(buffer, SPAN_LINKS, link_size(link, &link_trace_state));
        put_bytes(buffer, LINK_TRACE_ID, &link_context.trace_id().to_bytes());
        put_bytes(buffer, LINK_SPAN_ID, &link_context.span_id().to_bytes());
        put_string_field(buffer, LINK_TRACE_STATE, &link_trace_state);
        put_attributes(buffer, LINK_ATTRIBUTES, &link.attributes);
        put_uint32_field(
            buffer,
            LINK_DROPPED_ATTRIBUTES,
            link.dropped_attributes_count,
        );
        buffer.push(LINK_FLAGS);
        let flags = span_flags(link_context.trace_flags().to_u8(), link_context.is_remote());
        buffer.extend_from_slice(&flags.to_le_bytes());
    }
    put_uint32_field(buffer, SPAN_DROPPED_LINKS, span.links.dropped_count);
    put_len_header(buffer, SPAN_STATUS, status_size(&span.status));
    let (message, code) = status_parts(&span.status);
    put_string_field(buffer, STATUS_MESSAGE, message);
    if code != 0 {
        buffer.extend_from_slice(&[STATUS_CODE, code]);
    }
    buffer.extend_from_slice(&SPAN_FLAGS);
    let flags = span_flags(context.trace_flags().to_u8(), span.parent_span_is_remote);
    buffer.extend_from_slice(&flags.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use std::{
        borrow::Cow,
        time::{Duration, SystemTime, UNIX_EPOCH},
    };

    use opentelemetry::{
        Array, InstrumentationScope, KeyValue, StringValue, Value,
        trace::{
            Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
        },
    };
    use opentelemetry_proto::{
        tonic::collector::trace::v1::ExportTraceServiceRequest,
        transform::{
            common::tonic::ResourceAttributesWithSchema,
            trace::tonic::group_spans_by_resource_and_scope,
        },
    };
    use opentelemetry_sdk::{
        Resource,
        trace::{SpanData, SpanEvents, SpanLinks},
    };
    use prost::Message;

    use super::{Part, encode_export_request, split};

    /// What the stock exporter sends for the same batch.
    fn stock(resource: &Resource, batch: &[SpanData]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                batch.to_vec(),
                &ResourceAttributesWithSchema::from(resource),
            ),
        }
    }

    /// Our bytes decode to the stock message, and are the very bytes prost writes for it.
    fn assert_equivalent(resource: &Resource, batch: &[SpanData]) {
        let mut buffer = vec![0xA5];
        encode_export_request(resource, batch, &mut buffer);
        assert_eq!(buffer[0], 0xA5, "the encoder must append, not overwrite");
        let ours = &buffer[1..];
        let expected = stock(resource, batch);
        let decoded = ExportTraceServiceRequest::decode(ours).expect("our bytes decode");
        assert_eq!(decoded, expected);
        assert_eq!(ours, expected.encode_to_vec().as_slice());
    }

    fn resource() -> Resource {
        Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", "checkout"),
                KeyValue::new("service.version", "1.4.2"),
                KeyValue::new("host.cpu.count", 8_i64),
            ])
            .build()
    }

    fn scope() -> InstrumentationScope {
        InstrumentationScope::builder("otel-monitor").build()
    }

    fn at(nanos: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(nanos)
    }

    fn context(trace: u128, span: u64, flags: u8, remote: bool, state: TraceState) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::new(flags),
            remote,
            state,
        )
    }

    fn server_span() -> SpanData {
        SpanData {
            span_context: context(
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                0x00f0_67aa_0ba9_02b7,
                1,
                false,
                TraceState::from_key_value([("vendor", "opaque"), ("rojo", "00f067aa0ba902b7")])
                    .unwrap(),
            ),
            parent_span_id: SpanId::from(0x53ce_929d_0e0e_4736),
            parent_span_is_remote: true,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed("GET /users/{id}"),
            start_time: at(1_764_000_000_123_456_789),
            end_time: at(1_764_000_000_124_456_789),
            attributes: vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.route", "/users/{id}"),
                KeyValue::new("url.path", "/users/42"),
                KeyValue::new("url.scheme", "http"),
                KeyValue::new("http.response.status_code", 200_i64),
                KeyValue::new("server.port", 3000_i64),
                KeyValue::new("network.protocol.version", "1.1"),
                KeyValue::new("client.address", "10.1.2.3"),
                KeyValue::new("user_agent.original", "curl/8.5.0"),
                KeyValue::new(
                    "http.request.header.accept",
                    Value::Array(Array::String(vec![StringValue::from("*/*")])),
                ),
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope(),
        }
    }

    fn root_span() -> SpanData {
        let mut span = server_span();
        span.span_context = context(7, 9, 0, false, TraceState::default());
        span.parent_span_id = SpanId::INVALID;
        span.parent_span_is_remote = false;
        span.span_kind = SpanKind::Internal;
        span.name = Cow::Owned("work".to_owned());
        span
    }

    fn every_value() -> Vec<KeyValue> {
        vec![
            KeyValue::new("bool.true", true),
            KeyValue::new("bool.false", false),
            KeyValue::new("int.zero", 0_i64),
            KeyValue::new("int.negative", -1_i64),
            KeyValue::new("int.max", i64::MAX),
            KeyValue::new("int.min", i64::MIN),
            KeyValue::new("double", 3.25_f64),
            KeyValue::new("double.zero", 0.0_f64),
            KeyValue::new("double.negative_zero", -0.0_f64),
            KeyValue::new("double.infinity", f64::INFINITY),
            KeyValue::new("string.empty", ""),
            KeyValue::new("string.unicode", "héllo, 世界 🦀"),
            KeyValue::new("", "empty key"),
            KeyValue::new("string.long", "x".repeat(300)),
            KeyValue::new("array.bool", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new(
                "array.int",
                Value::Array(Array::I64(vec![0, 1, -1, i64::MAX, 300])),
            ),
            KeyValue::new("array.double", Value::Array(Array::F64(vec![0.0, -2.5]))),
            KeyValue::new(
                "array.string",
                Value::Array(Array::String(vec![
                    StringValue::from(""),
                    StringValue::from("ünïcode"),
                    StringValue::from("y".repeat(200)),
                ])),
            ),
            KeyValue::new("array.empty", Value::Array(Array::String(vec![]))),
            KeyValue::new("array.empty_int", Value::Array(Array::I64(vec![]))),
        ]
    }

    fn span_with_everything() -> SpanData {
        let mut span = server_span();
        span.span_kind = SpanKind::Client;
        span.attributes = every_value();
        span.dropped_attributes_count = 3;
        let mut events = SpanEvents::default();
        events.events = vec![
            Event::new("exception", at(1_764_000_000_123_500_000), every_value(), 2),
            Event::new("", UNIX_EPOCH, vec![], 0),
            Event::new(
                "before epoch",
                UNIX_EPOCH - Duration::from_secs(5),
                vec![],
                0,
            ),
        ];
        events.dropped_count = 4;
        span.events = events;
        let mut links = SpanLinks::default();
        links.links = vec![
            Link::new(
                context(
                    1,
                    2,
                    1,
                    true,
                    TraceState::from_key_value([("k", "v")]).unwrap(),
                ),
                every_value(),
                1,
            ),
            Link::new(
                context(u128::MAX, u64::MAX, 0, false, TraceState::default()),
                vec![],
                0,
            ),
        ];
        links.dropped_count = 5;
        span.links = links;
        span.status = Status::error("boom: ünïcode");
        span
    }

    #[test]
    fn realistic_server_span_with_remote_parent_and_tracestate() {
        assert_equivalent(&resource(), &[server_span()]);
    }

    #[test]
    fn root_span_has_no_parent_span_id() {
        assert_equivalent(&resource(), &[root_span()]);
    }

    #[test]
    fn events_links_and_every_value_type() {
        assert_equivalent(&resource(), &[span_with_everything()]);
    }

    #[test]
    fn spans_from_two_scopes_group_in_order_of_first_appearance() {
        let versioned = InstrumentationScope::builder("other")
            .with_version("2.0.1")
            .with_schema_url("https://opentelemetry.io/schemas/1.26.0")
            .with_attributes([
                KeyValue::new("scope.a", "1"),
                KeyValue::new("scope.b", 2_i64),
            ])
            .build();
        // The same scope with its attributes in another order: equal, so the same group.
        let reordered = InstrumentationScope::builder("other")
            .with_version("2.0.1")
            .with_schema_url("https://opentelemetry.io/schemas/1.26.0")
            .with_attributes([
                KeyValue::new("scope.b", 2_i64),
                KeyValue::new("scope.a", "1"),
            ])
            .build();
        let mut batch = Vec::new();
        for i in 0..6 {
            let mut span = if i % 2 == 0 {
                server_span()
            } else {
                span_with_everything()
            };
            span.name = Cow::Owned(format!("span {i}"));
            span.instrumentation_scope = match i % 3 {
                0 => versioned.clone(),
                1 => scope(),
                _ => reordered.clone(),
            };
            batch.push(span);
        }
        assert_equivalent(&resource(), &batch);
    }

    #[test]
    fn error_status_with_message_and_ok_status() {
        let mut error = server_span();
        error.status = Status::error("upstream timed out");
        let mut empty_error = server_span();
        empty_error.status = Status::error("");
        let mut ok = root_span();
        ok.status = Status::Ok;
        assert_equivalent(&resource(), &[error, empty_error, ok]);
    }

    #[test]
    fn resource_with_schema_url() {
        let resource = Resource::builder_empty()
            .with_schema_url(
                [KeyValue::new("service.name", "checkout")],
                "https://opentelemetry.io/schemas/1.26.0",
            )
            .build();
        assert_equivalent(&resource, &[server_span(), root_span()]);
    }

    #[test]
    fn empty_batch_and_empty_resource() {
        assert_equivalent(&resource(), &[]);
        assert_equivalent(&Resource::builder_empty().build(), &[]);
        assert_equivalent(&Resource::builder_empty().build(), &[root_span()]);
    }

    #[test]
    fn lengths_narrower_and_wider_than_reserved() {
        // A span under 128 bytes (one length byte of the two reserved).
        let mut tiny = root_span();
        tiny.attributes.clear();
        tiny.name = Cow::Borrowed("");
        assert_equivalent(&Resource::builder_empty().build(), &[tiny.clone()]);
        // A span of 16 KiB or more (three length bytes of the two reserved).
        let mut wide = server_span();
        wide.attributes
            .push(KeyValue::new("big", "z".repeat(20_000)));
        assert_equivalent(&resource(), &[tiny.clone(), wide, tiny.clone()]);
        // Scope and resource spans of 2 MiB or more (four length bytes of the three reserved).
        let mut huge = server_span();
        huge.attributes
            .push(KeyValue::new("huge", "h".repeat(1 << 20)));
        assert_equivalent(&resource(), &[huge.clone(), tiny, huge]);
    }

    #[test]
    fn large_batch_needs_multi_byte_lengths() {
        let batch: Vec<SpanData> = (0..512).map(|_| span_with_everything()).collect();
        assert_equivalent(&resource(), &batch);
    }

    /// `put_span` writes as many bytes as `span_size` says.
    fn assert_span_size(span: &SpanData) {
        let mut buffer = Vec::new();
        super::put_span(&mut buffer, span);
        assert_eq!(super::span_size(span), buffer.len(), "{span:?}");
    }

    /// Every part of `split` is within `limit` once encoded, the parts cover the batch in order,
    /// and a span is too large only when a request holding it alone would be.
    fn assert_split_within(resource: &Resource, batch: &[SpanData], limit: usize) {
        let mut next = 0;
        for part in split(resource, batch, limit) {
            match part {
                Part::Spans(range) => {
                    assert_eq!(range.start, next);
                    assert!(!range.is_empty());
                    next = range.end;
                    let mut buffer = Vec::new();
                    encode_export_request(resource, &batch[range], &mut buffer);
                    assert!(buffer.len() <= limit, "{} > {limit}", buffer.len());
                }
                Part::TooLarge { index, size } => {
                    assert_eq!(index, next);
                    next = index + 1;
                    assert!(size > limit);
                    let mut buffer = Vec::new();
                    encode_export_request(resource, &batch[index..=index], &mut buffer);
                    assert!(buffer.len() <= size, "{} > {size}", buffer.len());
                }
            }
        }
        assert_eq!(next, batch.len());
    }

    #[test]
    fn a_batch_within_the_limit_is_one_part_and_a_larger_one_is_cut_in_order() {
        let batch: Vec<SpanData> = (0..10).map(|_| server_span()).collect();
        let mut whole = Vec::new();
        encode_export_request(&resource(), &batch, &mut whole);
        assert_eq!(
            split(&resource(), &batch, whole.len() + 20),
            [Part::Spans(0..10)]
        );
        // Room for about four spans a request.
        let mut one = Vec::new();
        encode_export_request(&resource(), &batch[..1], &mut one);
        let limit = one.len() * 4;
        let parts = split(&resource(), &batch, limit);
        assert_eq!(
            parts,
            [Part::Spans(0..4), Part::Spans(4..8), Part::Spans(8..10)]
        );
        assert_split_within(&resource(), &batch, limit);
    }

    #[test]
    fn a_span_too_large_alone_is_a_part_of_its_own_between_the_others() {
        let mut big = server_span();
        big.attributes
            .push(KeyValue::new("big", "b".repeat(10_000)));
        let batch = vec![server_span(), server_span(), big, server_span()];
        let parts = split(&resource(), &batch, 5_000);
        assert!(
            matches!(
                parts.as_slice(),
                [Part::Spans(r), Part::TooLarge { index: 2, size }, Part::Spans(s)]
                    if *r == (0..2) && *s == (3..4) && *size > 10_000
            ),
            "{parts:?}"
        );
        assert_split_within(&resource(), &batch, 5_000);
    }

    /// Strategies for arbitrary `SpanData`, resources and scopes: every attribute value type
    /// with its edge cases, events, links, statuses, trace states, dropped counts, flags.
    mod arbitrary {
        use proptest::{collection::vec, option, prelude::*, sample::Index};

        use super::*;

        pub(super) fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                8 => Just(String::new()),
                16 => "[a-z._/{}]{1,16}",
                // Any Unicode scalar values: multi-byte UTF-8, control characters, NUL.
                12 => vec(any::<char>(), 1..12).prop_map(String::from_iter),
                // Lengths whose varint takes two bytes, and (rarely: they are slow to compare
                // in a debug build) three.
                3 => (120_usize..140).prop_map(|n| "é".repeat(n / 2) + &"x".repeat(n % 2)),
                1 => (16_380_usize..16_390).prop_map(|n| "x".repeat(n)),
            ]
        }

        fn int() -> impl Strategy<Value = i64> {
            prop_oneof![
                Just(0),
                Just(-1),
                Just(i64::MIN),
                Just(i64::MAX),
                -300_i64..300,
                any::<i64>(),
            ]
        }

        fn double() -> impl Strategy<Value = f64> {
            prop_oneof![
                Just(0.0),
                Just(-0.0),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(f64::MIN_POSITIVE / 4.0),
                any::<f64>(),
            ]
        }

        pub(super) fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                any::<bool>().prop_map(Value::Bool),
                int().prop_map(Value::I64),
                double().prop_map(Value::F64),
                text().prop_map(|s| Value::String(s.into())),
                vec(any::<bool>(), 0..4).prop_map(|v| Value::Array(Array::Bool(v))),
                vec(int(), 0..4).prop_map(|v| Value::Array(Array::I64(v))),
                vec(double(), 0..4).prop_map(|v| Value::Array(Array::F64(v))),
                vec(text(), 0..4).prop_map(|v| {
                    Value::Array(Array::String(
                        v.into_iter().map(StringValue::from).collect(),
                    ))
                }),
            ]
        }

        pub(super) fn attributes(max: usize) -> impl Strategy<Value = Vec<KeyValue>> {
            vec(
                (text(), value()).prop_map(|(k, v)| KeyValue::new(k, v)),
                0..=max,
            )
        }

        fn time() -> impl Strategy<Value = SystemTime> {
            prop_oneof![
                Just(UNIX_EPOCH),
                // Before the epoch: sent as 0, as the stock conversion does.
                (1_u64..1 << 40).prop_map(|n| UNIX_EPOCH - Duration::from_nanos(n)),
                any::<u64>().prop_map(|n| UNIX_EPOCH + Duration::from_nanos(n)),
            ]
        }

        fn trace_state() -> impl Strategy<Value = TraceState> {
            vec(("[a-z][a-z0-9_*/-]{0,8}", "[a-z0-9.@]{1,8}"), 0..4)
                .prop_filter_map("a valid tracestate", |members| {
                    TraceState::from_key_value(members).ok()
                })
        }

        fn span_context() -> impl Strategy<Value = SpanContext> {
            (
                any::<u128>(),
                any::<u64>(),
                any::<u8>(),
                any::<bool>(),
                trace_state(),
            )
                .prop_map(|(trace, span, flags, remote, state)| {
                    context(trace, span, flags, remote, state)
                })
        }

        pub(super) fn scope() -> impl Strategy<Value = InstrumentationScope> {
            (
                text(),
                option::of(text()),
                option::of(text()),
                attributes(3),
            )
                .prop_map(|(name, version, schema_url, attributes)| {
                    let mut builder =
                        InstrumentationScope::builder(name).with_attributes(attributes);
                    if let Some(version) = version {
                        builder = builder.with_version(version);
                    }
                    if let Some(schema_url) = schema_url {
                        builder = builder.with_schema_url(schema_url);
                    }
                    builder.build()
                })
        }

        pub(super) fn resource() -> impl Strategy<Value = Resource> {
            (attributes(4), option::of(text())).prop_map(|(attributes, schema_url)| {
                match schema_url {
                    Some(url) => Resource::builder_empty().with_schema_url(attributes, url),
                    None => Resource::builder_empty().with_attributes(attributes),
                }
                .build()
            })
        }

        fn events() -> impl Strategy<Value = SpanEvents> {
            (
                vec(
                    (text(), time(), attributes(3), any::<u32>()).prop_map(
                        |(name, time, attributes, dropped)| {
                            Event::new(name, time, attributes, dropped)
                        },
                    ),
                    0..3,
                ),
                prop_oneof![Just(0_u32), any::<u32>()],
            )
                .prop_map(|(events, dropped_count)| {
                    let mut span_events = SpanEvents::default();
                    span_events.events = events;
                    span_events.dropped_count = dropped_count;
                    span_events
                })
        }

        fn links() -> impl Strategy<Value = SpanLinks> {
            (
                vec(
                    (
                        span_context(),
                        attributes(3),
                        prop_oneof![Just(0_u32), any::<u32>()],
                    )
                        .prop_map(|(context, attributes, dropped)| {
                            Link::new(context, attributes, dropped)
                        }),
                    0..3,
                ),
                prop_oneof![Just(0_u32), any::<u32>()],
            )
                .prop_map(|(links, dropped_count)| {
                    let mut span_links = SpanLinks::default();
                    span_links.links = links;
                    span_links.dropped_count = dropped_count;
                    span_links
                })
        }

        fn kind() -> impl Strategy<Value = SpanKind> {
            prop_oneof![
                Just(SpanKind::Internal),
                Just(SpanKind::Server),
                Just(SpanKind::Client),
                Just(SpanKind::Producer),
                Just(SpanKind::Consumer),
            ]
        }

        fn status() -> impl Strategy<Value = Status> {
            prop_oneof![
                Just(Status::Unset),
                Just(Status::Ok),
                text().prop_map(Status::error),
            ]
        }

        /// A span without its scope, which the batch picks from its own.
        fn span() -> impl Strategy<Value = SpanData> {
            (
                (
                    span_context(),
                    prop_oneof![Just(SpanId::INVALID), any::<u64>().prop_map(SpanId::from)],
                    any::<bool>(),
                    kind(),
                    text(),
                    time(),
                    time(),
                ),
                (
                    attributes(8),
                    prop_oneof![Just(0_u32), any::<u32>()],
                    events(),
                    links(),
                    status(),
                ),
            )
                .prop_map(
                    |(
                        (
                            span_context,
                            parent_span_id,
                            parent_span_is_remote,
                            span_kind,
                            name,
                            start_time,
                            end_time,
                        ),
                        (attributes, dropped_attributes_count, events, links, status),
                    )| SpanData {
                        span_context,
                        parent_span_id,
                        parent_span_is_remote,
                        span_kind,
                        name: Cow::Owned(name),
                        start_time,
                        end_time,
                        attributes,
                        dropped_attributes_count,
                        events,
                        links,
                        status,
                        instrumentation_scope: InstrumentationScope::default(),
                    },
                )
        }

        /// A resource and a batch of spans from up to four scopes, interleaved.
        pub(super) fn batch() -> impl Strategy<Value = (Resource, Vec<SpanData>)> {
            (
                resource(),
                vec(scope(), 1..=4),
                vec((span(), any::<Index>()), 0..6),
            )
                .prop_map(|(resource, scopes, spans)| {
                    let batch = spans
                        .into_iter()
                        .map(|(mut span, pick)| {
                            span.instrumentation_scope = scopes[pick.index(scopes.len())].clone();
                            span
                        })
                        .collect();
                    (resource, batch)
                })
        }
    }

    /// The cases each property runs: `PROPTEST_CASES` when set (for a longer search, e.g.
    /// `PROPTEST_CASES=100000 cargo test --all-features --lib encoding`), else 2,000.
    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|cases| cases.parse().ok())
            .unwrap_or(2_000)
    }

    /// The properties' settings: [`cases`], and the XorShift generator, whose cases come about
    /// three times faster than the default ChaCha's in a debug build (the generator, not the
    /// encoding, was most of the time).
    fn config(cases: u32) -> proptest::test_runner::Config {
        proptest::test_runner::Config {
            cases,
            rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
            ..proptest::test_runner::Config::default()
        }
    }

    proptest::proptest! {
        #![proptest_config(config(cases()))]

        /// Byte for byte what prost writes for the stock conversion of the same batch. Bytes,
        /// not messages, are compared: a NaN makes a message unequal to itself.
        #[test]
        fn arbitrary_batches_encode_as_the_stock_conversion((resource, batch) in arbitrary::batch()) {
            let mut ours = Vec::new();
            encode_export_request(&resource, &batch, &mut ours);
            let expected = stock(&resource, &batch).encode_to_vec();
            proptest::prop_assert!(ours == expected, "ours {ours:?}\nstock {expected:?}");
            for span in &batch {
                assert_span_size(span);
            }
        }
    }

    proptest::proptest! {
        // A quarter of the cases: it encodes every part of every split again.
        #![proptest_config(config(cases() / 4))]

        /// `split` keeps every request within any limit, in order, and drops only what cannot fit.
        #[test]
        fn arbitrary_batches_split_within_any_limit(
            (resource, batch) in arbitrary::batch(),
            limit in 100_usize..40_000,
        ) {
            assert_split_within(&resource, &batch, limit);
        }
    }
}
