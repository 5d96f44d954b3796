//! System helpers for the driver: CPU pinning, the monotonic clock, and
//! what /proc says about processes (children, CPU time, memory).

use std::io;
use std::time::{Duration, Instant};

/// Pins the calling thread (and what it later spawns or forks) to one CPU.
/// Async-signal-safe: usable in `pre_exec`.
pub fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// CPUs online on this machine (whatever our affinity).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// CLOCK_MONOTONIC in nanoseconds (comparable across processes).
/// Async-signal-safe.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The direct children of a process (all its threads').
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(text) = std::fs::read_to_string(path) {
            out.extend(text.split_ascii_whitespace().filter_map(|w| w.parse::<i32>().ok()));
        }
    }
    out
}

/// Every descendant of a process.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = children(pid);
    while let Some(p) = todo.pop() {
        if out.len() > 10_000 {
            break;
        }
        out.push(p);
        todo.extend(children(p));
    }
    out
}

/// `(comm, state)` from /proc/PID/stat.
pub fn comm_state(pid: i32) -> Option<(String, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    let state = text[close + 1..].trim_start().chars().next()?;
    Some((comm, state))
}

pub fn comm(pid: i32) -> Option<String> {
    comm_state(pid).map(|(c, _)| c)
}

/// utime + stime + cutime + cstime of a process, in seconds. cutime and
/// cstime cover the children it has reaped (and, recursively, theirs).
pub fn cpu_seconds_with_children(pid: i32) -> Option<f64> {
    cpu_split_with_children(pid).map(|c| c.user + c.system)
}

/// CPU time in user mode and in the kernel, seconds.
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    pub user: f64,
    pub system: f64,
}

/// [`cpu_seconds_with_children`], user (utime + cutime) and system
/// (stime + cstime) apart.
pub fn cpu_split_with_children(pid: i32) -> Option<Cpu> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = text.rfind(')')?;
    // Fields after the comm: state is field 3; utime..cstime are 14..17.
    let fields: Vec<&str> = text[close + 2..].split_ascii_whitespace().collect();
    let tick = |i: usize| fields.get(i - 3).and_then(|w| w.parse::<u64>().ok());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(Cpu {
        user: (tick(14)? + tick(16)?) as f64 / hz,
        system: (tick(15)? + tick(17)?) as f64 / hz,
    })
}

/// utime + stime of every live descendant of a process, in seconds: the
/// CPU a session's processes have used so far.
pub fn descendants_cpu_seconds(pid: i32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    descendants(pid)
        .into_iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let close = text.rfind(')')?;
            let f: Vec<&str> = text[close + 2..].split_ascii_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum::<u64>() as f64
        / hz
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l[name.len()..].split_ascii_whitespace().next())
        .and_then(|w| w.parse().ok())
}

/// VmRSS from /proc/PID/status, KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_field(&text, "VmRSS:")
}

/// Private_Clean + Private_Dirty from /proc/PID/smaps_rollup, KiB.
pub fn private_kib(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some(kib_field(&text, "Private_Clean:")? + kib_field(&text, "Private_Dirty:")?)
}

/// Private_Dirty from /proc/PID/smaps_rollup, KiB.
pub fn private_dirty_kib(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kib_field(&text, "Private_Dirty:")
}

/// Pss from /proc/PID/smaps_rollup, KiB: each page divided by the number
/// of processes that map it.
pub fn pss_kib(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kib_field(&text, "Pss:")
}

/// Whether something listens on 127.0.0.1:port (from /proc/net/tcp).
pub fn listening(port: u16) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let want = format!("0100007F:{port:04X}");
    text.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_ascii_whitespace().collect();
        f.len() > 3 && f[1] == want && f[3] == "0A"
    })
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Polls `cond` every millisecond until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// CPU seconds spent busy (not idle, not waiting for I/O) by all CPUs
/// together, from /proc/stat.
pub fn system_busy_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(busy as f64 / hz)
}

/// CPU seconds (user + system) of this process and of every child it has
/// reaped (and theirs).
pub fn own_cpu_seconds() -> f64 {
    let get = |who| {
        // SAFETY: a zeroed rusage is valid; getrusage fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    get(libc::RUSAGE_SELF) + get(libc::RUSAGE_CHILDREN)
}

/// CPU seconds (user + system) of the calling thread.
pub fn thread_cpu_seconds() -> f64 {
    // SAFETY: a zeroed rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
