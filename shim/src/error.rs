//! The shim's errors and their mapping to ttrpc status codes.

use std::path::Path;

use containerd_shim::protos::ttrpc::{self, Code};

/// Everything that can go wrong in the shim; each message names the
/// container, process, file or option concerned.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// A runtime option could not be decoded or is not supported.
    #[error("{0}")]
    Options(String),
    /// A file or device operation failed.
    #[error("{path}: {err}")]
    Io {
        /// The file concerned.
        path: String,
        /// What the kernel said.
        err: std::io::Error,
    },
    /// A `vessel` command failed; the message is vessel's own.
    #[error("vessel {cmd}: {msg}")]
    Vessel {
        /// The subcommand and container, e.g. `create web`.
        cmd: String,
        /// vessel's error message (from its JSON log or stderr).
        msg: String,
    },
    /// The request names a container or exec the shim does not know.
    #[error("{0} not found")]
    NotFound(String),
    /// The request names something that already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The request does not fit the process's state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The shim does not implement the request.
    #[error("{0}")]
    Unimplemented(String),
}

impl ShimError {
    /// An IO error on `path`.
    pub fn io(path: &Path, err: std::io::Error) -> ShimError {
        ShimError::Io {
            path: path.display().to_string(),
            err,
        }
    }

    fn code(&self) -> Code {
        match self {
            ShimError::NotFound(_) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ShimError::InvalidArgument(_) | ShimError::Options(_) => Code::INVALID_ARGUMENT,
            ShimError::Unimplemented(_) => Code::UNIMPLEMENTED,
            ShimError::Io { .. } | ShimError::Vessel { .. } => Code::UNKNOWN,
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}
