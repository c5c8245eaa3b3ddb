//! What the host's cgroup filesystems look like: the layout (v1, hybrid or
//! unified), where each v1 controller is mounted and which controllers the
//! cgroup2 hierarchy offers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::CgroupError;

/// The three cgroup layouts a Linux host can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only cgroup v1 hierarchies.
    Legacy,
    /// cgroup v1 hierarchies plus a cgroup2 mount (usually
    /// `/sys/fs/cgroup/unified`) holding the controllers v1 does not use.
    Hybrid,
    /// A single cgroup2 hierarchy at the cgroup root.
    Unified,
}

impl std::fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupMode::Legacy => "cgroup v1",
            CgroupMode::Hybrid => "cgroup v1 hybrid",
            CgroupMode::Unified => "cgroup v2",
        })
    }
}

/// The v1 controllers vessel knows about.
pub const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
];

/// The host's cgroup layout.
#[derive(Debug, Clone)]
pub struct Host {
    /// The layout.
    pub mode: CgroupMode,
    /// The cgroup root (`/sys/fs/cgroup`; the cgroup2 mount on v2).
    pub root: PathBuf,
    /// Mount point of each v1 controller (empty on v2).
    pub v1: BTreeMap<String, PathBuf>,
    /// The cgroup2 mount: the root on v2, `unified` on a hybrid host.
    pub unified: Option<PathBuf>,
    /// Root of the mounted subtree of each cgroup mount point (mountinfo's
    /// fourth field; `/` unless a subtree is mounted, as in a container
    /// without a cgroup namespace). Kept from the same read so placing a
    /// cgroup does not read mountinfo again; empty when not from mountinfo.
    pub mount_roots: BTreeMap<PathBuf, PathBuf>,
}

impl Host {
    /// Detects the layout under [`crate::CGROUP_ROOT`] from
    /// `/proc/self/mountinfo`.
    ///
    /// The result is kept with the open mountinfo file: the kernel flags
    /// that file (POLLPRI) when the namespace's mount table changes, so a
    /// later call re-reads only then (one poll instead of parsing a table
    /// that grows with the host's mounts), and only in the same mount
    /// namespace (checked by its `/proc/self/ns/mnt` link).
    pub fn detect() -> Result<Self, CgroupError> {
        let ns = std::fs::read_link("/proc/self/ns/mnt").ok();
        let mut cache = DETECTED.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(c), Some(ns)) = (cache.as_ref(), ns.as_ref()) {
            if &c.ns == ns && !mount_table_changed(&c.file) {
                return Ok(c.host.clone());
            }
        }
        let err =
            |e: std::io::Error| CgroupError::Host(format!("cannot read /proc/self/mountinfo: {e}"));
        let mut file = std::fs::File::open("/proc/self/mountinfo").map_err(err)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text).map_err(err)?;
        let host = Self::from_mountinfo(&text, Path::new(crate::CGROUP_ROOT))?;
        *cache = ns.map(|ns| Detected {
            file,
            ns,
            host: host.clone(),
        });
        Ok(host)
    }

    /// Builds the layout from the text of a mountinfo file, keeping the
    /// cgroup mounts at or under `root`.
    pub fn from_mountinfo(mountinfo: &str, root: &Path) -> Result<Self, CgroupError> {
        let mut v1 = BTreeMap::new();
        let mut unified = None;
        let mut root_is_v2 = false;
        let mut mount_roots = BTreeMap::new();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split_whitespace().nth(4) else {
                continue;
            };
            let mount_point = PathBuf::from(unescape_mountinfo(mount_point));
            if !mount_point.starts_with(root) {
                continue;
            }
            let mut right = right.split_whitespace();
            let fstype = right.next().unwrap_or("");
            if fstype == "cgroup" || fstype == "cgroup2" {
                if let Some(r) = left.split_whitespace().nth(3) {
                    mount_roots.insert(mount_point.clone(), PathBuf::from(unescape_mountinfo(r)));
                }
            }
            let super_opts = right.nth(1).unwrap_or("");
            match fstype {
                "cgroup2" => {
                    if mount_point == root {
                        root_is_v2 = true;
                    }
                    unified.get_or_insert(mount_point);
                }
                "cgroup" => {
                    for opt in super_opts.split(',') {
                        if V1_CONTROLLERS.contains(&opt) {
                            v1.entry(opt.to_string())
                                .or_insert_with(|| mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        let mode = if root_is_v2 {
            v1.clear();
            CgroupMode::Unified
        } else if v1.is_empty() {
            return Err(CgroupError::Host(format!(
                "no cgroup filesystem is mounted at or under {}",
                root.display()
            )));
        } else if unified.is_some() {
            CgroupMode::Hybrid
        } else {
            CgroupMode::Legacy
        };
        Ok(Self {
            mode,
            root: root.to_path_buf(),
            v1,
            unified,
            mount_roots,
        })
    }

    /// A unified (cgroup v2) host rooted at `root`, e.g. a cgroup2 mount
    /// made for tests.
    pub fn unified_at(root: &Path) -> Self {
        Self {
            mode: CgroupMode::Unified,
            root: root.to_path_buf(),
            v1: BTreeMap::new(),
            unified: Some(root.to_path_buf()),
            mount_roots: BTreeMap::new(),
        }
    }

    /// Whether the v1 controller `name` is mounted.
    pub fn has_v1(&self, name: &str) -> bool {
        self.v1.contains_key(name)
    }

    /// The controllers the cgroup2 hierarchy offers at its root (empty
    /// when there is none).
    pub fn unified_controllers(&self) -> Vec<String> {
        let Some(u) = &self.unified else {
            return Vec::new();
        };
        std::fs::read_to_string(u.join("cgroup.controllers"))
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Whether the cgroup2 hierarchy offers `controller`.
    pub fn has_v2(&self, controller: &str) -> bool {
        self.unified_controllers().iter().any(|c| c == controller)
    }

    /// Whether a file named `file` exists at the root of the hierarchy
    /// that holds `controller` (v1 mount point, or the cgroup2 root).
    pub fn root_has_file(&self, controller: &str, file: &str) -> bool {
        let dir = match self.mode {
            CgroupMode::Unified => Some(self.root.clone()),
            _ => self.v1.get(controller).cloned(),
        };
        dir.is_some_and(|d| d.join(file).exists())
    }
}

/// The last detected layout, with the mountinfo file it was read from.
struct Detected {
    file: std::fs::File,
    ns: PathBuf,
    host: Host,
}

static DETECTED: std::sync::Mutex<Option<Detected>> = std::sync::Mutex::new(None);

/// Whether the mount table behind an open mountinfo file changed since it
/// was opened or last polled (the kernel reports POLLPRI | POLLERR then).
/// Any poll failure counts as a change.
fn mount_table_changed(file: &std::fs::File) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
    let rc = poll(&mut fds, PollTimeout::ZERO);
    !matches!(rc, Ok(0)) || fds[0].revents().is_none_or(|r| !r.is_empty())
}

/// Undoes mountinfo's octal escapes (space, tab, newline, backslash).
pub fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &s[i + 1..i + 4];
            if let Ok(v) = u8::from_str_radix(oct, 8) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_mount_flags_the_open_mountinfo() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting needs root");
            return;
        }
        // A thread of its own in a private mount namespace: the host and
        // the other tests' threads never see the mount.
        std::thread::spawn(|| {
            use nix::mount::{mount, umount, MsFlags};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
            let none = None::<&str>;
            mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let f = std::fs::File::open("/proc/thread-self/mountinfo").unwrap();
            assert!(!mount_table_changed(&f), "nothing mounted yet");
            mount(
                Some("tmpfs"),
                dir.path(),
                Some("tmpfs"),
                MsFlags::empty(),
                none,
            )
            .unwrap();
            let changed = mount_table_changed(&f);
            let again = mount_table_changed(&f);
            umount(dir.path()).unwrap();
            assert!(changed, "a mount must flag the file");
            assert!(!again, "the flag is cleared once polled");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn detect_twice_gives_the_same_layout() {
        let (Ok(a), Ok(b)) = (Host::detect(), Host::detect()) else {
            eprintln!("skipped: no cgroup filesystem here");
            return;
        };
        assert_eq!(a.mode, b.mode);
        assert_eq!(a.v1, b.v1);
        assert_eq!(a.unified, b.unified);
    }

    #[test]
    fn keeps_the_root_of_each_cgroup_mount() {
        let mi = "35 31 0:32 /lxc/c\\040d /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                  50 22 0:40 /x /tmp rw - tmpfs tmpfs rw\n";
        let h = Host::from_mountinfo(mi, Path::new("/sys/fs/cgroup")).unwrap();
        assert_eq!(
            h.mount_roots[Path::new("/sys/fs/cgroup/memory")],
            Path::new("/lxc/c d")
        );
        assert_eq!(
            h.mount_roots[Path::new("/sys/fs/cgroup/unified")],
            Path::new("/")
        );
        assert!(!h.mount_roots.contains_key(Path::new("/tmp")));
    }

    #[test]
    fn hybrid_layout() {
        let h = Host::from_mountinfo(HYBRID, Path::new("/sys/fs/cgroup")).unwrap();
        assert_eq!(h.mode, CgroupMode::Hybrid);
        assert_eq!(h.v1["cpu"], Path::new("/sys/fs/cgroup/cpu"));
        assert!(h.has_v1("blkio"));
        assert!(!h.has_v1("pids"));
        assert!(!h.v1.contains_key("name=systemd"));
        assert_eq!(
            h.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn unified_and_comounted() {
        let u = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = Host::from_mountinfo(u, Path::new("/sys/fs/cgroup")).unwrap();
        assert_eq!(h.mode, CgroupMode::Unified);
        let l = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let h = Host::from_mountinfo(l, Path::new("/sys/fs/cgroup")).unwrap();
        assert_eq!(h.mode, CgroupMode::Legacy);
        assert_eq!(h.v1["cpuacct"], Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(Host::from_mountinfo("", Path::new("/sys/fs/cgroup")).is_err());
    }

    #[test]
    fn unescapes_spaces() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
