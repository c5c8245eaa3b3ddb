//! Path resolution scoped to the rootfs.
//!
//! Every lookup of a container path goes through `openat2(RESOLVE_IN_ROOT)`
//! relative to an `O_PATH` handle on the rootfs, so `..` and symlinks
//! (absolute or relative) in the image are re-rooted at the rootfs and can
//! never reach a host path. Missing components are created one at a time with
//! `*at` calls on a directory handle that was itself resolved in the root.
//! On kernels without openat2 (before 5.6) libpathrs' userspace resolver does
//! the same job.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, mkdirat, Mode};
use nix::NixPath;

/// Set once openat2 turned out to be missing (ENOSYS), to skip retrying it.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// An `O_PATH` handle on the rootfs; all container paths are resolved under it.
pub(crate) struct RootDir {
    fd: OwnedFd,
    dev: u64,
    ino: u64,
}

/// Lexically normalise a container path into a relative path without `.`
/// or `..` (`..` cannot climb above the root), as runc does. Relative
/// destinations are taken relative to `/`.
pub(crate) fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// `/proc/self/fd/<fd>`: mounting onto this magic link targets exactly the
/// inode behind `fd`, whatever happens to the path afterwards.
pub(crate) fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and nothing
    // else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl RootDir {
    /// Open the rootfs (a trusted host path).
    pub(crate) fn open(path: &Path) -> Result<Self, Errno> {
        let fd = owned(openat(
            None,
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?);
        let st = fstat(fd.as_raw_fd())?;
        Ok(RootDir {
            fd,
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// True if `fd` is the rootfs directory itself.
    pub(crate) fn is_root(&self, fd: BorrowedFd<'_>) -> Result<bool, Errno> {
        let st = fstat(fd.as_raw_fd())?;
        Ok(st.st_dev == self.dev && st.st_ino == self.ino)
    }

    /// Resolve `rel` (already cleaned) inside the root to an `O_PATH` handle.
    /// Trailing symlinks are followed, but only within the root.
    pub(crate) fn open_path(&self, rel: &Path, want_dir: bool) -> Result<OwnedFd, Errno> {
        let rel: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let mut flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
        if want_dir {
            flags |= OFlag::O_DIRECTORY;
        }
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            match openat2_in_root(self.fd.as_fd(), rel, flags) {
                Err(Errno::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
                r => return r,
            }
        }
        self.open_path_userspace(rel, want_dir)
    }

    fn open_path_userspace(&self, rel: &Path, want_dir: bool) -> Result<OwnedFd, Errno> {
        let root = pathrs::Root::from_fd(self.fd.try_clone().map_err(io_errno)?);
        let handle = root.resolve(rel).map_err(|e| match e.kind() {
            pathrs::error::ErrorKind::OsError(Some(n)) => Errno::from_raw(n),
            pathrs::error::ErrorKind::SafetyViolation => Errno::EXDEV,
            _ => Errno::EINVAL,
        })?;
        let fd = OwnedFd::from(handle);
        if want_dir {
            let st = fstat(fd.as_raw_fd())?;
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                return Err(Errno::ENOTDIR);
            }
        }
        Ok(fd)
    }

    /// `mkdir -p` inside the root; returns an `O_PATH` handle on the directory.
    pub(crate) fn mkdir_all(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        match self.open_path(rel, true) {
            Err(Errno::ENOENT) => {}
            r => return r,
        }
        // Create the missing tail under the deepest existing ancestor
        // (usually the parent). That ancestor was resolved in the root, and
        // each new component is a single name made with mkdirat and opened
        // with O_NOFOLLOW, so nothing is looked up outside the root.
        let name = rel.file_name().ok_or(Errno::ENOENT)?;
        let parent = self.mkdir_all(rel.parent().unwrap_or(Path::new("")))?;
        match mkdirat(
            Some(parent.as_raw_fd()),
            name,
            Mode::from_bits_truncate(0o755),
        ) {
            Ok(()) => {}
            // Something is there after all (a symlink): resolve it in the root.
            Err(Errno::EEXIST) => return self.open_path(rel, true),
            Err(e) => return Err(e),
        }
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        openat(Some(parent.as_raw_fd()), name, flags, Mode::empty()).map(owned)
    }

    /// Split `rel` into a handle on its (created if missing) parent directory
    /// and its last component.
    pub(crate) fn parent<'p>(&self, rel: &'p Path) -> Result<(OwnedFd, &'p OsStr), Errno> {
        let name = rel.file_name().ok_or(Errno::EINVAL)?;
        let dir = self.mkdir_all(rel.parent().unwrap_or(Path::new("")))?;
        Ok((dir, name))
    }

    /// Return an `O_PATH` handle on the file at `rel`, creating an empty
    /// regular file (and its parents) if nothing is there. Used as the mount
    /// point of file bind mounts and bound devices.
    pub(crate) fn ensure_file(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        match self.open_path(rel, false) {
            Err(Errno::ENOENT) => {}
            r => return r,
        }
        let (dir, name) = self.parent(rel)?;
        // O_NOFOLLOW: a dangling symlink in the image must not make us
        // create its target. The new file's own handle is the mount point.
        match openat(
            Some(dir.as_raw_fd()),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => Ok(owned(fd)),
            Err(Errno::EEXIST) => self.open_path(rel, false),
            Err(e) => Err(e),
        }
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// openat2 with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS relative to `root`.
fn openat2_in_root(root: BorrowedFd<'_>, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    // struct open_how of linux/openat2.h (libc's is non-exhaustive).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: flags.bits() as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    // The kernel answers EAGAIN when a concurrent rename raced with a `..`
    // lookup; retrying a few times is what it asks for.
    for _ in 0..16 {
        let res = rel.with_nix_path(|p| {
            // SAFETY: `p` is a NUL-terminated path, `how` a valid open_how
            // whose size is passed along; the kernel only reads both.
            unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    root.as_raw_fd(),
                    p.as_ptr(),
                    &how as *const OpenHow,
                    std::mem::size_of::<OpenHow>(),
                )
            }
        })?;
        match Errno::result(res) {
            Ok(fd) => return Ok(owned(fd as RawFd)),
            Err(Errno::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::EAGAIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn real(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(fd_path(fd.as_fd())).expect("readlink")
    }

    #[test]
    fn clean_stays_below_root() {
        assert_eq!(clean(Path::new("/../a/./b/../c")), Path::new("a/c"));
        assert_eq!(clean(Path::new("rel/x")), Path::new("rel/x"));
        assert_eq!(clean(Path::new("/")), Path::new(""));
    }

    /// Both resolvers (openat2 and libpathrs' userspace fallback) keep
    /// absolute and `..` symlinks inside the root.
    #[test]
    fn symlinks_are_confined() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = std::fs::canonicalize(dir.path()).expect("canonicalize");
        let root_path = top.join("root");
        std::fs::create_dir_all(root_path.join("etc")).expect("mkdir");
        symlink("/etc", root_path.join("abs")).expect("symlink");
        symlink("../../../..", root_path.join("up")).expect("symlink");
        let root = RootDir::open(&root_path).expect("open root");
        for userspace in [false, true] {
            let open = |p: &str| {
                if userspace {
                    root.open_path_userspace(Path::new(p), true)
                } else {
                    root.open_path(Path::new(p), true)
                }
            };
            assert_eq!(real(&open("abs").expect("abs")), root_path.join("etc"));
            assert_eq!(real(&open("up").expect("up")), root_path);
            assert_eq!(
                real(&open("up/etc").expect("up/etc")),
                root_path.join("etc")
            );
        }
        // mkdir_all through a symlink creates inside the root.
        let made = root.mkdir_all(Path::new("up/new/dir")).expect("mkdir_all");
        assert_eq!(real(&made), root_path.join("new/dir"));
        assert!(!top.join("new").exists());
        let file = root.ensure_file(Path::new("abs/f")).expect("ensure_file");
        assert_eq!(real(&file), root_path.join("etc/f"));
    }
}
