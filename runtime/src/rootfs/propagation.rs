//! Mount propagation: keeping the container's mounts from reaching the host.
//!
//! A new mount namespace starts as a copy of its parent's, and each copied
//! mount stays a peer of the original when that one is shared (systemd makes
//! the host's `/` shared). Anything mounted or moved under such a peer
//! propagates back into the host. So before the first mount, `/` is made
//! rslave (or rprivate when the spec asks for private): host events still
//! reach the container, none go the other way. The requested
//! `rootfsPropagation` is applied only to the container's own root, after
//! `pivot_root` or the move, when `/` no longer has a host peer.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use super::RootfsError;

const FIELD: &str = "linux.rootfsPropagation";

/// What `/` of the new namespace is made before anything is mounted:
/// rprivate when the spec asks for private or rprivate (a non-recursive
/// private would leave the submounts peers of the host's), rslave otherwise
/// — including for shared and unbindable, which are applied in `finalize`.
pub(crate) fn initial_root_flags(requested: Option<MsFlags>) -> MsFlags {
    match requested {
        Some(p) if p.contains(MsFlags::MS_PRIVATE) => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    }
}

/// Cut the namespace off from the host's peer groups and bind the rootfs
/// onto itself as a private mount, ready for `pivot_root` or `MS_MOVE`.
pub(crate) fn isolate_and_bind_root(
    rootfs: &Path,
    requested: Option<MsFlags>,
) -> Result<(), RootfsError> {
    let none = None::<&str>;
    mount(none, "/", none, initial_root_flags(requested), none)
        .map_err(|e| RootfsError::sys(FIELD, "make / rslave before mounting", e))?;
    // The rootfs' parent mount private: the self-bind below then neither
    // propagates anywhere nor becomes a peer of anything, and pivot_root
    // and MS_MOVE accept it (both refuse a shared parent).
    let parent = mount_point_of(rootfs)?;
    mount(none, &parent, none, MsFlags::MS_PRIVATE, none).map_err(|e| {
        RootfsError::sys(
            "root.path",
            format!("make the rootfs' parent mount {} private", parent.display()),
            e,
        )
    })?;
    mount(
        Some(rootfs),
        rootfs,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(|e| RootfsError::sys("root.path", "bind rootfs onto itself", e))
}

/// After the pivot or move: the requested propagation on the container's
/// own `/`, which is no longer a peer of any host mount.
pub(crate) fn apply_final(requested: Option<MsFlags>) -> Result<(), RootfsError> {
    if let Some(p) = requested {
        let none = None::<&str>;
        mount(none, "/", none, p, none)
            .map_err(|e| RootfsError::sys(FIELD, "set propagation of /", e))?;
    }
    Ok(())
}

/// The mount point of the mount that holds `path` (an absolute, canonical
/// path): the longest mount point in /proc/self/mountinfo that is a prefix.
fn mount_point_of(path: &Path) -> Result<PathBuf, RootfsError> {
    let text = std::fs::read("/proc/self/mountinfo").map_err(|e| {
        RootfsError::sys(
            "root.path",
            "read /proc/self/mountinfo",
            nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })?;
    Ok(longest_prefix(&text, path))
}

fn longest_prefix(mountinfo: &[u8], path: &Path) -> PathBuf {
    mountinfo
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(unescape)
        .filter(|p| path.starts_with(p))
        .max_by_key(|p| p.components().count())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let oct = field.get(i + 1..i + 4);
        match oct {
            Some(d) if field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) => {
                out.push(d.iter().fold(0u8, |a, c| a.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            _ => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_holding_mount() {
        let mi = b"22 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n\
                   30 22 0:5 / /tmp rw shared:2 - tmpfs tmpfs rw\n\
                   31 30 0:6 / /tmp/a\\040b rw - tmpfs tmpfs rw\n\
                   32 22 0:7 / /tmpx rw - tmpfs tmpfs rw\n";
        assert_eq!(
            longest_prefix(mi, Path::new("/tmp/x/rootfs")),
            Path::new("/tmp")
        );
        assert_eq!(
            longest_prefix(mi, Path::new("/tmp/a b/r")),
            Path::new("/tmp/a b")
        );
        assert_eq!(longest_prefix(mi, Path::new("/tmpy/r")), Path::new("/"));
        assert_eq!(longest_prefix(mi, Path::new("/tmpx")), Path::new("/tmpx"));
    }

    #[test]
    fn shared_and_unbindable_wait_for_finalize() {
        let f = |n: &str| initial_root_flags(super::super::options::propagation_flag(n));
        let rslave = MsFlags::MS_SLAVE | MsFlags::MS_REC;
        let rprivate = MsFlags::MS_PRIVATE | MsFlags::MS_REC;
        for n in [
            "shared",
            "rshared",
            "slave",
            "rslave",
            "unbindable",
            "runbindable",
        ] {
            assert_eq!(f(n), rslave, "{n}");
        }
        assert_eq!(f("private"), rprivate);
        assert_eq!(f("rprivate"), rprivate);
        assert_eq!(initial_root_flags(None), rslave);
    }
}
