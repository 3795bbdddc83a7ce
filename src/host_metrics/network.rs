//! [`HostMetricGroup::Network`](super::HostMetricGroup::Network): `system.network.io`.

use std::time::Instant;

use opentelemetry::{KeyValue, metrics::Meter};
use opentelemetry_semantic_conventions::{
    attribute::{NETWORK_INTERFACE_NAME, NETWORK_IO_DIRECTION},
    metric::SYSTEM_NETWORK_IO,
};

use super::sampled::{Sampled, Source};

pub(super) fn register(meter: &Meter) {
    let network = Sampled::new(Network {
        counters: Counters::default(),
        interfaces: Vec::new(),
    });
    meter
        .u64_observable_counter(SYSTEM_NETWORK_IO)
        .with_description("Bytes transmitted and received by each network interface.")
        .with_unit("By")
        .with_callback(network.callback(|network: &Network, instrument| {
            for interface in &network.interfaces {
                instrument.observe(interface.received, &interface.receive);
                instrument.observe(interface.transmitted, &interface.transmit);
            }
        }))
        .build();
}

/// Each interface's byte counters, and its attributes, made once.
struct Network {
    counters: Counters,
    interfaces: Vec<Interface>,
}

struct Interface {
    name: String,
    received: u64,
    transmitted: u64,
    receive: [KeyValue; 2],
    transmit: [KeyValue; 2],
    listed: bool,
}

impl Source for Network {
    fn refresh(&mut self, _now: Instant) {
        for interface in &mut self.interfaces {
            interface.listed = false;
        }
        let interfaces = &mut self.interfaces;
        self.counters.each(|name, received, transmitted| {
            match interfaces.iter_mut().find(|known| known.name == name) {
                Some(interface) => {
                    (interface.received, interface.transmitted) = (received, transmitted);
                    interface.listed = true;
                }
                None => interfaces.push(Interface::new(name, received, transmitted)),
            }
        });
        // Interfaces that went away, or all of them when the counters cannot be read.
        self.interfaces.retain(|interface| interface.listed);
    }
}

impl Interface {
    fn new(name: &str, received: u64, transmitted: u64) -> Self {
        let name_attribute = KeyValue::new(NETWORK_INTERFACE_NAME, name.to_owned());
        Interface {
            name: name.to_owned(),
            received,
            transmitted,
            receive: [
                name_attribute.clone(),
                KeyValue::new(NETWORK_IO_DIRECTION, "receive"),
            ],
            transmit: [
                name_attribute,
                KeyValue::new(NETWORK_IO_DIRECTION, "transmit"),
            ],
            listed: true,
        }
    }
}

/// On Linux, `/proc/net/dev`: every interface's two byte counters in one small read, where
/// sysinfo reads seven `/sys/class/net/*/statistics` files per interface.
#[cfg(target_os = "linux")]
#[derive(Default)]
struct Counters {
    buffer: String,
}

#[cfg(target_os = "linux")]
impl Counters {
    /// Calls `each(name, received, transmitted)` for every interface.
    fn each(&mut self, mut each: impl FnMut(&str, u64, u64)) {
        if let Some(text) = super::procfs::read("/proc/net/dev", &mut self.buffer) {
            for (name, received, transmitted) in super::procfs::parse_net_dev(text) {
                each(name, received, transmitted);
            }
        }
    }
}

/// Elsewhere, sysinfo's interface counters.
#[cfg(not(target_os = "linux"))]
struct Counters {
    networks: sysinfo::Networks,
}

#[cfg(not(target_os = "linux"))]
impl Default for Counters {
    fn default() -> Self {
        Counters {
            networks: sysinfo::Networks::new(),
        }
    }
}

#[cfg(not(target_os = "linux"))]
impl Counters {
    /// Calls `each(name, received, transmitted)` for every interface.
    fn each(&mut self, mut each: impl FnMut(&str, u64, u64)) {
        self.networks.refresh(true);
        for (name, data) in self.networks.list() {
            each(
                name.as_str(),
                data.total_received(),
                data.total_transmitted(),
            );
        }
    }
}
