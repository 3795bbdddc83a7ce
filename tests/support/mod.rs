//! Shared support for integration tests: an in-process OTLP receiver, a real collector (rotel)
//! run as a child process, and deadline-bound waiting. Use it with `mod support;`.

// Each integration test file is its own crate and compiles this module again, but uses only
// part of it: without this, every helper a given test file does not call would warn as dead.
#![allow(dead_code)]

pub mod client;
pub mod datadog_intake;
pub mod example;
pub mod fault_injector;
pub mod greeter;
pub mod moto;
pub mod prometheus;
pub mod receiver;
pub mod rotel;
pub mod sigv4;
pub mod tap;
pub mod tls;
pub mod wait;

// The short paths `support::OtlpReceiver` etc.; unused ones warn for the same reason as above.
#[allow(unused_imports)]
pub use datadog_intake::{DatadogIntake, DatadogSpan};
#[allow(unused_imports)]
pub use example::ExampleService;
#[allow(unused_imports)]
pub use receiver::{
    OtlpReceiver, ReceivedLog, ReceivedMetric, ReceivedScope, ReceivedSpan, ReceiverOptions,
    Throttle, attr, attr_int, attr_str, span_named,
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

/// The IPv4 TCP addresses that process `pid` itself listens on (from `/proc/net/tcp` and the
/// process's open sockets), so that a test knows a port is held by the child it started and not
/// by another process that took it in the meantime. Empty when the process is gone.
pub fn listening_addrs(pid: u32) -> Vec<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, SocketAddr};

    // The socket inodes the process holds: its descriptors link to `socket:[INODE]`.
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: std::collections::HashSet<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    // Rows: `sl local_address rem_address st ... inode ...`, with the address as
    // `AABBCCDD:PPPP` (the IPv4 address in the kernel's byte order, the port in hex) and state
    // 0A for LISTEN.
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if *state != "0A" || !inodes.contains(*inode) {
                return None;
            }
            let (ip, port) = local.split_once(':')?;
            let ip = u32::from_str_radix(ip, 16).ok()?;
            let port = u16::from_str_radix(port, 16).ok()?;
            Some(SocketAddr::from((Ipv4Addr::from(ip.to_ne_bytes()), port)))
        })
        .collect()
}

/// Serves `app` on a port of its own on 127.0.0.1, each request with axum's
/// `ConnectInfo<SocketAddr>` (as `into_make_service_with_connect_info` gives it, so that the layer
/// knows the peer), until the runtime stops; returns its address.
pub async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    address
}
