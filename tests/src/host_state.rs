//! A snapshot of what a test suite can leave on the host (mounts, cgroup
//! directories, network namespaces and links, loop devices, processes),
//! and the differences between two snapshots. The `host-check` binary
//! saves one before the suite and compares after it.
//!
//! Everything is read from /proc and /sys directly (no `ip` or `losetup`
//! output to parse), and from pid 1's view where a view is per namespace,
//! so the checker sees the host even if it ran in another namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The host's mount table (pid 1's mount namespace).
const MOUNTINFO: &str = "/proc/1/mountinfo";
/// The host's network devices (pid 1's network namespace).
const NET_DEV: &str = "/proc/1/net/dev";
/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/var/run/netns";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// PF_KTHREAD in the flags field of /proc/PID/stat.
const PF_KTHREAD: u64 = 0x0020_0000;

/// What was on the host at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Time since boot (CLOCK_BOOTTIME, as /proc/uptime) when the snapshot
    /// began, in clock ticks: the unit of process start times.
    pub taken_at_ticks: u64,
    /// One line per mount: mount point, fs type, source, root, options.
    /// Mount ids and peer groups are left out: they change on remount.
    pub mounts: Vec<String>,
    /// Every cgroup directory of every hierarchy under /sys/fs/cgroup.
    pub cgroups: BTreeSet<String>,
    /// Names listed by `ip netns list`.
    pub netns_names: BTreeSet<String>,
    /// Distinct network namespaces (inode numbers) that processes hold
    /// through /proc/PID/ns/net or an open file descriptor.
    pub netns_inodes: BTreeSet<u64>,
    /// Network links of the host's namespace, by name.
    pub links: BTreeSet<String>,
    /// Attached loop devices: `loopN <backing file>`.
    pub loop_devices: BTreeSet<String>,
    /// Live processes as (pid, start time in ticks since boot).
    pub processes: BTreeSet<(i32, u64)>,
    /// The host's standard device nodes as `path mode uid:gid rdev`: a
    /// runtime that binds one into a container must never change it.
    #[serde(default)]
    pub device_nodes: BTreeSet<String>,
}

/// One difference between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Difference {
    /// A mount that was not there before.
    MountAdded(String),
    /// A mount that is gone.
    MountRemoved(String),
    /// A cgroup directory that was not there before.
    CgroupAdded(String),
    /// A cgroup directory that is gone.
    CgroupRemoved(String),
    /// A named network namespace that was not there before.
    NetnsNameAdded(String),
    /// A named network namespace that is gone.
    NetnsNameRemoved(String),
    /// A network namespace held by a process, new since the snapshot,
    /// with the processes holding it.
    NetnsAdded(u64, Vec<String>),
    /// A network namespace no process holds any more.
    NetnsRemoved(u64),
    /// A link of the host's network namespace that was not there before.
    LinkAdded(String),
    /// A link of the host's network namespace that is gone.
    LinkRemoved(String),
    /// A loop device attached since the snapshot.
    LoopAdded(String),
    /// A loop device detached since the snapshot.
    LoopRemoved(String),
    /// A process started after the snapshot and still alive.
    ProcessLeft(String),
    /// A standard device node that changed (mode, owner or device), or
    /// appeared or vanished: `path mode uid:gid rdev` before and after.
    DeviceNodeChanged(String, String),
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::MountAdded(m) => write!(f, "mount added: {m}"),
            Difference::MountRemoved(m) => write!(f, "mount removed: {m}"),
            Difference::CgroupAdded(c) => write!(f, "cgroup added: {c}"),
            Difference::CgroupRemoved(c) => write!(f, "cgroup removed: {c}"),
            Difference::NetnsNameAdded(n) => write!(f, "netns added: {n} (ip netns list)"),
            Difference::NetnsNameRemoved(n) => write!(f, "netns removed: {n} (ip netns list)"),
            Difference::NetnsAdded(i, holders) => {
                write!(f, "network namespace added: net:[{i}] held by ")?;
                write!(f, "{}", holders.join(", "))
            }
            Difference::NetnsRemoved(i) => write!(f, "network namespace gone: net:[{i}]"),
            Difference::LinkAdded(l) => write!(f, "link added: {l}"),
            Difference::LinkRemoved(l) => write!(f, "link removed: {l}"),
            Difference::LoopAdded(l) => write!(f, "loop device added: {l}"),
            Difference::LoopRemoved(l) => write!(f, "loop device removed: {l}"),
            Difference::ProcessLeft(p) => write!(f, "process left running: {p}"),
            Difference::DeviceNodeChanged(a, b) => {
                write!(f, "device node changed: {a:?} is now {b:?}")
            }
        }
    }
}

/// An error reading the host's state, naming what could not be read.
#[derive(Debug)]
pub struct ReadError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    pub source: io::Error,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reading {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for ReadError {}

fn read_text(path: &str) -> Result<String, ReadError> {
    fs::read_to_string(path).map_err(|source| ReadError {
        path: path.into(),
        source,
    })
}

/// Processes the checker must not count: itself and its ancestors (make,
/// the shell of the recipe, cargo when run from a test).
fn own_lineage() -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    let mut pid = std::process::id() as i32;
    while pid > 0 && pids.insert(pid) {
        pid = match proc_stat(pid) {
            Some(s) => s.ppid,
            None => break,
        };
    }
    pids
}

/// The fields of /proc/PID/stat the checker uses.
struct ProcStat {
    comm: String,
    ppid: i32,
    flags: u64,
    start_ticks: u64,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(raw: &str) -> Option<ProcStat> {
    // comm may hold spaces and parentheses: it ends at the last ')'.
    let open = raw.find('(')?;
    let close = raw.rfind(')')?;
    let comm = raw[open + 1..close].to_string();
    // Fields after comm, numbered from 3 (state) as in proc(5).
    let rest: Vec<&str> = raw[close + 1..].split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    Some(ProcStat {
        comm,
        ppid: field(4)?.parse().ok()?,
        flags: field(9)?.parse().ok()?,
        start_ticks: field(22)?.parse().ok()?,
    })
}

fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a constant of the C library.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // _SC_CLK_TCK cannot fail on Linux; max(1) only guards the division.
    t.max(1) as u64
}

/// CLOCK_BOOTTIME in clock ticks, the clock of process start times.
fn now_ticks() -> Result<u64, ReadError> {
    let uptime = read_text("/proc/uptime")?;
    let secs: f64 = uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ReadError {
            path: "/proc/uptime".into(),
            source: io::Error::new(io::ErrorKind::InvalidData, "no uptime"),
        })?;
    Ok((secs * clock_ticks_per_second() as f64) as u64)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts of a mountinfo text as comparable lines.
pub fn parse_mounts(mountinfo: &str) -> Vec<String> {
    let mut out: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let (root, point, opts) = (pre.get(3)?, pre.get(4)?, pre.get(5)?);
            let (fstype, source, sopts) = (post.first()?, post.get(1)?, post.get(2)?);
            Some(format!(
                "{} type {} from {} root {} ({} | {})",
                unescape(point),
                fstype,
                unescape(source),
                unescape(root),
                opts,
                sopts
            ))
        })
        .collect();
    out.sort();
    out
}

fn cgroup_dirs(dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(rd) = fs::read_dir(dir) else {
        // Removed while walking: it is simply not there.
        return;
    };
    for e in rd.flatten() {
        // file_type does not follow symlinks (cpu -> cpu,cpuacct).
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let p = e.path();
            out.insert(p.display().to_string());
            cgroup_dirs(&p, out);
        }
    }
}

fn links() -> Result<BTreeSet<String>, ReadError> {
    // /proc/net/dev lists every device of the namespace, up or down.
    Ok(read_text(NET_DEV)?
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split_once(':')?.0.trim().to_string()))
        .collect())
}

fn loop_devices() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(rd) = fs::read_dir("/sys/block") else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        // Present only while the device is attached.
        if let Ok(b) = fs::read_to_string(e.path().join("loop/backing_file")) {
            out.insert(format!("/dev/{name} {}", b.trim()));
        }
    }
    out
}

/// The device nodes every host has and containers commonly get bound in.
const DEVICE_NODES: [&str; 10] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/kvm",
    "/dev/net/tun",
    "/dev/fuse",
];

fn device_nodes() -> BTreeSet<String> {
    use std::os::unix::fs::MetadataExt;
    DEVICE_NODES
        .iter()
        .map(|p| match fs::symlink_metadata(p) {
            Ok(m) => format!(
                "{p} {:o} {}:{} {:x}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                m.rdev()
            ),
            Err(_) => format!("{p} absent"),
        })
        .collect()
}

fn netns_names() -> BTreeSet<String> {
    fs::read_dir(NETNS_DIR)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn net_inode(link: &Path) -> Option<u64> {
    let target = fs::read_link(link).ok()?;
    let t = target.to_str()?;
    t.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Network namespaces held by each process (its own and any open
/// namespace file descriptor), skipping the checker's lineage.
fn netns_holders(skip: &BTreeSet<i32>) -> BTreeMap<u64, Vec<i32>> {
    let mut held: BTreeMap<u64, Vec<i32>> = BTreeMap::new();
    for pid in pids() {
        if skip.contains(&pid) || is_kernel_thread(pid) {
            continue;
        }
        let mut mine = BTreeSet::new();
        if let Some(i) = net_inode(Path::new(&format!("/proc/{pid}/ns/net"))) {
            mine.insert(i);
        }
        if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) {
            for e in rd.flatten() {
                if let Some(i) = net_inode(&e.path()) {
                    mine.insert(i);
                }
            }
        }
        for i in mine {
            held.entry(i).or_default().push(pid);
        }
    }
    held
}

fn is_kernel_thread(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|s| s.flags & PF_KTHREAD != 0)
}

fn user_processes(skip: &BTreeSet<i32>) -> BTreeSet<(i32, u64)> {
    pids()
        .into_iter()
        .filter(|p| !skip.contains(p))
        .filter_map(|p| {
            let s = proc_stat(p)?;
            (s.flags & PF_KTHREAD == 0).then_some((p, s.start_ticks))
        })
        .collect()
}

/// Reads the host's state now.
pub fn take() -> Result<Snapshot, ReadError> {
    let taken_at_ticks = now_ticks()?;
    let skip = own_lineage();
    let mut cgroups = BTreeSet::new();
    cgroup_dirs(Path::new(CGROUP_ROOT), &mut cgroups);
    Ok(Snapshot {
        taken_at_ticks,
        mounts: parse_mounts(&read_text(MOUNTINFO)?),
        cgroups,
        netns_names: netns_names(),
        netns_inodes: netns_holders(&skip).into_keys().collect(),
        links: links()?,
        loop_devices: loop_devices(),
        processes: user_processes(&skip),
        device_nodes: device_nodes(),
    })
}

fn describe_process(pid: i32, since_ticks: u64) -> String {
    let cmd = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    match proc_stat(pid) {
        Some(s) => {
            let after =
                s.start_ticks.saturating_sub(since_ticks) as f64 / clock_ticks_per_second() as f64;
            let cmd = if cmd.is_empty() {
                format!("[{}] (zombie or exiting)", s.comm)
            } else {
                cmd
            };
            format!(
                "pid {pid} (parent {}), started {after:.1} s after the snapshot: {cmd}",
                s.ppid
            )
        }
        None => format!("pid {pid}: {cmd}"),
    }
}

fn set_diff<T: Ord + Clone>(
    before: &BTreeSet<T>,
    after: &BTreeSet<T>,
    added: impl Fn(T) -> Difference,
    removed: impl Fn(T) -> Difference,
    out: &mut Vec<Difference>,
) {
    out.extend(after.difference(before).cloned().map(added));
    out.extend(before.difference(after).cloned().map(removed));
}

/// Mount lines counted, so that a second identical mount stacked on the
/// first counts as added.
fn counted(lines: &[String]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(l.as_str()).or_insert(0) += 1;
    }
    m
}

/// Everything that differs between `before` and the host now. Processes
/// count only when they started after `before` was taken and are still
/// alive (the checker and its ancestors, and kernel threads, never count).
pub fn compare(before: &Snapshot) -> Result<Vec<Difference>, ReadError> {
    let now = take()?;
    let mut out = Vec::new();

    let (b, a) = (counted(&before.mounts), counted(&now.mounts));
    for (line, &n) in &a {
        for _ in b.get(line).copied().unwrap_or(0)..n {
            out.push(Difference::MountAdded(line.to_string()));
        }
    }
    for (line, &n) in &b {
        for _ in a.get(line).copied().unwrap_or(0)..n {
            out.push(Difference::MountRemoved(line.to_string()));
        }
    }
    set_diff(
        &before.cgroups,
        &now.cgroups,
        Difference::CgroupAdded,
        Difference::CgroupRemoved,
        &mut out,
    );
    set_diff(
        &before.netns_names,
        &now.netns_names,
        Difference::NetnsNameAdded,
        Difference::NetnsNameRemoved,
        &mut out,
    );
    let holders = netns_holders(&own_lineage());
    for (inode, pids) in &holders {
        if !before.netns_inodes.contains(inode) {
            let who = pids
                .iter()
                .map(|p| {
                    let comm = proc_stat(*p).map(|s| s.comm).unwrap_or_default();
                    format!("{p} ({comm})")
                })
                .collect();
            out.push(Difference::NetnsAdded(*inode, who));
        }
    }
    for inode in &before.netns_inodes {
        if !holders.contains_key(inode) {
            out.push(Difference::NetnsRemoved(*inode));
        }
    }
    set_diff(
        &before.links,
        &now.links,
        Difference::LinkAdded,
        Difference::LinkRemoved,
        &mut out,
    );
    set_diff(
        &before.loop_devices,
        &now.loop_devices,
        Difference::LoopAdded,
        Difference::LoopRemoved,
        &mut out,
    );
    for (old, new) in before.device_nodes.iter().zip(&now.device_nodes) {
        if old != new {
            out.push(Difference::DeviceNodeChanged(old.clone(), new.clone()));
        }
    }
    for &(pid, start) in now.processes.difference(&before.processes) {
        if start >= before.taken_at_ticks {
            out.push(Difference::ProcessLeft(describe_process(
                pid,
                before.taken_at_ticks,
            )));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_device_node_is_a_difference() {
        let mut before = take().unwrap();
        assert_eq!(before.device_nodes.len(), DEVICE_NODES.len());
        let null = before
            .device_nodes
            .iter()
            .find(|l| l.starts_with("/dev/null "))
            .unwrap()
            .clone();
        before.device_nodes.remove(&null);
        before.device_nodes.insert("/dev/null 644 0:0 103".into());
        let diffs = compare(&before).unwrap();
        assert!(
            diffs
                .iter()
                .any(|d| matches!(d, Difference::DeviceNodeChanged(_, now) if *now == null)),
            "{diffs:?}"
        );
    }

    #[test]
    fn mounts_keep_what_identifies_them_and_drop_ids() {
        let a = "36 25 0:32 / /sys/fs/cgroup/x\\040y rw,nosuid shared:7 - cgroup cgroup rw,pids\n";
        let b = "99 12 0:32 / /sys/fs/cgroup/x\\040y rw,nosuid shared:9 - cgroup cgroup rw,pids\n";
        assert_eq!(parse_mounts(a), parse_mounts(b));
        assert_eq!(
            parse_mounts(a),
            vec!["/sys/fs/cgroup/x y type cgroup from cgroup root / (rw,nosuid | rw,pids)"]
        );
        let ro = a.replace("rw,nosuid", "ro,nosuid");
        assert_ne!(parse_mounts(a), parse_mounts(&ro));
    }

    #[test]
    fn stat_parses_a_comm_with_spaces_and_parentheses() {
        let raw = "4242 (a b) (c)) S 17 4242 4242 0 -1 2097216 0 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        let s = parse_stat(raw).expect("parsed");
        assert_eq!(s.comm, "a b) (c)");
        assert_eq!(s.ppid, 17);
        assert_ne!(s.flags & PF_KTHREAD, 0);
        assert_eq!(s.start_ticks, 987654);
        let me = proc_stat(std::process::id() as i32).expect("own stat");
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw());
        assert_eq!(me.flags & PF_KTHREAD, 0);
    }
}
