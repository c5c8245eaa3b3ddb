//! The sync channel between the parent (vessel) and its forked stages: a
//! SEQPACKET socketpair carrying one small message per packet. Both ends are
//! close-on-exec, so a successful `execve` shows up as end-of-file.

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
    /// Child: setup failed.
    Error(String),
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

    /// Receives a message and checks it is `want`; an `Error` from the peer
    /// or an early close becomes an error with the peer's message.
    pub fn expect(&self, want: Msg) -> Result<(), String> {
        match self.recv() {
            Ok(Some(m)) if m == want => Ok(()),
            Ok(Some(Msg::Error(e))) => Err(e),
            Ok(Some(m)) => Err(format!("protocol error: expected {want:?}, got {m:?}")),
            Ok(None) => Err(format!("the container process exited before {want:?}")),
            Err(e) => Err(format!("sync channel: {e}")),
        }
    }

    /// Receives the `Pid` message.
    pub fn expect_pid(&self) -> Result<i32, String> {
        match self.recv() {
            Ok(Some(Msg::Pid(p))) => Ok(p),
            Ok(Some(Msg::Error(e))) => Err(e),
            Ok(Some(m)) => Err(format!("protocol error: expected Pid, got {m:?}")),
            Ok(None) => Err("the container process exited during setup".into()),
            Err(e) => Err(format!("sync channel: {e}")),
        }
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
