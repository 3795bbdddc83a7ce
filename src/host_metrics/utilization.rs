//! Utilization from cumulative CPU times: the time spent in each mode during a window, divided
//! by the window's length and the number of CPUs (or by the time the modes counted, when a busy
//! window counted more).

use std::{
    array,
    time::{Duration, Instant},
};

/// The shortest window utilization is computed over.
///
/// The kernel counts CPU time in ticks of 10 ms (`USER_HZ` is 100): over a shorter window one
/// tick more or less would be most of the value. A collection that comes sooner than this after
/// the previous window reports that window's values again.
pub(super) const MIN_WINDOW: Duration = Duration::from_millis(100);

/// The utilization of `N` modes, and the reading its next window starts from.
#[derive(Debug)]
pub(super) struct Utilization<const N: usize> {
    start: Option<(Instant, [Option<u64>; N])>,
    values: [Option<f64>; N],
}

impl<const N: usize> Utilization<N> {
    pub(super) fn new() -> Self {
        Self {
            start: None,
            values: [None; N],
        }
    }

    /// Takes a reading of the cumulative `times` per mode (in units of `seconds_per_unit`)
    /// spent on `cpus` CPUs. The first reading only starts a window.
    pub(super) fn update(
        &mut self,
        now: Instant,
        times: [Option<u64>; N],
        seconds_per_unit: f64,
        cpus: u64,
    ) {
        let Some((start, before)) = self.start else {
            self.start = Some((now, times));
            return;
        };
        let window = now.saturating_duration_since(start);
        if window < MIN_WINDOW || cpus == 0 {
            return;
        }
        let spent: [Option<f64>; N] = array::from_fn(|mode| {
            Some(times[mode]?.checked_sub(before[mode]?)? as f64 * seconds_per_unit)
        });
        // The conventions' capacity (v1.44.0, `system.cpu.utilization`: the time spent "divided
        // by the elapsed time and number of CPUs"), unless the modes together counted more: the
        // kernel counts whole ticks on each CPU, and the file is read a little before or after
        // the clock, so a busy window can count a tick per CPU more than it lasted. The time
        // counted is then the window, and the modes' shares add up to at most 1.
        let counted: f64 = spent.iter().flatten().sum();
        let capacity = (window.as_secs_f64() * cpus as f64).max(counted);
        self.values = spent.map(|spent| Some((spent? / capacity).clamp(0.0, 1.0)));
        self.start = Some((now, times));
    }

    /// The utilization of each mode over the last complete window, in `[0, 1]`.
    pub(super) fn values(&self) -> [Option<f64>; N] {
        self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilization_is_time_spent_over_window_and_cpus() {
        let start = Instant::now();
        let mut utilization = Utilization::<2>::new();
        utilization.update(start, [Some(100), Some(0)], 0.01, 2);
        assert_eq!(utilization.values(), [None, None]);

        // Too short a window: nothing yet.
        utilization.update(
            start + Duration::from_millis(50),
            [Some(110), Some(0)],
            0.01,
            2,
        );
        assert_eq!(utilization.values(), [None, None]);

        // 1 s on 2 CPUs, 0.5 s spent in the first mode.
        utilization.update(
            start + Duration::from_secs(1),
            [Some(150), Some(0)],
            0.01,
            2,
        );
        assert_eq!(utilization.values(), [Some(0.25), Some(0.0)]);

        // Rounding beyond the window's capacity is capped, and a missing reading skips its mode.
        let later = start + Duration::from_millis(1200);
        utilization.update(later, [Some(200), None], 0.01, 2);
        assert_eq!(utilization.values(), [Some(1.0), None]);
    }

    #[test]
    fn modes_that_counted_a_tick_more_than_the_window_share_it_and_add_up_to_1() {
        let start = Instant::now();
        let mut utilization = Utilization::<3>::new();
        utilization.update(start, [Some(0), Some(0), Some(0)], 0.01, 2);
        // 1 s on 2 CPUs is 200 ticks; the busy modes counted 201 between the two reads.
        utilization.update(
            start + Duration::from_secs(1),
            [Some(176), Some(21), Some(4)],
            0.01,
            2,
        );
        let values = utilization.values().map(Option::unwrap);
        for (value, ticks) in values.iter().zip([176.0, 21.0, 4.0]) {
            assert!((value - ticks / 201.0).abs() < 1e-12, "{values:?}");
        }
        assert!(values.iter().sum::<f64>() <= 1.0 + f64::EPSILON);
    }
}
