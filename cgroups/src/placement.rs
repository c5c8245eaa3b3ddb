//! Where a container's cgroup goes in each hierarchy, as runc 1.1.5 places
//! it (measured on a cgroup v1 hybrid host, and read from its v2 code):
//!
//! - an absolute `cgroupsPath` is taken from the root of every hierarchy;
//! - a relative one, or the container id when there is none, is joined to
//!   the caller's own cgroup in each v1 hierarchy, so that a session under
//!   a memory limit keeps its containers under that limit;
//! - on a pure cgroup v2 host it is joined to the *parent* of the caller's
//!   cgroup: the caller's own cgroup holds processes, so no controller could
//!   be enabled below it (the no-internal-processes rule);
//! - on the cgroup2 hierarchy of a hybrid host it is taken from the root.
//!
//! A placement whose paths differ between hierarchies is recorded as one
//! string (see [`Placement::encode`]) so that `delete`, run from anywhere,
//! finds the same directories.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::host::{CgroupMode, Host};

/// Separates the main path from per-hierarchy overrides in an encoded
/// placement: `/main;memory=/a/b/id;unified=/id`.
const SEPARATOR: char = ';';
/// The key of the cgroup2 hierarchy of a hybrid host in an encoded placement.
const UNIFIED_KEY: &str = "unified";

/// The container's cgroup path in each hierarchy, relative to its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Path of each mounted v1 controller (empty on a v2 host).
    pub v1: BTreeMap<String, PathBuf>,
    /// Path in the cgroup2 hierarchy (the only one on a v2 host).
    pub v2: Option<PathBuf>,
}

impl Placement {
    /// Places `inner` (a `cgroupsPath`, or the container id) on `host` for
    /// a caller whose own cgroups are `own` (from [`own_cgroups`]).
    pub fn resolve(host: &Host, inner: &Path, own: &OwnCgroups) -> Self {
        let absolute = inner.is_absolute();
        let inner = relative(inner);
        let below = |base: Option<&PathBuf>| -> PathBuf {
            if absolute {
                inner.clone()
            } else {
                base.map(|b| relative(b)).unwrap_or_default().join(&inner)
            }
        };
        match host.mode {
            CgroupMode::Unified => {
                let parent = own
                    .v2
                    .as_ref()
                    .map(|p| p.parent().map(Path::to_path_buf).unwrap_or_default());
                Self {
                    v1: BTreeMap::new(),
                    v2: Some(below(parent.as_ref())),
                }
            }
            CgroupMode::Hybrid | CgroupMode::Legacy => Self {
                v1: host
                    .v1
                    .keys()
                    .map(|c| (c.clone(), below(own.v1.get(c))))
                    .collect(),
                v2: (host.mode == CgroupMode::Hybrid).then(|| inner.clone()),
            },
        }
    }

    /// The path libcgroups drives: the devices controller's, else the one
    /// most hierarchies use (the cgroup2 one on a v2 host).
    pub fn main(&self) -> PathBuf {
        if self.v1.is_empty() {
            return self.v2.clone().unwrap_or_default();
        }
        // libcgroups writes the devices controller whatever the spec says,
        // so the path it drives must be the devices one.
        if let Some(d) = self.v1.get("devices") {
            return d.clone();
        }
        let mut count: BTreeMap<&PathBuf, usize> = BTreeMap::new();
        for p in self.v1.values() {
            *count.entry(p).or_default() += 1;
        }
        let best = count.values().copied().max().unwrap_or(0);
        count
            .into_iter()
            .find(|(_, n)| *n == best)
            .map(|(p, _)| p.clone())
            .unwrap_or_default()
    }

    /// Whether every hierarchy uses the same path.
    pub fn is_uniform(&self) -> bool {
        let main = self.main();
        self.v1.values().chain(self.v2.iter()).all(|p| *p == main)
    }

    /// The placement as one absolute path: `/main` when every hierarchy
    /// uses it, else `/main;ctrl=/path;...` naming the hierarchies that
    /// differ (`unified` for the cgroup2 one of a hybrid host).
    pub fn encode(&self) -> PathBuf {
        let main = self.main();
        let mut s = format!("/{}", main.display());
        for (c, p) in &self.v1 {
            if *p != main {
                s.push_str(&format!("{SEPARATOR}{c}=/{}", p.display()));
            }
        }
        if !self.v1.is_empty() {
            if let Some(p) = self.v2.as_ref().filter(|p| **p != main) {
                s.push_str(&format!("{SEPARATOR}{UNIFIED_KEY}=/{}", p.display()));
            }
        }
        PathBuf::from(s)
    }

    /// Reads back what [`Placement::encode`] wrote, on `host`; `None` when
    /// `path` carries no per-hierarchy overrides.
    pub fn decode(host: &Host, path: &Path) -> Option<Result<Self, String>> {
        let s = path.to_str()?;
        let (main, rest) = s.split_once(SEPARATOR)?;
        let main = relative(Path::new(main));
        let mut placement = Self {
            v1: host.v1.keys().map(|c| (c.clone(), main.clone())).collect(),
            v2: (host.mode != CgroupMode::Legacy).then(|| main.clone()),
        };
        for item in rest.split(SEPARATOR) {
            let Some((key, p)) = item.split_once('=') else {
                return Some(Err(format!("{item:?} is not \"controller=/path\"")));
            };
            let p = relative(Path::new(p));
            if key == UNIFIED_KEY {
                placement.v2 = Some(p);
            } else if let Some(slot) = placement.v1.get_mut(key) {
                *slot = p;
            } else if !crate::host::V1_CONTROLLERS.contains(&key) {
                return Some(Err(format!("{key:?} is not a cgroup controller")));
            }
            // A controller this host does not mount has no directory.
        }
        Some(Ok(placement))
    }

    /// Every path of the placement.
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.v1.values().chain(self.v2.iter())
    }
}

/// `p` without its root: the part to join to a hierarchy's mount point.
fn relative(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// The caller's own cgroup in each hierarchy, relative to where that
/// hierarchy is mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnCgroups {
    /// Path of each v1 controller.
    pub v1: BTreeMap<String, PathBuf>,
    /// Path in the cgroup2 hierarchy.
    pub v2: Option<PathBuf>,
}

impl OwnCgroups {
    /// The calling process's cgroups, from `/proc/self/cgroup`, made
    /// relative to the roots of `host`'s mounts (a mount of a cgroup
    /// subtree, as in a container without a cgroup namespace, shows only
    /// what is below its root).
    pub fn of_self(host: &Host) -> Result<Self, String> {
        let text = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        // The roots come with a host read from mountinfo; a host built
        // otherwise (a test's cgroup2 mount) has them read here.
        let read;
        let roots = if host.mount_roots.is_empty() {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
                .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
            read = mount_roots(&mountinfo);
            &read
        } else {
            &host.mount_roots
        };
        let mut own = Self::parse(&text);
        let strip = |p: &mut PathBuf, mount: Option<&PathBuf>| {
            let root = mount.and_then(|m| roots.get(m));
            if let Some(root) = root.filter(|r| r.as_path() != Path::new("/")) {
                // A cgroup outside the mount's view has no path in it: use the
                // mount's root, as runc does.
                *p = p
                    .strip_prefix(root)
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
            }
        };
        for (c, p) in own.v1.iter_mut() {
            strip(p, host.v1.get(c));
        }
        if let Some(p) = own.v2.as_mut() {
            strip(p, host.unified.as_ref());
        }
        Ok(own)
    }

    /// Parses the text of a `/proc/<pid>/cgroup` file.
    pub fn parse(text: &str) -> Self {
        let mut own = Self::default();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let path = PathBuf::from(path);
            if controllers.is_empty() {
                own.v2 = Some(path);
                continue;
            }
            for c in controllers.split(',') {
                if !c.starts_with("name=") {
                    own.v1.insert(c.to_string(), path.clone());
                }
            }
        }
        own
    }
}

/// Mount point to the root of the mounted subtree, from mountinfo text.
fn mount_roots(mountinfo: &str) -> BTreeMap<PathBuf, PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let root = f.nth(3)?;
            let point = f.next()?;
            Some((
                PathBuf::from(crate::host::unescape_mountinfo(point)),
                PathBuf::from(crate::host::unescape_mountinfo(root)),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid() -> Host {
        let mut v1 = BTreeMap::new();
        for c in ["cpu", "cpuacct", "memory", "devices", "pids"] {
            v1.insert(c.to_string(), PathBuf::from("/sys/fs/cgroup").join(c));
        }
        Host {
            mode: CgroupMode::Hybrid,
            root: "/sys/fs/cgroup".into(),
            v1,
            unified: Some("/sys/fs/cgroup/unified".into()),
            mount_roots: BTreeMap::new(),
        }
    }

    const OWN: &str = "9:name=systemd:/\n8:pids:/s\n4:memory:/sess/lim\n2:cpu,cpuacct:/s\n5:devices:/s\n0::/u/leaf\n";

    #[test]
    fn relative_paths_nest_under_the_callers_v1_cgroups() {
        let own = OwnCgroups::parse(OWN);
        let p = Placement::resolve(&hybrid(), Path::new("c1"), &own);
        assert_eq!(p.v1["memory"], PathBuf::from("sess/lim/c1"));
        assert_eq!(p.v1["cpuacct"], PathBuf::from("s/c1"));
        // runc 1.1.5 takes the cgroup2 side of a hybrid host from its root.
        assert_eq!(p.v2, Some(PathBuf::from("c1")));
        assert!(!p.is_uniform());
        assert_eq!(p.main(), PathBuf::from("s/c1"));
        let enc = p.encode();
        assert_eq!(enc, PathBuf::from("/s/c1;memory=/sess/lim/c1;unified=/c1"));
        assert_eq!(Placement::decode(&hybrid(), &enc).unwrap().unwrap(), p);
        let p = Placement::resolve(&hybrid(), Path::new("foo/bar"), &own);
        assert_eq!(p.v1["pids"], PathBuf::from("s/foo/bar"));
    }

    #[test]
    fn absolute_paths_start_at_every_root() {
        let own = OwnCgroups::parse(OWN);
        let p = Placement::resolve(&hybrid(), Path::new("/x/c1"), &own);
        assert!(p.is_uniform());
        assert_eq!(p.encode(), PathBuf::from("/x/c1"));
        assert!(Placement::decode(&hybrid(), &p.encode()).is_none());
    }

    #[test]
    fn v2_nests_under_the_callers_parent() {
        let host = Host::unified_at(Path::new("/sys/fs/cgroup"));
        let own = OwnCgroups::parse(OWN);
        let p = Placement::resolve(&host, Path::new("c1"), &own);
        assert_eq!(p.v2, Some(PathBuf::from("u/c1")));
        assert_eq!(p.encode(), PathBuf::from("/u/c1"));
        let own = OwnCgroups::parse("0::/\n");
        let p = Placement::resolve(&host, Path::new("c1"), &own);
        assert_eq!(p.encode(), PathBuf::from("/c1"));
    }

    #[test]
    fn bad_encodings_are_refused() {
        assert!(Placement::decode(&hybrid(), Path::new("/a;memory"))
            .unwrap()
            .is_err());
        assert!(Placement::decode(&hybrid(), Path::new("/a;bogus=/x"))
            .unwrap()
            .is_err());
    }
}
