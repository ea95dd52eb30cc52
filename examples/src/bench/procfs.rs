//! Readings from `/proc`: memory and CPU time of a process, and a description of the machine.

use std::path::Path;

/// `VmRSS` and `VmHWM` of a process, in KiB, and its thread count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Memory {
    /// Resident set size now.
    pub(crate) rss_kib: u64,
    /// Peak resident set size so far.
    pub(crate) hwm_kib: u64,
    /// Threads now.
    pub(crate) threads: u64,
}

/// Reads `/proc/<pid>/status`.
pub(crate) fn memory(pid: u32) -> Option<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        threads: field("Threads:")?,
    })
}

/// `USER_HZ`: the unit of the CPU times in `/proc/<pid>/stat`, 100 on every Linux architecture
/// this runs on.
pub(crate) const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time of every thread of `pid` (`self` for this process), in ticks.
pub(crate) fn cpu_ticks(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; the fields start after the last ')'.
    let (_, fields) = text.rsplit_once(')')?;
    let mut fields = fields.split_whitespace();
    // After ')': state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
    // utime(14) stime(15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of this process's children that have been waited for (`cutime` + `cstime`), in
/// ticks: the `wrk` runs, counted once each has exited.
pub(crate) fn children_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (_, fields) = text.rsplit_once(')')?;
    let mut fields = fields.split_whitespace();
    // After ')': field 3 is the first; cutime is field 16, cstime field 17.
    let cutime: u64 = fields.nth(13)?.parse().ok()?;
    let cstime: u64 = fields.next()?.parse().ok()?;
    Some(cutime + cstime)
}

/// Resets `VmHWM` of `pid` to its current RSS (`clear_refs` value 5, Linux 4.0+), so a later
/// `VmHWM` is the peak of what happened in between. False when the kernel refuses.
pub(crate) fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"5").is_ok()
}

/// Busy time of the whole machine (all CPUs), in ticks: everything but idle and iowait, with
/// steal (time the hypervisor gave to someone else) included.
pub(crate) fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    let field = |index: usize| fields.get(index).copied().unwrap_or(0);
    Some(field(0) + field(1) + field(2) + field(5) + field(6) + field(7))
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` prints them.
pub(crate) fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}

/// Whether `pid` exists and is not a zombie.
pub(crate) fn is_running(pid: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = text
        .rsplit_once(')')
        .and_then(|(_, fields)| fields.split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

/// Reads a pid file (one decimal number).
pub(crate) fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The machine: logical CPUs, kernel release and CPU model.
#[derive(Clone, Debug)]
pub(crate) struct Machine {
    /// Logical CPUs available to this process (`nproc`).
    pub(crate) cpus: usize,
    /// `uname -r`.
    pub(crate) kernel: String,
    /// The first `model name` of `/proc/cpuinfo`.
    pub(crate) cpu_model: String,
}

/// Describes this machine.
pub(crate) fn machine() -> Machine {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_owned())
        .unwrap_or_default();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_default();
    Machine {
        cpus,
        kernel,
        cpu_model,
    }
}
