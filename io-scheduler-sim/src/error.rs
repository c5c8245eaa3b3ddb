//! Library error type.

use std::path::PathBuf;

/// Errors raised while loading configuration or running a simulation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A TOML document did not parse.
    #[error("{path}")]
    Toml {
        /// The file concerned.
        path: PathBuf,
        /// The parser's message.
        source: toml::de::Error,
    },
    /// A JSON document did not parse.
    #[error("{path}")]
    Json {
        /// The file concerned.
        path: PathBuf,
        /// The parser's message.
        source: serde_json::Error,
    },
    /// A field holds a value the simulator cannot use.
    #[error("invalid value for `{field}`: {msg}")]
    Invalid {
        /// The offending field, as written in the job or disk file.
        field: String,
        /// What is wrong with it.
        msg: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            msg: msg.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
