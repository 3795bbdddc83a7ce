//! [`HostMetricGroup::Filesystem`](super::HostMetricGroup::Filesystem):
//! `system.filesystem.usage`.

use std::{
    ffi::{OsStr, OsString},
    path::PathBuf,
    time::Instant,
};

use opentelemetry::{KeyValue, metrics::Meter};
use opentelemetry_semantic_conventions::{
    attribute::{
        SYSTEM_DEVICE, SYSTEM_FILESYSTEM_MODE, SYSTEM_FILESYSTEM_MOUNTPOINT,
        SYSTEM_FILESYSTEM_STATE, SYSTEM_FILESYSTEM_TYPE,
    },
    metric::SYSTEM_FILESYSTEM_USAGE,
};
use sysinfo::{Disk, DiskRefreshKind, Disks};

use super::sampled::{Sampled, Source};

pub(super) fn register(meter: &Meter) {
    let filesystems = Sampled::new(Filesystems {
        disks: Disks::new(),
        mounted: Vec::new(),
    });
    meter
        .i64_observable_up_down_counter(SYSTEM_FILESYSTEM_USAGE)
        .with_description(
            "Space used and free on each mounted filesystem; the blocks reserved for the \
             superuser count as used.",
        )
        .with_unit("By")
        .with_callback(
            filesystems.callback(|filesystems: &Filesystems, instrument| {
                for mounted in &filesystems.mounted {
                    instrument.observe(mounted.used as i64, &mounted.used_attributes);
                    instrument.observe(mounted.free as i64, &mounted.free_attributes);
                }
            }),
        )
        .build();
}

/// sysinfo's mounted filesystems, and the attributes of each, made once.
///
/// sysinfo leaves out pseudo filesystems (proc, sysfs, cgroup, tmpfs, ...) and, on Linux,
/// network filesystems (NFS, CIFS), whose `statvfs` can hang. It gives a filesystem's total
/// and available space (`f_bavail`) but not its free blocks (`f_bfree`), so the blocks reserved
/// for the superuser cannot be told apart: they are counted as `used`, and `used + free` is the
/// size of the filesystem.
struct Filesystems {
    disks: Disks,
    mounted: Vec<Mounted>,
}

struct Mounted {
    device: OsString,
    mountpoint: PathBuf,
    kind: OsString,
    used: u64,
    free: u64,
    used_attributes: [KeyValue; 5],
    free_attributes: [KeyValue; 5],
    listed: bool,
}

impl Mounted {
    fn new(disk: &Disk) -> Self {
        let lossy = |text: &OsStr| text.to_string_lossy().into_owned();
        let attributes = [
            KeyValue::new(SYSTEM_DEVICE, lossy(disk.name())),
            KeyValue::new(
                SYSTEM_FILESYSTEM_MOUNTPOINT,
                lossy(disk.mount_point().as_os_str()),
            ),
            KeyValue::new(SYSTEM_FILESYSTEM_TYPE, lossy(disk.file_system())),
            KeyValue::new(
                SYSTEM_FILESYSTEM_MODE,
                if disk.is_read_only() { "ro" } else { "rw" },
            ),
        ];
        let with_state = |state: &'static str| {
            let [device, mountpoint, kind, mode] = attributes.clone();
            [
                device,
                mountpoint,
                kind,
                mode,
                KeyValue::new(SYSTEM_FILESYSTEM_STATE, state),
            ]
        };
        Self {
            device: disk.name().to_owned(),
            mountpoint: disk.mount_point().to_owned(),
            kind: disk.file_system().to_owned(),
            used: 0,
            free: 0,
            used_attributes: with_state("used"),
            free_attributes: with_state("free"),
            listed: true,
        }
    }

    fn is(&self, disk: &Disk) -> bool {
        self.mountpoint == disk.mount_point()
            && self.device == disk.name()
            && self.kind == disk.file_system()
    }

    fn update(&mut self, disk: &Disk) {
        self.free = disk.available_space();
        self.used = disk.total_space().saturating_sub(self.free);
        self.listed = true;
    }
}

impl Source for Filesystems {
    fn refresh(&mut self, _now: Instant) {
        // Lists the mounts again (filesystems that were unmounted are dropped) and reads each
        // one's space; not its kind of drive nor its I/O counters.
        self.disks
            .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
        for mounted in &mut self.mounted {
            mounted.listed = false;
        }
        for disk in self.disks.list() {
            if disk.total_space() == 0 {
                continue;
            }
            match self.mounted.iter_mut().find(|mounted| mounted.is(disk)) {
                Some(mounted) => mounted.update(disk),
                None => {
                    let mut mounted = Mounted::new(disk);
                    mounted.update(disk);
                    self.mounted.push(mounted);
                }
            }
        }
        self.mounted.retain(|mounted| mounted.listed);
    }
}
