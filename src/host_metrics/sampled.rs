//! One sample shared by the instruments of a group, refreshed at most once per collection.
//!
//! The SDK has no callback that serves several instruments at once: each observable instrument
//! has its own, and a collection calls them one after the other on the metric reader's thread.
//! The instruments of a group therefore read one [`Sampled`] source, and the first callback of
//! a collection refreshes it for the others.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use opentelemetry::metrics::AsyncInstrument;

/// How long a sample stays fresh for the other instruments of its group.
///
/// A collection calls all its callbacks within well under a millisecond to a few milliseconds;
/// 100 ms leaves a slow or busy machine room and is far shorter than any sensible export
/// interval. A new collection sooner than that (a `force_flush` right after an export, or a
/// second reader) is still seen: an instrument that asks again for the sample it has already
/// reported starts a new one.
pub(super) const FRESH_FOR: Duration = Duration::from_millis(100);

/// Values read from the system in one go.
pub(super) trait Source: Send + 'static {
    /// Reads the values anew; `now` is when, for rates.
    fn refresh(&mut self, now: Instant);
}

/// A [`Source`] and when it was last refreshed.
pub(super) struct Sampled<S> {
    state: Mutex<State<S>>,
}

struct State<S> {
    source: S,
    /// Counts refreshes, from 1; 0 means never refreshed.
    generation: u64,
    refreshed_at: Option<Instant>,
}

impl<S: Source> Sampled<S> {
    pub(super) fn new(source: S) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                source,
                generation: 0,
                refreshed_at: None,
            }),
        })
    }

    /// The callback of one instrument: it refreshes the source if the sample is older than
    /// [`FRESH_FOR`] or if this instrument has already reported it, then hands the source to
    /// `observe`.
    pub(super) fn callback<T>(
        self: &Arc<Self>,
        observe: impl Fn(&S, &dyn AsyncInstrument<T>) + Send + Sync + 'static,
    ) -> impl Fn(&dyn AsyncInstrument<T>) + Send + Sync + 'static {
        let sampled = Arc::clone(self);
        let reported = AtomicU64::new(0);
        move |instrument| {
            let mut state = sampled.state.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let stale = state
                .refreshed_at
                .is_none_or(|at| now.saturating_duration_since(at) >= FRESH_FOR)
                || reported.load(Ordering::Relaxed) == state.generation;
            if stale {
                state.source.refresh(now);
                state.generation += 1;
                state.refreshed_at = Some(now);
            }
            reported.store(state.generation, Ordering::Relaxed);
            observe(&state.source, instrument);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use opentelemetry::KeyValue;

    /// Counts its refreshes.
    struct Counting(u64);

    impl Source for Counting {
        fn refresh(&mut self, _now: Instant) {
            self.0 += 1;
        }
    }

    /// Records what a callback observed.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<u64>>);

    impl AsyncInstrument<u64> for Recorder {
        fn observe(&self, measurement: u64, _attributes: &[KeyValue]) {
            self.0.lock().unwrap().push(measurement);
        }
    }

    #[test]
    fn the_instruments_of_one_collection_share_a_refresh_and_the_next_collection_refreshes() {
        let sampled = Sampled::new(Counting(0));
        let observe = |source: &Counting, instrument: &dyn AsyncInstrument<u64>| {
            instrument.observe(source.0, &[]);
        };
        let (first, second) = (sampled.callback(observe), sampled.callback(observe));
        let recorder = Recorder::default();

        // One collection: both instruments see the first refresh.
        first(&recorder);
        second(&recorder);
        // The next one, however soon: the first instrument to ask again refreshes.
        first(&recorder);
        second(&recorder);
        assert_eq!(*recorder.0.lock().unwrap(), [1, 1, 2, 2]);
    }
}
