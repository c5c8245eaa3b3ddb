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

use std::path::Path;

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
///
/// After the recursive rslave (or rprivate) of `/`, no mount of this
/// namespace is shared or unbindable (making a mount a slave clears both),
/// so the rootfs' parent mount needs no change of its own: pivot_root and
/// MS_MOVE only refuse a shared parent, and a bind under a mount that is
/// not shared propagates nowhere. Finding that parent would cost a read of
/// /proc/self/mountinfo, which grows with the host's mount table.
pub(crate) fn isolate_and_bind_root(
    rootfs: &Path,
    requested: Option<MsFlags>,
) -> Result<(), RootfsError> {
    let none = None::<&str>;
    mount(none, "/", none, initial_root_flags(requested), none)
        .map_err(|e| RootfsError::sys(FIELD, "make / rslave before mounting", e))?;
    mount(
        Some(rootfs),
        rootfs,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(|e| RootfsError::sys("root.path", "bind rootfs onto itself", e))?;
    // The bind of a slave is a slave of the same master: the container's
    // root is made private, a peer or slave of nothing on the host.
    mount(none, rootfs, none, MsFlags::MS_PRIVATE, none)
        .map_err(|e| RootfsError::sys("root.path", "make the rootfs bind private", e))
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

#[cfg(test)]
mod tests {
    use super::*;

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
