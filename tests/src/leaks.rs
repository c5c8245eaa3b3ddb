//! Counters of what a container can leave behind: state directories,
//! cgroup directories, mounts and processes.

use std::fs;
use std::path::Path;

/// Cgroup directories named `rel` (e.g. `/my-id`) under any hierarchy of
/// /sys/fs/cgroup (v1 controllers, the unified mount, or a pure v2 root).
pub fn cgroup_dirs(rel: &str) -> Vec<String> {
    let rel = rel.trim_start_matches('/');
    let mut found = Vec::new();
    let root = Path::new("/sys/fs/cgroup");
    if root.join(rel).is_dir() {
        found.push(root.join(rel).display().to_string());
    }
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            let p = e.path().join(rel);
            if e.path().is_dir()
                && !e.file_type().map(|t| t.is_symlink()).unwrap_or(true)
                && p.is_dir()
            {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

/// Cgroup directories under any hierarchy whose name starts with `prefix`.
pub fn cgroup_dirs_with_prefix(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.to_path_buf()];
    if let Ok(rd) = fs::read_dir(root) {
        dirs.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
    }
    for d in dirs {
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(prefix) && e.path().is_dir() {
                    found.push(e.path().display().to_string());
                }
            }
        }
    }
    found
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
