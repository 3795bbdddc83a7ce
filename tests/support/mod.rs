//! Shared support for integration tests: an in-process OTLP receiver, a real collector (rotel)
//! run as a child process, and deadline-bound waiting. Use it with `mod support;`.

// Each integration test file is its own crate and compiles this module again, but uses only
// part of it: without this, every helper a given test file does not call would warn as dead.
#![allow(dead_code)]

pub mod client;
pub mod datadog_intake;
pub mod example;
pub mod moto;
pub mod prometheus;
pub mod receiver;
pub mod rotel;
pub mod tls;
pub mod wait;

// The short paths `support::OtlpReceiver` etc.; unused ones warn for the same reason as above.
#[allow(unused_imports)]
pub use datadog_intake::{DatadogIntake, DatadogSpan};
#[allow(unused_imports)]
pub use example::ExampleService;
#[allow(unused_imports)]
pub use receiver::{
    OtlpReceiver, ReceivedLog, ReceivedMetric, ReceivedSpan, ReceiverOptions, Throttle, attr,
    attr_int, attr_str, span_named,
};
#[allow(unused_imports)]
pub use rotel::Rotel;
#[allow(unused_imports)]
pub use tls::{ServerTls, TestPki};
#[allow(unused_imports)]
pub use wait::{wait_for, wait_for_blocking, wait_until};

/// The path `$variable` names, when it is set: a test tool installed elsewhere than `.venv`.
///
/// # Panics
/// When the variable names no file.
pub fn path_from_env(variable: &str) -> Option<std::path::PathBuf> {
    let path = std::path::PathBuf::from(std::env::var_os(variable)?);
    assert!(
        path.is_file(),
        "{variable}={} is not a file",
        path.display()
    );
    Some(path)
}
