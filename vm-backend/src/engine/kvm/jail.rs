//! Confining the monitor once everything it needs is open, as Firecracker's
//! jailer does before exec: a mount namespace of its own whose root is an
//! empty read-only tmpfs (no host file can be reached by path any more),
//! and an unprivileged uid. Capabilities and seccomp follow in
//! [`super::seccomp`].
//!
//! By the time this runs, /dev/kvm, guest memory, the kernel and
//! initramfs, the block images, the taps, the console and log files and
//! the agent's listening socket are all open descriptors, and none of them
//! checks the caller's uid again.

use std::ffi::CString;
use std::path::Path;

use super::KvmError;

/// The uid and gid the monitor runs as: `nobody` (65534), which owns no
/// file the monitor could reach and is not root in any namespace.
pub const UNPRIVILEGED_ID: u32 = 65534;

/// What [`confine`] did, for the VMM log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confinement {
    /// Empty root and unprivileged uid.
    Full,
    /// Not root, so neither a mount namespace nor a uid change is possible
    /// (a rootless VMM already has no privilege to drop).
    Unprivileged,
}

fn sys(what: &str, rc: libc::c_int) -> Result<(), KvmError> {
    if rc != 0 {
        return Err(KvmError::Io(
            format!("confining the monitor: {what}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn cstr(p: &Path) -> Result<CString, KvmError> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| KvmError::Device(format!("path {} holds a NUL byte", p.display())))
}

/// Moves the calling process (before it starts threads) into a mount
/// namespace whose root is an empty read-only tmpfs mounted over
/// `scratch_dir` (a directory that exists; the host's view of it does not
/// change), empties the capability bounding set and switches to
/// [`UNPRIVILEGED_ID`], which leaves no capability.
pub fn confine(scratch_dir: &Path) -> Result<Confinement, KvmError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(Confinement::Unprivileged);
    }
    let dir = cstr(scratch_dir)?;
    let tmpfs = CString::new("tmpfs").expect("no NUL");
    let root = CString::new("/").expect("no NUL");
    let dot = CString::new(".").expect("no NUL");
    let opts = CString::new("size=4k,mode=0555").expect("no NUL");
    // SAFETY: every pointer below is a valid NUL-terminated string that
    // outlives the call, or null where the call allows it; the calls only
    // affect this process's namespaces, root and credentials.
    unsafe {
        sys("unshare(CLONE_NEWNS)", libc::unshare(libc::CLONE_NEWNS))?;
        // Nothing below may propagate to the host's mount table.
        sys(
            "making / private",
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
        )?;
        sys(
            "mounting the empty root",
            libc::mount(
                tmpfs.as_ptr(),
                dir.as_ptr(),
                tmpfs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                opts.as_ptr().cast(),
            ),
        )?;
        sys("chdir to the empty root", libc::chdir(dir.as_ptr()))?;
        // pivot_root(".", "."): the old root ends up on top of the new
        // one, and detaching it leaves only the empty tmpfs.
        sys(
            "pivot_root",
            libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as libc::c_int,
        )?;
        sys(
            "detaching the host's root",
            libc::umount2(dot.as_ptr(), libc::MNT_DETACH),
        )?;
        sys("chdir /", libc::chdir(root.as_ptr()))?;
        sys(
            "making the empty root read-only",
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC,
                std::ptr::null(),
            ),
        )?;
    }
    // The bounding set goes while CAP_SETPCAP is still effective; the uid
    // change below then clears the other sets (no PR_SET_KEEPCAPS).
    for cap in caps::all() {
        caps::drop(None, caps::CapSet::Bounding, cap)
            .map_err(|e| KvmError::Device(format!("dropping {cap} from the bounding set: {e}")))?;
    }
    // SAFETY: as above; the calls change only this process's credentials.
    unsafe {
        sys("setgroups", libc::setgroups(0, std::ptr::null()))?;
        sys(
            "setresgid",
            libc::setresgid(UNPRIVILEGED_ID, UNPRIVILEGED_ID, UNPRIVILEGED_ID),
        )?;
        sys(
            "setresuid",
            libc::setresuid(UNPRIVILEGED_ID, UNPRIVILEGED_ID, UNPRIVILEGED_ID),
        )?;
    }
    Ok(Confinement::Full)
}
