//! The sync channel between the parent (vessel) and its forked stages: a
//! SEQPACKET socketpair carrying one small message per packet. Both ends are
//! close-on-exec, so a successful `execve` shows up as end-of-file.
//!
//! A stage's failure crosses the channel as text ([`Msg::Error`]): each side
//! has its own typed error (the stage's, e.g. `host::init`'s `InitError`,
//! rendered once with `Display` where it is sent; the parent's
//! [`ChannelError::Reported`]), but the wire is not a serialized enum. The
//! last failures of a process (capset and execve, after the seccomp filter)
//! are written as bytes composed before the filter, with no serializer
//! running, and a detached container's start-status fifo carries the same
//! report to `start` as bare text; one text form serves all three.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

/// Messages exchanged during create and exec.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Msg {
    /// Child: the new user namespace exists; write my id maps.
    UserNs,
    /// Parent: maps written and cgroup joined; go on.
    Go,
    /// Child: the pid (in the host pid namespace) of the process that will run.
    Pid(i32),
    /// Init: mounts are done; run prestart and createRuntime hooks now.
    Hooks,
    /// Parent: those hooks ran; here are the states the container's own
    /// createContainer and startContainer hooks receive (they carry the host
    /// pid, which init cannot know).
    HooksDone(String, String),
    /// Init: everything is set up; waiting for start.
    Ready,
    /// Parent (`run`): start now.
    Start,
    /// Child: setup failed; its error as text (see the module's documentation).
    Error(String),
}

impl Msg {
    /// The message's name, as errors show it.
    pub fn name(&self) -> &'static str {
        match self {
            Msg::UserNs => "UserNs",
            Msg::Go => "Go",
            Msg::Pid(_) => "Pid",
            Msg::Hooks => "Hooks",
            Msg::HooksDone(..) => "HooksDone",
            Msg::Ready => "Ready",
            Msg::Start => "Start",
            Msg::Error(_) => "Error",
        }
    }
}

/// What one side of the channel got instead of the message it waited for.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The peer failed and said why: its own typed error, as text (a
    /// [`Msg::Error`], or what init wrote to the start-status fifo).
    #[error("{0}")]
    Reported(String),
    /// The peer sent another message.
    #[error("protocol error: {}{got:?}", expected(.want))]
    Protocol {
        /// The message waited for (`None`: only end-of-file or an error).
        want: Option<&'static str>,
        /// What came.
        got: Box<Msg>,
    },
    /// The peer closed its end (exited) first.
    #[error("the container process exited {}", before(.want))]
    Closed {
        /// The message waited for (`None`: a pid, during setup).
        want: Option<&'static str>,
    },
    /// Sending or receiving failed.
    #[error("sync channel: {0}")]
    Io(#[source] io::Error),
}

fn expected(want: &Option<&'static str>) -> String {
    want.map(|w| format!("expected {w}, got "))
        .unwrap_or_default()
}

fn before(want: &Option<&'static str>) -> String {
    match want {
        Some(w) => format!("before {w}"),
        None => "during setup".into(),
    }
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair: (parent end, child end).
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Sends one message.
    pub fn send(&self, m: &Msg) -> io::Result<()> {
        let buf = serde_json::to_vec(m).map_err(io::Error::other)?;
        send(self.fd.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL)?;
        Ok(())
    }

    /// Receives one message; `Ok(None)` when the other end is closed (the
    /// peer exited or exec'd).
    pub fn recv(&self) -> io::Result<Option<Msg>> {
        self.recv_with(MsgFlags::empty())
    }

    /// Receives a message only if one is already waiting (or the peer is
    /// gone); never blocks.
    pub fn try_recv(&self) -> io::Result<Option<Msg>> {
        self.recv_with(MsgFlags::MSG_DONTWAIT)
    }

    fn recv_with(&self, flags: MsgFlags) -> io::Result<Option<Msg>> {
        let mut buf = [0u8; 8192];
        loop {
            match recv(self.fd.as_raw_fd(), &mut buf, flags) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    return serde_json::from_slice(&buf[..n])
                        .map(Some)
                        .map_err(io::Error::other)
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends one message; a failure is a [`ChannelError::Io`].
    pub fn tell(&self, m: &Msg) -> Result<(), ChannelError> {
        self.send(m).map_err(ChannelError::Io)
    }

    /// Receives a message and checks it is `want`; an `Error` from the peer
    /// or an early close becomes an error with the peer's message.
    pub fn expect(&self, want: Msg) -> Result<(), ChannelError> {
        match self.recv() {
            Ok(Some(m)) if m == want => Ok(()),
            Ok(other) => Err(unexpected(Some(want.name()), other)),
            Err(e) => Err(ChannelError::Io(e)),
        }
    }

    /// Receives the `Pid` message.
    pub fn expect_pid(&self) -> Result<i32, ChannelError> {
        match self.recv() {
            Ok(Some(Msg::Pid(p))) => Ok(p),
            Ok(Some(m)) => Err(unexpected(Some("Pid"), Some(m))),
            Ok(None) => Err(ChannelError::Closed { want: None }),
            Err(e) => Err(ChannelError::Io(e)),
        }
    }

    /// Waits for the peer to close its end (its execve); a message instead
    /// is its report, or a protocol error.
    pub fn expect_close(&self) -> Result<(), ChannelError> {
        match self.recv() {
            Ok(None) => Ok(()),
            Ok(Some(m)) => Err(unexpected(None, Some(m))),
            Err(e) => Err(ChannelError::Io(e)),
        }
    }
}

/// The error for `got` where `want` was expected: the peer's report, an
/// early close, or a protocol error.
pub fn unexpected(want: Option<&'static str>, got: Option<Msg>) -> ChannelError {
    match got {
        Some(Msg::Error(e)) => ChannelError::Reported(e),
        Some(m) => ChannelError::Protocol {
            want,
            got: Box::new(m),
        },
        None => ChannelError::Closed { want },
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_parent_gets_instead_of_the_message_it_waits_for() {
        let (parent, child) = Channel::pair().unwrap();
        child
            .send(&Msg::Error("process.cwd /x: ENOENT".into()))
            .unwrap();
        let e = parent.expect(Msg::Ready).unwrap_err();
        assert!(matches!(&e, ChannelError::Reported(m) if m == "process.cwd /x: ENOENT"));
        assert_eq!(e.to_string(), "process.cwd /x: ENOENT");

        child.send(&Msg::Hooks).unwrap();
        let e = parent.expect(Msg::Ready).unwrap_err();
        assert_eq!(e.to_string(), "protocol error: expected Ready, got Hooks");
        child.send(&Msg::Ready).unwrap();
        let e = parent.expect_pid().unwrap_err();
        assert_eq!(e.to_string(), "protocol error: expected Pid, got Ready");
        child.send(&Msg::Pid(7)).unwrap();
        let e = parent.expect_close().unwrap_err();
        assert_eq!(e.to_string(), "protocol error: Pid(7)");

        drop(child);
        let e = parent.expect(Msg::Ready).unwrap_err();
        assert_eq!(e.to_string(), "the container process exited before Ready");
        let e = parent.expect_pid().unwrap_err();
        assert_eq!(e.to_string(), "the container process exited during setup");
        parent.expect_close().unwrap();
    }
}
