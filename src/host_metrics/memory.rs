//! [`HostMetricGroup::Memory`](super::HostMetricGroup::Memory): `system.memory.usage`,
//! `system.memory.utilization` and `system.memory.limit`.

use std::time::Instant;

use opentelemetry::{KeyValue, metrics::Meter};
use opentelemetry_semantic_conventions::{
    attribute::SYSTEM_MEMORY_STATE,
    metric::{SYSTEM_MEMORY_LIMIT, SYSTEM_MEMORY_USAGE, SYSTEM_MEMORY_UTILIZATION},
};

use super::sampled::{Sampled, Source};

pub(super) fn register(meter: &Meter) {
    let memory = Sampled::new(Memory::new());
    meter
        .i64_observable_up_down_counter(SYSTEM_MEMORY_USAGE)
        .with_description("Memory in use, by state.")
        .with_unit("By")
        .with_callback(memory.callback(|memory: &Memory, instrument| {
            for (bytes, attributes) in memory.usage() {
                instrument.observe(bytes as i64, attributes);
            }
        }))
        .build();
    meter
        .f64_observable_gauge(SYSTEM_MEMORY_UTILIZATION)
        .with_description("Fraction of the memory in each state.")
        .with_unit("1")
        .with_callback(memory.callback(|memory: &Memory, instrument| {
            let Some(total) = memory.total.filter(|&total| total > 0) else {
                return;
            };
            for (bytes, attributes) in memory.usage() {
                instrument.observe(bytes as f64 / total as f64, attributes);
            }
        }))
        .build();
    meter
        .i64_observable_up_down_counter(SYSTEM_MEMORY_LIMIT)
        .with_description("Total memory of the host.")
        .with_unit("By")
        .with_callback(memory.callback(|memory: &Memory, instrument| {
            if let Some(total) = memory.total {
                instrument.observe(total as i64, &[]);
            }
        }))
        .build();
}

/// The memory of the host, by state.
struct Memory {
    reader: Reader,
    attributes: [[KeyValue; 1]; STATES.len()],
    total: Option<u64>,
    bytes: [Option<u64>; STATES.len()],
}

impl Memory {
    fn new() -> Self {
        Self {
            reader: Reader::default(),
            attributes: STATES.map(|state| [KeyValue::new(SYSTEM_MEMORY_STATE, state)]),
            total: None,
            bytes: [None; STATES.len()],
        }
    }

    fn usage(&self) -> impl Iterator<Item = (u64, &[KeyValue])> {
        self.bytes
            .into_iter()
            .zip(&self.attributes)
            .filter_map(|(bytes, attributes)| Some((bytes?, attributes.as_slice())))
    }
}

impl Source for Memory {
    fn refresh(&mut self, _now: Instant) {
        (self.total, self.bytes) = self.reader.read();
    }
}

/// The `system.memory.state` values reported, in the order of [`Reader::read`]'s array.
#[cfg(target_os = "linux")]
const STATES: [&str; 4] = ["used", "free", "cached", "buffers"];

/// Reads `/proc/meminfo`: sysinfo reads it too but does not give the page cache and buffers.
#[cfg(target_os = "linux")]
#[derive(Default)]
struct Reader {
    buffer: String,
}

#[cfg(target_os = "linux")]
impl Reader {
    /// The total, and used (`MemTotal - MemAvailable`), free, cached and buffers.
    fn read(&mut self) -> (Option<u64>, [Option<u64>; STATES.len()]) {
        let Some(text) = super::procfs::read("/proc/meminfo", &mut self.buffer) else {
            return (None, [None; STATES.len()]);
        };
        let meminfo = super::procfs::parse_meminfo(text);
        let used = match meminfo.available {
            Some(available) => meminfo.total.map(|total| total.saturating_sub(available)),
            // Before Linux 3.14: what neither is free nor holds caches.
            None => meminfo
                .total
                .zip(meminfo.free)
                .zip(meminfo.buffers.zip(meminfo.cached))
                .map(|((total, free), (buffers, cached))| {
                    total.saturating_sub(free + buffers + cached)
                }),
        };
        (
            meminfo.total,
            [used, meminfo.free, meminfo.cached, meminfo.buffers],
        )
    }
}

/// The `system.memory.state` values reported, in the order of [`Reader::read`]'s array.
#[cfg(not(target_os = "linux"))]
const STATES: [&str; 2] = ["used", "free"];

/// Reads sysinfo's memory figures, which have no page cache or buffers.
#[cfg(not(target_os = "linux"))]
#[derive(Default)]
struct Reader {
    system: sysinfo::System,
}

#[cfg(not(target_os = "linux"))]
impl Reader {
    /// The total, and used and free as sysinfo counts them.
    fn read(&mut self) -> (Option<u64>, [Option<u64>; STATES.len()]) {
        self.system
            .refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
        let total = Some(self.system.total_memory()).filter(|&total| total > 0);
        let bytes = [self.system.used_memory(), self.system.free_memory()];
        (total, bytes.map(|bytes| total.map(|_| bytes)))
    }
}
