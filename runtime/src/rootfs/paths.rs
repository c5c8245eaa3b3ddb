//! After pivot: masked paths, read-only paths, the read-only root and a
//! read-only /dev. All paths are now container paths under the new root.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

use super::mounts::remount_bind_path;
use super::RootfsError;

/// Hide `path`: /dev/null over a file, an empty read-only tmpfs over a
/// directory. A path that does not exist needs no hiding.
pub(crate) fn mask(field: &str, path: &Path) -> Result<(), RootfsError> {
    match mount(
        Some("/dev/null"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::ENOTDIR) => mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("size=0k,mode=755"),
        )
        .map_err(|e| RootfsError::sys(field, "mount read-only tmpfs", e)),
        Err(e) => Err(RootfsError::sys(field, "bind /dev/null", e)),
    }
}

/// Make `path` read-only with a recursive bind onto itself and a remount;
/// a path that does not exist is skipped.
pub(crate) fn readonly(field: &str, path: &Path) -> Result<(), RootfsError> {
    match mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(RootfsError::sys(field, "bind onto itself", e)),
    }
    remount_ro(field, path)
}

/// Remount the mount at `path` read-only, keeping its other flags.
pub(crate) fn remount_ro(field: &str, path: &Path) -> Result<(), RootfsError> {
    remount_bind_path(path, MsFlags::MS_RDONLY, MsFlags::empty())
        .map_err(|e| RootfsError::sys(field, "remount read-only", e))
}
