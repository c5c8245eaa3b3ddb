//! virtio-console with the multiport feature: one named port,
//! `io.vessel.agent`, whose host side is a unix socket the VMM listens on.
//!
//! This is what QEMU's `virtio-serial-device` + `virtserialport` gives the
//! guest agent (it finds the port by `/sys/class/virtio-ports/*/name`).
//! Port 0 (the console port) is never announced; the agent port is port 1.
//! Like QEMU, the port is reported open to the guest (`PORT_OPEN`) only
//! while a client is connected to the socket: a guest writer blocks until
//! a client comes.
//!
//! Bytes move between the device and the socket thread through a
//! [`Pipe`] of bounded buffers, so a slow side applies back-pressure
//! instead of growing memory: guest output stays in the virtqueue while
//! `from_guest` is full, socket input stays in the socket while `to_guest`
//! is full.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

use super::chain::Limits;
use super::mmio::{read_config_bytes, MmioTransport};
use super::{device_id, process_chains, Memory, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::devices::bus::lock;

/// Feature bit: several ports and the control queues.
pub const VIRTIO_CONSOLE_F_MULTIPORT: u64 = 1 << 1;
/// Name the guest agent looks for.
pub const AGENT_PORT_NAME: &str = "io.vessel.agent";
/// Most bytes buffered in each direction.
pub const PIPE_CAPACITY: usize = 1 << 20;

const PORT: u32 = 1;
const MAX_PORTS: u32 = 2;
const QUEUE_SIZE: u16 = 256;
const CTRL_RX: usize = 2;
const CTRL_TX: usize = 3;
const PORT_RX: usize = 4;
const PORT_TX: usize = 5;

// Control events (virtio 1.2, 5.3.6.2).
const DEVICE_READY: u16 = 0;
const DEVICE_ADD: u16 = 1;
const PORT_READY: u16 = 3;
const PORT_OPEN: u16 = 6;
const PORT_NAME: u16 = 7;

/// Buffers between the device and the socket thread.
#[derive(Debug, Default)]
pub struct Pipe {
    /// Bytes from the socket waiting for guest receive buffers.
    pub to_guest: VecDeque<u8>,
    /// Bytes from the guest waiting to be written to the socket.
    pub from_guest: VecDeque<u8>,
    /// A client is connected.
    pub connected: bool,
    /// `connected` changed since the device last told the guest.
    pub connection_changed: bool,
}

/// The multiport console device.
pub struct Console {
    name: String,
    pipe: Arc<Mutex<Pipe>>,
    wake: EventFd,
    ctrl_out: VecDeque<Vec<u8>>,
    port_ready: bool,
    /// Whether the guest has the port open (its PORT_OPEN).
    pub guest_open: bool,
}

fn ctrl(id: u32, event: u16, value: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(8);
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(&event.to_le_bytes());
    m.extend_from_slice(&value.to_le_bytes());
    m
}

impl Console {
    /// A console whose port `name` is fed through `pipe`; `wake` is written
    /// whenever the socket side has something to do.
    pub fn new(name: &str, pipe: Arc<Mutex<Pipe>>, wake: EventFd) -> Self {
        Console {
            name: name.to_string(),
            pipe,
            wake,
            ctrl_out: VecDeque::new(),
            port_ready: false,
            guest_open: false,
        }
    }

    fn wake_host(&self) {
        let _ = self.wake.write(1);
    }

    /// Sends queued control messages into the control receive queue.
    fn flush_ctrl(&mut self, queues: &mut [Queue], mem: &Memory) -> bool {
        let Some(q) = queues.get_mut(CTRL_RX) else {
            return false;
        };
        let out = &mut self.ctrl_out;
        if out.is_empty() {
            return false;
        }
        process_chains(q, mem, Limits::default(), |c| {
            let msg = out.pop_front()?;
            if c.writable_len() < msg.len() as u64 {
                // A buffer too small for the message: drop the message
                // rather than truncate it.
                return Some(0);
            }
            Some(c.write_at(mem, 0, &msg) as u32)
        })
    }

    fn handle_ctrl_tx(&mut self, queues: &mut [Queue], mem: &Memory) -> bool {
        let Some(q) = queues.get_mut(CTRL_TX) else {
            return false;
        };
        let mut msgs = Vec::new();
        let used = process_chains(q, mem, Limits::default(), |c| {
            let mut m = [0u8; 8];
            if c.read_at(mem, 0, &mut m) == 8 {
                msgs.push((
                    u32::from_le_bytes([m[0], m[1], m[2], m[3]]),
                    u16::from_le_bytes([m[4], m[5]]),
                    u16::from_le_bytes([m[6], m[7]]),
                ));
            }
            Some(0)
        });
        for (id, event, value) in msgs {
            match event {
                DEVICE_READY if value == 1 => self.ctrl_out.push_back(ctrl(PORT, DEVICE_ADD, 0)),
                PORT_READY if id == PORT && value == 1 => {
                    self.port_ready = true;
                    let mut name = ctrl(PORT, PORT_NAME, 1);
                    name.extend_from_slice(self.name.as_bytes());
                    self.ctrl_out.push_back(name);
                    let mut pipe = lock(&self.pipe);
                    pipe.connection_changed = false;
                    if pipe.connected {
                        self.ctrl_out.push_back(ctrl(PORT, PORT_OPEN, 1));
                    }
                }
                PORT_OPEN if id == PORT => self.guest_open = value == 1,
                _ => {}
            }
        }
        used
    }

    /// Moves guest output into the pipe while a client is connected.
    fn handle_port_tx(&mut self, queues: &mut [Queue], mem: &Memory) -> bool {
        let Some(q) = queues.get_mut(PORT_TX) else {
            return false;
        };
        let pipe = &self.pipe;
        let mut moved = false;
        let used = process_chains(q, mem, Limits::default(), |c| {
            let mut p = lock(pipe);
            let len = c.readable_len() as usize;
            if p.connected && p.from_guest.len() + len > PIPE_CAPACITY && !p.from_guest.is_empty() {
                return None; // full: leave it queued until the socket drains
            }
            if p.connected {
                let mut buf = vec![0u8; len];
                let n = c.read_at(mem, 0, &mut buf);
                p.from_guest.extend(&buf[..n]);
                moved = true;
            }
            // With no client the bytes are dropped, as QEMU does for a
            // closed chardev.
            Some(0)
        });
        if moved {
            self.wake_host();
        }
        used
    }

    /// Fills guest receive buffers from the pipe.
    fn handle_port_rx(&mut self, queues: &mut [Queue], mem: &Memory) -> bool {
        let Some(q) = queues.get_mut(PORT_RX) else {
            return false;
        };
        let pipe = &self.pipe;
        let mut took = false;
        let used = process_chains(q, mem, Limits::default(), |c| {
            let mut p = lock(pipe);
            if p.to_guest.is_empty() {
                return None;
            }
            let n = (c.writable_len() as usize).min(p.to_guest.len());
            let bytes: Vec<u8> = p.to_guest.drain(..n).collect();
            took = true;
            Some(c.write_at(mem, 0, &bytes) as u32)
        });
        if took {
            self.wake_host(); // room again in to_guest
        }
        used
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        device_id::CONSOLE
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; 2 * (MAX_PORTS as usize + 1)]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_CONSOLE_F_MULTIPORT
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // cols, rows, max_nr_ports, emerg_wr
        let mut cfg = [0u8; 12];
        cfg[4..8].copy_from_slice(&MAX_PORTS.to_le_bytes());
        read_config_bytes(&cfg, offset, data);
    }

    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &Memory) -> bool {
        let used = match index {
            CTRL_TX => self.handle_ctrl_tx(queues, mem),
            PORT_TX => self.handle_port_tx(queues, mem),
            PORT_RX => self.handle_port_rx(queues, mem),
            // Port 0 is never announced; its output is dropped.
            1 => process_chains(&mut queues[1], mem, Limits::default(), |_| Some(0)),
            _ => false,
        };
        self.flush_ctrl(queues, mem) | used
    }

    fn poll_host(&mut self, queues: &mut [Queue], mem: &Memory) -> bool {
        {
            let mut p = lock(&self.pipe);
            if p.connection_changed && self.port_ready {
                p.connection_changed = false;
                self.ctrl_out
                    .push_back(ctrl(PORT, PORT_OPEN, u16::from(p.connected)));
            }
        }
        let rx = self.handle_port_rx(queues, mem);
        // Output held back by a full pipe may fit now.
        let tx = self.handle_port_tx(queues, mem);
        self.flush_ctrl(queues, mem) | rx | tx
    }

    fn reset(&mut self) {
        self.ctrl_out.clear();
        self.port_ready = false;
        self.guest_open = false;
    }
}

/// The socket side: listens on `path` and shuttles bytes between one client
/// at a time and the device. Runs until the process exits.
pub struct AgentSocket {
    listener: UnixListener,
    pipe: Arc<Mutex<Pipe>>,
    wake: EventFd,
    transport: Arc<Mutex<MmioTransport>>,
}

impl AgentSocket {
    /// Binds `path` (which must not exist).
    pub fn bind(
        path: &Path,
        pipe: Arc<Mutex<Pipe>>,
        wake: EventFd,
        transport: Arc<Mutex<MmioTransport>>,
    ) -> std::io::Result<Self> {
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        Ok(AgentSocket {
            listener,
            pipe,
            wake,
            transport,
        })
    }

    fn kick_device(&self) {
        lock(&self.transport).poll_host();
    }

    /// Serves clients forever (run it on its own thread).
    pub fn run(self) {
        let mut client: Option<UnixStream> = None;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let (want_in, want_out) = {
                let p = lock(&self.pipe);
                (p.to_guest.len() < PIPE_CAPACITY, !p.from_guest.is_empty())
            };
            let mut fds = vec![
                libc::pollfd {
                    fd: self.wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.listener.as_raw_fd(),
                    events: if client.is_none() { libc::POLLIN } else { 0 },
                    revents: 0,
                },
            ];
            if let Some(c) = &client {
                let mut ev = 0;
                if want_in {
                    ev |= libc::POLLIN;
                }
                if want_out {
                    ev |= libc::POLLOUT;
                }
                fds.push(libc::pollfd {
                    fd: c.as_raw_fd(),
                    events: ev,
                    revents: 0,
                });
            }
            // SAFETY: `fds` is a valid array of `fds.len()` pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                continue; // EINTR
            }
            if fds[0].revents != 0 {
                let _ = self.wake.read();
            }
            if fds[1].revents & libc::POLLIN != 0 {
                if let Ok((s, _)) = self.listener.accept() {
                    if s.set_nonblocking(true).is_ok() {
                        client = Some(s);
                        let mut p = lock(&self.pipe);
                        p.connected = true;
                        p.connection_changed = true;
                        p.to_guest.clear();
                    }
                    self.kick_device();
                }
            }
            let Some(c) = client.as_mut() else { continue };
            let revents = fds.get(2).map_or(0, |f| f.revents);
            let mut hangup = revents & (libc::POLLERR | libc::POLLNVAL) != 0;
            if revents & (libc::POLLIN | libc::POLLHUP) != 0 {
                let room = PIPE_CAPACITY.saturating_sub(lock(&self.pipe).to_guest.len());
                match c.read(&mut buf[..room.min(64 << 10)]) {
                    Ok(0) => hangup = true,
                    Ok(n) => {
                        lock(&self.pipe).to_guest.extend(&buf[..n]);
                        self.kick_device();
                    }
                    // A signal (the cgroup freezer's, on pause) is no hangup.
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => hangup = true,
                }
            }
            if !hangup && revents & libc::POLLOUT != 0 {
                let mut p = lock(&self.pipe);
                let (a, _) = p.from_guest.as_slices();
                match c.write(a) {
                    Ok(n) => {
                        p.from_guest.drain(..n);
                        drop(p);
                        self.kick_device(); // room for held-back output
                    }
                    // A signal (the cgroup freezer's, on pause) is no hangup.
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => hangup = true,
                }
            }
            if hangup {
                client = None;
                {
                    let mut p = lock(&self.pipe);
                    p.connected = false;
                    p.connection_changed = true;
                    p.from_guest.clear();
                }
                self.kick_device();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::chain::tests::{desc, test_memory, W};
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    struct Rig<'a> {
        mem: &'a Memory,
        vqs: Vec<MockSplitQueue<'a, Memory>>,
        next_desc: std::cell::RefCell<Vec<u16>>,
    }

    impl<'a> Rig<'a> {
        fn new(mem: &'a Memory) -> Self {
            // Six queues of 16 entries, each in its own 64 KiB.
            let vqs = (0..6)
                .map(|i| MockSplitQueue::create(mem, GuestAddress(0x1_0000 * (i + 1)), 16))
                .collect();
            Rig {
                mem,
                vqs,
                next_desc: std::cell::RefCell::new(vec![0; 6]),
            }
        }
        fn queues(&self) -> Vec<Queue> {
            self.vqs.iter().map(|v| v.create_queue().unwrap()).collect()
        }
        /// Offers one chain made of `descs`, linked with NEXT flags.
        fn offer(&self, q: usize, descs: &[RawDescriptor]) {
            let first = self.next_desc.borrow()[q];
            self.next_desc.borrow_mut()[q] += descs.len() as u16;
            let linked = crate::devices::virtio::chain::tests::link(descs, first);
            self.vqs[q].add_desc_chains(&linked, first).unwrap();
        }
        fn used(&self, q: usize) -> Vec<(u32, u32)> {
            let n = self.vqs[q].used().idx().load();
            (0..n)
                .map(|i| {
                    let e = self.vqs[q].used().ring().ref_at(i as usize).unwrap().load();
                    (e.id(), e.len())
                })
                .collect()
        }
        fn read(&self, addr: u64, len: usize) -> Vec<u8> {
            let mut v = vec![0u8; len];
            self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
            v
        }
    }

    #[test]
    fn port_discovery_open_and_data_both_ways() {
        let mem = test_memory();
        let rig = Rig::new(&mem);
        let mut queues = rig.queues();
        let pipe = Arc::new(Mutex::new(Pipe::default()));
        let wake = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut con = Console::new(AGENT_PORT_NAME, pipe.clone(), wake.try_clone().unwrap());

        // The driver offers two control receive buffers, then DEVICE_READY.
        rig.offer(CTRL_RX, &[desc(0x8_0000, 64, W)]);
        rig.offer(CTRL_RX, &[desc(0x8_1000, 64, W)]);
        rig.offer(CTRL_RX, &[desc(0x8_2000, 64, W)]);
        mem.write_slice(&ctrl(0, DEVICE_READY, 1), GuestAddress(0x9_0000))
            .unwrap();
        rig.offer(CTRL_TX, &[desc(0x9_0000, 8, 0)]);
        assert!(con.process_queue(CTRL_TX, &mut queues, &mem));
        assert_eq!(rig.read(0x8_0000, 8), ctrl(PORT, DEVICE_ADD, 0));

        // A client connects before the port is ready: announced with it.
        {
            let mut p = pipe.lock().unwrap();
            p.connected = true;
            p.connection_changed = true;
        }
        mem.write_slice(&ctrl(PORT, PORT_READY, 1), GuestAddress(0x9_0100))
            .unwrap();
        rig.offer(CTRL_TX, &[desc(0x9_0100, 8, 0)]);
        con.process_queue(CTRL_TX, &mut queues, &mem);
        let mut name = ctrl(PORT, PORT_NAME, 1);
        name.extend_from_slice(AGENT_PORT_NAME.as_bytes());
        assert_eq!(rig.used(CTRL_RX)[1].1 as usize, name.len());
        assert_eq!(rig.read(0x8_1000, name.len()), name);
        assert_eq!(rig.read(0x8_2000, 8), ctrl(PORT, PORT_OPEN, 1));

        // Guest -> host.
        mem.write_slice(b"hello", GuestAddress(0xa_0000)).unwrap();
        rig.offer(PORT_TX, &[desc(0xa_0000, 5, 0)]);
        assert!(con.process_queue(PORT_TX, &mut queues, &mem));
        assert_eq!(
            pipe.lock()
                .unwrap()
                .from_guest
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            b"hello"
        );
        assert!(wake.read().is_ok(), "socket thread woken");

        // Host -> guest, split over two small buffers.
        pipe.lock().unwrap().to_guest.extend(b"abcdef");
        rig.offer(PORT_RX, &[desc(0xb_0000, 4, W)]);
        rig.offer(PORT_RX, &[desc(0xb_1000, 4, W)]);
        assert!(con.poll_host(&mut queues, &mem));
        assert_eq!(
            rig.used(PORT_RX).iter().map(|u| u.1).collect::<Vec<_>>(),
            vec![4, 2]
        );
        assert_eq!(rig.read(0xb_0000, 4), b"abcd");
        assert_eq!(rig.read(0xb_1000, 2), b"ef");

        // Disconnect: PORT_OPEN 0 once the driver offers a buffer.
        {
            let mut p = pipe.lock().unwrap();
            p.connected = false;
            p.connection_changed = true;
        }
        con.poll_host(&mut queues, &mem);
        rig.offer(CTRL_RX, &[desc(0x8_3000, 64, W)]);
        con.process_queue(CTRL_RX, &mut queues, &mem);
        assert_eq!(rig.read(0x8_3000, 8), ctrl(PORT, PORT_OPEN, 0));
    }

    #[test]
    fn hostile_chains_do_not_stall_or_escape() {
        let mem = test_memory();
        let rig = Rig::new(&mem);
        let mut queues = rig.queues();
        let pipe = Arc::new(Mutex::new(Pipe {
            connected: true,
            ..Default::default()
        }));
        let mut con = Console::new(
            AGENT_PORT_NAME,
            pipe.clone(),
            EventFd::new(libc::EFD_NONBLOCK).unwrap(),
        );
        // A transmit chain pointing past RAM and one with a writable
        // descriptor before a readable one: both returned unread.
        rig.offer(PORT_TX, &[desc(0x30_0000, 5, 0)]);
        rig.offer(PORT_TX, &[desc(0xa_0000, 5, W), desc(0xa_1000, 5, 0)]);
        con.process_queue(PORT_TX, &mut queues, &mem);
        assert_eq!(rig.used(PORT_TX).len(), 2);
        assert!(pipe.lock().unwrap().from_guest.is_empty());
        // A short control message is consumed and ignored.
        rig.offer(CTRL_TX, &[desc(0x9_0000, 3, 0)]);
        con.process_queue(CTRL_TX, &mut queues, &mem);
        assert_eq!(rig.used(CTRL_TX).len(), 1);
        // Unknown queue indexes are ignored.
        assert!(!con.process_queue(17, &mut queues, &mem));
    }

    #[test]
    fn socket_round_trip_through_the_transport() {
        use crate::devices::virtio::Interrupt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let mem = test_memory();
        let pipe = Arc::new(Mutex::new(Pipe::default()));
        let wake = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let con = Console::new(AGENT_PORT_NAME, pipe.clone(), wake.try_clone().unwrap());
        let irq = Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let t = Arc::new(Mutex::new(MmioTransport::new(
            Box::new(con),
            mem.clone(),
            irq,
        )));
        let poke = wake.try_clone().unwrap();
        let sock = AgentSocket::bind(&path, pipe.clone(), wake, t.clone()).unwrap();
        std::thread::spawn(move || sock.run());
        let mut client = UnixStream::connect(&path).unwrap();
        client.write_all(b"ping").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while lock(&pipe).to_guest.len() < 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "bytes reached the pipe"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(lock(&pipe).connected);
        // Guest output appears in the pipe and the device wakes the thread.
        lock(&pipe).from_guest.extend(b"pong");
        poke.write(1).unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut got = [0u8; 4];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
        drop(client);
        while lock(&pipe).connected {
            assert!(std::time::Instant::now() < deadline, "hang-up noticed");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
