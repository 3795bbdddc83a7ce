//! [`HostMetricGroup::Load`](super::HostMetricGroup::Load): `system.cpu.load_average.1m`,
//! `.5m`, `.15m` and `system.uptime`.

use std::time::Instant;

use opentelemetry::metrics::Meter;
use opentelemetry_semantic_conventions::metric::SYSTEM_UPTIME;

use super::sampled::{Sampled, Source};

/// The load averages as the Collector's `hostmetrics` receiver names them: the semantic
/// conventions define no load metric, and the crate has no constant for these names.
const LOAD_AVERAGES: [(&str, &str); 3] = [
    ("system.cpu.load_average.1m", "1 minute"),
    ("system.cpu.load_average.5m", "5 minutes"),
    ("system.cpu.load_average.15m", "15 minutes"),
];

pub(super) fn register(meter: &Meter) {
    let load = Sampled::new(Load {
        reader: Reader::default(),
        averages: None,
        uptime: None,
    });
    for (index, (name, period)) in LOAD_AVERAGES.into_iter().enumerate() {
        meter
            .f64_observable_gauge(name)
            .with_description(format!(
                "Average number of runnable and uninterruptible threads over the last {period}."
            ))
            .with_unit("{thread}")
            .with_callback(load.callback(move |load: &Load, instrument| {
                if let Some(averages) = load.averages {
                    instrument.observe(averages[index], &[]);
                }
            }))
            .build();
    }
    meter
        .f64_observable_gauge(SYSTEM_UPTIME)
        .with_description("The time the host has been running.")
        .with_unit("s")
        .with_callback(load.callback(|load: &Load, instrument| {
            if let Some(uptime) = load.uptime {
                instrument.observe(uptime, &[]);
            }
        }))
        .build();
}

struct Load {
    reader: Reader,
    /// 1, 5 and 15 minutes.
    averages: Option<[f64; 3]>,
    /// Seconds.
    uptime: Option<f64>,
}

impl Source for Load {
    fn refresh(&mut self, _now: Instant) {
        self.averages = load_averages();
        self.uptime = self.reader.uptime();
    }
}

/// sysinfo's load averages (`/proc/loadavg` on Linux).
#[cfg(not(windows))]
fn load_averages() -> Option<[f64; 3]> {
    let load = sysinfo::System::load_average();
    Some([load.one, load.five, load.fifteen])
}

/// Windows has no load average (sysinfo's is not one).
#[cfg(windows)]
fn load_averages() -> Option<[f64; 3]> {
    None
}

/// Reads `/proc/uptime`, to the hundredth: sysinfo reads the same file and keeps whole seconds,
/// where the conventions ask for the highest precision available.
#[cfg(target_os = "linux")]
#[derive(Default)]
struct Reader {
    buffer: String,
}

#[cfg(target_os = "linux")]
impl Reader {
    fn uptime(&mut self) -> Option<f64> {
        super::procfs::read("/proc/uptime", &mut self.buffer).and_then(super::procfs::parse_uptime)
    }
}

/// sysinfo's uptime, in whole seconds.
#[cfg(not(target_os = "linux"))]
#[derive(Default)]
struct Reader;

#[cfg(not(target_os = "linux"))]
impl Reader {
    fn uptime(&mut self) -> Option<f64> {
        Some(sysinfo::System::uptime() as f64)
    }
}
