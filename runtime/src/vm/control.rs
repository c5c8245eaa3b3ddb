//! The control socket of a vm-mode container: how `vessel start`, `kill`,
//! `exec` and `ps` reach the supervisor that holds the VM and its agent
//! connection. One JSON request line, one JSON reply line; after a
//! successful `exec` the connection carries the agent's frames of that one
//! process (stdin and resizes from the client, output and exit to it).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::Process;
use serde::{Deserialize, Serialize};

/// File name of the control socket in the container's state directory.
pub const CONTROL_SOCKET: &str = "vm.sock";

/// The control socket of the container whose state directory is `dir`.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(CONTROL_SOCKET)
}

/// A request to the supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Start the created workload.
    Start,
    /// Signal the workload, or every process of the container.
    Signal {
        /// Signal number.
        signal: i32,
        /// All processes.
        all: bool,
    },
    /// Run a process in the container; the connection then carries its
    /// frames.
    Exec {
        /// The process.
        process: Box<Process>,
    },
    /// List the container's processes.
    Ps {
        /// `table` or `json`.
        format: String,
    },
    /// Create a container of the VM's pod in the guest (from a member's
    /// relay); like `exec`, the connection then carries its frames.
    CreateMember {
        /// The member as the guest creates it (the supervisor gives its id).
        run: Box<vessel_vm::agent::RunProcess>,
        /// The container whose namespaces it joins.
        sandbox: String,
        /// Which of them, as config.json names them.
        join: Vec<String>,
    },
    /// `request` (start, signal, exec, ps) is about the pod's member
    /// `container` (forwarded by its relay).
    Member {
        /// The member's container id.
        container: String,
        /// The request.
        request: Box<Request>,
    },
    /// Delete the pod's member `container` in the guest.
    DeleteMember {
        /// The member's container id.
        container: String,
    },
}

/// The supervisor's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    /// Why the request failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `exec`: the agent's id of the process (its frames carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// For `exec`: the process's pid in the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// For `ps`: what the guest printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl Reply {
    /// A failure.
    pub fn error(msg: impl std::fmt::Display) -> Reply {
        Reply {
            error: Some(msg.to_string()),
            ..Reply::default()
        }
    }
}

/// Why a request to the supervisor failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens on the control socket.
    #[error("the VM supervisor is not reachable at {}: {source}", .path.display())]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Encoding the request.
    #[error("encoding the request to the VM supervisor: {0}")]
    Encode(#[source] serde_json::Error),
    /// Writing the request, or setting the socket's timeout.
    #[error("sending to the VM supervisor: {0}")]
    Send(#[source] std::io::Error),
    /// No reply line (closed, or the timeout passed).
    #[error("waiting for the VM supervisor: {0}")]
    Wait(#[source] std::io::Error),
    /// The reply line is not a [`Reply`].
    #[error("bad reply from the VM supervisor: {0}")]
    BadReply(#[source] serde_json::Error),
    /// The supervisor (or the guest behind it) refused: its message.
    #[error("{0}")]
    Refused(String),
}

/// Sends `req` to the supervisor of the container in `dir` and returns its
/// reply and the connection (for `exec`). `timeout` bounds the wait for
/// the reply (None: no bound).
pub fn request(
    dir: &Path,
    req: &Request,
    timeout: Option<Duration>,
) -> Result<(Reply, UnixStream), ControlError> {
    let path = socket_path(dir);
    let mut conn =
        UnixStream::connect(&path).map_err(|source| ControlError::Unreachable { path, source })?;
    let mut line = serde_json::to_vec(req).map_err(ControlError::Encode)?;
    line.push(b'\n');
    conn.write_all(&line).map_err(ControlError::Send)?;
    conn.set_read_timeout(timeout).map_err(ControlError::Send)?;
    let reply = read_line(&conn).map_err(ControlError::Wait)?;
    conn.set_read_timeout(None).map_err(ControlError::Wait)?;
    let reply: Reply = serde_json::from_slice(&reply).map_err(ControlError::BadReply)?;
    match reply.error {
        Some(e) => Err(ControlError::Refused(e)),
        None => Ok((reply, conn)),
    }
}

/// Reads a client's request; a line that is not one is answered "bad
/// request" here, and `None` returned.
pub fn read_request(conn: &UnixStream) -> Option<Request> {
    let req = read_line(conn)
        .map_err(|e| e.to_string())
        .and_then(|l| serde_json::from_slice::<Request>(&l).map_err(|e| e.to_string()));
    match req {
        Ok(r) => Some(r),
        Err(e) => {
            let _ = write_reply(conn, &Reply::error(format!("bad request: {e}")));
            None
        }
    }
}

/// Reads one line byte by byte, so nothing after it (frames) is consumed.
pub fn read_line(conn: &UnixStream) -> std::io::Result<Vec<u8>> {
    let mut reader = BufReader::with_capacity(1, conn);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    line.pop();
    Ok(line)
}

/// Writes one JSON reply line.
pub fn write_reply(mut conn: &UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    conn.write_all(&line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_json_is_tagged() {
        let v = serde_json::to_value(Request::Signal {
            signal: 15,
            all: false,
        })
        .unwrap();
        assert_eq!(v["op"], "signal");
        let r: Request = serde_json::from_str(r#"{"op":"start"}"#).unwrap();
        assert!(matches!(r, Request::Start));
    }

    #[test]
    fn read_line_leaves_the_rest() {
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(b"{\"id\":3}\nREST").unwrap();
        assert_eq!(read_line(&a).unwrap(), b"{\"id\":3}");
        let mut rest = [0u8; 4];
        std::io::Read::read_exact(&mut &a, &mut rest).unwrap();
        assert_eq!(&rest, b"REST");
    }
}
