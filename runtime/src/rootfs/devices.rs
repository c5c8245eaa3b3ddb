//! Device nodes and the standard /dev symlinks.
//!
//! Nodes are made with mknodat in a `dev` directory handle resolved inside
//! the root. In a new user namespace mknod is not allowed, so the host's
//! node is bind-mounted onto an empty file instead (also the fallback when
//! mknod answers EPERM).

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Spec};

use super::resolve::{clean, fd_path, RootDir};
use super::RootfsError;

/// The devices every container gets: (path, major, minor), mode 0666.
const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Whether `path` is one of the devices every container gets anyway.
pub(crate) fn is_default_device(path: &Path) -> bool {
    DEFAULT_DEVICES.iter().any(|(p, _, _)| path == Path::new(p))
}

/// Symlinks in /dev: (name, target).
const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// A device to create, from the defaults or `linux.devices`.
struct Dev<'a> {
    field: String,
    path: &'a Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// The name of `linux.devices[i]` in errors.
pub(crate) fn field(i: usize, d: &LinuxDevice) -> String {
    format!("linux.devices[{i}] ({})", d.path().display())
}

/// The node type of a spec device, or None for `a` (not a node).
pub(crate) fn kind(t: LinuxDeviceType) -> Option<SFlag> {
    match t {
        LinuxDeviceType::C | LinuxDeviceType::U => Some(SFlag::S_IFCHR),
        LinuxDeviceType::B => Some(SFlag::S_IFBLK),
        LinuxDeviceType::P => Some(SFlag::S_IFIFO),
        LinuxDeviceType::A => None,
    }
}

/// True unless the spec bind-mounts /dev from elsewhere, in which case the
/// devices and symlinks there are the source's business (as in runc).
pub(crate) fn needs_dev_setup(spec: &Spec) -> bool {
    !spec.mounts().iter().flatten().any(|m| {
        clean(m.destination()) == Path::new("dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"))
    })
}

/// Create the default devices, `linux.devices`, /dev symlinks and the
/// /dev/ptmx link to the devpts instance.
pub(crate) fn setup(root: &RootDir, spec: &Spec, user_ns: bool) -> Result<(), RootfsError> {
    // One handle on /dev serves every node directly in it.
    let dev = root
        .mkdir_all(Path::new("dev"))
        .map_err(|e| RootfsError::sys("/dev", "open", e))?;
    let spec_devs = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_deref())
        .unwrap_or(&[]);
    for &(path, major, minor) in DEFAULT_DEVICES {
        if spec_devs.iter().any(|d| d.path() == Path::new(path)) {
            continue;
        }
        create(
            root,
            &dev,
            &Dev {
                field: format!("default device {path}"),
                path: Path::new(path),
                kind: SFlag::S_IFCHR,
                major,
                minor,
                mode: 0o666,
                uid: 0,
                gid: 0,
            },
            user_ns,
        )?;
    }
    for (i, d) in spec_devs.iter().enumerate() {
        let field = field(i, d);
        let Some(kind) = kind(d.typ()) else {
            return Err(RootfsError::invalid(
                field,
                "type \"a\" is not a device node",
            ));
        };
        let d = Dev {
            path: d.path(),
            kind,
            major: d.major().max(0) as u64,
            minor: d.minor().max(0) as u64,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
            field,
        };
        create(root, &dev, &d, user_ns)?;
    }
    symlinks(&dev)
}

fn create(root: &RootDir, dev: &OwnedFd, d: &Dev<'_>, user_ns: bool) -> Result<(), RootfsError> {
    let rel = clean(d.path);
    if !rel.starts_with("dev") || rel == Path::new("dev") {
        return Err(RootfsError::invalid(
            &d.field,
            "device path must be under /dev",
        ));
    }
    // The node's directory: the shared /dev handle, or resolved in the root.
    let owned = match rel.parent() {
        Some(p) if p == Path::new("dev") => None,
        _ => Some(
            root.mkdir_all(rel.parent().unwrap_or(Path::new("dev")))
                .map_err(|e| RootfsError::sys(&d.field, "create parent directory", e))?,
        ),
    };
    let dir = owned.as_ref().unwrap_or(dev).as_raw_fd();
    let name = rel.file_name().unwrap_or_default();
    if !user_ns {
        match make_node(dir, name, d) {
            Err(Errno::EPERM) => {}
            r => return r.map_err(|e| RootfsError::sys(&d.field, "mknod", e)),
        }
    }
    bind_host(dir, name, d)
}

/// Run `make` to create `name` in `dir`; if something is already there
/// (an image may ship its own /dev entries, even symlinks), replace it.
fn replace<T>(dir: RawFd, name: &OsStr, make: impl Fn() -> Result<T, Errno>) -> Result<T, Errno> {
    match make() {
        Err(Errno::EEXIST) => {
            unlinkat(Some(dir), name, UnlinkatFlags::NoRemoveDir)?;
            make()
        }
        r => r,
    }
}

fn make_node(dir: RawFd, name: &OsStr, d: &Dev<'_>) -> Result<(), Errno> {
    let dev = makedev(d.major, d.minor);
    // The process umask is 0 during prepare, so `mode` is applied as given.
    let mode = Mode::from_bits_truncate(d.mode as libc::mode_t);
    replace(dir, name, || mknodat(Some(dir), name, d.kind, mode, dev))?;
    if d.uid != 0 || d.gid != 0 {
        fchownat(
            Some(dir),
            name,
            Some(Uid::from_raw(d.uid)),
            Some(Gid::from_raw(d.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
    }
    Ok(())
}

/// Bind the host's node at the same path onto a fresh empty file.
fn bind_host(dir: RawFd, name: &OsStr, d: &Dev<'_>) -> Result<(), RootfsError> {
    let flags =
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = replace(dir, name, || {
        openat(Some(dir), name, flags, Mode::from_bits_truncate(0o644))
    })
    .map_err(|e| RootfsError::sys(&d.field, "create bind target", e))?;
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    let target = unsafe { OwnedFd::from_raw_fd(fd) };
    mount(
        Some(d.path),
        fd_path(target.as_fd()).as_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        RootfsError::sys(
            &d.field,
            format!("bind {} from the host", d.path.display()),
            e,
        )
    })
}

fn symlinks(dev: &OwnedFd) -> Result<(), RootfsError> {
    let dirfd = Some(dev.as_raw_fd());
    let link = |target: &str, name: &str| match symlinkat(target, dirfd, name) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(RootfsError::sys(
            format!("/dev/{name}"),
            format!("symlink to {target}"),
            e,
        )),
    };
    for &(name, target) in DEV_SYMLINKS {
        link(target, name)?;
    }
    if Path::new("/proc/kcore").exists() {
        link("/proc/kcore", "core")?;
    }
    // /dev/ptmx must be the devpts instance's multiplexer.
    match unlinkat(dirfd, "ptmx", UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(RootfsError::sys("/dev/ptmx", "unlink", e)),
    }
    link("pts/ptmx", "ptmx")
}

/// Bind the terminal's pty slave onto /dev/console (after pivot).
pub(crate) fn mount_console(slave: &Path) -> Result<(), RootfsError> {
    let err = |op: &str, e| RootfsError::sys("process.terminal", op, e);
    // An empty file to bind onto, unless the image has an entry there; an
    // existing node is never opened (that would open the device).
    match nix::fcntl::open(
        "/dev/console",
        OFlag::O_CREAT
            | OFlag::O_EXCL
            | OFlag::O_WRONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    ) {
        // SAFETY: `fd` was just returned by open and is owned by nobody else.
        Ok(fd) => drop(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(Errno::EEXIST) => {}
        Err(e) => return Err(err("create /dev/console", e)),
    }
    mount(
        Some(slave),
        "/dev/console",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| err(&format!("bind {} onto /dev/console", slave.display()), e))
}
