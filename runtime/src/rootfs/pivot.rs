//! Switching the process into the rootfs.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, chroot, fchdir, pivot_root};

use super::RootfsError;

fn err(op: &str, e: Errno) -> RootfsError {
    RootfsError::sys("root.path", op, e)
}

fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    let fd = open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pivot_root(".", ".")` inside the rootfs: the old root ends up stacked
/// on the new one, where it is detached without needing a directory for it.
pub(crate) fn pivot_root_into(rootfs: &Path) -> Result<(), RootfsError> {
    let old = open_dir(Path::new("/")).map_err(|e| err("open /", e))?;
    let new = open_dir(rootfs).map_err(|e| err("open rootfs", e))?;
    fchdir(new.as_raw_fd()).map_err(|e| err("chdir rootfs", e))?;
    pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
    fchdir(old.as_raw_fd()).map_err(|e| err("chdir old root", e))?;
    // Slave first, so detaching the old root never propagates to the host.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| err("make old root rslave", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detach old root", e))?;
    chdir("/").map_err(|e| err("chdir /", e))
}

/// What `--no-pivot` does: move the rootfs mount onto / and chroot into it.
/// The host's mounts stay reachable under it for a process that can escape
/// a chroot, which is why this is opt-in.
pub(crate) fn move_root(rootfs: &Path) -> Result<(), RootfsError> {
    chdir(rootfs).map_err(|e| err("chdir rootfs", e))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| err("move rootfs to /", e))?;
    chroot(".").map_err(|e| err("chroot", e))?;
    chdir("/").map_err(|e| err("chdir /", e))
}

/// Without a mount namespace: only `chroot` into the rootfs (runc's
/// choice); nothing is mounted or moved, since every mount would be the
/// host's.
pub(crate) fn chroot_into(rootfs: &Path) -> Result<(), RootfsError> {
    chdir(rootfs).map_err(|e| err("chdir to rootfs", e))?;
    chroot(".").map_err(|e| err("chroot", e))?;
    chdir("/").map_err(|e| err("chdir /", e))
}
