//! `error.type` of a request that failed with an error or a panic: a short name from a set
//! fixed when the program is compiled, never a message or a formatted value.
//!
//! The semantic conventions (v1.44.0, `error.type` in `model/error/registry.yaml`, and the HTTP
//! server span's note) ask for a predictable, low-cardinality value: the error's type ("its
//! fully-qualified class name") or a component-specific identifier, the type of the inner error
//! when the outer one is a wrapper that does not classify the failure, and `_OTHER` when the
//! instrumentation defines no value. Here:
//!
//! | The error | `error.type` |
//! |---|---|
//! | [`std::io::Error`] | its [`ErrorKind`](io::ErrorKind) in snake case (`connection_reset`, `broken_pipe`, ...), `timeout` for `TimedOut`; `_OTHER` for `Other` and kinds this list does not know |
//! | `Box<dyn Error + Send + Sync>` (tower's `BoxError`), `Box<dyn Error + Send>`, `Box<dyn Error>`, `axum::Error` | the error they wrap, classified as in this table; `_OTHER` when it is none of the types named here |
//! | any other type named by a path without generic parameters (`hyper::Error`, your own `enum AppError`) | that path as [`type_name`] gives it (`hyper::error::Error`, `my_app::AppError`) |
//! | any other type: generic, a reference, a tuple, a trait object | `_OTHER` |
//! | a panic of the inner service's future or of the response body | `panic` |
//!
//! Type paths are as many as the error types compiled into the program, so the set is bounded
//! by construction; a wrapped `dyn Error` has no type name to read, so it gets `_OTHER` unless
//! it is one of the types above.

use std::{
    any::{Any, type_name},
    error::Error,
    io,
};

/// `error.type` of a request whose service future or response body panicked: the conventions
/// define no value for it, so a component-specific one.
pub(crate) const PANIC: &str = "panic";

/// The conventions' fallback, "when the instrumentation doesn't define a custom value".
pub(crate) const OTHER: &str = "_OTHER";

/// `error.type` of an error returned by the inner service or the response body.
pub(crate) fn of<E: 'static>(error: &E) -> &'static str {
    let error: &dyn Any = error;
    if let Some(boxed) = error.downcast_ref::<Box<dyn Error + Send + Sync>>() {
        return of_dyn(&**boxed);
    }
    if let Some(boxed) = error.downcast_ref::<Box<dyn Error + Send>>() {
        return of_dyn(&**boxed);
    }
    if let Some(boxed) = error.downcast_ref::<Box<dyn Error>>() {
        return of_dyn(&**boxed);
    }
    // The types `of_dyn` knows, unboxed.
    if let Some(error) = error.downcast_ref::<io::Error>() {
        return of_dyn(error);
    }
    #[cfg(feature = "axum")]
    if let Some(error) = error.downcast_ref::<axum::Error>() {
        return of_dyn(error);
    }
    type_path::<E>()
}

/// `error.type` of an error known only as a `dyn Error`, whose type has no name to read.
fn of_dyn(error: &(dyn Error + 'static)) -> &'static str {
    if let Some(error) = error.downcast_ref::<io::Error>() {
        return io_kind(error.kind());
    }
    #[cfg(feature = "axum")]
    if let Some(error) = error.downcast_ref::<axum::Error>() {
        // A wrapper of a boxed error: its source is what it wraps.
        return error.source().map_or(OTHER, of_dyn);
    }
    OTHER
}

/// The path of `E` when it is a plain path (letters, digits, `_` and `::`, and the
/// `{{closure}}` segment of a type declared in a closure or an async block), else `_OTHER`.
fn type_path<E>() -> &'static str {
    let name = type_name::<E>();
    let plain = name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || b"_:{}".contains(&byte));
    if plain && !name.is_empty() {
        name
    } else {
        OTHER
    }
}

/// An [`io::ErrorKind`] in snake case, `timeout` (the conventions' own example) for `TimedOut`.
pub(crate) fn io_kind(kind: io::ErrorKind) -> &'static str {
    use io::ErrorKind as Kind;
    match kind {
        Kind::NotFound => "not_found",
        Kind::PermissionDenied => "permission_denied",
        Kind::ConnectionRefused => "connection_refused",
        Kind::ConnectionReset => "connection_reset",
        Kind::HostUnreachable => "host_unreachable",
        Kind::NetworkUnreachable => "network_unreachable",
        Kind::ConnectionAborted => "connection_aborted",
        Kind::NotConnected => "not_connected",
        Kind::AddrInUse => "addr_in_use",
        Kind::AddrNotAvailable => "addr_not_available",
        Kind::NetworkDown => "network_down",
        Kind::BrokenPipe => "broken_pipe",
        Kind::AlreadyExists => "already_exists",
        Kind::WouldBlock => "would_block",
        Kind::NotADirectory => "not_a_directory",
        Kind::IsADirectory => "is_a_directory",
        Kind::DirectoryNotEmpty => "directory_not_empty",
        Kind::ReadOnlyFilesystem => "read_only_filesystem",
        Kind::StaleNetworkFileHandle => "stale_network_file_handle",
        Kind::InvalidInput => "invalid_input",
        Kind::InvalidData => "invalid_data",
        Kind::TimedOut => "timeout",
        Kind::WriteZero => "write_zero",
        Kind::StorageFull => "storage_full",
        Kind::NotSeekable => "not_seekable",
        Kind::FileTooLarge => "file_too_large",
        Kind::ResourceBusy => "resource_busy",
        Kind::ExecutableFileBusy => "executable_file_busy",
        Kind::Deadlock => "deadlock",
        Kind::CrossesDevices => "crosses_devices",
        Kind::TooManyLinks => "too_many_links",
        Kind::InvalidFilename => "invalid_filename",
        Kind::ArgumentListTooLong => "argument_list_too_long",
        Kind::Interrupted => "interrupted",
        Kind::Unsupported => "unsupported",
        Kind::UnexpectedEof => "unexpected_eof",
        Kind::OutOfMemory => "out_of_memory",
        // `Other`, and the kinds std adds after this list.
        _ => OTHER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Custom;

    impl std::fmt::Display for Custom {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("custom")
        }
    }

    impl Error for Custom {}

    #[derive(Debug)]
    struct Generic<T>(T);

    fn timed_out() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "the upstream took 30 s")
    }

    #[test]
    fn an_io_error_is_its_kind_and_a_timeout_is_timeout() {
        assert_eq!(of(&timed_out()), "timeout");
        assert_eq!(
            of(&io::Error::from(io::ErrorKind::BrokenPipe)),
            "broken_pipe"
        );
        assert_eq!(
            of(&io::Error::from(io::ErrorKind::ConnectionReset)),
            "connection_reset"
        );
        assert_eq!(of(&io::Error::other("anything")), "_OTHER");
    }

    #[test]
    fn every_named_io_kind_is_short_snake_case_and_distinct() {
        use io::ErrorKind as Kind;
        let kinds = [
            Kind::NotFound,
            Kind::PermissionDenied,
            Kind::ConnectionRefused,
            Kind::ConnectionReset,
            Kind::HostUnreachable,
            Kind::NetworkUnreachable,
            Kind::ConnectionAborted,
            Kind::NotConnected,
            Kind::AddrInUse,
            Kind::AddrNotAvailable,
            Kind::NetworkDown,
            Kind::BrokenPipe,
            Kind::AlreadyExists,
            Kind::WouldBlock,
            Kind::NotADirectory,
            Kind::IsADirectory,
            Kind::DirectoryNotEmpty,
            Kind::ReadOnlyFilesystem,
            Kind::StaleNetworkFileHandle,
            Kind::InvalidInput,
            Kind::InvalidData,
            Kind::TimedOut,
            Kind::WriteZero,
            Kind::StorageFull,
            Kind::NotSeekable,
            Kind::FileTooLarge,
            Kind::ResourceBusy,
            Kind::ExecutableFileBusy,
            Kind::Deadlock,
            Kind::CrossesDevices,
            Kind::TooManyLinks,
            Kind::InvalidFilename,
            Kind::ArgumentListTooLong,
            Kind::Interrupted,
            Kind::Unsupported,
            Kind::UnexpectedEof,
            Kind::OutOfMemory,
        ];
        let names: std::collections::BTreeSet<_> = kinds.into_iter().map(io_kind).collect();
        assert_eq!(names.len(), kinds.len(), "{names:?}");
        for kind in kinds {
            let name = io_kind(kind);
            assert!(
                name.bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte == b'_'),
                "{kind:?}: {name}"
            );
            // The variant's name, snake case, but for TimedOut.
            let words = format!("{kind:?}").replace('_', "").to_lowercase();
            if kind != Kind::TimedOut {
                assert_eq!(name.replace('_', ""), words, "{kind:?}");
            }
        }
    }

    #[test]
    fn a_boxed_error_is_what_it_holds() {
        let boxed: Box<dyn Error + Send + Sync> = Box::new(timed_out());
        assert_eq!(of(&boxed), "timeout");
        let boxed: Box<dyn Error + Send> = Box::new(timed_out());
        assert_eq!(of(&boxed), "timeout");
        let boxed: Box<dyn Error> = Box::new(timed_out());
        assert_eq!(of(&boxed), "timeout");
        // A type inside a box has no name to read.
        let boxed: Box<dyn Error + Send + Sync> = Box::new(Custom);
        assert_eq!(of(&boxed), "_OTHER");
        let boxed: Box<dyn Error + Send + Sync> = "a message".into();
        assert_eq!(of(&boxed), "_OTHER");
    }

    #[cfg(feature = "axum")]
    #[test]
    fn an_axum_error_is_what_it_wraps() {
        assert_eq!(of(&axum::Error::new(timed_out())), "timeout");
        assert_eq!(
            of(&axum::Error::new(io::Error::from(
                io::ErrorKind::ConnectionReset
            ))),
            "connection_reset"
        );
        assert_eq!(of(&axum::Error::new(Custom)), "_OTHER");
    }

    #[test]
    fn a_named_type_is_its_path_and_anything_else_is_other() {
        assert_eq!(
            of(&Custom),
            "otel_monitor::layer::error_type::tests::Custom"
        );
        assert_eq!(of(&std::fmt::Error), "core::fmt::Error");
        assert_eq!(of(&Generic(Custom)), "_OTHER");
        assert_eq!(of(&"a message"), "_OTHER");
        assert_eq!(of(&String::from("a message")), "alloc::string::String");
        assert_eq!(of(&()), "_OTHER");
        assert_eq!(of(&(Custom, Custom)), "_OTHER");
        let declared_in_a_closure = || {
            struct Local;
            of(&Local)
        };
        assert_eq!(
            declared_in_a_closure(),
            "otel_monitor::layer::error_type::tests::a_named_type_is_its_path_and_anything_else_is_other::{{closure}}::Local"
        );
    }
}
