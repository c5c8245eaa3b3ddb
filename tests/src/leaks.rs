//! Counters of what a container can leave behind: state directories,
//! cgroup directories, mounts and processes.

use std::fs;
use std::path::{Path, PathBuf};

/// Every cgroup directory of every hierarchy under /sys/fs/cgroup (v1
/// controllers, the unified mount, or a pure v2 root), at any depth, without
/// the hierarchies' roots. A container without `cgroupsPath` nests under the
/// caller's own cgroup, so its directory may be anywhere.
pub fn all_cgroup_dirs() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut found = Vec::new();
    if root.join("cgroup.controllers").exists() {
        walk(root, &mut found);
    } else if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(&e.path(), &mut found);
            }
        }
    }
    found
}

/// Pushes the directories below `dir` (not `dir` itself), deepest last.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        // file_type does not follow symlinks (cpu,cpuacct links on some hosts).
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(e.path());
            walk(&e.path(), out);
        }
    }
}

/// Cgroup directories whose path ends with `rel` (e.g. `my-id`, or
/// `/a/b` for a `cgroupsPath`), at any depth of any hierarchy.
pub fn cgroup_dirs(rel: &str) -> Vec<String> {
    let rel = Path::new(rel.trim_start_matches('/'));
    if rel.as_os_str().is_empty() {
        return Vec::new();
    }
    all_cgroup_dirs()
        .into_iter()
        .filter(|d| d.ends_with(rel))
        .map(|d| d.display().to_string())
        .collect()
}

/// The directory ending with `rel` in the v1 hierarchy of `ctrl` (e.g.
/// `memory`), wherever it is nested.
pub fn v1_cgroup_dir(ctrl: &str, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel.trim_start_matches('/'));
    let mount = Path::new("/sys/fs/cgroup").join(ctrl);
    if mount.join(rel).is_dir() {
        return Some(mount.join(rel));
    }
    let mut dirs = Vec::new();
    walk(&mount, &mut dirs);
    dirs.into_iter().find(|d| d.ends_with(rel))
}

/// Cgroup directories under any hierarchy, at any depth, whose name starts
/// with `prefix`.
pub fn cgroup_dirs_with_prefix(prefix: &str) -> Vec<String> {
    all_cgroup_dirs()
        .into_iter()
        .filter(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .map(|d| d.display().to_string())
        .collect()
}

/// Lines of /proc/self/mountinfo that mention `needle`.
pub fn mounts_mentioning(needle: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Number of lines in /proc/self/mountinfo.
pub fn mount_count() -> usize {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .count()
}

/// Processes (pid, cmdline) whose command line mentions `needle`, other
/// than this test process and its threads.
pub fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(raw) = fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            // Zombies have an empty cmdline; a reaped process is gone.
            if cmd.contains(needle) {
                found.push((pid, cmd));
            }
        }
    }
    found
}

/// Entries of the state directory `root` (container state dirs).
pub fn state_entries(root: &Path) -> Vec<String> {
    fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Everything container `id` (state root `root`, bundle `bundle`) left
/// behind, as human-readable lines; empty when nothing is left.
pub fn leftovers(root: &Path, id: &str, bundle: Option<&Path>) -> Vec<String> {
    let mut out = Vec::new();
    if !id.is_empty() && !id.contains('/') && root.join(id).exists() {
        out.push(format!("state dir {}", root.join(id).display()));
    }
    if !id.is_empty() && !id.contains('/') && !id.contains("..") {
        for d in cgroup_dirs(id) {
            out.push(format!("cgroup {d}"));
        }
    }
    let mut needles = Vec::new();
    if !id.is_empty() && id.len() > 6 {
        needles.push(id.to_string());
    }
    if let Some(b) = bundle {
        needles.push(b.display().to_string());
    }
    for n in &needles {
        for m in mounts_mentioning(n) {
            out.push(format!("mount {m}"));
        }
        for (pid, cmd) in processes_mentioning(n) {
            out.push(format!("process {pid}: {cmd}"));
        }
    }
    out
}

/// Waits (up to ~5 s) for `leftovers` to become empty and returns what is
/// still there: processes being reaped may take a moment to vanish.
pub fn settle(root: &Path, id: &str, bundle: Option<&Path>) -> Vec<String> {
    let mut left = leftovers(root, id, bundle);
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = leftovers(root, id, bundle);
    }
    left
}
