//! Host side of the agent protocol: a client over the unix socket that the
//! engine connects to the guest's agent port.

use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use oci_spec::runtime::Process;

use super::protocol::{Frame, Message, RunProcess, Stream, MAX_DATA_CHUNK, PROTOCOL_VERSION};
use crate::error::IoContext;
use crate::{Error, Result};

/// What the agent said in its [`Message::Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    /// Agent name and version.
    pub agent: String,
    /// Guest kernel release.
    pub kernel: String,
    /// Guest uptime (ms) when PID 1 started, if the agent knew it.
    pub init_ms: Option<u64>,
    /// Guest uptime (ms) when the agent greeted.
    pub ready_ms: Option<u64>,
}

/// Collected result of a process run to completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessOutput {
    /// Everything the process wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything the process wrote to stderr.
    pub stderr: Vec<u8>,
    /// Exit status (code, or 128 + signal).
    pub code: i32,
    /// Signal that ended the process, if any.
    pub signal: Option<i32>,
}

/// A connection to the guest agent.
#[derive(Debug)]
pub struct AgentClient {
    reader: UnixStream,
    writer: UnixStream,
}

impl AgentClient {
    /// Connects to the engine's agent socket, retrying until it exists and
    /// accepts or `timeout` passes (the VMM creates it shortly after it
    /// starts).
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Self> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e)
                    if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused)
                        && start.elapsed() < timeout =>
                {
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) if start.elapsed() >= timeout => {
                    return Err(Error::Timeout {
                        what: format!("agent socket {} ({e})", socket.display()),
                        seconds: timeout.as_secs_f64(),
                    })
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("connecting to agent socket {}", socket.display()),
                        e,
                    ))
                }
            }
        };
        Self::from_stream(stream)
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: UnixStream) -> Result<Self> {
        let writer = stream
            .try_clone()
            .ctx(|| "duplicating the agent socket".into())?;
        Ok(AgentClient {
            reader: stream,
            writer,
        })
    }

    /// Sets how long [`AgentClient::recv`] waits; `None` waits forever.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.reader
            .set_read_timeout(timeout)
            .ctx(|| "setting the agent socket timeout".into())
    }

    /// Sends one frame.
    pub fn send(&self, frame: &Frame) -> Result<()> {
        frame.write_to(&mut &self.writer)
    }

    /// Receives one frame. A read timeout surfaces as [`Error::Timeout`].
    pub fn recv(&self) -> Result<Frame> {
        match Frame::read_from(&mut &self.reader) {
            Err(Error::Io { source, .. })
                if matches!(source.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                let seconds = self
                    .reader
                    .read_timeout()
                    .ok()
                    .flatten()
                    .map_or(0.0, |d| d.as_secs_f64());
                Err(Error::Timeout {
                    what: "a frame from the guest agent".into(),
                    seconds,
                })
            }
            other => other,
        }
    }

    /// Waits for the agent's greeting and checks its version.
    pub fn wait_hello(&self, timeout: Duration) -> Result<AgentInfo> {
        self.set_timeout(Some(timeout))?;
        let frame = self.recv();
        self.set_timeout(None)?;
        match frame? {
            Frame::Control(Message::Hello {
                version,
                agent,
                kernel,
                init_ms,
                ready_ms,
            }) => {
                if version != PROTOCOL_VERSION {
                    return Err(Error::VersionMismatch {
                        ours: PROTOCOL_VERSION,
                        theirs: version,
                    });
                }
                Ok(AgentInfo {
                    agent,
                    kernel,
                    init_ms,
                    ready_ms,
                })
            }
            other => Err(Error::UnexpectedMessage(format!(
                "expected hello from the agent, got {other:?}"
            ))),
        }
    }

    /// Asks the agent to set up the container and run its process.
    pub fn run_process(&self, request: RunProcess) -> Result<()> {
        self.send(&Frame::Control(Message::RunProcess(Box::new(request))))
    }

    /// Asks the agent to run another process in the running container.
    pub fn exec(&self, id: u32, process: Process) -> Result<()> {
        self.send(&Frame::Control(Message::Exec {
            id,
            process: Box::new(process),
        }))
    }

    /// Sends bytes to the stdin of process `id`; an empty slice closes it.
    pub fn write_stdin(&self, id: u32, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return self.send(&Frame::Data {
                id,
                stream: Stream::Stdin,
                data: Vec::new(),
            });
        }
        for chunk in data.chunks(MAX_DATA_CHUNK) {
            self.send(&Frame::Data {
                id,
                stream: Stream::Stdin,
                data: chunk.to_vec(),
            })?;
        }
        Ok(())
    }

    /// Delivers a signal to process `id`.
    pub fn signal(&self, id: u32, signal: i32) -> Result<()> {
        self.send(&Frame::Control(Message::Signal {
            id,
            signal,
            all: false,
        }))
    }

    /// Asks the guest to power off.
    pub fn shutdown(&self) -> Result<()> {
        self.send(&Frame::Control(Message::Shutdown))
    }

    /// Reads frames until process `id` exits, collecting its output. An
    /// [`Message::Error`] about `id` (or about no process) ends the wait
    /// with [`Error::Agent`].
    pub fn wait_process(&self, id: u32, timeout: Option<Duration>) -> Result<ProcessOutput> {
        self.set_timeout(timeout)?;
        let mut out = ProcessOutput::default();
        let result = loop {
            match self.recv() {
                Ok(Frame::Data {
                    id: fid,
                    stream,
                    data,
                }) if fid == id => match stream {
                    Stream::Stdout => out.stdout.extend_from_slice(&data),
                    Stream::Stderr => out.stderr.extend_from_slice(&data),
                    Stream::Stdin => {}
                },
                Ok(Frame::Control(Message::Exit {
                    id: fid,
                    code,
                    signal,
                })) if fid == id => {
                    out.code = code;
                    out.signal = signal;
                    break Ok(out);
                }
                Ok(Frame::Control(Message::Error { id: eid, message }))
                    if eid.is_none() || eid == Some(id) =>
                {
                    break Err(Error::Agent(message));
                }
                Ok(_) => continue,
                Err(e) => break Err(e),
            }
        };
        self.set_timeout(None)?;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_and_process_over_a_socket_pair() {
        let (host, guest) = UnixStream::pair().unwrap();
        let client = AgentClient::from_stream(host).unwrap();
        let fake_guest = thread::spawn(move || {
            let mut g = guest;
            Frame::Control(Message::Hello {
                version: PROTOCOL_VERSION,
                agent: "test".into(),
                kernel: "k".into(),
                init_ms: None,
                ready_ms: None,
            })
            .write_to(&mut g)
            .unwrap();
            let req = Frame::read_from(&mut g).unwrap();
            let Frame::Control(Message::RunProcess(req)) = req else {
                panic!("expected RunProcess, got {req:?}");
            };
            for f in [
                Frame::Data {
                    id: req.id,
                    stream: Stream::Stdout,
                    data: b"hel".to_vec(),
                },
                Frame::Data {
                    id: req.id,
                    stream: Stream::Stdout,
                    data: b"lo\n".to_vec(),
                },
                Frame::Control(Message::Exit {
                    id: req.id,
                    code: 3,
                    signal: None,
                }),
            ] {
                f.write_to(&mut g).unwrap();
            }
        });
        let info = client.wait_hello(Duration::from_secs(5)).unwrap();
        assert_eq!(info.agent, "test");
        let process = oci_spec::runtime::ProcessBuilder::default()
            .args(vec!["true".to_string()])
            .cwd("/")
            .build()
            .unwrap();
        client
            .run_process(RunProcess {
                id: 5,
                process,
                rootfs: None,
                mounts: Vec::new(),
                hostname: None,
                ..Default::default()
            })
            .unwrap();
        let out = client
            .wait_process(5, Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(out.stdout, b"hello\n");
        assert_eq!(out.code, 3);
        fake_guest.join().unwrap();
    }

    #[test]
    fn hello_with_wrong_version_is_rejected() {
        let (host, mut guest) = UnixStream::pair().unwrap();
        let client = AgentClient::from_stream(host).unwrap();
        let mut bytes = Frame::Control(Message::Shutdown).encode().unwrap();
        bytes[4..6].copy_from_slice(&99u16.to_be_bytes());
        std::io::Write::write_all(&mut guest, &bytes).unwrap();
        let err = client.wait_hello(Duration::from_secs(5)).unwrap_err();
        assert!(
            matches!(err, Error::VersionMismatch { theirs: 99, .. }),
            "{err}"
        );
    }

    #[test]
    fn hello_timeout() {
        let (host, _guest) = UnixStream::pair().unwrap();
        let client = AgentClient::from_stream(host).unwrap();
        let err = client.wait_hello(Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
    }
}
