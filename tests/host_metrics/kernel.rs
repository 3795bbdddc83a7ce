//! The kernel's own numbers, read here independently of the crate: `/proc` files parsed by this
//! module, `stat -f` for `statvfs(3)`, `getconf CLK_TCK` for the clock tick (`USER_HZ`) and
//! `nproc` for the CPUs available to the process. Only `tests/host_metrics.rs` uses it.

use std::{collections::BTreeMap, fs, process::Command, sync::OnceLock};

/// The whole of a `/proc` file.
pub fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
}

/// The standard output of a command, trimmed.
fn output(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(output.status.success(), "{program} {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Clock ticks per second of `/proc/stat` and `/proc/self/stat`, as `getconf CLK_TCK` says.
pub fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| output("getconf", &["CLK_TCK"]).parse().unwrap())
}

/// The CPUs the kernel is configured for (`getconf _NPROCESSORS_CONF`), over which its per-CPU
/// counters are spread.
pub fn configured_cpus() -> f64 {
    static CPUS: OnceLock<f64> = OnceLock::new();
    *CPUS.get_or_init(|| output("getconf", &["_NPROCESSORS_CONF"]).parse().unwrap())
}

/// The page size, as `getconf PAGESIZE` says.
pub fn page_size() -> f64 {
    static SIZE: OnceLock<f64> = OnceLock::new();
    *SIZE.get_or_init(|| output("getconf", &["PAGESIZE"]).parse().unwrap())
}

/// The CPUs this process may run on, as `nproc` counts them (affinity and CPU quota).
pub fn available_cpus() -> f64 {
    static CPUS: OnceLock<f64> = OnceLock::new();
    *CPUS.get_or_init(|| output("nproc", &[]).parse().unwrap())
}

/// `/proc/meminfo`, in bytes (the kernel writes `kB` and means KiB).
#[derive(Clone, Debug)]
pub struct Meminfo(BTreeMap<String, u64>);

impl Meminfo {
    pub fn read() -> Self {
        Self::parse(&read("/proc/meminfo"))
    }

    fn parse(text: &str) -> Self {
        let fields = text
            .lines()
            .filter_map(|line| {
                let (key, value) = line.split_once(':')?;
                let kib: u64 = value.trim().strip_suffix("kB")?.trim().parse().ok()?;
                Some((key.to_owned(), kib * 1024))
            })
            .collect();
        Self(fields)
    }

    pub fn get(&self, key: &str) -> f64 {
        *self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in /proc/meminfo")) as f64
    }
}

/// The aggregate `cpu` line of `/proc/stat` and the number of `cpuN` lines.
#[derive(Clone, Debug)]
pub struct Stat {
    /// user nice system idle iowait irq softirq steal guest guest_nice, in clock ticks.
    columns: Vec<u64>,
    pub cpus: usize,
}

impl Stat {
    pub fn read() -> Self {
        let text = read("/proc/stat");
        let mut lines = text.lines();
        let columns = lines
            .next()
            .and_then(|line| line.strip_prefix("cpu "))
            .expect("/proc/stat starts with the cpu line")
            .split_whitespace()
            .map(|column| column.parse().unwrap())
            .collect();
        let cpus = lines
            .filter(|line| {
                line.strip_prefix("cpu")
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count();
        Self { columns, cpus }
    }

    /// The seconds spent in a `cpu.mode`, by proc_stat(5): `interrupt` is irq + softirq.
    pub fn seconds(&self, mode: &str) -> f64 {
        let ticks = match mode {
            "user" => self.columns[0],
            "nice" => self.columns[1],
            "system" => self.columns[2],
            "idle" => self.columns[3],
            "iowait" => self.columns[4],
            "interrupt" => self.columns[5] + self.columns[6],
            "steal" => self.columns[7],
            other => panic!("no cpu.mode {other} in /proc/stat"),
        };
        ticks as f64 / ticks_per_second()
    }
}

/// Fields of `/proc/self/stat` (proc_pid_stat(5)), counted after the command name's `)`.
#[derive(Clone, Debug)]
pub struct SelfStat {
    /// Field 14, seconds.
    pub user: f64,
    /// Field 15, seconds.
    pub system: f64,
    /// Field 22, seconds since boot.
    pub start: f64,
    /// Field 24, `rss`, in bytes: since Linux 6.2 the kernel's per-CPU counters read without
    /// summing them, so it may lag `VmRSS` of `/proc/self/status` by up to a batch per CPU.
    pub resident: f64,
}

impl SelfStat {
    pub fn read() -> Self {
        let text = read("/proc/self/stat");
        let (_, after_name) = text.rsplit_once(')').unwrap();
        // After the name comes field 3.
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |number: usize| fields[number - 3].parse::<u64>().unwrap() as f64;
        let ticks = ticks_per_second();
        Self {
            user: field(14) / ticks,
            system: field(15) / ticks,
            start: field(22) / ticks,
            resident: field(24) * page_size(),
        }
    }
}

/// A field of `/proc/self/status`: `VmRSS` and `VmSize` in bytes, `Threads` as is.
pub fn status(key: &str) -> f64 {
    let status = read("/proc/self/status");
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
        .trim();
    match value.strip_suffix("kB") {
        Some(kib) => kib.trim().parse::<f64>().unwrap() * 1024.0,
        None => value.parse().unwrap(),
    }
}

/// The descriptors this process has open, leaving out the one the listing itself holds.
pub fn open_descriptors() -> f64 {
    (fs::read_dir("/proc/self/fd").unwrap().count() - 1) as f64
}

/// `/proc/net/dev`: bytes received and transmitted by interface.
pub fn net_dev() -> BTreeMap<String, (u64, u64)> {
    read("/proc/net/dev")
        .lines()
        .skip(2)
        .map(|line| {
            let (name, counters) = line.split_once(':').unwrap();
            let counters: Vec<u64> = counters
                .split_whitespace()
                .map(|c| c.parse().unwrap())
                .collect();
            (name.trim().to_owned(), (counters[0], counters[8]))
        })
        .collect()
}

/// `/proc/loadavg`: the 1, 5 and 15 minute load averages as written (two decimals).
pub fn load_averages() -> [f64; 3] {
    let text = read("/proc/loadavg");
    let mut fields = text.split_whitespace().map(|field| field.parse().unwrap());
    [(); 3].map(|()| fields.next().unwrap())
}

/// `/proc/uptime`: seconds since boot, to the hundredth.
pub fn uptime() -> f64 {
    read("/proc/uptime")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// `statvfs(3)` of a path, by `stat -f`: fragment size, blocks and blocks available to
/// unprivileged users.
#[derive(Clone, Copy, Debug)]
pub struct Statvfs {
    pub fragment: u64,
    pub blocks: u64,
    pub available: u64,
}

impl Statvfs {
    pub fn of(path: &str) -> Self {
        let text = output("stat", &["-f", "-c", "%S %b %a", path]);
        let numbers: Vec<u64> = text
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        Self {
            fragment: numbers[0],
            blocks: numbers[1],
            available: numbers[2],
        }
    }

    pub fn size(&self) -> f64 {
        (self.blocks * self.fragment) as f64
    }

    pub fn available_bytes(&self) -> f64 {
        (self.available * self.fragment) as f64
    }
}

/// The bytes the calling thread has read so far (`rchar` of `/proc/thread-self/io`), and the
/// length of that file's text, which its own reading adds to `rchar` once it is read.
pub fn thread_bytes_read() -> (u64, u64) {
    let text = read("/proc/thread-self/io");
    let rchar = text
        .lines()
        .find_map(|line| line.strip_prefix("rchar:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (rchar, text.len() as u64)
}

/// The bytes `work` reads on the calling thread.
pub fn bytes_read_by(work: impl FnOnce()) -> u64 {
    let (before, text) = thread_bytes_read();
    work();
    let (after, _) = thread_bytes_read();
    after - before - text
}
