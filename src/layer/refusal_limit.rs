//! How many security events a client may cause: a fixed table of per-client rate limits, so that
//! a scan or a credential-stuffing run cannot flood the log pipeline, and an overall limit, so
//! that many clients together cannot either.
//!
//! Each limit is a GCRA (the generic cell rate algorithm, a token bucket stored as one time: the
//! "theoretical arrival time" of the next event), kept in one `AtomicU64` and updated with
//! compare-and-swap: no lock, and only refused requests touch it. A client's slot is found by a
//! hash of its address under a per-process random key (an attacker cannot aim at a victim's
//! slot), IPv6 addresses taken by their /64 (what one subscriber usually holds, and can rotate
//! through freely). Two clients that share a slot share a limit until the newer one replaces
//! the older: the table holds [`SLOTS`] clients at a time in 32 KiB.
//!
//! What a limit suppresses is counted in the client's slot and reported on the client's next
//! event ([`Admission::Emit`]'s `suppressed`). A client that never returns, or whose slot
//! another client takes first, leaves its count unreported; the request metrics still count
//! every refused request, so the events are a per-client sample of them with the gaps sized.

use std::{
    collections::hash_map::RandomState,
    hash::BuildHasher,
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

/// Clients tracked at a time (a power of two): 32 KiB of slots.
const SLOTS: usize = 4096;
/// Bits of a slot holding the rest of the client's hash, to tell clients sharing a slot apart.
const TAG_BITS: u32 = 12;
/// Bits of a slot holding the theoretical arrival time, in milliseconds, modulo 2^28 (74 hours):
/// a client's time is never more than [`HORIZON_MS`] ahead of now, so any time further ahead
/// (modulo 2^28) is one in the past. (A client back after a whole number of 74-hour laps, give
/// or take a minute, may find its limit still in force for up to that minute.)
const TIME_BITS: u32 = 28;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// Bits of a slot counting the client's suppressed events, the rest: up to 16.7 million, then
/// saturated.
const COUNT_BITS: u32 = 64 - TAG_BITS - TIME_BITS;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
/// The window of the per-client limit: its events per minute.
const HORIZON_MS: u64 = 60_000;
/// The overall limit: at most 100 events a second, in bursts of at most 100.
const OVERALL_INTERVAL_MS: u64 = 10;
const OVERALL_TOLERANCE_MS: u64 = 1_000 - OVERALL_INTERVAL_MS;

/// Whether a refused request gets its security event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Emit it, saying how many events of this client were suppressed since its last one.
    Emit { suppressed: u32 },
    /// Suppress it (counted in the client's slot).
    Suppress,
}

/// The per-client and overall limits of one [`MonitorLayer`](super::MonitorLayer).
#[derive(Debug)]
pub(crate) struct RefusalLimiter {
    slots: Box<[AtomicU64]>,
    hasher: RandomState,
    /// Milliseconds between two events of one client at its sustained rate.
    interval_ms: u64,
    /// How far ahead of now a client's time may be and still get an event: a burst of
    /// `per_minute` events.
    tolerance_ms: u64,
    /// The overall limit's theoretical arrival time, in milliseconds since `started`.
    overall: AtomicU64,
    started: Instant,
}

impl RefusalLimiter {
    /// At most `per_minute` events per client a minute (in bursts of up to `per_minute`),
    /// `per_minute` taken within 1..=60,000.
    pub(crate) fn new(per_minute: u32) -> Self {
        let per_minute = u64::from(per_minute).clamp(1, HORIZON_MS);
        let interval_ms = HORIZON_MS / per_minute;
        Self {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
            interval_ms,
            tolerance_ms: HORIZON_MS - interval_ms,
            overall: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Whether `client` (`None` when its address is unknown: all such requests are one client)
    /// gets an event for a refused request now.
    pub(crate) fn admit(&self, client: Option<IpAddr>) -> Admission {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.admit_at(client, now_ms)
    }

    fn admit_at(&self, client: Option<IpAddr>, now_ms: u64) -> Admission {
        let hash = self.hasher.hash_one(client_key(client));
        let slot = &self.slots[hash as usize & (SLOTS - 1)];
        let tag = hash >> (64 - TAG_BITS);
        let now = now_ms & TIME_MASK;
        let mut overall_granted = false;
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (ahead, suppressed) = if current >> (64 - TAG_BITS) == tag {
                let time = (current >> COUNT_BITS) & TIME_MASK;
                let ahead = time.wrapping_sub(now) & TIME_MASK;
                // Further ahead than a client can be: a time in the past.
                let ahead = if ahead > HORIZON_MS { 0 } else { ahead };
                (ahead, current & COUNT_MAX)
            } else {
                // A new client, or another one that shared the slot: it starts afresh.
                (0, 0)
            };
            let client_allows = ahead <= self.tolerance_ms;
            if client_allows && !overall_granted {
                overall_granted = self.overall_admits(now_ms);
            }
            let emit = client_allows && overall_granted;
            let (time, suppressed_after) = if emit {
                (now + ahead + self.interval_ms, 0)
            } else {
                // Not charged to the client when only the overall limit refused.
                (now + ahead, (suppressed + 1).min(COUNT_MAX))
            };
            let next =
                (tag << (64 - TAG_BITS)) | ((time & TIME_MASK) << COUNT_BITS) | suppressed_after;
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) if emit => {
                    return Admission::Emit {
                        suppressed: suppressed as u32,
                    };
                }
                Ok(_) => return Admission::Suppress,
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes one event from the overall limit, if it has one now.
    fn overall_admits(&self, now_ms: u64) -> bool {
        self.overall
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |time| {
                let time = time.max(now_ms);
                (time - now_ms <= OVERALL_TOLERANCE_MS).then_some(time + OVERALL_INTERVAL_MS)
            })
            .is_ok()
    }
}

/// The address a client is limited by: IPv4 as it is (also when mapped into IPv6), IPv6 by its
/// /64, `0` (the unspecified address, never a client's) when unknown.
fn client_key(client: Option<IpAddr>) -> u128 {
    match client {
        Some(IpAddr::V4(v4)) => u128::from(u32::from(v4)),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => u128::from(v6) & !u128::from(u64::MAX),
        },
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::{Ipv4Addr, Ipv6Addr},
        sync::Arc,
    };

    use super::*;

    fn v4(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, last)))
    }

    /// Admissions of `client` at `now_ms`, `count` times: (emitted, suppressed counts reported).
    fn burst(
        limiter: &RefusalLimiter,
        client: Option<IpAddr>,
        now_ms: u64,
        count: usize,
    ) -> Vec<Admission> {
        (0..count)
            .map(|_| limiter.admit_at(client, now_ms))
            .collect()
    }

    fn emitted(admissions: &[Admission]) -> usize {
        admissions
            .iter()
            .filter(|admission| matches!(admission, Admission::Emit { .. }))
            .count()
    }

    #[test]
    fn a_burst_of_one_client_is_limited_and_its_next_event_reports_what_was_suppressed() {
        let limiter = RefusalLimiter::new(10);
        let first = burst(&limiter, v4(1), 1_000, 25);
        assert_eq!(first[..10], [Admission::Emit { suppressed: 0 }; 10]);
        assert_eq!(first[10..], [Admission::Suppress; 15]);
        // 10 a minute: one more every 6 s, carrying the 15 suppressed, then the count restarts.
        assert_eq!(limiter.admit_at(v4(1), 6_999), Admission::Suppress);
        assert_eq!(
            limiter.admit_at(v4(1), 7_000),
            Admission::Emit { suppressed: 16 }
        );
        assert_eq!(limiter.admit_at(v4(1), 7_000), Admission::Suppress);
        assert_eq!(
            limiter.admit_at(v4(1), 13_000),
            Admission::Emit { suppressed: 1 }
        );
    }

    #[test]
    fn another_client_is_not_affected_by_a_limited_one() {
        let limiter = RefusalLimiter::new(10);
        assert_eq!(emitted(&burst(&limiter, v4(1), 0, 50)), 10);
        assert_eq!(
            burst(&limiter, v4(2), 0, 10),
            [Admission::Emit { suppressed: 0 }; 10]
        );
        // Unknown clients are one client of their own.
        assert_eq!(emitted(&burst(&limiter, None, 0, 20)), 10);
    }

    #[test]
    fn a_client_back_after_any_time_gets_its_full_burst_and_its_count() {
        // A minute later, an hour later, and past laps of the 28-bit clock.
        for later in [60_000, 3_600_000, (1 << 28) + 60_001, (3 << 28) - 60_000] {
            let limiter = RefusalLimiter::new(10);
            burst(&limiter, v4(1), 0, 12);
            let back = burst(&limiter, v4(1), later, 11);
            assert_eq!(back[0], Admission::Emit { suppressed: 2 }, "{later}");
            assert_eq!(emitted(&back), 10, "{later}");
        }
    }

    #[test]
    fn an_ipv6_client_is_limited_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        let limiter = RefusalLimiter::new(10);
        for host in 0..20u16 {
            let address = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, host);
            limiter.admit_at(Some(IpAddr::V6(address)), 0);
        }
        let same_64 = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0xffff, 1, 2, 3);
        assert_eq!(
            limiter.admit_at(Some(IpAddr::V6(same_64)), 0),
            Admission::Suppress
        );
        let next_64 = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1);
        assert!(matches!(
            limiter.admit_at(Some(IpAddr::V6(next_64)), 0),
            Admission::Emit { .. }
        ));
        burst(&limiter, v4(9), 0, 10);
        let mapped = Ipv4Addr::new(203, 0, 113, 9).to_ipv6_mapped();
        assert_eq!(
            limiter.admit_at(Some(IpAddr::V6(mapped)), 0),
            Admission::Suppress
        );
    }

    #[test]
    fn many_clients_together_get_at_most_the_overall_limit_and_their_counts_are_kept() {
        let limiter = RefusalLimiter::new(10);
        let clients: Vec<_> = (0..300u32)
            .map(|n| Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))))
            .collect();
        let admissions: Vec<_> = clients
            .iter()
            .map(|client| limiter.admit_at(*client, 0))
            .collect();
        assert_eq!(emitted(&admissions), 100, "a burst of 100 at most");
        // A second later: 100 more, each suppressed client's next event says 1.
        let later: Vec<_> = clients[100..200]
            .iter()
            .map(|client| limiter.admit_at(*client, 1_000))
            .collect();
        assert!(
            later
                .iter()
                .all(|admission| *admission == Admission::Emit { suppressed: 1 }
                    || *admission == Admission::Emit { suppressed: 0 })
        );
        // A client whose slot a later one took (about 1 in 40 here) loses its count; none gains.
        let reported: u32 = later
            .iter()
            .map(|admission| match admission {
                Admission::Emit { suppressed } => *suppressed,
                Admission::Suppress => 0,
            })
            .sum();
        assert!(reported > 90, "{reported} of 100 counts kept");
    }

    #[test]
    fn concurrent_refusals_of_one_client_are_each_emitted_or_counted_once() {
        let limiter = Arc::new(RefusalLimiter::new(10));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || burst(&limiter, v4(1), 0, 10_000))
            })
            .collect();
        let admissions: Vec<_> = threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect();
        assert_eq!(emitted(&admissions), 10);
        assert_eq!(
            limiter.admit_at(v4(1), 6_000),
            Admission::Emit {
                suppressed: 40_000 - 10
            }
        );
    }

    #[test]
    fn the_limit_is_taken_within_its_bounds() {
        assert_eq!(emitted(&burst(&RefusalLimiter::new(0), v4(1), 0, 5)), 1);
        let per_millisecond = RefusalLimiter::new(u32::MAX);
        assert_eq!(
            emitted(&burst(&per_millisecond, v4(1), 0, 200)),
            100,
            "the overall limit"
        );
    }
}
