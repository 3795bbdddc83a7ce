//! Polling with a deadline: tests wait for a condition, never for a fixed time.

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// How often a probe is retried.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Calls `probe` every 10 ms until it returns `Some`, and returns that value.
///
/// # Panics
/// When `timeout` elapses first, with `timed out after {timeout:?} waiting for {what}`.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    wait_until(what, timeout, || {
        std::future::ready(probe().ok_or_else(String::new))
    })
    .await
}

/// Awaits `probe` every 10 ms until it returns `Ok`, and returns that value. A probe that is not
/// satisfied yet returns what it saw instead, for the panic message.
///
/// # Panics
/// When `timeout` elapses first, with `timed out after {timeout:?} waiting for {what}` and what
/// the probe saw last.
pub async fn wait_until<T, Probe>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Probe,
) -> T
where
    Probe: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match probe().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            if seen.is_empty() {
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Blocking variant of [`wait_for`] for code that is not async (it sleeps the thread).
///
/// # Panics
/// When `timeout` elapses first, with `timed out after {timeout:?} waiting for {what}`.
pub fn wait_for_blocking<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
