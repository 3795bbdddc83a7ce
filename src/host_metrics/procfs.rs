//! The Linux `/proc` files behind the numbers sysinfo does not give: CPU time per mode
//! (`/proc/stat`), page cache and buffers (`/proc/meminfo`), this process's CPU time per mode,
//! threads, start time and sizes (`/proc/self/stat`), uptime with its hundredths
//! (`/proc/uptime`), each interface's byte counters in one file (`/proc/net/dev`), and the
//! kernel's tick and page sizes (`/proc/self/auxv`).
//!
//! Every parser returns `None` (or leaves a field `None`) for what it cannot read: the
//! observation is then skipped, never guessed.

use std::{fs::File, io::Read};

/// Reads the whole file into `buffer`, whose capacity is kept from one collection to the next.
pub(super) fn read<'a>(path: &str, buffer: &'a mut String) -> Option<&'a str> {
    buffer.clear();
    File::open(path)
        .and_then(|mut file| file.read_to_string(buffer))
        .ok()?;
    Some(buffer)
}

/// The `cpu.mode` values of `/proc/stat`, in the order of [`CpuTimes::ticks`].
pub(super) const CPU_MODES: [&str; 7] = [
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "interrupt",
    "steal",
];

/// The first lines of `/proc/stat`.
#[derive(Debug, PartialEq)]
pub(super) struct CpuTimes {
    /// Clock ticks spent in each of [`CPU_MODES`], summed over the CPUs.
    pub(super) ticks: [Option<u64>; 7],
    /// The number of `cpuN` lines: the logical CPUs online.
    pub(super) logical_cpus: u64,
}

/// Parses `/proc/stat`: `cpu  user nice system idle iowait irq softirq steal guest guest_nice`,
/// then one `cpuN` line per logical CPU.
///
/// `interrupt` is `irq + softirq`. The guest columns are left out: the kernel already counts
/// guest time in `user` and `nice`.
pub(super) fn parse_stat(text: &str) -> Option<CpuTimes> {
    let mut lines = text.lines();
    let aggregate = lines.next()?.strip_prefix("cpu ")?;
    let mut columns = aggregate
        .split_ascii_whitespace()
        .map(|column| column.parse().ok());
    let mut column = || columns.next().flatten();
    let [user, nice, system, idle, iowait, irq, softirq, steal] = [(); 8].map(|()| column());
    let interrupt = irq.zip(softirq).map(|(irq, softirq)| irq + softirq);
    let logical_cpus = lines
        .take_while(|line| line.starts_with("cpu"))
        .filter(|line| line[3..].starts_with(|c: char| c.is_ascii_digit()))
        .count() as u64;
    Some(CpuTimes {
        ticks: [user, nice, system, idle, iowait, interrupt, steal],
        logical_cpus,
    })
}

/// What `/proc/meminfo` says, in bytes.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Meminfo {
    pub(super) total: Option<u64>,
    pub(super) free: Option<u64>,
    /// `MemAvailable`, absent before Linux 3.14.
    pub(super) available: Option<u64>,
    pub(super) buffers: Option<u64>,
    pub(super) cached: Option<u64>,
}

/// Parses the lines of `/proc/meminfo` this crate reports (`MemTotal:  24684084 kB`, ...).
pub(super) fn parse_meminfo(text: &str) -> Meminfo {
    let mut meminfo = Meminfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let field = match key {
            "MemTotal" => &mut meminfo.total,
            "MemFree" => &mut meminfo.free,
            "MemAvailable" => &mut meminfo.available,
            "Buffers" => &mut meminfo.buffers,
            "Cached" => &mut meminfo.cached,
            _ => continue,
        };
        // The kernel writes "kB" and means KiB.
        *field = value
            .trim()
            .strip_suffix("kB")
            .and_then(|kib| kib.trim_end().parse::<u64>().ok())
            .map(|kib| kib.saturating_mul(1024));
    }
    meminfo
}

/// The fields of `/proc/self/stat` this crate reports.
#[derive(Debug, PartialEq)]
pub(super) struct SelfStat {
    /// Clock ticks in user mode.
    pub(super) user_ticks: u64,
    /// Clock ticks in kernel mode.
    pub(super) system_ticks: u64,
    pub(super) threads: u64,
    /// When the process started, in clock ticks since boot.
    pub(super) start_ticks: u64,
    pub(super) virtual_bytes: u64,
    pub(super) resident_pages: u64,
}

/// Parses `/proc/self/stat` (proc_pid_stat(5)): fields 14 and 15 (`utime`, `stime`), 20
/// (`num_threads`), 22 (`starttime`), 23 (`vsize`) and 24 (`rss`). The second field, the
/// command name, is in parentheses and may itself hold spaces and parentheses, so fields are
/// counted from the last `)`.
pub(super) fn parse_self_stat(text: &str) -> Option<SelfStat> {
    let (_, after_name) = text.rsplit_once(')')?;
    // The first field after the name is field 3 (`state`); `field(n)` skips `n` fields and
    // reads the next one.
    let mut fields = after_name.split_ascii_whitespace();
    let mut field = |skip: usize| fields.nth(skip)?.parse::<u64>().ok();
    let user_ticks = field(11)?; // 14
    let system_ticks = field(0)?; // 15
    let threads = field(4)?; // 20
    let start_ticks = field(1)?; // 22
    let virtual_bytes = field(0)?; // 23
    let resident_pages = field(0)?; // 24
    Some(SelfStat {
        user_ticks,
        system_ticks,
        threads,
        start_ticks,
        virtual_bytes,
        resident_pages,
    })
}

/// Parses `/proc/uptime`: seconds since boot, to the hundredth, then the idle seconds.
pub(super) fn parse_uptime(text: &str) -> Option<f64> {
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// Parses `/proc/net/dev`: two header lines, then `name: ` and sixteen counters per interface,
/// eight received (bytes first) and eight transmitted (bytes first). Yields each interface's
/// name and its received and transmitted bytes; a line that does not parse is skipped.
pub(super) fn parse_net_dev(text: &str) -> impl Iterator<Item = (&str, u64, u64)> {
    text.lines().skip(2).filter_map(|line| {
        let (name, counters) = line.split_once(':')?;
        let mut counters = counters.split_ascii_whitespace();
        let received = counters.next()?.parse().ok()?;
        let transmitted = counters.nth(7)?.parse().ok()?;
        Some((name.trim(), received, transmitted))
    })
}

/// The number of file descriptors this process has open.
///
/// Since Linux 6.2 the size of `/proc/self/fd` is that number, which costs one `stat` and no
/// descriptor. Before, the directory reads as empty and is listed instead, leaving out the
/// descriptor the listing itself holds.
pub(super) fn open_descriptors() -> Option<u64> {
    const DIRECTORY: &str = "/proc/self/fd";
    match std::fs::metadata(DIRECTORY) {
        Ok(metadata) if metadata.len() > 0 => Some(metadata.len()),
        _ => {
            let listed = std::fs::read_dir(DIRECTORY).ok()?.count() as u64;
            Some(listed.saturating_sub(1))
        }
    }
}

/// What the kernel told this process at start-up (`/proc/self/auxv`, see getauxval(3)).
#[derive(Debug, Default, PartialEq)]
pub(super) struct Auxv {
    /// `AT_CLKTCK`: the clock ticks per second of `/proc/stat` and `/proc/self/stat` (`USER_HZ`).
    pub(super) ticks_per_second: Option<u64>,
    /// `AT_PAGESZ`: the page size `rss` is counted in.
    pub(super) page_size: Option<u64>,
}

impl Auxv {
    /// Reads this process's auxiliary vector (once: it does not change).
    pub(super) fn read() -> Self {
        std::fs::read("/proc/self/auxv")
            .map(|bytes| Self::parse(&bytes))
            .unwrap_or_default()
    }

    /// Parses native-endian `(type, value)` pairs of machine words.
    fn parse(bytes: &[u8]) -> Self {
        const WORD: usize = size_of::<usize>();
        const AT_PAGESZ: usize = 6;
        const AT_CLKTCK: usize = 17;
        let word = |bytes: &[u8]| bytes.try_into().ok().map(usize::from_ne_bytes);
        let mut auxv = Self::default();
        for pair in bytes.chunks_exact(2 * WORD) {
            let (kind, value) = pair.split_at(WORD);
            let value = word(value).map(|value| value as u64).filter(|&v| v > 0);
            match word(kind) {
                Some(AT_CLKTCK) => auxv.ticks_per_second = value,
                Some(AT_PAGESZ) => auxv.page_size = value,
                _ => {}
            }
        }
        auxv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_gives_each_interface_its_received_and_transmitted_bytes() {
        let dev = "Inter-|   Receive                                                |  Transmit\n \
                   face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                   lo: 2776770   11307    0    0    0     0          0         0  2776770   11307    0    0    0     0       0          0\n  \
                   eth0:1215645    2751    0    0    0     0          0         0  1782404    4324    0    0    0   427       0          0\n \
                   broken: 12\n";
        assert_eq!(
            parse_net_dev(dev).collect::<Vec<_>>(),
            [("lo", 2776770, 2776770), ("eth0", 1215645, 1782404)]
        );
    }

    #[test]
    fn stat_gives_the_times_per_mode_and_counts_the_cpus() {
        let stat = "cpu  81215 3 19183 282321 1328 7 123 54 9 0\n\
                    cpu0 39502 0 8435 143804 280 0 33 26 0 0\n\
                    cpu1 41712 3 10747 138517 1047 7 89 28 9 0\n\
                    intr 1005565 0 0\n\
                    ctxt 1010238\n";
        assert_eq!(
            parse_stat(stat),
            Some(CpuTimes {
                ticks: [81215, 3, 19183, 282321, 1328, 130, 54].map(Some),
                logical_cpus: 2,
            })
        );
    }

    #[test]
    fn stat_of_an_old_kernel_lacks_steal() {
        let times = parse_stat("cpu  10 0 5 100 1 0 0\ncpu0 10 0 5 100 1 0 0\n").unwrap();
        assert_eq!(
            times.ticks,
            [
                Some(10),
                Some(0),
                Some(5),
                Some(100),
                Some(1),
                Some(0),
                None
            ]
        );
        assert_eq!(parse_stat("intr 1 2 3\n"), None);
    }

    #[test]
    fn meminfo_is_read_in_bytes() {
        let meminfo = "MemTotal:       24684084 kB\n\
                       MemFree:        23380524 kB\n\
                       MemAvailable:   24065560 kB\n\
                       Buffers:            3580 kB\n\
                       Cached:           851592 kB\n\
                       SwapCached:            0 kB\n\
                       HugePages_Total:       0\n";
        assert_eq!(
            parse_meminfo(meminfo),
            Meminfo {
                total: Some(24684084 * 1024),
                free: Some(23380524 * 1024),
                available: Some(24065560 * 1024),
                buffers: Some(3580 * 1024),
                cached: Some(851592 * 1024),
            }
        );
        assert_eq!(parse_meminfo("MemTotal: lots\n").total, None);
    }

    #[test]
    fn self_stat_fields_are_counted_after_the_command_name() {
        let stat = "9817 (a (weird) name) R 9812 9812 29637 0 -1 4194304 100 0 0 0 \
                    250 40 0 0 20 0 7 0 193089 3133440 412 18446744073709551615 1 2";
        assert_eq!(
            parse_self_stat(stat),
            Some(SelfStat {
                user_ticks: 250,
                system_ticks: 40,
                threads: 7,
                start_ticks: 193089,
                virtual_bytes: 3133440,
                resident_pages: 412,
            })
        );
        assert_eq!(parse_self_stat("9817 (cut short) R 1 2 3"), None);
    }

    #[test]
    fn uptime_keeps_its_hundredths() {
        assert_eq!(parse_uptime("1930.90 2823.21\n"), Some(1930.9));
        assert_eq!(parse_uptime(""), None);
    }

    #[test]
    fn auxv_gives_the_tick_rate_and_page_size() {
        let pairs: [(usize, usize); 4] = [(33, 1234), (6, 4096), (17, 100), (0, 0)];
        let bytes: Vec<u8> = pairs
            .iter()
            .flat_map(|(kind, value)| [kind.to_ne_bytes(), value.to_ne_bytes()])
            .flatten()
            .collect();
        assert_eq!(
            Auxv::parse(&bytes),
            Auxv {
                ticks_per_second: Some(100),
                page_size: Some(4096),
            }
        );
        assert_eq!(Auxv::parse(&[]), Auxv::default());
    }

    #[test]
    fn this_process_can_be_read() {
        let mut buffer = String::new();
        let auxv = Auxv::read();
        assert!(auxv.ticks_per_second.is_some() && auxv.page_size.is_some());
        let stat = parse_self_stat(read("/proc/self/stat", &mut buffer).unwrap()).unwrap();
        assert!(stat.threads >= 1 && stat.resident_pages > 0);
        assert!(parse_stat(read("/proc/stat", &mut buffer).unwrap()).is_some());
        assert!(open_descriptors().unwrap() >= 1);
    }
}
