//! Polling with a deadline: tests wait for a condition, never for a fixed time.

use std::time::{Duration, Instant};

/// How often a probe is retried.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Calls `probe` every 10 ms until it returns `Some`, and returns that value.
///
/// # Panics
/// When `timeout` elapses first, with `timed out after {timeout:?} waiting for {what}`.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
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
