//! The spec's `mounts`, applied in order inside the rootfs.
//!
//! Each destination is resolved (and created) inside the root by
//! [`RootDir`], and the mount call targets `/proc/self/fd/<n>` of that
//! handle, so no path is looked up again after it was checked.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::statfs::{fstatfs, PROC_SUPER_MAGIC};
use nix::sys::statvfs::{fstatvfs, statvfs, FsFlags};
use oci_spec::runtime::Mount;

use super::cgroup_mount;
use super::options::{self, MountOptions};
use super::resolve::{clean, fd_path, RootDir};
use super::tmpcopy;
use super::{RootfsConfig, RootfsError};

/// Files under /proc that may be bind-mounted over (lxcfs emulates them).
pub(crate) const PROC_ALLOWED: &[&str] = &[
    "proc/cpuinfo",
    "proc/diskstats",
    "proc/meminfo",
    "proc/stat",
    "proc/swaps",
    "proc/uptime",
    "proc/loadavg",
    "proc/slabinfo",
    "proc/net/dev",
    "proc/sys/kernel/ns_last_pid",
];

/// The name of mount `i` in errors.
pub(crate) fn field(i: usize, m: &Mount) -> String {
    format!("mounts[{i}] (destination {})", m.destination().display())
}

/// One mount to perform: everything resolved from the spec entry.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    /// Error prefix naming the spec entry.
    pub field: &'a str,
    /// Destination relative to the root, cleaned.
    pub rel: &'a Path,
    /// Parsed options.
    pub opts: &'a MountOptions,
}

impl Target<'_> {
    fn err(&self, op: impl Into<String>, e: Errno) -> RootfsError {
        RootfsError::sys(self.field, op, e)
    }
}

/// Mount `spec.mounts[i]`.
pub(crate) fn mount_entry(
    root: &RootDir,
    cfg: &RootfsConfig<'_>,
    i: usize,
    m: &Mount,
) -> Result<(), RootfsError> {
    let field = field(i, m);
    tracing::debug!(field, "mount");
    let mut opts = options::parse(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("");
    let rel = clean(m.destination());
    let is_bind = opts.is_bind() || typ == "bind";
    if is_bind {
        opts.flags |= MsFlags::MS_BIND;
    } else if typ == "tmpfs" && rel == Path::new("dev") {
        // Devices are created in /dev after the mounts; finalize makes it
        // read-only if the spec asks.
        opts.flags.remove(MsFlags::MS_RDONLY);
    }
    let t = Target {
        field: &field,
        rel: &rel,
        opts: &opts,
    };
    if is_bind {
        let src = bind_source(cfg.bundle, m)
            .ok_or_else(|| RootfsError::invalid(&field, "bind mount without a source"))?;
        return bind_or_attach(root, &t, &src, opts.idmap.map(|_| i));
    }
    if matches!(typ, "proc" | "sysfs") {
        ordinary_dir(root, &t, typ)?;
    }
    match typ {
        "cgroup" | "cgroup2" => cgroup_mount::mount_cgroup(root, &t, cfg.cgroup_ns),
        "sysfs" => match mount_fs(root, &t, "sysfs", source(m, typ)) {
            // No own network namespace, or a user namespace: the kernel
            // refuses a new sysfs, so bind the host's as runc does.
            Err(e) if e.errno() == Some(Errno::EPERM) => rebind(root, &t, "/sys"),
            r => r,
        },
        "mqueue" => match mount_fs(root, &t, "mqueue", source(m, typ)) {
            Err(e) if e.errno() == Some(Errno::EPERM) => rebind(root, &t, "/dev/mqueue"),
            r => r,
        },
        "devpts" => match mount_fs(root, &t, "devpts", source(m, typ)) {
            // gid=5 is unmapped in many user namespaces: retry without it.
            Err(e) if e.errno() == Some(Errno::EINVAL) && opts.data.contains("gid=") => {
                let data = opts
                    .data
                    .split(',')
                    .filter(|o| !o.starts_with("gid="))
                    .collect::<Vec<_>>()
                    .join(",");
                let o2 = MountOptions {
                    data,
                    propagation: opts.propagation.clone(),
                    ..*t.opts
                };
                mount_fs(root, &Target { opts: &o2, ..t }, "devpts", source(m, typ))
            }
            r => r,
        },
        "" => Err(RootfsError::invalid(&field, "mount type missing")),
        _ => mount_fs(root, &t, typ, source(m, typ)),
    }
}

/// runc's rule for proc and sysfs: an existing destination must be an
/// ordinary directory. A symlink there (say `proc -> /sys`) is refused
/// rather than followed, so a kernel filesystem never lands somewhere the
/// image chose.
fn ordinary_dir(root: &RootDir, t: &Target<'_>, typ: &str) -> Result<(), RootfsError> {
    let (dir, name) = root
        .parent(t.rel)
        .map_err(|e| t.err("open parent of mount point", e))?;
    let st = match nix::sys::stat::fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(t.err("stat mount point", e)),
    };
    let what = match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => return Ok(()),
        libc::S_IFLNK => "a symlink",
        _ => "not a directory",
    };
    Err(RootfsError::invalid(
        t.field,
        format!("{typ} must be mounted on an ordinary directory, but the destination is {what}"),
    ))
}

/// A non-bind mount's source: the spec's, or the type name as runc uses.
fn source<'m>(m: &'m Mount, typ: &'m str) -> &'m Path {
    m.source().as_deref().unwrap_or(Path::new(typ))
}

/// A bind source is a host path; a relative one is relative to the bundle.
pub(crate) fn bind_source(bundle: &Path, m: &Mount) -> Option<PathBuf> {
    let src = m.source().as_deref()?;
    Some(if src.is_absolute() {
        src.to_path_buf()
    } else {
        bundle.join(src)
    })
}

/// Refuse a destination that resolved to the root itself (e.g. through an
/// image symlink `proc -> ../../..`), or that lands inside a procfs mount
/// outside the few files lxcfs emulates.
fn check_target(root: &RootDir, t: &Target<'_>, fd: BorrowedFd<'_>) -> Result<(), RootfsError> {
    if root.is_root(fd).map_err(|e| t.err("stat mount point", e))? {
        return Err(RootfsError::invalid(
            t.field,
            "destination resolves to the container's root",
        ));
    }
    let fs = fstatfs(fd).map_err(|e| t.err("statfs mount point", e))?;
    if fs.filesystem_type() == PROC_SUPER_MAGIC
        && !PROC_ALLOWED.iter().any(|p| t.rel == Path::new(p))
    {
        return Err(RootfsError::invalid(t.field, "destination is inside /proc"));
    }
    Ok(())
}

/// Mount a filesystem of type `typ` on a directory created inside the root.
pub(crate) fn mount_fs(
    root: &RootDir,
    t: &Target<'_>,
    typ: &str,
    src: &Path,
) -> Result<(), RootfsError> {
    let dir = root
        .mkdir_all(t.rel)
        .map_err(|e| t.err("create mount point", e))?;
    check_target(root, t, dir.as_fd())?;
    let data = (!t.opts.data.is_empty()).then_some(t.opts.data.as_str());
    let flags = t.opts.flags.difference(MsFlags::MS_REMOUNT);
    let copyup = t.opts.tmpcopyup && typ == "tmpfs";
    // Read handle on what the tmpfs will cover, taken before it is covered.
    let covered = match copyup {
        true => Some(
            tmpcopy::open_dir(dir.as_raw_fd())
                .map_err(|e| t.err("open directory to copy up", e))?,
        ),
        false => None,
    };
    // Copy while the tmpfs is still writable.
    let first = if covered.is_some() {
        flags.difference(MsFlags::MS_RDONLY)
    } else {
        flags
    };
    mount(
        Some(src),
        fd_path(dir.as_fd()).as_str(),
        Some(typ),
        first,
        data,
    )
    .map_err(|e| t.err(format!("mount {typ}"), e))?;
    let Some(covered) = covered else {
        return after_mount(root, t, None);
    };
    let top = reopen(root, t)?;
    let dst = tmpcopy::open_dir(top.as_raw_fd()).map_err(|e| t.err("open tmpfs", e))?;
    tmpcopy::copy_tree(covered, &dst).map_err(|e| t.err("tmpcopyup", e))?;
    if first != flags {
        remount_bind(top.as_fd(), MsFlags::MS_RDONLY, MsFlags::empty())
            .map_err(|e| t.err("remount read-only", e))?;
    }
    after_mount(root, t, Some(top))
}

/// Bind-mount `/sys` or `/dev/mqueue` of the host when a fresh instance is
/// refused; the spec's flags (ro, nosuid...) still apply, and a read-only
/// one is made read-only recursively, so the host's submounts (such as
/// /sys/fs/cgroup) come in read-only too.
fn rebind(root: &RootDir, t: &Target<'_>, host: &str) -> Result<(), RootfsError> {
    tracing::debug!(
        field = t.field,
        host,
        "new instance refused (EPERM): binding the host's"
    );
    let mut opts = MountOptions {
        flags: t.opts.flags | MsFlags::MS_BIND | MsFlags::MS_REC,
        propagation: t.opts.propagation.clone(),
        data: String::new(),
        ..*t.opts
    };
    if opts.flags.contains(MsFlags::MS_RDONLY) && mount_setattr_works() {
        opts.attr_set |= options::attr::RDONLY;
    }
    bind(root, &Target { opts: &opts, ..*t }, Path::new(host))
}

/// mount_setattr(2) exists (Linux 5.12+): probed once with an invalid fd.
pub(crate) fn mount_setattr_works() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| {
        // SAFETY: fd -1 with an empty path and no attributes only makes the
        // kernel validate its arguments; nothing is changed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                -1,
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                std::ptr::null::<u8>(),
                0usize,
            )
        };
        r == 0 || Errno::last() != Errno::ENOSYS
    })
}

/// Bind-mount host path `src` onto the destination; a second remount
/// applies ro/nosuid/nodev/noexec/atime, which a bind ignores.
pub(crate) fn bind(root: &RootDir, t: &Target<'_>, src: &Path) -> Result<(), RootfsError> {
    bind_or_attach(root, t, src, None)
}

/// [`bind`], or with `idmapped` (the mount's index) attach the idmapped
/// copy of `src` that `create` prepared (see `idmap.rs`) instead.
fn bind_or_attach(
    root: &RootDir,
    t: &Target<'_>,
    src: &Path,
    idmapped: Option<usize>,
) -> Result<(), RootfsError> {
    let st = nix::sys::stat::stat(src)
        .map_err(|e| t.err(format!("stat bind source {}", src.display()), e))?;
    let target = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        root.mkdir_all(t.rel)
    } else {
        root.ensure_file(t.rel)
    }
    .map_err(|e| t.err("create mount point", e))?;
    check_target(root, t, target.as_fd())?;
    let flags = MsFlags::MS_BIND | (t.opts.flags & MsFlags::MS_REC);
    match idmapped {
        Some(i) => super::idmap::attach(i, &target)
            .map_err(|e| t.err(format!("attach idmapped {}", src.display()), e))?,
        None => mount(
            Some(src),
            fd_path(target.as_fd()).as_str(),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|e| t.err(format!("bind {}", src.display()), e))?,
    }
    let per_mount = t
        .opts
        .flags
        .difference(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    let fd = if per_mount.is_empty() {
        None
    } else {
        let fd = reopen(root, t)?;
        remount_bind(fd.as_fd(), per_mount, t.opts.cleared)
            .map_err(|e| t.err("remount bind", e))?;
        Some(fd)
    };
    after_mount(root, t, fd)
}

/// Handle on the root of the mount just made at `t.rel` (the handle used to
/// mount refers to the covered directory, not the new mount).
fn reopen(root: &RootDir, t: &Target<'_>) -> Result<OwnedFd, RootfsError> {
    root.open_path(t.rel, false)
        .map_err(|e| t.err("open new mount", e))
}

/// `MS_BIND|MS_REMOUNT` with `flags` on the mount at `fd`, keeping the
/// flags it already has (nosuid, nodev, noexec, atime) unless the spec
/// cleared them: in a user namespace those are locked and dropping them
/// fails with EPERM.
pub(crate) fn remount_bind(
    fd: BorrowedFd<'_>,
    flags: MsFlags,
    cleared: MsFlags,
) -> Result<(), Errno> {
    let current = to_ms_flags(fstatvfs(fd)?.flags());
    remount(fd_path(fd).as_str(), flags, current, cleared)
}

/// [`remount_bind`] by path, for use after pivot when /proc may be absent.
pub(crate) fn remount_bind_path(
    path: &Path,
    flags: MsFlags,
    cleared: MsFlags,
) -> Result<(), Errno> {
    let current = to_ms_flags(statvfs(path)?.flags());
    remount(path, flags, current, cleared)
}

fn remount<P: ?Sized + nix::NixPath>(
    target: &P,
    flags: MsFlags,
    current: MsFlags,
    cleared: MsFlags,
) -> Result<(), Errno> {
    let mut flags = flags | current.difference(cleared);
    if flags.intersects(MsFlags::MS_NOATIME | MsFlags::MS_STRICTATIME) {
        flags.remove(MsFlags::MS_RELATIME);
    }
    mount(
        None::<&str>,
        target,
        None::<&str>,
        flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
        None::<&str>,
    )
}

/// statvfs flags as mount(2) flags.
fn to_ms_flags(f: FsFlags) -> MsFlags {
    let mut out = MsFlags::empty();
    for (s, m) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        // ST_NOSYMFOLLOW (Linux 5.10), absent from nix's `FsFlags`.
        (FsFlags::from_bits_retain(0x2000), options::MS_NOSYMFOLLOW),
    ] {
        if f.contains(s) {
            out |= m;
        }
    }
    out
}

/// Propagation options and recursive attributes, on the new mount.
fn after_mount(root: &RootDir, t: &Target<'_>, fd: Option<OwnedFd>) -> Result<(), RootfsError> {
    let o = t.opts;
    if o.propagation.is_empty() && o.attr_set == 0 && o.attr_clr == 0 {
        return Ok(());
    }
    let fd = match fd {
        Some(fd) => fd,
        None => reopen(root, t)?,
    };
    for &p in &o.propagation {
        mount(
            None::<&str>,
            fd_path(fd.as_fd()).as_str(),
            None::<&str>,
            p,
            None::<&str>,
        )
        .map_err(|e| t.err("set propagation", e))?;
    }
    if o.attr_set != 0 || o.attr_clr != 0 {
        let attr = libc::mount_attr {
            attr_set: o.attr_set,
            attr_clr: o.attr_clr,
            propagation: 0,
            userns_fd: 0,
        };
        mount_setattr(fd.as_fd(), true, &attr).map_err(|e| t.err("mount_setattr", e))?;
    }
    Ok(())
}

/// mount_setattr(2) on the mount at `fd` (Linux 5.12+), with AT_RECURSIVE
/// when `recursive`: the one wrapper for mount options and idmapped mounts.
pub(crate) fn mount_setattr(
    fd: BorrowedFd<'_>,
    recursive: bool,
    attr: &libc::mount_attr,
) -> Result<(), Errno> {
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: `attr` is a valid mount_attr (version 0) of the size passed,
    // the path is a NUL-terminated empty string used with AT_EMPTY_PATH.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(r).map(drop)
}
