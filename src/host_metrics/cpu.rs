//! [`HostMetricGroup::Cpu`](super::HostMetricGroup::Cpu): `system.cpu.time`,
//! `system.cpu.utilization` and `system.cpu.logical.count`.

use opentelemetry::metrics::Meter;
use opentelemetry_semantic_conventions::metric::{
    SYSTEM_CPU_LOGICAL_COUNT, SYSTEM_CPU_TIME, SYSTEM_CPU_UTILIZATION,
};

use super::sampled::Sampled;

pub(super) fn register(meter: &Meter) {
    let cpu = Sampled::new(Cpu::new());
    meter
        .f64_observable_counter(SYSTEM_CPU_TIME)
        .with_description("Seconds the logical CPUs spent in each mode, summed over the CPUs.")
        .with_unit("s")
        .with_callback(cpu.callback(|cpu: &Cpu, instrument| {
            for (seconds, attributes) in cpu.times() {
                instrument.observe(seconds, attributes);
            }
        }))
        .build();
    meter
        .f64_observable_gauge(SYSTEM_CPU_UTILIZATION)
        .with_description(
            "CPU time spent in each mode since the previous measurement, divided by the elapsed \
             time and the number of logical CPUs.",
        )
        .with_unit("1")
        .with_callback(cpu.callback(|cpu: &Cpu, instrument| {
            for (utilization, attributes) in cpu.utilization() {
                instrument.observe(utilization, attributes);
            }
        }))
        .build();
    meter
        .i64_observable_up_down_counter(SYSTEM_CPU_LOGICAL_COUNT)
        .with_description("The number of logical CPUs.")
        .with_unit("{cpu}")
        .with_callback(cpu.callback(|cpu: &Cpu, instrument| {
            if let Some(count) = cpu.logical_count() {
                instrument.observe(count, &[]);
            }
        }))
        .build();
}

#[cfg(target_os = "linux")]
use linux::Cpu;
#[cfg(not(target_os = "linux"))]
use other::Cpu;

/// From `/proc/stat`: sysinfo gives a usage percentage but not the time per mode.
#[cfg(target_os = "linux")]
mod linux {
    use std::time::Instant;

    use opentelemetry::KeyValue;
    use opentelemetry_semantic_conventions::attribute::CPU_MODE;

    use super::super::{
        procfs::{self, Auxv, CPU_MODES},
        sampled::Source,
        utilization::Utilization,
    };

    const MODES: usize = CPU_MODES.len();

    pub(super) struct Cpu {
        /// `/proc/stat`, read into the same buffer each time.
        buffer: String,
        seconds_per_tick: Option<f64>,
        attributes: [[KeyValue; 1]; MODES],
        /// The ticks of the last reading, `None` when it failed.
        ticks: Option<[Option<u64>; MODES]>,
        /// The highest ticks reported per mode: the kernel's idle and iowait counts can step
        /// back a little (proc_stat(5)), and a counter must not.
        highest: [u64; MODES],
        logical_cpus: Option<u64>,
        utilization: Utilization<MODES>,
    }

    impl Cpu {
        /// Reads `/proc/stat` once, so that the first collection has a utilization window.
        pub(super) fn new() -> Self {
            let mut cpu = Self {
                buffer: String::new(),
                seconds_per_tick: Auxv::read()
                    .ticks_per_second
                    .map(|ticks| 1.0 / ticks as f64),
                attributes: CPU_MODES.map(|mode| [KeyValue::new(CPU_MODE, mode)]),
                ticks: None,
                highest: [0; MODES],
                logical_cpus: None,
                utilization: Utilization::new(),
            };
            cpu.refresh(Instant::now());
            cpu
        }

        pub(super) fn times(&self) -> impl Iterator<Item = (f64, &[KeyValue])> {
            let seconds_per_tick = self.seconds_per_tick;
            let ticks = self.ticks.unwrap_or([None; MODES]);
            ticks
                .into_iter()
                .zip(&self.attributes)
                .filter_map(move |(ticks, attributes)| {
                    Some((ticks? as f64 * seconds_per_tick?, attributes.as_slice()))
                })
        }

        pub(super) fn utilization(&self) -> impl Iterator<Item = (f64, &[KeyValue])> {
            let values = match self.ticks {
                Some(_) => self.utilization.values(),
                None => [None; MODES],
            };
            values
                .into_iter()
                .zip(&self.attributes)
                .filter_map(|(value, attributes)| Some((value?, attributes.as_slice())))
        }

        pub(super) fn logical_count(&self) -> Option<i64> {
            self.logical_cpus.map(|count| count as i64)
        }
    }

    impl Source for Cpu {
        fn refresh(&mut self, now: Instant) {
            let Some(times) =
                procfs::read("/proc/stat", &mut self.buffer).and_then(procfs::parse_stat)
            else {
                (self.ticks, self.logical_cpus) = (None, None);
                return;
            };
            let ticks = std::array::from_fn(|mode| {
                let ticks = times.ticks[mode]?.max(self.highest[mode]);
                self.highest[mode] = ticks;
                Some(ticks)
            });
            self.ticks = Some(ticks);
            self.logical_cpus = Some(times.logical_cpus).filter(|&count| count > 0);
            if let (Some(seconds_per_tick), Some(cpus)) = (self.seconds_per_tick, self.logical_cpus)
            {
                self.utilization.update(now, ticks, seconds_per_tick, cpus);
            }
        }
    }
}

/// From sysinfo's CPU usage: one utilization without modes, no CPU time.
#[cfg(not(target_os = "linux"))]
mod other {
    use std::time::Instant;

    use opentelemetry::KeyValue;
    use sysinfo::{CpuRefreshKind, System};

    use super::super::sampled::Source;

    pub(super) struct Cpu {
        system: System,
    }

    impl Cpu {
        /// Reads the CPU usage once: sysinfo computes it from the difference of two readings.
        pub(super) fn new() -> Self {
            let mut cpu = Self {
                system: System::new(),
            };
            cpu.refresh(Instant::now());
            cpu
        }

        pub(super) fn times(&self) -> impl Iterator<Item = (f64, &[KeyValue])> {
            std::iter::empty()
        }

        pub(super) fn utilization(&self) -> impl Iterator<Item = (f64, &[KeyValue])> {
            let usage = f64::from(self.system.global_cpu_usage()) / 100.0;
            (!self.system.cpus().is_empty())
                .then_some((usage.clamp(0.0, 1.0), &[][..]))
                .into_iter()
        }

        pub(super) fn logical_count(&self) -> Option<i64> {
            Some(self.system.cpus().len() as i64).filter(|&count| count > 0)
        }
    }

    impl Source for Cpu {
        fn refresh(&mut self, _now: Instant) {
            self.system
                .refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
        }
    }
}
