//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in vm mode, each naming the file, device or
/// field involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on a named path or object failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file or object.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A frame announced a payload larger than the protocol allows.
    #[error("agent protocol: frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// Maximum accepted length.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("agent protocol: truncated frame: expected {expected} bytes, got {got}")]
    TruncatedFrame {
        /// Bytes the frame header announced (header included).
        expected: usize,
        /// Bytes actually available.
        got: usize,
    },
    /// The peer speaks another protocol version.
    #[error("agent protocol: version mismatch: this side speaks version {ours}, the peer sent version {theirs}")]
    VersionMismatch {
        /// Version of this side.
        ours: u16,
        /// Version found in the peer's frame.
        theirs: u16,
    },
    /// A frame carried an unknown kind byte.
    #[error("agent protocol: unknown frame kind {0}")]
    UnknownFrameKind(u8),
    /// A control payload was not valid JSON for a message.
    #[error("agent protocol: invalid control message: {0}")]
    BadMessage(#[source] serde_json::Error),
    /// The peer sent a message that does not fit the conversation.
    #[error("agent protocol: unexpected message: {0}")]
    UnexpectedMessage(String),
    /// The guest agent reported an error.
    #[error("guest agent: {0}")]
    Agent(String),
    /// The byte stream to the peer was closed.
    #[error("agent protocol: connection closed by the peer")]
    Closed,
    /// No guest kernel was found.
    #[error(
        "no guest kernel found (searched {searched}); install Debian's linux-image-cloud-amd64"
    )]
    KernelNotFound {
        /// Where it was looked for.
        searched: String,
    },
    /// A kernel module was neither a module nor built into the kernel.
    #[error("kernel module {module} not found in {}/modules.dep nor modules.builtin", dir.display())]
    ModuleNotFound {
        /// Module name.
        module: String,
        /// The kernel's module directory.
        dir: PathBuf,
    },
    /// A program the crate needs is not installed.
    #[error("{program} not found in PATH; install {package}")]
    MissingProgram {
        /// Program name.
        program: String,
        /// Debian package providing it.
        package: String,
    },
    /// An external program exited with an error.
    #[error("{program} failed ({status}): {stderr}")]
    CommandFailed {
        /// Program and main arguments.
        program: String,
        /// Exit status as text.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {seconds:.1}s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long was waited.
        seconds: f64,
    },
    /// A configuration value is invalid.
    #[error("invalid vm configuration: {0}")]
    InvalidConfig(String),
}

impl Error {
    /// Wraps an I/O error with a description naming the object.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds context to `io::Result`s.
pub(crate) trait IoContext<T> {
    /// Converts the error into [`Error::Io`] with the context produced by `f`.
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}
