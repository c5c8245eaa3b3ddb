//! Protection of the host's vessel binary (CVE-2019-5736). A container
//! process that reaches a vessel process through /proc/<pid>/exe must not be
//! able to write the binary. vessel re-executes itself from a detached,
//! read-only bind mount of its own file (open_tree + mount_setattr +
//! execveat): /proc/<pid>/exe then resolves through a mount that refuses
//! writes (EROFS), and the mount belongs to no namespace the container could
//! remount. No copy of the binary is made. Where that cannot be done (no
//! CAP_SYS_ADMIN, kernels before 5.12), vessel falls back to running from a
//! sealed memfd copy (pentacle).

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::OsStringExt;

const OPEN_TREE_CLONE: u32 = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;

/// Whether the running binary can be written through /proc/self/exe: false
/// when it lives on a read-only mount (our re-exec, or an installation on a
/// read-only /usr) or in a sealed memfd.
pub fn is_protected() -> bool {
    let ro = nix::sys::statvfs::statvfs("/proc/self/exe")
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    ro || pentacle::is_sealed()
}

/// Re-executes the current process from a protected copy unless it already
/// runs from one. Returns only if no re-exec was needed, or with an error.
pub fn ensure_protected() -> io::Result<()> {
    if is_protected() {
        return Ok(());
    }
    let err = exec_from_readonly_mount();
    tracing::debug!("read-only re-exec unavailable ({err}); using a sealed memfd copy");
    pentacle::ensure_sealed()
}

fn cstrings(v: impl Iterator<Item = OsString>) -> io::Result<Vec<CString>> {
    v.map(|s| CString::new(s.into_vec()).map_err(io::Error::other))
        .collect()
}

/// open_tree(OPEN_TREE_CLONE) of our own file, made read-only, then
/// execveat on it. Returns only on failure.
fn exec_from_readonly_mount() -> io::Error {
    let path = c"/proc/self/exe";
    // SAFETY: open_tree reads the NUL-terminated path and returns a new
    // descriptor (or -1); no memory of ours is written.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as u32,
        )
    };
    if fd < 0 {
        return io::Error::last_os_error();
    }
    let fd = fd as i32;
    let attr = libc::mount_attr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr` (valid, sized as passed) and the
    // empty path; `fd` is the detached mount we just created.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: closing the descriptor we own.
        unsafe { libc::close(fd) };
        return e;
    }
    let (argv, envp) = match (
        cstrings(std::env::args_os()),
        cstrings(std::env::vars_os().map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            kv
        })),
    ) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: argv and envp are NUL-terminated arrays of valid C strings that
    // outlive the call; on success the process image is replaced.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv_p.as_ptr(),
            envp_p.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    let e = io::Error::last_os_error();
    // SAFETY: exec failed; close the descriptor we own.
    unsafe { libc::close(fd) };
    e
}
