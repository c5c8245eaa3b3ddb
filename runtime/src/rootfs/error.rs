//! The rootfs error type: every variant names the spec field it concerns.

use nix::errno::Errno;
use thiserror::Error;

/// An error while validating or setting up the container's root filesystem.
///
/// `field` names the spec entry, e.g. `mounts[3] (destination /proc)` or
/// `linux.maskedPaths[1] (/proc/kcore)`, so a user can find it in config.json.
#[derive(Debug, Error)]
pub enum RootfsError {
    /// A system call failed.
    #[error("{field}: {op}: {}", .errno.desc())]
    Sys {
        /// The spec field being applied.
        field: String,
        /// What was being done, e.g. `mount proc` or `mknod /dev/null`.
        op: String,
        /// The errno the kernel returned.
        errno: Errno,
    },
    /// The spec asks for something invalid or unsupported.
    #[error("{field}: {msg}")]
    Invalid {
        /// The spec field at fault.
        field: String,
        /// Why it is rejected.
        msg: String,
    },
}

impl RootfsError {
    /// The errno behind a failed system call, if this is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            RootfsError::Sys { errno, .. } => Some(*errno),
            RootfsError::Invalid { .. } => None,
        }
    }

    pub(crate) fn sys(field: impl Into<String>, op: impl Into<String>, errno: Errno) -> Self {
        RootfsError::Sys {
            field: field.into(),
            op: op.into(),
            errno,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, msg: impl Into<String>) -> Self {
        RootfsError::Invalid {
            field: field.into(),
            msg: msg.into(),
        }
    }
}
