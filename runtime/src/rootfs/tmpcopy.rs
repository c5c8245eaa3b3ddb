//! `tmpcopyup` (a runc extension podman uses for `--tmpfs`): the new tmpfs
//! starts with a copy of the directory it covers.
//!
//! The copy reads the covered directory through a handle opened before the
//! mount and writes through a handle on the new tmpfs; every entry is
//! addressed by name relative to those handles and never followed if it is
//! a symlink, so the image cannot redirect the copy.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fchmodat, fstatat, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, Gid, Uid};

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// A readable handle on the directory `at` (an `O_PATH` handle) refers to.
pub(crate) fn open_dir(at: RawFd) -> Result<OwnedFd, Errno> {
    let fd = openat(Some(at), ".", DIR_FLAGS, Mode::empty())?;
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_in(dir: RawFd, name: &std::ffi::CStr, flags: OFlag, mode: Mode) -> Result<OwnedFd, Errno> {
    let fd = openat(Some(dir), name, flags, mode)?;
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Copy the content of directory `src` into directory `dst`, keeping
/// modes and owners (the process umask is 0 during prepare).
pub(crate) fn copy_tree(src: OwnedFd, dst: &OwnedFd) -> Result<(), Errno> {
    let mut dir = Dir::from_fd(src.into_raw_fd())?;
    let s = dir.as_raw_fd();
    let d = dst.as_raw_fd();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let st = fstatat(Some(s), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
        let kind = st.st_mode & libc::S_IFMT;
        match kind {
            libc::S_IFDIR => {
                mkdirat(Some(d), name, mode)?;
                let sub_dst = open_in(d, name, DIR_FLAGS, Mode::empty())?;
                copy_tree(open_in(s, name, DIR_FLAGS, Mode::empty())?, &sub_dst)?;
            }
            libc::S_IFREG => {
                let from = open_in(
                    s,
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                let flags = OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC;
                let to = open_in(d, name, flags, mode)?;
                std::io::copy(&mut File::from(from), &mut File::from(to))
                    .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
            }
            libc::S_IFLNK => {
                let target = readlinkat(Some(s), name)?;
                symlinkat(target.as_os_str(), Some(d), name)?;
            }
            _ => {
                let sflag = SFlag::from_bits_truncate(kind);
                mknodat(Some(d), name, sflag, mode, st.st_rdev)?;
            }
        }
        fchownat(
            Some(d),
            name,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        if kind != libc::S_IFLNK && mode.bits() & 0o7000 != 0 {
            // chown clears set-id bits: put them back.
            fchmodat(Some(d), name, mode, FchmodatFlags::FollowSymlink)?;
        }
    }
    Ok(())
}
