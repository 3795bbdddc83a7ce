//! [`HostMetricGroup::Network`](super::HostMetricGroup::Network): `system.network.io`.

use std::time::Instant;

use opentelemetry::{KeyValue, metrics::Meter};
use opentelemetry_semantic_conventions::{
    attribute::{NETWORK_INTERFACE_NAME, NETWORK_IO_DIRECTION},
    metric::SYSTEM_NETWORK_IO,
};
use sysinfo::Networks;

use super::sampled::{Sampled, Source};

pub(super) fn register(meter: &Meter) {
    let network = Sampled::new(Network {
        networks: Networks::new(),
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

/// sysinfo's interface counters (`/sys/class/net/*/statistics` on Linux), and the attributes of
/// each interface, made once.
struct Network {
    networks: Networks,
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
        // Interfaces that went away are dropped.
        self.networks.refresh(true);
        for interface in &mut self.interfaces {
            interface.listed = false;
        }
        for (name, data) in self.networks.list() {
            let (received, transmitted) = (data.total_received(), data.total_transmitted());
            match self.interfaces.iter_mut().find(|known| known.name == *name) {
                Some(interface) => {
                    (interface.received, interface.transmitted) = (received, transmitted);
                    interface.listed = true;
                }
                None => {
                    let name_attribute = KeyValue::new(NETWORK_INTERFACE_NAME, name.clone());
                    self.interfaces.push(Interface {
                        name: name.clone(),
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
                    });
                }
            }
        }
        self.interfaces.retain(|interface| interface.listed);
    }
}
