//! Host and process metrics: observable instruments named as the OpenTelemetry system and
//! process semantic conventions (v1.44) name them, read when the metric reader collects.
//!
//! One file per [`HostMetricGroup`] (its source and its instruments), `sampled.rs` for the
//! sample the instruments of a group share, `utilization.rs` for CPU utilization from CPU
//! times, and `procfs.rs` for the Linux `/proc` files read where sysinfo lacks a number or
//! reads more than the group reports.

mod cpu;
mod filesystem;
mod load;
mod memory;
mod network;
mod process;
#[cfg(target_os = "linux")]
mod procfs;
mod sampled;
mod utilization;

use opentelemetry::metrics::Meter;

/// A group of host and process metrics that [`Telemetry`](crate::Telemetry) reports.
///
/// Kinds: *counter* is an observable counter (a monotonic sum), *up-down* an observable
/// up-down counter (a non-monotonic sum), *gauge* an observable gauge. On platforms other than
/// Linux, some values are not available and are not reported, as each group says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostMetricGroup {
    /// The host's CPUs:
    /// - `system.cpu.time`, counter, `s`, by `cpu.mode` (`user`, `nice`, `system`, `idle`,
    ///   `iowait`, `interrupt`, `steal`), summed over the CPUs;
    /// - `system.cpu.utilization`, gauge, `1`, by `cpu.mode`: the CPU time since the previous
    ///   collection divided by the elapsed time and the number of logical CPUs, over windows
    ///   of at least 100 ms (a collection sooner than that repeats the previous window's value);
    /// - `system.cpu.logical.count`, up-down, `{cpu}`.
    ///
    /// On Linux from `/proc/stat`. Elsewhere `system.cpu.utilization` comes without `cpu.mode`
    /// from sysinfo's CPU usage, and `system.cpu.time` is not reported.
    Cpu,
    /// The host's memory:
    /// - `system.memory.usage`, up-down, `By`, by `system.memory.state` (`used`, `free`,
    ///   `cached`, `buffers`);
    /// - `system.memory.utilization`, gauge, `1`, by `system.memory.state`: usage over total;
    /// - `system.memory.limit`, up-down, `By`: the total.
    ///
    /// On Linux from `/proc/meminfo`, where `used` is `MemTotal - MemAvailable` (memory the
    /// kernel cannot reclaim for a new program), so the states overlap: part of `cached` is
    /// counted as available. Elsewhere from sysinfo: `used` and `free` only.
    Memory,
    /// The host's network interfaces:
    /// - `system.network.io`, counter, `By`, by `network.interface.name` and
    ///   `network.io.direction` (`receive`, `transmit`).
    ///
    /// On Linux from `/proc/net/dev`, read once per collection. Elsewhere from sysinfo.
    Network,
    /// The host's mounted filesystems:
    /// - `system.filesystem.usage`, up-down, `By`, by `system.device`,
    ///   `system.filesystem.mountpoint`, `system.filesystem.type`, `system.filesystem.mode`
    ///   (`rw`, `ro`) and `system.filesystem.state` (`used`, `free`).
    ///
    /// From sysinfo, which skips pseudo filesystems and, on Linux, network filesystems (their
    /// `statvfs` can hang). sysinfo gives the space available to unprivileged users but not the
    /// free blocks, so the blocks reserved for the superuser are counted as `used` and no
    /// `reserved` state is reported: `used + free` is the filesystem's size.
    Filesystem,
    /// The host's load and uptime:
    /// - `system.cpu.load_average.1m`, `system.cpu.load_average.5m`,
    ///   `system.cpu.load_average.15m`, gauges, `{thread}`: the names of the Collector's
    ///   `hostmetrics` receiver, as the conventions define no load average;
    /// - `system.uptime`, gauge, `s`.
    ///
    /// Load averages from sysinfo (`/proc/loadavg` on Linux), not reported on Windows, which
    /// has none. Uptime from `/proc/uptime` on Linux, to the hundredth of a second; elsewhere
    /// from sysinfo, in whole seconds.
    Load,
    /// This process:
    /// - `process.cpu.time`, counter, `s`, by `cpu.mode` (`user`, `system`);
    /// - `process.cpu.utilization`, gauge, `1`, by `cpu.mode`: the CPU time since the previous
    ///   collection divided by the elapsed time and the number of CPUs available to the process
    ///   (its affinity and CPU quota, as [`std::thread::available_parallelism`] counts them),
    ///   over windows of at least 100 ms;
    /// - `process.memory.usage` (resident set) and `process.memory.virtual`, up-down, `By`;
    /// - `process.thread.count`, up-down, `{thread}`;
    /// - `process.unix.file_descriptor.count`, up-down, `{file_descriptor}`;
    /// - `process.uptime`, gauge, `s`.
    ///
    /// On Linux from `/proc/self/stat` and `/proc/self/fd`. Elsewhere from sysinfo: CPU time
    /// and utilization without `cpu.mode`, uptime in whole seconds, no thread count, and no
    /// descriptor count on Windows.
    Process,
}

impl HostMetricGroup {
    /// Every group, the default.
    pub const ALL: [HostMetricGroup; 6] = [
        Self::Cpu,
        Self::Memory,
        Self::Network,
        Self::Filesystem,
        Self::Load,
        Self::Process,
    ];

    /// The names accepted in `OTEL_MONITOR_HOST_METRICS_GROUPS`, for error messages.
    pub(crate) const ACCEPTED: &'static str = "cpu, memory, network, filesystem, load, process";

    /// Parses one group name (case-insensitive, trimmed).
    pub(crate) fn parse(name: &str) -> Option<Self> {
        let name = name.trim();
        Self::ALL
            .into_iter()
            .find(|group| group.name().eq_ignore_ascii_case(name))
    }

    fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Network => "network",
            Self::Filesystem => "filesystem",
            Self::Load => "load",
            Self::Process => "process",
        }
    }
}

/// Registers the observable instruments of `groups` on `meter` (each group once, however often
/// it is listed). [`Telemetry`](crate::Telemetry) does this for you; call it when you build
/// your own meter provider.
///
/// Nothing is read on the request path: the instruments' callbacks run when the metric reader
/// collects, on its thread. The instruments of a group share one sample, refreshed at most once
/// per collection (the first callback of a collection refreshes it; a sample younger than
/// 100 ms is reused unless the same instrument asks again, which means a new collection began).
/// A refresh reads only what the group reports, and a value that cannot be read is left out of
/// that collection, never guessed and never a panic.
///
/// ```
/// use opentelemetry::metrics::MeterProvider as _;
/// use opentelemetry_sdk::metrics::SdkMeterProvider;
/// use otel_monitor::{HostMetricGroup, register_host_metrics};
///
/// // Your provider, with its reader and exporter.
/// let provider = SdkMeterProvider::builder().build();
/// register_host_metrics(
///     &provider.meter("host"),
///     &[HostMetricGroup::Memory, HostMetricGroup::Process],
/// );
/// ```
pub fn register_host_metrics(meter: &Meter, groups: &[HostMetricGroup]) {
    for group in HostMetricGroup::ALL {
        if !groups.contains(&group) {
            continue;
        }
        match group {
            HostMetricGroup::Cpu => cpu::register(meter),
            HostMetricGroup::Memory => memory::register(meter),
            HostMetricGroup::Network => network::register(meter),
            HostMetricGroup::Filesystem => filesystem::register(meter),
            HostMetricGroup::Load => load::register(meter),
            HostMetricGroup::Process => process::register(meter),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_parse_in_any_case_and_are_all_accepted() {
        assert_eq!(
            HostMetricGroup::parse(" Memory "),
            Some(HostMetricGroup::Memory)
        );
        assert_eq!(HostMetricGroup::parse("CPU"), Some(HostMetricGroup::Cpu));
        assert_eq!(HostMetricGroup::parse("disk"), None);
        let names: Vec<_> = HostMetricGroup::ALL.map(HostMetricGroup::name).into();
        assert_eq!(HostMetricGroup::ACCEPTED, names.join(", "));
    }
}
