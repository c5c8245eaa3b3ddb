//! What a container id left on the host, found by looking at the host
//! rather than asking the runtime: cgroup dirs in every hierarchy, mounts,
//! processes, state dirs and files. Then the benchmark's own clean-up of
//! them (kill by pid, unmount, rmdir, remove), so the host ends as found.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

/// What was found for a set of ids, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Found {
    /// `<root>/<id>` directories.
    pub state_dirs: Vec<PathBuf>,
    /// Cgroup directories whose name holds an id, deepest first, with
    /// everything nested under them.
    pub cgroup_dirs: Vec<PathBuf>,
    /// Host mountinfo lines that name an id or the benchmark's directory.
    pub mounts: Vec<String>,
    /// Pids whose cmdline, cgroup, cwd or open files name an id.
    pub processes: Vec<u32>,
    /// Other files or directories whose name holds an id.
    pub files: Vec<PathBuf>,
}

impl Found {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.state_dirs.is_empty()
            && self.cgroup_dirs.is_empty()
            && self.mounts.is_empty()
            && self.processes.is_empty()
            && self.files.is_empty()
    }

    /// Number of items of every kind together.
    pub fn total(&self) -> usize {
        self.state_dirs.len()
            + self.cgroup_dirs.len()
            + self.mounts.len()
            + self.processes.len()
            + self.files.len()
    }
}

/// Where to look.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The runtime's `--root`.
    pub root: PathBuf,
    /// The benchmark's scratch directory (bundle, roots, captured output).
    pub scratch: PathBuf,
    /// Directories under the scratch directory not to search for files (the
    /// rootfs and the captured output).
    pub skip: Vec<PathBuf>,
}

/// Directories searched for files named after an id, with the depth.
const FILE_DIRS: &[(&str, usize)] = &[
    ("/run", 3),
    ("/dev/shm", 2),
    ("/tmp", 1),
    ("/var/tmp", 1),
    ("/var/lib/vessel", 3),
];

/// Looks for everything `ids` left on the host.
pub fn find(scope: &Scope, ids: &[String]) -> Found {
    let mut found = Found::default();
    if ids.is_empty() {
        return found;
    }
    let names = |s: &str| ids.iter().any(|id| s.contains(id.as_str()));
    for id in ids {
        let d = scope.root.join(id);
        if d.symlink_metadata().is_ok() {
            found.state_dirs.push(d);
        }
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let scratch_name = scope
        .scratch
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cgroup_mounts = cgroup_mountpoints(&mountinfo);
    found.mounts = mountinfo
        .lines()
        .filter(|l| names(l) || (!scratch_name.is_empty() && l.contains(&scratch_name)))
        .map(str::to_string)
        .collect();
    let mut cg = BTreeSet::new();
    for m in &cgroup_mounts {
        walk_dirs(m, &mut |p| {
            if p.file_name().is_some_and(|n| names(&n.to_string_lossy())) {
                collect_subtree(p, &mut cg);
                false
            } else {
                true
            }
        });
    }
    found.cgroup_dirs = deepest_first(cg);
    found.processes = processes_naming(&names);
    let mut files = BTreeSet::new();
    let mut roots: Vec<(PathBuf, usize)> = FILE_DIRS
        .iter()
        .map(|(d, depth)| (PathBuf::from(d), *depth))
        .collect();
    roots.push((scope.scratch.clone(), 8));
    for (dir, depth) in roots {
        find_named(&dir, depth, &names, &mut |p| {
            let skipped = scope.skip.iter().any(|s| p.starts_with(s))
                || found.state_dirs.iter().any(|s| p.starts_with(s))
                || cgroup_mounts.iter().any(|m| p.starts_with(m));
            if !skipped {
                files.insert(p.to_path_buf());
            }
        });
    }
    // A named directory and its named children count once.
    let files: Vec<PathBuf> = files.iter().cloned().collect();
    found.files = files
        .iter()
        .filter(|p| !files.iter().any(|q| q != *p && p.starts_with(q)))
        .cloned()
        .collect();
    found
}

/// Mount points of every cgroup (v1) and cgroup2 file system.
fn cgroup_mountpoints(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let point = f.get(4)?;
            matches!(f.get(sep + 1), Some(&"cgroup") | Some(&"cgroup2"))
                .then(|| PathBuf::from(unescape(point)))
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        if let (b'\\', Some(v)) = (b[i], octal) {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Calls `visit` on every directory under `dir` (not `dir` itself),
/// descending where it returns true.
fn walk_dirs(dir: &Path, visit: &mut dyn FnMut(&Path) -> bool) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let p = e.path();
            if visit(&p) {
                walk_dirs(&p, visit);
            }
        }
    }
}

fn collect_subtree(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    out.insert(dir.to_path_buf());
    walk_dirs(dir, &mut |p| {
        out.insert(p.to_path_buf());
        true
    });
}

/// Paths ordered so a child comes before its parent (for rmdir).
fn deepest_first(set: BTreeSet<PathBuf>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = set.into_iter().collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

/// Entries under `dir` (to `depth` levels) whose name `names` matches; a
/// matching directory is reported and not descended into.
fn find_named(dir: &Path, depth: usize, names: &dyn Fn(&str) -> bool, hit: &mut dyn FnMut(&Path)) {
    if depth == 0 {
        return;
    }
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if names(&e.file_name().to_string_lossy()) {
            hit(&p);
        } else if e.file_type().is_ok_and(|t| t.is_dir()) {
            find_named(&p, depth - 1, names, hit);
        }
    }
}

/// Pids (other than this process) whose cmdline, cgroups, cwd or open file
/// descriptors name an id: the workload, a runtime helper stuck on an exec
/// fifo, a killed command's orphaned child.
fn processes_naming(names: &dyn Fn(&str) -> bool) -> Vec<u32> {
    let me = std::process::id();
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // A zombie holds nothing but its pid; reaping an orphan is init's
        // job, not the runtime's (see `zombies_naming`).
        if pid == me || is_zombie(pid) {
            continue;
        }
        let p = e.path();
        let mut text = fs::read(p.join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        text.push('\n');
        text.push_str(&fs::read_to_string(p.join("cgroup")).unwrap_or_default());
        if let Ok(cwd) = fs::read_link(p.join("cwd")) {
            text.push_str(&cwd.to_string_lossy());
            text.push('\n');
        }
        if let Ok(fds) = fs::read_dir(p.join("fd")) {
            for fd in fds.flatten() {
                if let Ok(t) = fs::read_link(fd.path()) {
                    text.push_str(&t.to_string_lossy());
                    text.push('\n');
                }
            }
        }
        if names(&text) {
            pids.push(pid);
        }
    }
    pids
}

/// Zombies whose cgroups name `prefix`: exited container processes init
/// has not reaped yet. Until it does, their cgroups stay referenced, and a
/// v1 hierarchy unmounted meanwhile lingers unmounted instead of ending.
pub fn zombies_naming(prefix: &str) -> Vec<u32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| is_zombie(*pid))
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(prefix))
        })
        .collect()
}

/// What the benchmark's own clean-up could not remove.
pub type Residue = Found;

/// Removes what `find` found, by the benchmark's own means: thaws frozen
/// cgroups, kills every pid in the cgroups and the processes found,
/// unmounts (never `/`), rmdirs the cgroups, removes state dirs and files.
/// Returns what is still there afterwards.
pub fn clean(scope: &Scope, ids: &[String], found: &Found) -> Residue {
    if found.is_empty() {
        return Residue::default();
    }
    for d in &found.cgroup_dirs {
        let st = d.join("freezer.state");
        if fs::read_to_string(&st).is_ok_and(|s| s.trim() != "THAWED") {
            let _ = fs::write(&st, "THAWED");
        }
        let frozen = d.join("cgroup.freeze");
        if fs::read_to_string(&frozen).is_ok_and(|s| s.trim() == "1") {
            let _ = fs::write(&frozen, "0");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut pids: BTreeSet<u32> = found.processes.iter().copied().collect();
        for d in &found.cgroup_dirs {
            if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
                pids.extend(s.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        let me = std::process::id();
        let alive: Vec<u32> = pids
            .into_iter()
            .filter(|p| *p != me && Path::new(&format!("/proc/{p}")).exists())
            .filter(|p| !is_zombie(*p))
            .collect();
        if alive.is_empty() || Instant::now() >= deadline {
            break;
        }
        for p in alive {
            // SAFETY: kill(2) with a pid this scan found and SIGKILL has no
            // memory-safety preconditions; a pid that vanished gives ESRCH.
            unsafe {
                libc::kill(p as libc::pid_t, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut points: Vec<String> = found
        .mounts
        .iter()
        .filter_map(|l| l.split_whitespace().nth(4).map(unescape))
        .filter(|p| p != "/")
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p) {
            // SAFETY: `c` is a valid NUL-terminated path that outlives the
            // call; MNT_DETACH only detaches this mount point.
            unsafe {
                libc::umount2(c.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left: Vec<&PathBuf> = found.cgroup_dirs.iter().filter(|d| d.exists()).collect();
        if left.is_empty() || Instant::now() >= deadline {
            break;
        }
        for d in left {
            let _ = fs::remove_dir(d);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in found.state_dirs.iter().chain(&found.files) {
        let _ = if p.is_dir() && !p.is_symlink() {
            fs::remove_dir_all(p)
        } else {
            fs::remove_file(p)
        };
    }
    find(scope, ids)
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|x| x == "Z" || x == "X"))
        })
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/end\"), r"/end\");
    }

    #[test]
    fn cgroup_mounts_of_both_versions() {
        let m = "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                 41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                 50 1 0:40 / /tmp rw - tmpfs tmpfs rw\n";
        assert_eq!(
            cgroup_mountpoints(m),
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu"),
                PathBuf::from("/sys/fs/cgroup/unified")
            ]
        );
    }

    #[test]
    fn finds_and_cleans_what_an_id_left() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let id = format!("leaktest-{}", std::process::id());
        fs::create_dir_all(root.join(&id)).unwrap();
        fs::write(root.join(&id).join("state.json"), "{}").unwrap();
        fs::create_dir_all(tmp.path().join("rootfs")).unwrap();
        fs::write(tmp.path().join("rootfs").join(&id), "").unwrap();
        fs::write(tmp.path().join(format!("{id}.log")), "").unwrap();
        let scope = Scope {
            root,
            scratch: tmp.path().to_path_buf(),
            skip: vec![tmp.path().join("rootfs")],
        };
        let ids = vec![id.clone()];
        let f = find(&scope, &ids);
        assert_eq!(f.state_dirs.len(), 1, "{f:?}");
        assert_eq!(f.files, vec![tmp.path().join(format!("{id}.log"))]);
        assert!(f.processes.is_empty() && f.cgroup_dirs.is_empty(), "{f:?}");
        let left = clean(&scope, &ids, &f);
        assert!(left.is_empty(), "{left:?}");
    }
}
