//! The one host I/O thread of the virtio devices fed from host descriptors:
//! each NIC's tap and the vsock device's socket set. One epoll set holds,
//! per device, its wake eventfd (the device writes it when the driver adds
//! receive buffers) and its host descriptor; a ready one makes the thread
//! call the transport's `poll_host`.
//!
//! A device whose guest has no receive buffer (`rx_starved`) has its host
//! descriptor taken out of the set until buffers come, and one whose
//! driver is not ready yet is parked for [`PARK`], so neither spins on
//! input it cannot take, and neither holds up the other devices.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::mmio::MmioTransport;
use crate::devices::bus::lock;

/// How long a device without a ready driver is left alone before its host
/// input is looked at again.
pub const PARK: Duration = Duration::from_millis(50);

/// One device the thread serves.
pub struct HostSource {
    /// The host descriptor its input arrives on (a tap, the vsock device's
    /// epoll descriptor); the device owns it.
    pub fd: RawFd,
    /// Written by the device when the driver adds receive buffers.
    pub wake: EventFd,
    /// Set by the device while the guest has no receive buffer.
    pub rx_starved: Arc<AtomicBool>,
    /// The device's transport.
    pub transport: Arc<Mutex<MmioTransport>>,
}

/// What the thread knows of one source.
struct Slot {
    source: HostSource,
    /// Whether `source.fd` is in the epoll set.
    watched: bool,
    /// Parked until then: its driver was not ready.
    parked_until: Option<Instant>,
}

/// The I/O thread's state: the epoll set and the devices.
pub struct HostIo {
    epoll: Epoll,
    slots: Vec<Slot>,
}

// Event data: the slot index times two, plus one for the host descriptor.
fn wake_token(i: usize) -> u64 {
    (i as u64) << 1
}
fn fd_token(i: usize) -> u64 {
    ((i as u64) << 1) | 1
}

impl HostIo {
    /// The epoll set for `sources` (created now, before the thread's
    /// seccomp filter, which does not allow epoll_create).
    pub fn new(sources: Vec<HostSource>) -> std::io::Result<Self> {
        let epoll = Epoll::new()?;
        let mut slots = Vec::new();
        for (i, source) in sources.into_iter().enumerate() {
            epoll.ctl(
                ControlOperation::Add,
                source.wake.as_raw_fd(),
                EpollEvent::new(EventSet::IN, wake_token(i)),
            )?;
            epoll.ctl(
                ControlOperation::Add,
                source.fd,
                EpollEvent::new(EventSet::IN, fd_token(i)),
            )?;
            slots.push(Slot {
                source,
                watched: true,
                parked_until: None,
            });
        }
        Ok(HostIo { epoll, slots })
    }

    /// Whether there is nothing to serve.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Watches or stops watching slot `i`'s host descriptor.
    fn watch(&mut self, i: usize, on: bool) {
        let slot = &mut self.slots[i];
        if slot.watched == on {
            return;
        }
        let (op, ev) = if on {
            (ControlOperation::Add, EventSet::IN)
        } else {
            (ControlOperation::Delete, EventSet::empty())
        };
        // Fails only for a closed descriptor, which the device never does
        // while the VM runs.
        if self
            .epoll
            .ctl(op, slot.source.fd, EpollEvent::new(ev, fd_token(i)))
            .is_ok()
        {
            slot.watched = on;
        }
    }

    /// One round: adjusts the set, waits, and lets every ready device take
    /// its host input. Returns how many events came.
    pub fn turn(&mut self, events: &mut [EpollEvent]) -> usize {
        let now = Instant::now();
        let mut next_unpark: Option<Instant> = None;
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            // A parked device whose time is up is watched again: if its
            // input is still there, the wait reports it at once.
            if slot.parked_until.is_some_and(|t| t <= now) {
                slot.parked_until = None;
            }
            if let Some(t) = slot.parked_until {
                next_unpark = Some(next_unpark.map_or(t, |n| n.min(t)));
            }
            let want =
                slot.parked_until.is_none() && !slot.source.rx_starved.load(Ordering::Acquire);
            self.watch(i, want);
        }
        // Rounded up: a wait that ends before the park does would only
        // come round again to wait the last fraction of a millisecond.
        let timeout = next_unpark.map_or(-1, |t| {
            t.saturating_duration_since(now)
                .as_micros()
                .div_ceil(1000)
                .max(1) as i32
        });
        // EINTR (a signal, the freezer) is no event: go round again.
        let n = self.epoll.wait(timeout, events).unwrap_or(0);
        let mut ready = vec![false; self.slots.len()];
        for ev in &events[..n] {
            let i = (ev.data() >> 1) as usize;
            let Some(slot) = self.slots.get(i) else {
                continue;
            };
            if ev.data() & 1 == 0 {
                let _ = slot.source.wake.read();
            }
            ready[i] = true;
        }
        let now = Instant::now();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if !ready[i] {
                continue;
            }
            let mut t = lock(&slot.source.transport);
            t.poll_host();
            if !t.is_active() {
                slot.parked_until = Some(now + PARK);
            }
        }
        n
    }

    /// Serves the devices until the process exits.
    pub fn run(mut self) {
        let mut events = vec![EpollEvent::default(); 2 * self.slots.len().max(1)];
        loop {
            self.turn(&mut events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::chain::tests::test_memory;
    use crate::devices::virtio::mmio::tests::handshake;
    use crate::devices::virtio::{device_id, Interrupt, Memory, VirtioDevice, VIRTIO_F_VERSION_1};
    use std::os::fd::OwnedFd;
    use std::sync::atomic::AtomicUsize;
    use virtio_queue::Queue;

    /// A device whose host input is a pipe: `poll_host` drains it and
    /// counts the calls.
    struct Drain {
        fd: RawFd,
        polls: Arc<AtomicUsize>,
    }

    impl VirtioDevice for Drain {
        fn device_type(&self) -> u32 {
            device_id::RNG
        }
        fn queue_max_sizes(&self) -> Vec<u16> {
            vec![16]
        }
        fn features(&self) -> u64 {
            VIRTIO_F_VERSION_1
        }
        fn read_config(&self, _: u64, data: &mut [u8]) {
            data.fill(0);
        }
        fn process_queue(&mut self, _: usize, _: &mut [Queue], _: &Memory) -> bool {
            false
        }
        fn poll_host(&mut self, _: &mut [Queue], _: &Memory) -> bool {
            let mut buf = [0u8; 64];
            // SAFETY: reading into a valid buffer from our nonblocking pipe.
            while unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
            self.polls.fetch_add(1, Ordering::SeqCst);
            false
        }
    }

    struct Dev {
        write: OwnedFd,
        _read: OwnedFd,
        polls: Arc<AtomicUsize>,
        transport: Arc<Mutex<MmioTransport>>,
        starved: Arc<AtomicBool>,
        wake: EventFd,
    }

    impl Dev {
        fn new(mem: &Memory) -> (Dev, HostSource) {
            let mut fds = [0; 2];
            // SAFETY: pipe2 fills the two-element array.
            let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
            assert_eq!(rc, 0);
            // SAFETY: pipe2 returned two fresh descriptors we now own.
            let (read, write) = unsafe {
                use std::os::fd::FromRawFd;
                (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
            };
            let polls = Arc::new(AtomicUsize::new(0));
            let irq = Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
            let device = Drain {
                fd: read.as_raw_fd(),
                polls: polls.clone(),
            };
            let transport = Arc::new(Mutex::new(MmioTransport::new(
                Box::new(device),
                mem.clone(),
                irq,
            )));
            let starved = Arc::new(AtomicBool::new(false));
            let wake = EventFd::new(libc::EFD_NONBLOCK).unwrap();
            let source = HostSource {
                fd: read.as_raw_fd(),
                wake: wake.try_clone().unwrap(),
                rx_starved: starved.clone(),
                transport: transport.clone(),
            };
            let dev = Dev {
                write,
                _read: read,
                polls,
                transport,
                starved,
                wake,
            };
            (dev, source)
        }

        fn input(&self) {
            // SAFETY: writing one byte from a valid buffer to our pipe.
            let n = unsafe { libc::write(self.write.as_raw_fd(), b"x".as_ptr().cast(), 1) };
            assert_eq!(n, 1);
        }

        fn polls(&self) -> usize {
            self.polls.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn one_thread_serves_every_device_and_parks_the_ones_not_ready() {
        let mem = test_memory();
        let (a, sa) = Dev::new(&mem);
        let (b, sb) = Dev::new(&mem);
        handshake(&mut lock(&a.transport), &[(0x1000, 0x2000, 0x3000, 16)]);
        let mut io = HostIo::new(vec![sa, sb]).unwrap();
        let mut events = vec![EpollEvent::default(); 4];

        a.input();
        assert_eq!(io.turn(&mut events), 1);
        assert_eq!((a.polls(), b.polls()), (1, 0));

        // b's driver is not ready: its input is left alone for PARK, not
        // spun on, and taken once the driver is.
        b.input();
        assert_eq!(io.turn(&mut events), 1);
        let start = Instant::now();
        assert_eq!(
            io.turn(&mut events),
            0,
            "a parked device's input woke the thread"
        );
        assert!(start.elapsed() >= PARK - Duration::from_millis(5));
        handshake(&mut lock(&b.transport), &[(0x1000, 0x2000, 0x3000, 16)]);
        assert_eq!(io.turn(&mut events), 1);
        assert_eq!((a.polls(), b.polls()), (1, 1));

        // A starved device's host input waits for its wake.
        a.starved.store(true, Ordering::SeqCst);
        a.input();
        b.input();
        assert_eq!(io.turn(&mut events), 1);
        assert_eq!((a.polls(), b.polls()), (1, 2));
        a.starved.store(false, Ordering::SeqCst);
        a.wake.write(1).unwrap();
        io.turn(&mut events);
        assert_eq!((a.polls(), b.polls()), (2, 2));
    }
}
