//! `cgroup` mounts.
//!
//! cgroup v2 host: with a cgroup namespace a fresh cgroup2 mount, otherwise
//! a bind of the container's own cgroup directory. cgroup v1 (or hybrid)
//! host: a tmpfs holding one entry per v1 hierarchy the process is in, each
//! a fresh cgroup mount (own cgroup namespace) or a bind of the container's
//! directory in the host hierarchy; co-mounted controllers (`cpu,cpuacct`)
//! get one directory plus a symlink per controller, as on the host.

use std::fs;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
use nix::unistd::symlinkat;

use super::mounts::{bind, mount_fs, remount_bind, Target};
use super::options::MountOptions;
use super::resolve::RootDir;
use super::RootfsError;

/// One line of /proc/self/cgroup: `id:controllers:path`.
struct Membership {
    controllers: String,
    path: String,
}

fn memberships() -> std::io::Result<Vec<Membership>> {
    let text = fs::read_to_string("/proc/self/cgroup")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let controllers = it.next()?.to_string();
            let path = it.next()?.to_string();
            Some(Membership { controllers, path })
        })
        .collect())
}

/// A cgroup v1 mount of the host: mount root, mount point, super options.
struct HostMount {
    root: String,
    point: String,
    super_opts: String,
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn host_v1_mounts() -> std::io::Result<Vec<HostMount>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        if post.next() != Some("cgroup") {
            continue;
        }
        let super_opts = post.nth(1).unwrap_or("").to_string();
        let mut pre = pre.split(' ');
        let (Some(root), Some(point)) = (pre.nth(3), pre.next()) else {
            continue;
        };
        out.push(HostMount {
            root: unescape(root),
            point: unescape(point),
            super_opts,
        });
    }
    Ok(out)
}

/// The host directory of the process's cgroup in a hierarchy mounted at `m`.
fn host_dir(m: &HostMount, path: &str) -> PathBuf {
    let rel = path.strip_prefix(m.root.as_str()).unwrap_or(path);
    Path::new(&m.point).join(rel.trim_start_matches('/'))
}

/// Mount the spec's `cgroup` entry described by `t`.
pub(crate) fn mount_cgroup(
    root: &RootDir,
    t: &Target<'_>,
    cgroup_ns: bool,
) -> Result<(), RootfsError> {
    let v2 = statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
        .map_err(|e| RootfsError::sys(t.field, "statfs /sys/fs/cgroup", e))?;
    let members = memberships().map_err(|e| io_err(t, "read /proc/self/cgroup", e))?;
    if v2 {
        return mount_v2(root, t, cgroup_ns, &members);
    }
    mount_v1(root, t, cgroup_ns, &members)
}

fn io_err(t: &Target<'_>, op: &str, e: std::io::Error) -> RootfsError {
    RootfsError::sys(
        t.field,
        op,
        Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    )
}

fn mount_v2(
    root: &RootDir,
    t: &Target<'_>,
    cgroup_ns: bool,
    members: &[Membership],
) -> Result<(), RootfsError> {
    if cgroup_ns {
        match mount_fs(root, t, "cgroup2", Path::new("cgroup2")) {
            Err(e) if matches!(e.errno(), Some(Errno::EPERM | Errno::EBUSY)) => {}
            r => return r,
        }
    }
    let path = members
        .iter()
        .find(|m| m.controllers.is_empty())
        .map_or("/", |m| m.path.as_str());
    let src = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let opts = bind_opts(t);
    bind(root, &Target { opts: &opts, ..*t }, &src)
}

/// The spec's flags for a bind of a host cgroup directory.
fn bind_opts(t: &Target<'_>) -> MountOptions {
    MountOptions {
        flags: t.opts.flags | MsFlags::MS_BIND | MsFlags::MS_REC,
        cleared: t.opts.cleared,
        ..Default::default()
    }
}

fn mount_v1(
    root: &RootDir,
    t: &Target<'_>,
    cgroup_ns: bool,
    members: &[Membership],
) -> Result<(), RootfsError> {
    // The tmpfs stays writable while the hierarchies are added.
    let tmpfs_opts = MountOptions {
        flags: t.opts.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC),
        data: "mode=755".to_string(),
        propagation: t.opts.propagation.clone(),
        ..Default::default()
    };
    mount_fs(
        root,
        &Target {
            opts: &tmpfs_opts,
            ..*t
        },
        "tmpfs",
        Path::new("tmpfs"),
    )?;
    // The tmpfs root (the handle is taken after the mount).
    let base = root
        .open_path(t.rel, true)
        .map_err(|e| RootfsError::sys(t.field, "open cgroup tmpfs", e))?;
    let sub_opts = bind_opts(t);
    let mut host: Option<Vec<HostMount>> = None;
    for m in members.iter().filter(|m| !m.controllers.is_empty()) {
        let dir = m
            .controllers
            .strip_prefix("name=")
            .unwrap_or(&m.controllers);
        let rel = t.rel.join(dir);
        let sub = Target {
            field: t.field,
            rel: &rel,
            opts: &sub_opts,
        };
        let mut mounted = false;
        if cgroup_ns {
            let o = MountOptions {
                flags: t.opts.flags.difference(MsFlags::MS_BIND | MsFlags::MS_REC),
                data: m.controllers.clone(),
                ..Default::default()
            };
            match mount_fs(
                root,
                &Target { opts: &o, ..sub },
                "cgroup",
                Path::new("cgroup"),
            ) {
                Ok(()) => mounted = true,
                Err(e) if e.errno() == Some(Errno::EPERM) => {}
                Err(e) => return Err(e),
            }
        }
        if !mounted {
            let hosts = match &mut host {
                Some(h) => h,
                None => host.insert(
                    host_v1_mounts().map_err(|e| io_err(t, "read /proc/self/mountinfo", e))?,
                ),
            };
            // A hierarchy the host does not mount has nothing to show.
            let Some(hm) = find_host(hosts, &m.controllers) else {
                continue;
            };
            bind(root, &sub, &host_dir(hm, &m.path))?;
        }
        if dir.contains(',') {
            for c in dir.split(',') {
                match symlinkat(dir, Some(base.as_raw_fd()), c) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(RootfsError::sys(t.field, format!("symlink {c}"), e)),
                }
            }
        }
    }
    if t.opts.flags.contains(MsFlags::MS_RDONLY) {
        remount_bind(base.as_fd(), MsFlags::MS_RDONLY, MsFlags::empty())
            .map_err(|e| RootfsError::sys(t.field, "remount cgroup tmpfs read-only", e))?;
    }
    Ok(())
}

/// The host mount of the hierarchy holding exactly these controllers.
fn find_host<'h>(host: &'h [HostMount], controllers: &str) -> Option<&'h HostMount> {
    host.iter().find(|h| {
        controllers
            .split(',')
            .all(|c| h.super_opts.split(',').any(|o| o == c))
    })
}
