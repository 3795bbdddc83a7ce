//! [`HostMetricGroup::Process`](super::HostMetricGroup::Process): this process's CPU time and
//! utilization, memory, threads, file descriptors and uptime.

use opentelemetry::metrics::Meter;
use opentelemetry_semantic_conventions::metric::{
    PROCESS_CPU_TIME, PROCESS_CPU_UTILIZATION, PROCESS_MEMORY_USAGE, PROCESS_MEMORY_VIRTUAL,
    PROCESS_THREAD_COUNT, PROCESS_UNIX_FILE_DESCRIPTOR_COUNT, PROCESS_UPTIME,
};

use super::sampled::Sampled;

pub(super) fn register(meter: &Meter) {
    let process = Sampled::new(Process::new());
    meter
        .f64_observable_counter(PROCESS_CPU_TIME)
        .with_description("CPU seconds this process spent, by mode.")
        .with_unit("s")
        .with_callback(process.callback(|process: &Process, instrument| {
            for (seconds, attributes) in process.cpu_times() {
                instrument.observe(seconds, attributes);
            }
        }))
        .build();
    meter
        .f64_observable_gauge(PROCESS_CPU_UTILIZATION)
        .with_description(
            "CPU time this process spent since the previous measurement, divided by the elapsed \
             time and the number of CPUs available to the process.",
        )
        .with_unit("1")
        .with_callback(process.callback(|process: &Process, instrument| {
            for (utilization, attributes) in process.cpu_utilization() {
                instrument.observe(utilization, attributes);
            }
        }))
        .build();
    let up_down_counters = [
        (
            PROCESS_MEMORY_USAGE,
            "The amount of physical memory in use (resident set size).",
            "By",
            Process::resident_bytes as fn(&Process) -> Option<u64>,
        ),
        (
            PROCESS_MEMORY_VIRTUAL,
            "The amount of committed virtual memory.",
            "By",
            Process::virtual_bytes,
        ),
        (
            PROCESS_THREAD_COUNT,
            "Process threads count.",
            "{thread}",
            Process::threads,
        ),
        (
            PROCESS_UNIX_FILE_DESCRIPTOR_COUNT,
            "Number of unix file descriptors in use by the process.",
            "{file_descriptor}",
            Process::file_descriptors,
        ),
    ];
    for (name, description, unit, value) in up_down_counters {
        meter
            .i64_observable_up_down_counter(name)
            .with_description(description)
            .with_unit(unit)
            .with_callback(process.callback(move |process: &Process, instrument| {
                if let Some(value) = value(process) {
                    instrument.observe(value as i64, &[]);
                }
            }))
            .build();
    }
    meter
        .f64_observable_gauge(PROCESS_UPTIME)
        .with_description("The time the process has been running.")
        .with_unit("s")
        .with_callback(process.callback(|process: &Process, instrument| {
            if let Some(uptime) = process.uptime() {
                instrument.observe(uptime, &[]);
            }
        }))
        .build();
}

/// The number of CPUs this process may run on: its affinity mask, and on Linux its cgroup's
/// CPU quota, as the conventions' "number of CPUs available to the process".
fn available_cpus() -> Option<u64> {
    std::thread::available_parallelism()
        .ok()
        .map(|cpus| cpus.get() as u64)
}

#[cfg(target_os = "linux")]
use linux::Process;
#[cfg(not(target_os = "linux"))]
use other::Process;

/// From `/proc/self/stat`, which has everything but the descriptors in one read.
///
/// sysinfo's process refresh is not used on Linux: it has no user/system split of CPU time,
/// its thread count lists `/proc/self/task`, it reads `stat`, `statm` and `status` where one
/// file suffices, and it keeps `/proc/self/stat` open (one descriptor more in
/// `process.unix.file_descriptor.count`), which also makes sysinfo raise the process's soft
/// `RLIMIT_NOFILE` to the hard limit.
#[cfg(target_os = "linux")]
mod linux {
    use std::time::Instant;

    use opentelemetry::KeyValue;
    use opentelemetry_semantic_conventions::attribute::CPU_MODE;

    use super::super::{
        procfs::{self, Auxv, SelfStat},
        sampled::Source,
        utilization::Utilization,
    };

    pub(super) struct Process {
        /// `/proc/self/stat` and `/proc/uptime`, read into the same buffer each time.
        buffer: String,
        seconds_per_tick: Option<f64>,
        page_size: Option<u64>,
        /// `cpu.mode` `user` and `system`.
        attributes: [[KeyValue; 1]; 2],
        stat: Option<SelfStat>,
        uptime: Option<f64>,
        descriptors: Option<u64>,
        utilization: Utilization<2>,
    }

    impl Process {
        /// Reads `/proc/self/stat` once, so that the first collection has a utilization window.
        pub(super) fn new() -> Self {
            let auxv = Auxv::read();
            let mut process = Self {
                buffer: String::new(),
                seconds_per_tick: auxv.ticks_per_second.map(|ticks| 1.0 / ticks as f64),
                page_size: auxv.page_size,
                attributes: ["user", "system"].map(|mode| [KeyValue::new(CPU_MODE, mode)]),
                stat: None,
                uptime: None,
                descriptors: None,
                utilization: Utilization::new(),
            };
            process.refresh(Instant::now());
            process
        }

        fn ticks(&self) -> Option<[u64; 2]> {
            let stat = self.stat.as_ref()?;
            Some([stat.user_ticks, stat.system_ticks])
        }

        pub(super) fn cpu_times(&self) -> impl Iterator<Item = (f64, &[KeyValue])> {
            let times = self
                .ticks()
                .zip(self.seconds_per_tick)
                .map(|(ticks, seconds)| ticks.map(|ticks| ticks as f64 * seconds));
            times
                .into_iter()
                .flat_map(|times| times.into_iter().zip(&self.attributes))
                .map(|(seconds, attributes)| (seconds, attributes.as_slice()))
        }

        pub(super) fn cpu_utilization(&self) -> impl Iterator<Item = (f64, &[KeyValue])> {
            let values = self.ticks().map(|_| self.utilization.values());
            values
                .into_iter()
                .flat_map(|values| values.into_iter().zip(&self.attributes))
                .filter_map(|(value, attributes)| Some((value?, attributes.as_slice())))
        }

        pub(super) fn resident_bytes(&self) -> Option<u64> {
            let pages = self.stat.as_ref()?.resident_pages;
            Some(pages.saturating_mul(self.page_size?))
        }

        pub(super) fn virtual_bytes(&self) -> Option<u64> {
            Some(self.stat.as_ref()?.virtual_bytes)
        }

        pub(super) fn threads(&self) -> Option<u64> {
            Some(self.stat.as_ref()?.threads)
        }

        pub(super) fn file_descriptors(&self) -> Option<u64> {
            self.descriptors
        }

        pub(super) fn uptime(&self) -> Option<f64> {
            self.uptime
        }
    }

    impl Source for Process {
        fn refresh(&mut self, now: Instant) {
            self.stat =
                procfs::read("/proc/self/stat", &mut self.buffer).and_then(procfs::parse_self_stat);
            let since_boot =
                procfs::read("/proc/uptime", &mut self.buffer).and_then(procfs::parse_uptime);
            self.uptime = match (&self.stat, since_boot, self.seconds_per_tick) {
                (Some(stat), Some(since_boot), Some(seconds_per_tick)) => {
                    Some((since_boot - stat.start_ticks as f64 * seconds_per_tick).max(0.0))
                }
                _ => None,
            };
            self.descriptors = procfs::open_descriptors();
            if let (Some(ticks), Some(seconds_per_tick), Some(cpus)) =
                (self.ticks(), self.seconds_per_tick, super::available_cpus())
            {
                self.utilization
                    .update(now, ticks.map(Some), seconds_per_tick, cpus);
            }
        }
    }
}

/// From sysinfo: CPU time without modes, uptime in whole seconds, no thread count.
#[cfg(not(target_os = "linux"))]
mod other {
    use std::time::Instant;

    use opentelemetry::KeyValue;
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

    use super::super::{sampled::Source, utilization::Utilization};

    pub(super) struct Process {
        system: System,
        pid: Option<Pid>,
        /// Milliseconds.
        cpu_time: Option<u64>,
        resident: Option<u64>,
        virtual_size: Option<u64>,
        /// Seconds.
        run_time: Option<u64>,
        descriptors: Option<u64>,
        utilization: Utilization<1>,
    }

    impl Process {
        /// Reads this process once, so that the first collection has a utilization window.
        pub(super) fn new() -> Self {
            let mut process = Self {
                system: System::new(),
                pid: sysinfo::get_current_pid().ok(),
                cpu_time: None,
                resident: None,
                virtual_size: None,
                run_time: None,
                descriptors: None,
                utilization: Utilization::new(),
            };
            process.refresh(Instant::now());
            process
        }

        pub(super) fn cpu_times(&self) -> impl Iterator<Item = (f64, &[KeyValue])> {
            self.cpu_time
                .map(|millis| (millis as f64 / 1000.0, &[][..]))
                .into_iter()
        }

        pub(super) fn cpu_utilization(&self) -> impl Iterator<Item = (f64, &[KeyValue])> {
            let [value] = self.utilization.values();
            self.cpu_time
                .and(value)
                .map(|value| (value, &[][..]))
                .into_iter()
        }

        pub(super) fn resident_bytes(&self) -> Option<u64> {
            self.resident
        }

        pub(super) fn virtual_bytes(&self) -> Option<u64> {
            self.virtual_size
        }

        pub(super) fn threads(&self) -> Option<u64> {
            None
        }

        pub(super) fn file_descriptors(&self) -> Option<u64> {
            self.descriptors
        }

        pub(super) fn uptime(&self) -> Option<f64> {
            self.run_time.map(|seconds| seconds as f64)
        }
    }

    impl Source for Process {
        fn refresh(&mut self, now: Instant) {
            let Some(pid) = self.pid else {
                return;
            };
            self.system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                true,
                ProcessRefreshKind::nothing()
                    .with_cpu()
                    .with_memory()
                    .without_tasks(),
            );
            let process = self.system.process(pid);
            self.cpu_time = process.map(sysinfo::Process::accumulated_cpu_time);
            self.resident = process.map(sysinfo::Process::memory);
            self.virtual_size = process.map(sysinfo::Process::virtual_memory);
            self.run_time = process.map(sysinfo::Process::run_time);
            // Windows counts handles, not file descriptors.
            self.descriptors = process
                .filter(|_| cfg!(unix))
                .and_then(sysinfo::Process::open_files)
                .map(|count| count as u64);
            if let Some(cpus) = super::available_cpus() {
                self.utilization.update(now, [self.cpu_time], 0.001, cpus);
            }
        }
    }
}
