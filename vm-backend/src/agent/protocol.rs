//! Wire format of the agent protocol.
//!
//! Every frame is
//!
//! ```text
//! u32 length (big endian) | u16 version (big endian) | u8 kind | body
//! ```
//!
//! where `length` counts the bytes after the length field (version, kind and
//! body) and is at most [`MAX_FRAME_LEN`]. Kind `0` is a control message whose
//! body is a JSON [`Message`]. Kinds `1`, `2` and `3` carry stdin, stdout and
//! stderr bytes of one process: the body is a `u32` process id (big endian)
//! followed by the raw bytes; an empty data frame marks the end of that
//! stream. Raw stdio frames avoid JSON-encoding every output byte.
//!
//! A frame whose version differs from [`PROTOCOL_VERSION`] is rejected with
//! [`Error::VersionMismatch`]: both sides are built from the same crate, so a
//! mismatch means a stale initramfs or a mixed installation.

use std::io::{self, Read, Write};

use oci_spec::runtime::{Mount, Process};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Version of the protocol spoken by this build.
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest accepted value of the length field (version, kind and body).
pub const MAX_FRAME_LEN: usize = 4 << 20;

/// Largest stdio payload a sender puts into one data frame.
pub const MAX_DATA_CHUNK: usize = 64 << 10;

/// Bytes of the length field.
const LEN_BYTES: usize = 4;
/// Bytes of the version and kind fields.
const HEADER_BYTES: usize = 3;

const KIND_CONTROL: u8 = 0;
const KIND_STDIN: u8 = 1;
const KIND_STDOUT: u8 = 2;
const KIND_STDERR: u8 = 3;

/// One of the three standard streams of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Host to guest.
    Stdin,
    /// Guest to host.
    Stdout,
    /// Guest to host.
    Stderr,
}

impl Stream {
    fn kind(self) -> u8 {
        match self {
            Stream::Stdin => KIND_STDIN,
            Stream::Stdout => KIND_STDOUT,
            Stream::Stderr => KIND_STDERR,
        }
    }
}

/// Where the guest finds the container's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestRootfs {
    /// Serial of the virtio-blk device holding the read-only image (the
    /// guest matches it against `/sys/block/vd*/serial`).
    pub device_serial: String,
    /// Filesystem type of that image (`erofs` or `ext4`).
    pub fstype: String,
    /// Serial of the virtio-blk device holding the writable ext4 layer used
    /// as overlay upper directory; `None` for a read-only root.
    pub writable_serial: Option<String>,
}

/// A host file or directory copied into the guest for a bind mount whose
/// source the guest cannot reach (see the runtime's vm-mode mount rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFile {
    /// Absolute path in the guest to create.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// What to create.
    pub kind: GuestFileKind,
}

/// The kind and contents of a [`GuestFile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GuestFileKind {
    /// A directory.
    Dir,
    /// A regular file with these bytes, base64-encoded (standard alphabet).
    File {
        /// The contents, base64.
        base64: String,
    },
    /// A symbolic link.
    Symlink {
        /// Its target.
        target: String,
    },
}

/// Request to set up a container and create its process. With a container
/// runner (`config` set) the process waits for [`Message::StartProcess`];
/// the plain command runner starts it at once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunProcess {
    /// Identifier chosen by the host; stdio frames and [`Message::Exit`]
    /// refer to it.
    pub id: u32,
    /// The OCI process to run.
    pub process: Process,
    /// The root filesystem; `None` runs the process in the initramfs.
    #[serde(default)]
    pub rootfs: Option<GuestRootfs>,
    /// Additional OCI mounts to perform in the guest.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Hostname of the container.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Container id, as the host knows it.
    #[serde(default)]
    pub container_id: Option<String>,
    /// The OCI config.json the guest's container code runs, already adapted
    /// to the guest (root, namespaces, mounts); `None` for a plain command.
    #[serde(default)]
    pub config: Option<Box<oci_spec::runtime::Spec>>,
    /// Files to create before the container (bind mount sources).
    #[serde(default)]
    pub files: Vec<GuestFile>,
    /// The network the guest's interfaces get, if the container has a
    /// network namespace.
    #[serde(default)]
    pub network: Option<crate::net::GuestNetwork>,
}

/// Control messages, carried as JSON in control frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// First message of the guest, sent whenever the host (re)connects.
    Hello {
        /// Protocol version of the agent.
        version: u16,
        /// Agent name and version.
        agent: String,
        /// Guest kernel release.
        kernel: String,
        /// Guest uptime (ms) when PID 1 started: the kernel's share of the
        /// boot.
        #[serde(default)]
        init_ms: Option<u64>,
        /// Guest uptime (ms) when this greeting was sent: modules loaded,
        /// port found.
        #[serde(default)]
        ready_ms: Option<u64>,
    },
    /// Host: set up the container and run its init process.
    RunProcess(Box<RunProcess>),
    /// Host: run another process in the running container.
    Exec {
        /// Identifier for the new process.
        id: u32,
        /// The OCI process to run.
        process: Box<Process>,
    },
    /// Guest: the process `id` was started with guest pid `pid`.
    Started {
        /// Process identifier.
        id: u32,
        /// Its pid in the guest.
        pid: i32,
    },
    /// Host: start the created process `id` (after [`Message::RunProcess`]
    /// with a container config). Answered by [`Message::Ack`] or
    /// [`Message::Error`].
    StartProcess {
        /// Process identifier.
        id: u32,
    },
    /// Guest: request `id` succeeded.
    Ack {
        /// The request's (process) identifier.
        id: u32,
    },
    /// Host: deliver a signal to process `id`, or with `all` to every
    /// process of the container.
    Signal {
        /// Process identifier.
        id: u32,
        /// Signal number.
        signal: i32,
        /// Every process of the container, not just `id`.
        #[serde(default)]
        all: bool,
    },
    /// Host: list the container's processes (`vessel ps` in the guest).
    Ps {
        /// Request identifier, echoed in the answer.
        id: u32,
        /// `table` or `json`.
        format: String,
    },
    /// Guest: the answer to [`Message::Ps`].
    PsOutput {
        /// The request identifier.
        id: u32,
        /// What `vessel ps` printed.
        output: String,
    },
    /// Host: the terminal of process `id` changed size.
    ResizeTerminal {
        /// Process identifier.
        id: u32,
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// Guest: process `id` ended. Sent after the end of its stdout and stderr.
    Exit {
        /// Process identifier.
        id: u32,
        /// Exit status as a shell reports it: the exit code, or 128 plus the
        /// signal number.
        code: i32,
        /// The signal that killed it, if any.
        #[serde(default)]
        signal: Option<i32>,
    },
    /// Either side: a request failed.
    Error {
        /// The process the error is about, if any.
        #[serde(default)]
        id: Option<u32>,
        /// Human-readable description.
        message: String,
    },
    /// Host: power the guest off.
    Shutdown,
    /// Host: create another container of the pod in this guest (a
    /// "member": a Kubernetes app container of the VM's pod sandbox). Its
    /// root filesystem is the image on `run.rootfs.device_serial`; it joins
    /// the namespaces named in `join` of container `sandbox`. Answered by
    /// [`Message::Started`] (its init waits for a start) or
    /// [`Message::Error`]; its stdio frames and [`Message::Exit`] carry
    /// `run.id`.
    CreateMember {
        /// The member: id, container id, adapted config, files, rootfs.
        run: Box<RunProcess>,
        /// The container whose namespaces it joins (the pod sandbox).
        sandbox: String,
        /// The namespace types joined, as config.json names them
        /// (`ipc`, `uts`, `pid`, ...).
        join: Vec<String>,
    },
    /// Host: `message` (a [`Message::StartProcess`], [`Message::Exec`],
    /// [`Message::Ps`] or a [`Message::Signal`] to all processes) is about
    /// the member container `container`, not the guest's first container.
    InContainer {
        /// The member's container id.
        container: String,
        /// The request.
        message: Box<Message>,
    },
    /// Host: delete the member container `container` and free its guest
    /// resources (mounts, writable layer, bundle). Answered by
    /// [`Message::Ack`] with `id`.
    DeleteMember {
        /// Request identifier.
        id: u32,
        /// The member's container id.
        container: String,
    },
}

/// One unit on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A control message.
    Control(Message),
    /// Bytes of a standard stream of process `id`; empty means end of stream.
    Data {
        /// Process identifier.
        id: u32,
        /// Which stream.
        stream: Stream,
        /// The bytes.
        data: Vec<u8>,
    },
}

impl Frame {
    /// Encodes the frame, checking its size against [`MAX_FRAME_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>> {
        let (kind, body) = match self {
            Frame::Control(msg) => (
                KIND_CONTROL,
                serde_json::to_vec(msg).map_err(Error::BadMessage)?,
            ),
            Frame::Data { id, stream, data } => {
                let mut body = Vec::with_capacity(4 + data.len());
                body.extend_from_slice(&id.to_be_bytes());
                body.extend_from_slice(data);
                (stream.kind(), body)
            }
        };
        let len = HEADER_BYTES + body.len();
        if len > MAX_FRAME_LEN {
            return Err(Error::FrameTooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        let mut out = Vec::with_capacity(LEN_BYTES + len);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        out.push(kind);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decodes one frame from the start of `buf`, returning it and the
    /// number of bytes it used. A buffer holding only part of a frame gives
    /// [`Error::TruncatedFrame`].
    pub fn decode(buf: &[u8]) -> Result<(Frame, usize)> {
        if buf.len() < LEN_BYTES {
            return Err(Error::TruncatedFrame {
                expected: LEN_BYTES,
                got: buf.len(),
            });
        }
        let len = frame_len(buf[..LEN_BYTES].try_into().expect("4 bytes"))?;
        let total = LEN_BYTES + len;
        if buf.len() < total {
            return Err(Error::TruncatedFrame {
                expected: total,
                got: buf.len(),
            });
        }
        let frame = parse_body(&buf[LEN_BYTES..total])?;
        Ok((frame, total))
    }

    /// Writes the frame to `w` in one `write_all` (callers sharing a writer
    /// between threads hold a lock around it).
    pub fn write_to<W: Write + ?Sized>(&self, w: &mut W) -> Result<()> {
        let bytes = self.encode()?;
        w.write_all(&bytes)
            .and_then(|_| w.flush())
            .map_err(|e| io_to_protocol(e, "writing an agent frame"))
    }

    /// Reads one frame from `r`. A stream that ends before the first byte
    /// gives [`Error::Closed`]; one that ends inside a frame gives
    /// [`Error::TruncatedFrame`].
    pub fn read_from<R: Read + ?Sized>(r: &mut R) -> Result<Frame> {
        let mut len_buf = [0u8; LEN_BYTES];
        let got = read_full(r, &mut len_buf)?;
        if got == 0 {
            return Err(Error::Closed);
        }
        if got < LEN_BYTES {
            return Err(Error::TruncatedFrame {
                expected: LEN_BYTES,
                got,
            });
        }
        let len = frame_len(len_buf)?;
        let mut body = vec![0u8; len];
        let got = read_full(r, &mut body)?;
        if got < len {
            return Err(Error::TruncatedFrame {
                expected: LEN_BYTES + len,
                got: LEN_BYTES + got,
            });
        }
        parse_body(&body)
    }
}

/// Validates the length field.
fn frame_len(bytes: [u8; LEN_BYTES]) -> Result<usize> {
    let len = u32::from_be_bytes(bytes) as usize;
    if len > MAX_FRAME_LEN {
        return Err(Error::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    if len < HEADER_BYTES {
        return Err(Error::TruncatedFrame {
            expected: LEN_BYTES + HEADER_BYTES,
            got: LEN_BYTES + len,
        });
    }
    Ok(len)
}

/// Parses version, kind and body (everything after the length field).
fn parse_body(buf: &[u8]) -> Result<Frame> {
    let version = u16::from_be_bytes([buf[0], buf[1]]);
    if version != PROTOCOL_VERSION {
        return Err(Error::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: version,
        });
    }
    let kind = buf[2];
    let body = &buf[HEADER_BYTES..];
    let stream = match kind {
        KIND_CONTROL => {
            let msg = serde_json::from_slice(body).map_err(Error::BadMessage)?;
            return Ok(Frame::Control(msg));
        }
        KIND_STDIN => Stream::Stdin,
        KIND_STDOUT => Stream::Stdout,
        KIND_STDERR => Stream::Stderr,
        other => return Err(Error::UnknownFrameKind(other)),
    };
    if body.len() < 4 {
        return Err(Error::TruncatedFrame {
            expected: LEN_BYTES + HEADER_BYTES + 4,
            got: LEN_BYTES + buf.len(),
        });
    }
    let id = u32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
    Ok(Frame::Data {
        id,
        stream,
        data: body[4..].to_vec(),
    })
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_to_protocol(e, "reading an agent frame")),
        }
    }
    Ok(got)
}

/// Maps a broken stream to [`Error::Closed`], other errors to [`Error::Io`].
fn io_to_protocol(e: io::Error, what: &str) -> Error {
    match e.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => Error::Closed,
        _ => Error::io(what, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::ProcessBuilder;

    fn process() -> Process {
        ProcessBuilder::default()
            .args(vec!["/bin/busybox".to_string(), "echo".into(), "hi".into()])
            .env(vec!["PATH=/bin".to_string()])
            .cwd("/")
            .build()
            .expect("process")
    }

    fn all_messages() -> Vec<Message> {
        vec![
            Message::Hello {
                version: PROTOCOL_VERSION,
                agent: "vessel 0.1.0".into(),
                kernel: "6.1.0".into(),
                init_ms: Some(2000),
                ready_ms: Some(2100),
            },
            Message::RunProcess(Box::new(RunProcess {
                id: 1,
                process: process(),
                rootfs: Some(GuestRootfs {
                    device_serial: "rootfs".into(),
                    fstype: "erofs".into(),
                    writable_serial: Some("scratch".into()),
                }),
                mounts: Vec::new(),
                hostname: Some("box".into()),
                container_id: Some("c1".into()),
                config: Some(Box::default()),
                files: vec![GuestFile {
                    path: "/run/vessel/files/0".into(),
                    mode: 0o644,
                    kind: GuestFileKind::File {
                        base64: "aGVsbG8=".into(),
                    },
                }],
                network: None,
            })),
            Message::StartProcess { id: 1 },
            Message::Ack { id: 1 },
            Message::Ps {
                id: 7,
                format: "json".into(),
            },
            Message::PsOutput {
                id: 7,
                output: "[1]".into(),
            },
            Message::Exec {
                id: 2,
                process: Box::new(process()),
            },
            Message::Started { id: 2, pid: 42 },
            Message::Signal {
                id: 1,
                signal: 15,
                all: false,
            },
            Message::ResizeTerminal {
                id: 1,
                rows: 24,
                cols: 80,
            },
            Message::Exit {
                id: 1,
                code: 137,
                signal: Some(9),
            },
            Message::Error {
                id: None,
                message: "boom".into(),
            },
            Message::Shutdown,
            Message::CreateMember {
                run: Box::new(RunProcess {
                    id: 3,
                    container_id: Some("m1".into()),
                    ..RunProcess::default()
                }),
                sandbox: "c1".into(),
                join: vec!["ipc".into(), "uts".into()],
            },
            Message::InContainer {
                container: "m1".into(),
                message: Box::new(Message::StartProcess { id: 3 }),
            },
            Message::DeleteMember {
                id: 4,
                container: "m1".into(),
            },
        ]
    }

    #[test]
    fn control_round_trip() {
        for msg in all_messages() {
            let frame = Frame::Control(msg);
            let bytes = frame.encode().unwrap();
            let (back, used) = Frame::decode(&bytes).unwrap();
            assert_eq!(used, bytes.len());
            assert_eq!(back, frame);
            let back = Frame::read_from(&mut &bytes[..]).unwrap();
            assert_eq!(back, frame);
        }
    }

    #[test]
    fn data_round_trip_and_eof_marker() {
        for (stream, data) in [
            (Stream::Stdin, b"input".to_vec()),
            (Stream::Stdout, vec![0, 255, 10, 13]),
            (Stream::Stderr, Vec::new()),
        ] {
            let frame = Frame::Data {
                id: 7,
                stream,
                data,
            };
            let bytes = frame.encode().unwrap();
            assert_eq!(Frame::decode(&bytes).unwrap().0, frame);
        }
    }

    #[test]
    fn several_frames_in_one_stream() {
        let mut buf = Vec::new();
        let frames: Vec<Frame> = all_messages().into_iter().map(Frame::Control).collect();
        for f in &frames {
            f.write_to(&mut buf).unwrap();
        }
        let mut r = &buf[..];
        for f in &frames {
            assert_eq!(&Frame::read_from(&mut r).unwrap(), f);
        }
        assert!(matches!(Frame::read_from(&mut r), Err(Error::Closed)));
    }

    #[test]
    fn truncated_frame() {
        let bytes = Frame::Control(Message::Shutdown).encode().unwrap();
        for cut in 1..bytes.len() {
            let part = &bytes[..cut];
            assert!(
                matches!(Frame::decode(part), Err(Error::TruncatedFrame { .. })),
                "cut at {cut}"
            );
            assert!(
                matches!(
                    Frame::read_from(&mut &part[..]),
                    Err(Error::TruncatedFrame { .. })
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn frame_too_large() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&((MAX_FRAME_LEN + 1) as u32).to_be_bytes());
        bytes.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        bytes.push(KIND_CONTROL);
        let err = Frame::read_from(&mut &bytes[..]).unwrap_err();
        assert!(matches!(err, Error::FrameTooLarge { .. }), "{err}");
        let big = Frame::Data {
            id: 1,
            stream: Stream::Stdout,
            data: vec![0; MAX_FRAME_LEN],
        };
        assert!(matches!(big.encode(), Err(Error::FrameTooLarge { .. })));
    }

    #[test]
    fn version_mismatch_is_a_clear_error() {
        let mut bytes = Frame::Control(Message::Shutdown).encode().unwrap();
        bytes[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
        let err = Frame::decode(&bytes).unwrap_err();
        assert!(
            matches!(err, Error::VersionMismatch { ours: PROTOCOL_VERSION, theirs } if theirs == PROTOCOL_VERSION + 1)
        );
        let text = err.to_string();
        assert!(text.contains("version mismatch"), "{text}");
    }

    #[test]
    fn unknown_kind_and_bad_json() {
        let mut bytes = Frame::Control(Message::Shutdown).encode().unwrap();
        bytes[6] = 9;
        assert!(matches!(
            Frame::decode(&bytes),
            Err(Error::UnknownFrameKind(9))
        ));
        let mut bad = Vec::new();
        bad.extend_from_slice(&5u32.to_be_bytes());
        bad.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        bad.push(KIND_CONTROL);
        bad.extend_from_slice(b"{x");
        assert!(matches!(Frame::decode(&bad), Err(Error::BadMessage(_))));
    }

    #[test]
    fn json_shape_is_tagged() {
        let json = serde_json::to_value(Message::Signal {
            id: 3,
            signal: 9,
            all: false,
        })
        .unwrap();
        assert_eq!(json["type"], "signal");
        assert_eq!(json["signal"], 9);
    }
}
