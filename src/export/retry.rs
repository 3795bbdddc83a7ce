//! Retrying an export as the OTLP specification describes it (opentelemetry-proto
//! `docs/specification.md`, OTLP 1.x, "Failures" and "Throttling"): only what the collector
//! calls transient is retried (HTTP 429, 502, 503, 504 and connection failures; gRPC
//! CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS, and
//! RESOURCE_EXHAUSTED only when the status carries a `RetryInfo`), with exponential backoff and
//! jitter, waiting at least what `Retry-After` or `RetryInfo` asks, and never past the export's
//! deadline (`OTEL_EXPORTER_OTLP_TIMEOUT` bounds the whole export, retries included).
//!
//! One policy serves every signal: the direct span exporters run [`with_retries`], and the
//! stock metric and log exporters get the same figures through [`stock_policy`].

use std::{
    future::Future,
    hash::{BuildHasher, RandomState},
    time::{Duration, Instant},
};

/// Retries after the first attempt.
const MAX_RETRIES: usize = 5;
/// The wait before the first retry, doubled before each next one.
const INITIAL_DELAY: Duration = Duration::from_millis(100);
/// The longest computed wait; a collector's own `Retry-After` or `RetryInfo` may ask for more.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// At most this much is added at random to each wait, so that many services do not retry in step.
const MAX_JITTER: Duration = Duration::from_millis(100);
/// The longest a collector may make an export wait, whatever it asks.
const MAX_THROTTLE: Duration = Duration::from_secs(30);

/// The same figures for the stock OTLP exporters.
pub(crate) fn stock_policy() -> opentelemetry_otlp::RetryPolicy {
    opentelemetry_otlp::RetryPolicy::recommended()
        .with_max_retries(MAX_RETRIES)
        .with_initial_delay(INITIAL_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_max_jitter(MAX_JITTER)
}

/// What a failed attempt allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not transient: give up.
    Final,
    /// Transient: retry after the backoff.
    Retry,
    /// The collector asked to wait at least this long.
    RetryAfter(Duration),
}

/// The verdict on an HTTP status that is not a success.
pub(crate) fn http_verdict(status: ::http::StatusCode, retry_after: Option<&str>) -> Verdict {
    match status.as_u16() {
        429 | 503 => retry_after
            .and_then(parse_retry_after)
            .map_or(Verdict::Retry, Verdict::RetryAfter),
        502 | 504 => Verdict::Retry,
        _ => Verdict::Final,
    }
}

/// The verdict on a request that got no answer, from its rendered cause: a TLS handshake that
/// failed on a certificate fails the same way again, while a refused or dropped connection is
/// transient, as the specification says of failures to connect.
pub(crate) fn connection_verdict(cause: &str) -> Verdict {
    const TLS_FAILURES: [&str; 3] = [
        "invalid peer certificate",
        "received fatal alert",
        "received corrupt message",
    ];
    if TLS_FAILURES.iter().any(|failure| cause.contains(failure)) {
        Verdict::Final
    } else {
        Verdict::Retry
    }
}

/// `Retry-After`: a number of seconds, or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The verdict on a gRPC status.
pub(crate) fn grpc_verdict(status: &tonic::Status) -> Verdict {
    use tonic::Code;
    use tonic_types::StatusExt;
    let retry_info = || {
        status
            .get_details_retry_info()
            .map(|info| info.retry_delay.unwrap_or_default())
    };
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => retry_info().map_or(Verdict::Retry, Verdict::RetryAfter),
        Code::ResourceExhausted => retry_info().map_or(Verdict::Final, Verdict::RetryAfter),
        _ => Verdict::Final,
    }
}

/// Runs `attempt` until it succeeds, its failure is final, the retries run out, or the next
/// wait would end after `timeout` from now. `attempt` gets the time left before the deadline.
/// Waits sleep the Tokio timer inside a runtime, and the thread outside one (the SDK's batch
/// processors export on threads of their own).
pub(crate) async fn with_retries<T, E, F, Fut>(timeout: Duration, mut attempt: F) -> Result<T, E>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<T, (E, Verdict)>>,
{
    let deadline = Instant::now() + timeout;
    let mut backoff = INITIAL_DELAY;
    let mut retries = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (error, verdict) = match attempt(left).await {
            Ok(value) => return Ok(value),
            Err(failure) => failure,
        };
        let Some(wait) = planned_wait(verdict, backoff) else {
            return Err(error);
        };
        let wait = wait + jitter();
        retries += 1;
        if retries > MAX_RETRIES || Instant::now() + wait >= deadline {
            return Err(error);
        }
        sleep(wait).await;
        // A collector's wait seeds the backoff: the next waits grow from it.
        backoff = match verdict {
            Verdict::RetryAfter(asked) => asked.min(MAX_THROTTLE).max(backoff * 2),
            _ => (backoff * 2).min(MAX_DELAY),
        };
    }
}

/// The wait before the next attempt after `verdict`, jitter aside, with the backoff at
/// `backoff`; `None` when the failure is final.
fn planned_wait(verdict: Verdict, backoff: Duration) -> Option<Duration> {
    match verdict {
        Verdict::Final => None,
        Verdict::Retry => Some(backoff),
        Verdict::RetryAfter(asked) => Some(asked.min(MAX_THROTTLE).max(backoff)),
    }
}

/// Up to [`MAX_JITTER`], at random (std's per-instance random hash keys, no RNG dependency).
fn jitter() -> Duration {
    let random = RandomState::new().hash_one(Instant::now());
    Duration::from_millis(random % (MAX_JITTER.as_millis() as u64 + 1))
}

async fn sleep(wait: Duration) {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::time::sleep(wait).await;
    } else {
        std::thread::sleep(wait);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn http_statuses_are_retried_as_the_specification_lists_them() {
        use ::http::StatusCode;
        for status in [502, 504] {
            assert_eq!(
                http_verdict(StatusCode::from_u16(status).unwrap(), None),
                Verdict::Retry
            );
        }
        assert_eq!(
            http_verdict(StatusCode::TOO_MANY_REQUESTS, Some("3")),
            Verdict::RetryAfter(Duration::from_secs(3))
        );
        assert_eq!(
            http_verdict(StatusCode::SERVICE_UNAVAILABLE, Some("soon")),
            Verdict::Retry
        );
        let in_a_minute =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(60));
        let Verdict::RetryAfter(wait) =
            http_verdict(StatusCode::TOO_MANY_REQUESTS, Some(&in_a_minute))
        else {
            panic!("an HTTP date is a Retry-After");
        };
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        for status in [400, 401, 403, 404, 413, 500] {
            assert_eq!(
                http_verdict(StatusCode::from_u16(status).unwrap(), Some("1")),
                Verdict::Final
            );
        }
    }

    #[test]
    fn a_refused_connection_is_retried_and_a_refused_certificate_is_not() {
        assert_eq!(
            connection_verdict(
                "client error (Connect): tcp connect error: Connection refused (os error 111)"
            ),
            Verdict::Retry
        );
        assert_eq!(
            connection_verdict("client error (Connect): invalid peer certificate: UnknownIssuer"),
            Verdict::Final
        );
        assert_eq!(
            connection_verdict("transport error: received fatal alert: CertificateRequired"),
            Verdict::Final
        );
    }

    #[test]
    fn resource_exhausted_is_retried_only_with_retry_info() {
        use tonic::Code;
        use tonic_types::{ErrorDetails, StatusExt};
        assert_eq!(
            grpc_verdict(&tonic::Status::resource_exhausted("full")),
            Verdict::Final
        );
        let throttled = tonic::Status::with_error_details(
            Code::ResourceExhausted,
            "full",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(2))),
        );
        assert_eq!(
            grpc_verdict(&throttled),
            Verdict::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(
            grpc_verdict(&tonic::Status::unavailable("down")),
            Verdict::Retry
        );
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Internal,
        ] {
            assert_eq!(
                grpc_verdict(&tonic::Status::new(code, "no")),
                Verdict::Final,
                "{code:?}"
            );
        }
    }

    #[test]
    fn the_other_retryable_grpc_codes_are_retried() {
        use tonic::Code;
        // The OTLP specification's retryable codes besides UNAVAILABLE and RESOURCE_EXHAUSTED.
        for code in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::DataLoss,
        ] {
            assert_eq!(
                grpc_verdict(&tonic::Status::new(code, "transient")),
                Verdict::Retry,
                "{code:?}"
            );
        }
    }

    #[test]
    fn each_wait_gets_its_own_jitter_of_at_most_100_ms() {
        let jitters: Vec<Duration> = (0..200).map(|_| jitter()).collect();
        assert!(
            jitters.iter().all(|j| *j <= Duration::from_millis(100)),
            "{jitters:?}"
        );
        let mut distinct = jitters.clone();
        distinct.sort();
        distinct.dedup();
        // 200 draws from 101 values: a constant (or nearly constant) jitter fails.
        assert!(distinct.len() > 50, "{distinct:?}");
        assert!(
            distinct.last().unwrap() > &Duration::from_millis(50),
            "{distinct:?}"
        );
    }

    #[test]
    fn a_collector_asking_for_more_than_30_s_is_waited_for_30_s() {
        let ms = Duration::from_millis;
        let asked = |wait| Verdict::RetryAfter(wait);
        assert_eq!(
            planned_wait(asked(Duration::from_secs(120)), ms(100)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            planned_wait(asked(Duration::from_secs(29)), ms(100)),
            Some(Duration::from_secs(29))
        );
        // Never less than the backoff reached so far.
        assert_eq!(planned_wait(asked(ms(10)), ms(400)), Some(ms(400)));
        assert_eq!(planned_wait(Verdict::Retry, ms(800)), Some(ms(800)));
        assert_eq!(planned_wait(Verdict::Final, ms(800)), None);
    }

    fn attempts_until(
        timeout: Duration,
        verdict: Verdict,
        succeed_at: usize,
    ) -> (Result<usize, &'static str>, usize, Duration) {
        let attempts = AtomicUsize::new(0);
        let started = Instant::now();
        let result = block_on(with_retries(timeout, |_| {
            let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if attempt >= succeed_at {
                    Ok(attempt)
                } else {
                    Err(("failed", verdict))
                }
            }
        }));
        (result, attempts.load(Ordering::SeqCst), started.elapsed())
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn a_final_failure_is_not_retried() {
        let (result, attempts, _) = attempts_until(Duration::from_secs(10), Verdict::Final, 3);
        assert_eq!((result, attempts), (Err("failed"), 1));
    }

    #[test]
    fn transient_failures_back_off_exponentially_until_success() {
        // Waits of 100, 200 and 400 ms, each plus at most 100 ms of jitter.
        let (result, attempts, elapsed) =
            attempts_until(Duration::from_secs(10), Verdict::Retry, 4);
        assert_eq!((result, attempts), (Ok(4), 4));
        assert!(elapsed >= Duration::from_millis(700), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1100), "{elapsed:?}");
    }

    #[test]
    fn retries_stop_at_the_bound_and_the_deadline() {
        let (result, attempts, _) =
            attempts_until(Duration::from_secs(60), Verdict::Retry, usize::MAX);
        assert_eq!((result, attempts), (Err("failed"), MAX_RETRIES + 1));
        // A wait that would end past the deadline is not started.
        let asked = Verdict::RetryAfter(Duration::from_secs(2));
        let (result, attempts, elapsed) = attempts_until(Duration::from_secs(1), asked, 2);
        assert_eq!((result, attempts), (Err("failed"), 1));
        assert!(elapsed < Duration::from_millis(100), "{elapsed:?}");
    }

    #[test]
    fn a_collector_asking_to_wait_is_waited_for() {
        let asked = Verdict::RetryAfter(Duration::from_millis(600));
        let (result, attempts, elapsed) = attempts_until(Duration::from_secs(10), asked, 2);
        assert_eq!((result, attempts), (Ok(2), 2));
        assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(800), "{elapsed:?}");
    }
}
