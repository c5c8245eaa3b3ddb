//! virtio-vsock with its host side on unix sockets, the "hybrid vsock" of
//! Firecracker: no vhost, no host AF_VSOCK.
//!
//! - Host to guest: a host program connects to `uds_path` and writes
//!   `CONNECT <port>\n`; the device asks the guest to accept a connection on
//!   `<port>` and, once it does, answers `OK <host port>\n`; then the bytes
//!   flow.
//! - Guest to host: a guest connection to CID 2 port `P` is connected to
//!   the unix socket `<uds_path>_<P>`; if nothing listens there the guest
//!   gets a reset.
//!
//! Flow control is virtio-vsock's credit: the device never sends the guest
//! more than the guest's `buf_alloc` allows, and advertises its own
//! buffer (`BUF_ALLOC` per connection), so per-connection memory is bounded
//! on both sides. Every packet is validated (CIDs, type, lengths, state);
//! one that does not fit resets its connection.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use virtio_queue::Queue;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::chain::{Limits, ValidChain};
use super::mmio::read_config_bytes;
use super::{device_id, process_chains, Memory, VirtioDevice, VIRTIO_F_VERSION_1};

/// The host's CID.
pub const HOST_CID: u64 = 2;
/// Size of `virtio_vsock_hdr`.
pub const HDR_LEN: usize = 44;
/// Receive buffer the device advertises per connection.
pub const BUF_ALLOC: u32 = 256 << 10;
/// Largest payload in one packet.
const MAX_PAYLOAD: usize = 64 << 10;
/// Longest `CONNECT <port>\n` line accepted.
const MAX_LINE: usize = 32;
const QUEUE_SIZE: u16 = 256;
const RX: usize = 0;
const TX: usize = 1;
const TYPE_STREAM: u16 = 1;
const OP_REQUEST: u16 = 1;
const OP_RESPONSE: u16 = 2;
const OP_RST: u16 = 3;
const OP_SHUTDOWN: u16 = 4;
const OP_RW: u16 = 5;
const OP_CREDIT_UPDATE: u16 = 6;
const OP_CREDIT_REQUEST: u16 = 7;
/// Host ports given to host-initiated connections start here.
const FIRST_LOCAL_PORT: u32 = 1 << 30;
/// epoll data of the listener; connections use their host port.
const LISTENER_KEY: u64 = u64::MAX;
/// Pending host connections (before `CONNECT`) use keys from here.
const PENDING_KEY: u64 = 1 << 40;

/// A packet header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// Source CID.
    pub src_cid: u64,
    /// Destination CID.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Payload length.
    pub len: u32,
    /// Socket type (1: stream).
    pub type_: u16,
    /// Operation.
    pub op: u16,
    /// Operation flags (shutdown directions).
    pub flags: u32,
    /// Sender's receive buffer.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed.
    pub fwd_cnt: u32,
}

impl Header {
    /// Decodes a header.
    pub fn parse(b: &[u8; HDR_LEN]) -> Self {
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
        let u16_at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap_or_default());
        Header {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            type_: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }

    /// Encodes a header.
    pub fn bytes(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Host-initiated, waiting for the guest's RESPONSE.
    Connecting,
    /// Data flows.
    Established,
}

struct Conn {
    stream: UnixStream,
    state: State,
    /// Guest's buffer and how much of what we sent it has consumed.
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// Bytes sent to the guest.
    tx_cnt: u32,
    /// Bytes from the guest written to the host socket.
    fwd_cnt: u32,
    /// fwd_cnt last told to the guest.
    fwd_cnt_sent: u32,
    /// Guest bytes not yet written to the host socket.
    to_host: VecDeque<u8>,
    /// Interest registered with epoll.
    interest: u32,
}

impl Conn {
    fn new(stream: UnixStream, state: State) -> Self {
        Conn {
            stream,
            state,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            tx_cnt: 0,
            fwd_cnt: 0,
            fwd_cnt_sent: 0,
            to_host: VecDeque::new(),
            interest: 0,
        }
    }

    /// Bytes the guest can still take.
    fn credit(&self) -> u32 {
        self.peer_buf_alloc
            .saturating_sub(self.tx_cnt.wrapping_sub(self.peer_fwd_cnt))
    }
}

/// Host side of the device: where it listens and connects.
#[derive(Debug, Clone)]
pub struct VsockConfig {
    /// The guest's CID (3 or more).
    pub guest_cid: u64,
    /// Unix socket the VMM listens on; guest connections to port P go to
    /// `<uds_path>_<P>`.
    pub uds_path: PathBuf,
}

/// Errors setting up the device.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// A CID that is reserved.
    #[error("vsock guest CID {0} is reserved (use 3 or more)")]
    BadCid(u64),
    /// The socket could not be set up.
    #[error("vsock socket {path}: {source}")]
    Io {
        /// The socket path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The vsock device.
pub struct Vsock {
    cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    /// Host connections that have not sent their CONNECT line yet.
    pending: BTreeMap<u64, (UnixStream, Vec<u8>)>,
    next_pending: u64,
    /// Connections by (host port, guest port).
    conns: BTreeMap<(u32, u32), Conn>,
    next_local_port: u32,
    /// Header-only packets waiting for receive buffers.
    control: VecDeque<Header>,
    wake: EventFd,
    rx_starved: Arc<AtomicBool>,
}

fn epoll_set(epoll: &Epoll, fd: RawFd, key: u64, old: u32, new: u32) {
    let op = match (old, new) {
        (0, 0) => return,
        (0, _) => ControlOperation::Add,
        (_, 0) => ControlOperation::Delete,
        _ if old == new => return,
        _ => ControlOperation::Modify,
    };
    let _ = epoll.ctl(
        op,
        fd,
        EpollEvent::new(EventSet::from_bits_truncate(new), key),
    );
}

impl Vsock {
    /// Listens on `config.uds_path` (which must not exist).
    pub fn new(
        config: &VsockConfig,
        wake: EventFd,
        rx_starved: Arc<AtomicBool>,
    ) -> Result<Self, VsockError> {
        if config.guest_cid <= HOST_CID || config.guest_cid >= u64::from(u32::MAX) {
            return Err(VsockError::BadCid(config.guest_cid));
        }
        let io = |source| VsockError::Io {
            path: config.uds_path.display().to_string(),
            source,
        };
        let listener = UnixListener::bind(&config.uds_path).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let epoll = Epoll::new().map_err(io)?;
        epoll_set(
            &epoll,
            listener.as_raw_fd(),
            LISTENER_KEY,
            0,
            EventSet::IN.bits(),
        );
        Ok(Vsock {
            cid: config.guest_cid,
            uds_path: config.uds_path.clone(),
            listener,
            epoll,
            pending: BTreeMap::new(),
            next_pending: PENDING_KEY,
            conns: BTreeMap::new(),
            next_local_port: FIRST_LOCAL_PORT,
            control: VecDeque::new(),
            wake,
            rx_starved,
        })
    }

    /// The epoll descriptor the I/O thread waits on.
    pub fn epoll_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    fn reply(&self, to: &Header, op: u16) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: self.cid,
            src_port: to.dst_port,
            dst_port: to.src_port,
            type_: TYPE_STREAM,
            op,
            buf_alloc: BUF_ALLOC,
            ..Default::default()
        }
    }

    fn header_for(&self, key: (u32, u32), op: u16) -> Header {
        let fwd = self.conns.get(&key).map_or(0, |c| c.fwd_cnt);
        Header {
            src_cid: HOST_CID,
            dst_cid: self.cid,
            src_port: key.0,
            dst_port: key.1,
            type_: TYPE_STREAM,
            op,
            buf_alloc: BUF_ALLOC,
            fwd_cnt: fwd,
            ..Default::default()
        }
    }

    fn close(&mut self, key: (u32, u32), send_rst: bool) {
        if let Some(c) = self.conns.remove(&key) {
            epoll_set(&self.epoll, c.stream.as_raw_fd(), 0, c.interest, 0);
        }
        if send_rst {
            let h = self.header_for(key, OP_RST);
            self.control.push_back(h);
        }
    }

    /// Updates the epoll interest of a connection from its state.
    fn refresh(&mut self, key: (u32, u32)) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        let mut want = 0;
        if c.state == State::Established && c.credit() > 0 {
            want |= EventSet::IN.bits();
        }
        if !c.to_host.is_empty() {
            want |= EventSet::OUT.bits();
        }
        epoll_set(
            &self.epoll,
            c.stream.as_raw_fd(),
            u64::from(key.0) << 32 | u64::from(key.1),
            c.interest,
            want,
        );
        c.interest = want;
    }

    /// Handles one packet from the guest.
    fn handle_guest_packet(&mut self, h: Header, payload: &[u8]) {
        if h.src_cid != self.cid || h.dst_cid != HOST_CID || h.type_ != TYPE_STREAM {
            if h.op != OP_RST {
                let r = self.reply(&h, OP_RST);
                self.control.push_back(r);
            }
            return;
        }
        let key = (h.dst_port, h.src_port);
        if let Some(c) = self.conns.get_mut(&key) {
            c.peer_buf_alloc = h.buf_alloc;
            c.peer_fwd_cnt = h.fwd_cnt;
        }
        match (h.op, self.conns.get(&key).map(|c| c.state)) {
            (OP_REQUEST, None) => {
                let path = format!("{}_{}", self.uds_path.display(), h.dst_port);
                match UnixStream::connect(&path).and_then(|s| s.set_nonblocking(true).map(|()| s)) {
                    Ok(stream) => {
                        let mut c = Conn::new(stream, State::Established);
                        c.peer_buf_alloc = h.buf_alloc;
                        c.peer_fwd_cnt = h.fwd_cnt;
                        self.conns.insert(key, c);
                        let r = self.header_for(key, OP_RESPONSE);
                        self.control.push_back(r);
                    }
                    Err(_) => {
                        let r = self.reply(&h, OP_RST);
                        self.control.push_back(r);
                    }
                }
            }
            (OP_RESPONSE, Some(State::Connecting)) => {
                if let Some(c) = self.conns.get_mut(&key) {
                    c.state = State::Established;
                    c.to_host.extend(format!("OK {}\n", key.0).bytes());
                }
            }
            (OP_RW, Some(State::Established)) => {
                let over = self
                    .conns
                    .get(&key)
                    .is_some_and(|c| c.to_host.len() + payload.len() > BUF_ALLOC as usize);
                if over {
                    // The guest ignored our credit.
                    self.close(key, true);
                    return;
                }
                if let Some(c) = self.conns.get_mut(&key) {
                    c.to_host.extend(payload);
                }
            }
            (OP_CREDIT_UPDATE, Some(_)) => {}
            (OP_CREDIT_REQUEST, Some(_)) => {
                let u = self.header_for(key, OP_CREDIT_UPDATE);
                self.control.push_back(u);
            }
            (OP_SHUTDOWN, Some(_)) => self.close(key, true),
            (OP_RST, _) => self.close(key, false),
            // Anything else (data before the connection exists, a second
            // REQUEST...) resets it.
            _ => self.close(key, h.op != OP_RST),
        }
        if self.conns.contains_key(&key) {
            self.flush_host(key);
            self.refresh(key);
        } else if h.op == OP_REQUEST || h.op == OP_RW {
            // close() found nothing to remove: make sure the guest hears.
            if !self
                .control
                .iter()
                .any(|c| c.dst_port == h.src_port && c.op == OP_RST)
            {
                let r = self.reply(&h, OP_RST);
                self.control.push_back(r);
            }
        }
    }

    /// Writes what the guest sent to the host socket.
    fn flush_host(&mut self, key: (u32, u32)) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        let mut broken = false;
        while !c.to_host.is_empty() {
            let (a, _) = c.to_host.as_slices();
            match c.stream.write(a) {
                Ok(0) => break,
                Ok(n) => {
                    c.to_host.drain(..n);
                    c.fwd_cnt = c.fwd_cnt.wrapping_add(n as u32);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        // Tell the guest about freed buffer once half of it is consumed.
        let update = c.fwd_cnt.wrapping_sub(c.fwd_cnt_sent) >= BUF_ALLOC / 2;
        if update {
            c.fwd_cnt_sent = c.fwd_cnt;
        }
        if broken {
            self.close(key, true);
        } else if update {
            let u = self.header_for(key, OP_CREDIT_UPDATE);
            self.control.push_back(u);
        }
    }

    /// Accepts host connections and reads their CONNECT lines.
    fn accept_host(&mut self) {
        while let Ok((s, _)) = self.listener.accept() {
            if s.set_nonblocking(true).is_err() {
                continue;
            }
            let key = self.next_pending;
            self.next_pending += 1;
            epoll_set(&self.epoll, s.as_raw_fd(), key, 0, EventSet::IN.bits());
            self.pending.insert(key, (s, Vec::new()));
        }
        let keys: Vec<u64> = self.pending.keys().copied().collect();
        for key in keys {
            let Some((s, line)) = self.pending.get_mut(&key) else {
                continue;
            };
            let mut b = [0u8; MAX_LINE];
            let done = match s.read(&mut b[..MAX_LINE - line.len()]) {
                Ok(0) => Some(None),
                Ok(n) => {
                    line.extend_from_slice(&b[..n]);
                    if let Some(end) = line.iter().position(|&c| c == b'\n') {
                        let text = String::from_utf8_lossy(&line[..end]).into_owned();
                        Some(
                            text.strip_prefix("CONNECT ")
                                .and_then(|p| p.trim().parse::<u32>().ok()),
                        )
                    } else if line.len() >= MAX_LINE {
                        Some(None)
                    } else {
                        None
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                Err(_) => Some(None),
            };
            let Some(port) = done else { continue };
            let Some((s, _)) = self.pending.remove(&key) else {
                continue;
            };
            epoll_set(&self.epoll, s.as_raw_fd(), key, EventSet::IN.bits(), 0);
            let Some(port) = port else { continue }; // bad line: drop the client
            let local = self.next_local_port;
            self.next_local_port = self.next_local_port.wrapping_add(1).max(FIRST_LOCAL_PORT);
            let key = (local, port);
            self.conns.insert(key, Conn::new(s, State::Connecting));
            let r = self.header_for(key, OP_REQUEST);
            self.control.push_back(r);
        }
    }

    /// Fills receive buffers: control packets first, then data from the
    /// host sockets as the guest's credit allows.
    fn fill_rx(&mut self, queues: &mut [Queue], mem: &Memory) -> bool {
        let Some(q) = queues.get_mut(RX) else {
            return false;
        };
        let mut ran_out_of_work = false;
        let mut eof = Vec::new();
        let used = process_chains(q, mem, Limits::default(), |c| {
            if c.writable_len() < HDR_LEN as u64 {
                return Some(0);
            }
            if let Some(h) = self.control.pop_front() {
                return Some(c.write_at(mem, 0, &h.bytes()) as u32);
            }
            let room = (c.writable_len() as usize - HDR_LEN).min(MAX_PAYLOAD);
            for (key, conn) in self.conns.iter_mut() {
                if conn.state != State::Established || conn.credit() == 0 {
                    continue;
                }
                let mut buf = vec![0u8; room.min(conn.credit() as usize)];
                match conn.stream.read(&mut buf) {
                    Ok(0) => eof.push(*key),
                    Ok(n) => {
                        conn.tx_cnt = conn.tx_cnt.wrapping_add(n as u32);
                        let h = Header {
                            src_cid: HOST_CID,
                            dst_cid: self.cid,
                            src_port: key.0,
                            dst_port: key.1,
                            len: n as u32,
                            type_: TYPE_STREAM,
                            op: OP_RW,
                            buf_alloc: BUF_ALLOC,
                            fwd_cnt: conn.fwd_cnt,
                            ..Default::default()
                        };
                        let mut pkt = h.bytes().to_vec();
                        pkt.extend_from_slice(&buf[..n]);
                        return Some(c.write_at(mem, 0, &pkt) as u32);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => eof.push(*key),
                }
            }
            ran_out_of_work = true;
            None
        });
        // Out of buffers while work remains: wait for the driver.
        self.rx_starved.store(!ran_out_of_work, Ordering::Release);
        let closed = !eof.is_empty();
        for key in eof {
            // The host side closed: tell the guest both directions are done.
            let mut h = self.header_for(key, OP_SHUTDOWN);
            h.flags = 3;
            self.close(key, false);
            self.control.push_back(h);
        }
        let keys: Vec<_> = self.conns.keys().copied().collect();
        for key in keys {
            self.refresh(key);
        }
        if closed {
            // The SHUTDOWNs just queued need buffers too.
            return self.fill_rx(queues, mem) | used;
        }
        used
    }

    fn drain_tx(&mut self, queues: &mut [Queue], mem: &Memory) -> bool {
        let Some(q) = queues.get_mut(TX) else {
            return false;
        };
        let limits = Limits {
            max_descriptors: 64,
            max_bytes: (HDR_LEN + MAX_PAYLOAD) as u64,
        };
        let mut packets: Vec<(Header, Vec<u8>)> = Vec::new();
        let used = process_chains(q, mem, limits, |c: &ValidChain| {
            let mut hb = [0u8; HDR_LEN];
            if c.read_at(mem, 0, &mut hb) == HDR_LEN {
                let h = Header::parse(&hb);
                let len = h.len as usize;
                if len <= MAX_PAYLOAD && (HDR_LEN + len) as u64 <= c.readable_len() {
                    let mut payload = vec![0u8; len];
                    if c.read_at(mem, HDR_LEN as u64, &mut payload) == len {
                        packets.push((h, payload));
                    }
                }
            }
            Some(0)
        });
        for (h, p) in packets {
            self.handle_guest_packet(h, &p);
        }
        used
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        device_id::VSOCK
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; 3]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.cid.to_le_bytes(), offset, data);
    }
    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &Memory) -> bool {
        let used = match index {
            TX => self.drain_tx(queues, mem),
            RX => {
                let _ = self.wake.write(1);
                false
            }
            // The event queue carries only transport resets, which this
            // device never sends; its buffers stay with the device.
            _ => false,
        };
        self.fill_rx(queues, mem) | used
    }
    fn poll_host(&mut self, queues: &mut [Queue], mem: &Memory) -> bool {
        // Drain epoll's ready list: the state is re-derived below.
        let mut events = vec![EpollEvent::default(); 32];
        while matches!(self.epoll.wait(0, &mut events), Ok(n) if n == events.len()) {}
        self.accept_host();
        let keys: Vec<_> = self.conns.keys().copied().collect();
        for key in keys {
            self.flush_host(key);
            self.refresh(key);
        }
        self.fill_rx(queues, mem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::chain::tests::{desc, test_memory, W};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const GUEST_CID: u64 = 3;

    struct Rig<'a> {
        mem: &'a Memory,
        rxq: MockSplitQueue<'a, Memory>,
        txq: MockSplitQueue<'a, Memory>,
        queues: Vec<Queue>,
        dev: Vsock,
        rx_next: u16,
        tx_next: u16,
        rx_seen: u16,
        _dir: tempfile::TempDir,
        uds: PathBuf,
    }

    impl<'a> Rig<'a> {
        fn new(mem: &'a Memory) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let uds = dir.path().join("v.sock");
            let cfg = VsockConfig {
                guest_cid: GUEST_CID,
                uds_path: uds.clone(),
            };
            let dev = Vsock::new(
                &cfg,
                EventFd::new(libc::EFD_NONBLOCK).unwrap(),
                Arc::new(AtomicBool::new(false)),
            )
            .unwrap();
            let rxq = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 64);
            let txq = MockSplitQueue::create(mem, GuestAddress(0x2_0000), 64);
            let evq = MockSplitQueue::create(mem, GuestAddress(0x3_0000), 64);
            let queues = vec![
                rxq.create_queue().unwrap(),
                txq.create_queue().unwrap(),
                evq.create_queue().unwrap(),
            ];
            Rig {
                mem,
                rxq,
                txq,
                queues,
                dev,
                rx_next: 0,
                tx_next: 0,
                rx_seen: 0,
                _dir: dir,
                uds,
            }
        }

        /// The guest sends one packet.
        fn send(&mut self, h: Header, payload: &[u8]) {
            // Transmit buffers in the second RAM range, 128 KiB apart.
            let addr = 0x20_0000 + u64::from(self.tx_next % 8) * 0x2_0000;
            let mut pkt = h.bytes().to_vec();
            pkt.extend_from_slice(payload);
            self.mem.write_slice(&pkt, GuestAddress(addr)).unwrap();
            self.txq
                .add_desc_chains(&[desc(addr, pkt.len() as u32, 0)], self.tx_next)
                .unwrap();
            self.tx_next += 1;
            self.dev.process_queue(TX, &mut self.queues, self.mem);
        }

        /// The guest offers `n` receive buffers.
        fn offer(&mut self, n: u16) {
            for _ in 0..n {
                let addr = 0x8_0000 + u64::from(self.rx_next % 32) * 0x1000;
                self.rxq
                    .add_desc_chains(&[desc(addr, 4096, W)], self.rx_next)
                    .unwrap();
                self.rx_next += 1;
            }
            self.dev.process_queue(RX, &mut self.queues, self.mem);
        }

        /// Packets the device put in receive buffers since the last call.
        fn received(&mut self) -> Vec<(Header, Vec<u8>)> {
            let idx = self.rxq.used().idx().load();
            let mut out = Vec::new();
            while self.rx_seen != idx {
                let e = self
                    .rxq
                    .used()
                    .ring()
                    .ref_at(self.rx_seen as usize % 64)
                    .unwrap()
                    .load();
                let d = self.rxq.desc_table().load(e.id() as u16).unwrap();
                let d = virtio_queue::desc::split::Descriptor::from(d);
                let mut b = vec![0u8; e.len() as usize];
                self.mem.read_slice(&mut b, d.addr()).unwrap();
                let h = Header::parse(b[..HDR_LEN].try_into().unwrap());
                out.push((h, b[HDR_LEN..].to_vec()));
                self.rx_seen = self.rx_seen.wrapping_add(1);
            }
            out
        }

        fn poll_until(&mut self, what: &str, mut done: impl FnMut(&mut Self) -> bool) {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                self.dev.poll_host(&mut self.queues, self.mem);
                if done(self) {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "timed out waiting for {what}"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }

    fn guest_hdr(src_port: u32, dst_port: u32, op: u16, len: u32) -> Header {
        Header {
            src_cid: GUEST_CID,
            dst_cid: HOST_CID,
            src_port,
            dst_port,
            len,
            type_: TYPE_STREAM,
            op,
            buf_alloc: 64 << 10,
            fwd_cnt: 0,
            flags: 0,
        }
    }

    #[test]
    fn header_round_trip_and_config() {
        let h = guest_hdr(1, 2, OP_RW, 3);
        assert_eq!(Header::parse(&h.bytes()), h);
        let mem = test_memory();
        let rig = Rig::new(&mem);
        let mut cid = [0u8; 8];
        rig.dev.read_config(0, &mut cid);
        assert_eq!(u64::from_le_bytes(cid), GUEST_CID);
        let dir = tempfile::tempdir().unwrap();
        for bad in [0, 1, 2, u64::from(u32::MAX)] {
            let cfg = VsockConfig {
                guest_cid: bad,
                uds_path: dir.path().join("x"),
            };
            assert!(matches!(
                Vsock::new(&cfg, EventFd::new(0).unwrap(), Arc::default()),
                Err(VsockError::BadCid(_))
            ));
        }
    }

    #[test]
    fn guest_connects_to_a_host_socket_and_data_flows_both_ways() {
        let mem = test_memory();
        let mut rig = Rig::new(&mem);
        let listener = UnixListener::bind(format!("{}_1234", rig.uds.display())).unwrap();
        rig.offer(8);
        rig.send(guest_hdr(5000, 1234, OP_REQUEST, 0), &[]);
        let got = rig.received();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].0.op, got[0].0.src_port, got[0].0.dst_port),
            (OP_RESPONSE, 1234, 5000)
        );
        let (mut host, _) = listener.accept().unwrap();
        host.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();

        rig.send(guest_hdr(5000, 1234, OP_RW, 5), b"hello");
        let mut b = [0u8; 5];
        host.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hello");

        host.write_all(b"world").unwrap();
        let mut data = Vec::new();
        rig.poll_until("host bytes in the guest", |r| {
            for (h, p) in r.received() {
                assert_eq!((h.op, h.dst_port, h.dst_cid), (OP_RW, 5000, GUEST_CID));
                data.extend(p);
            }
            data.len() >= 5
        });
        assert_eq!(data, b"world");

        // The host closes: the guest is told both directions are shut.
        drop(host);
        rig.poll_until("shutdown", |r| {
            r.received()
                .iter()
                .any(|(h, _)| h.op == OP_SHUTDOWN && h.flags == 3)
        });
        assert!(rig.dev.conns.is_empty());
    }

    #[test]
    fn host_connects_with_connect_line() {
        let mem = test_memory();
        let mut rig = Rig::new(&mem);
        rig.offer(8);
        let mut host = UnixStream::connect(&rig.uds).unwrap();
        host.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        host.write_all(b"CONNECT 52\n").unwrap();
        let mut req = None;
        rig.poll_until("the request", |r| {
            req = r
                .received()
                .into_iter()
                .find(|(h, _)| h.op == OP_REQUEST)
                .map(|(h, _)| h);
            req.is_some()
        });
        let req = req.unwrap();
        assert_eq!(
            (req.dst_port, req.dst_cid, req.src_cid),
            (52, GUEST_CID, HOST_CID)
        );
        assert!(req.src_port >= FIRST_LOCAL_PORT);
        rig.send(
            Header {
                op: OP_RESPONSE,
                ..guest_hdr(52, req.src_port, OP_RESPONSE, 0)
            },
            &[],
        );
        let mut line = vec![0u8; format!("OK {}\n", req.src_port).len()];
        host.read_exact(&mut line).unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            format!("OK {}\n", req.src_port)
        );

        // A client with a bad line is dropped.
        let mut bad = UnixStream::connect(&rig.uds).unwrap();
        bad.write_all(b"HELLO\n").unwrap();
        bad.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        rig.poll_until("the bad client dropped", |r| {
            r.dev.pending.is_empty() && r.dev.conns.len() == 1
        });
        let mut b = [0u8; 1];
        assert_eq!(bad.read(&mut b).unwrap(), 0);
    }

    #[test]
    fn credit_bounds_what_the_guest_is_sent() {
        let mem = test_memory();
        let mut rig = Rig::new(&mem);
        let listener = UnixListener::bind(format!("{}_7", rig.uds.display())).unwrap();
        rig.offer(16);
        let mut req = guest_hdr(9, 7, OP_REQUEST, 0);
        req.buf_alloc = 8;
        rig.send(req, &[]);
        rig.received();
        let (mut host, _) = listener.accept().unwrap();
        host.write_all(&[b'x'; 100]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        rig.dev.poll_host(&mut rig.queues, &mem);
        let got: usize = rig.received().iter().map(|(_, p)| p.len()).sum();
        assert_eq!(got, 8, "only the guest's buffer");
        let mut upd = guest_hdr(9, 7, OP_CREDIT_UPDATE, 0);
        upd.buf_alloc = 8;
        upd.fwd_cnt = 8;
        rig.send(upd, &[]);
        rig.dev.poll_host(&mut rig.queues, &mem);
        let got: usize = rig.received().iter().map(|(_, p)| p.len()).sum();
        assert_eq!(got, 8, "8 more after the update");
    }

    #[test]
    fn hostile_packets_get_resets_not_connections() {
        let mem = test_memory();
        let mut rig = Rig::new(&mem);
        rig.offer(16);
        // Spoofed source CID.
        let mut h = guest_hdr(1, 2, OP_REQUEST, 0);
        h.src_cid = 99;
        rig.send(h, &[]);
        // Data without a connection.
        rig.send(guest_hdr(1, 2, OP_RW, 3), b"abc");
        // A request to a port nothing listens on.
        rig.send(guest_hdr(1, 3, OP_REQUEST, 0), &[]);
        // A header claiming more payload than the chain holds: ignored.
        rig.send(guest_hdr(1, 4, OP_RW, 60_000), b"short");
        let got = rig.received();
        assert_eq!(
            got.iter().filter(|(h, _)| h.op == OP_RST).count(),
            3,
            "{got:?}"
        );
        assert!(rig.dev.conns.is_empty());

        // Data beyond the credit we gave resets the connection.
        let listener = UnixListener::bind(format!("{}_5", rig.uds.display())).unwrap();
        rig.send(guest_hdr(8, 5, OP_REQUEST, 0), &[]);
        let (_host, _) = listener.accept().unwrap();
        // Fill the host socket so nothing drains, then overrun.
        let big = vec![0u8; MAX_PAYLOAD];
        for _ in 0..(BUF_ALLOC as usize / MAX_PAYLOAD + 64) {
            rig.send(guest_hdr(8, 5, OP_RW, big.len() as u32), &big);
            if rig.dev.conns.is_empty() {
                break;
            }
        }
        assert!(rig.dev.conns.is_empty(), "overrun connection reset");
        assert!(rig
            .received()
            .iter()
            .any(|(h, _)| h.op == OP_RST && h.dst_port == 8));
    }
}
