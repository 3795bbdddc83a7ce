//! gRPC status codes, as `rpc.response.status_code` names them, and which of them are errors.
//!
//! The names are the codes' own (`OK`, `DEADLINE_EXCEEDED`, ...), as the gRPC conventions
//! (semantic conventions v1.44.0, docs/rpc/grpc.md) give them: "the string representation of the
//! status code". A `grpc-status` value that is not one of the 17 codes is `UNKNOWN`, as gRPC
//! itself reads it, so the attribute has at most 17 values whatever a peer sends.

use http::{HeaderMap, HeaderName, StatusCode};

/// The header, or trailer, that carries a call's status.
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// A gRPC status code, 0 to 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Code(u8);

impl Code {
    /// `OK`.
    pub(crate) const OK: Self = Self(0);
    /// `CANCELLED`: what a client generates for a call its caller gave up on.
    pub(crate) const CANCELLED: Self = Self(1);
    /// `UNKNOWN`: what an unreadable status is.
    const UNKNOWN: Self = Self(2);
    /// `UNIMPLEMENTED`: what a server answers to a method it does not know.
    pub(crate) const UNIMPLEMENTED: Self = Self(12);
    const INTERNAL: Self = Self(13);
    const UNAVAILABLE: Self = Self(14);
    const UNAUTHENTICATED: Self = Self(16);
    const PERMISSION_DENIED: Self = Self(7);

    /// The code in the `grpc-status` of `headers` (a trailers-only response's head, or the
    /// trailers), `None` when there is none.
    pub(crate) fn in_headers(headers: &HeaderMap) -> Option<Self> {
        headers
            .get(GRPC_STATUS)
            .map(|value| Self::parse(value.as_bytes()))
    }

    /// The code a `grpc-status` value holds: a decimal number from 0 to 16, `UNKNOWN` for
    /// anything else.
    fn parse(value: &[u8]) -> Self {
        let number = match value {
            [digit] if digit.is_ascii_digit() => digit - b'0',
            [b'1', digit] if digit.is_ascii_digit() => 10 + (digit - b'0'),
            _ => return Self::UNKNOWN,
        };
        if number <= 16 {
            Self(number)
        } else {
            Self::UNKNOWN
        }
    }

    /// The code a gRPC client takes from a response without `grpc-status`, by its HTTP status
    /// (gRPC's doc/http-grpc-status-mapping.md, as tonic 0.14 and grpc-go apply it); `None` for
    /// 200, which says nothing about the call.
    pub(crate) fn of_http_status(status: StatusCode) -> Option<Self> {
        Some(match status.as_u16() {
            200 => return None,
            400 => Self::INTERNAL,
            401 => Self::UNAUTHENTICATED,
            403 => Self::PERMISSION_DENIED,
            404 => Self::UNIMPLEMENTED,
            429 | 502 | 503 | 504 => Self::UNAVAILABLE,
            _ => Self::UNKNOWN,
        })
    }

    /// The code's name: the value of `rpc.response.status_code`, and of `error.type` when the
    /// code is an error.
    pub(crate) fn name(self) -> &'static str {
        NAMES[usize::from(self.0)]
    }

    /// Whether the code is an error on a server span (v1.44.0, docs/rpc/grpc.md, the server
    /// span's `rpc.response.status_code` note): `UNKNOWN`, `DEADLINE_EXCEEDED`,
    /// `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE` and `DATA_LOSS`; the others (`NOT_FOUND`,
    /// `INVALID_ARGUMENT`, ...) are the client's doing, as a 4xx is on an HTTP server span.
    pub(crate) fn is_server_error(self) -> bool {
        matches!(self.0, 2 | 4 | 12 | 13 | 14 | 15)
    }

    /// Whether the code is an error on a client span (v1.44.0, the client span's note): all
    /// but `OK`.
    pub(crate) fn is_client_error(self) -> bool {
        self != Self::OK
    }
}

/// The codes' names, by number.
const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_its_number_and_anything_else_is_unknown() {
        assert_eq!(Code::parse(b"0").name(), "OK");
        assert_eq!(Code::parse(b"4").name(), "DEADLINE_EXCEEDED");
        assert_eq!(Code::parse(b"12").name(), "UNIMPLEMENTED");
        assert_eq!(Code::parse(b"16").name(), "UNAUTHENTICATED");
        for unreadable in [&b""[..], b"17", b"99", b"007", b"-1", b"1 ", b"OK", b"\xff"] {
            assert_eq!(Code::parse(unreadable).name(), "UNKNOWN", "{unreadable:?}");
        }
    }

    #[test]
    fn servers_fail_on_six_codes_and_clients_on_all_but_ok() {
        let server_errors: Vec<_> = (0..=16)
            .map(Code)
            .filter(|code| code.is_server_error())
            .map(Code::name)
            .collect();
        assert_eq!(
            server_errors,
            [
                "UNKNOWN",
                "DEADLINE_EXCEEDED",
                "UNIMPLEMENTED",
                "INTERNAL",
                "UNAVAILABLE",
                "DATA_LOSS"
            ]
        );
        assert!((1..=16).map(Code).all(Code::is_client_error));
        assert!(!Code::OK.is_client_error());
    }

    #[test]
    fn a_response_without_status_takes_it_from_its_http_status() {
        let code = |status: u16| {
            Code::of_http_status(StatusCode::from_u16(status).unwrap()).map(Code::name)
        };
        assert_eq!(code(200), None);
        assert_eq!(code(404), Some("UNIMPLEMENTED"));
        assert_eq!(code(503), Some("UNAVAILABLE"));
        assert_eq!(code(401), Some("UNAUTHENTICATED"));
        assert_eq!(code(500), Some("UNKNOWN"));
    }
}
