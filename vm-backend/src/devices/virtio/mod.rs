//! virtio devices behind the virtio-mmio transport (virtio 1.x, split
//! queues).
//!
//! A device implements [`VirtioDevice`]; [`mmio::MmioTransport`] holds its
//! queues and speaks the register protocol. Queue work runs when the guest
//! writes `QueueNotify` (on the vCPU thread that exited) or when host-side
//! input arrives ([`VirtioDevice::poll_host`]). Every descriptor chain goes
//! through [`chain::validate`] before a device touches it.

pub mod block;
pub mod chain;
pub mod console;
pub mod fuzzing;
pub mod host_io;

pub mod mmio;
pub mod net;
pub mod rng;
pub mod vsock;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Guest memory as devices see it.
pub type Memory = GuestMemoryMmap<()>;

/// Feature bit every device offers: the virtio 1.0 interface.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Device ids (virtio 1.2, 5).
pub mod device_id {
    /// Network card.
    pub const NET: u32 = 1;
    /// Block device.
    pub const BLOCK: u32 = 2;
    /// Console.
    pub const CONSOLE: u32 = 3;
    /// Entropy source.
    pub const RNG: u32 = 4;
    /// Socket device.
    pub const VSOCK: u32 = 19;
}

/// The interrupt of one virtio-mmio device: the `InterruptStatus` bits and
/// the irqfd that raises the line.
#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    evt: EventFd,
}

/// `InterruptStatus` bit: a used ring changed.
pub const INT_VRING: u32 = 1;
/// `InterruptStatus` bit: the configuration space changed.
pub const INT_CONFIG: u32 = 2;

impl Interrupt {
    /// An interrupt raised through `evt`.
    pub fn new(evt: EventFd) -> Arc<Self> {
        Arc::new(Interrupt {
            status: AtomicU32::new(0),
            evt,
        })
    }

    /// Sets `bits` in the status and raises the line.
    pub fn signal(&self, bits: u32) {
        self.status.fetch_or(bits, Ordering::SeqCst);
        // A failed eventfd write means the counter is saturated: an
        // interrupt is pending anyway.
        let _ = self.evt.write(1);
    }

    /// The pending status bits.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// Clears the bits the driver acknowledged.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// The eventfd (for tests and for registering as an irqfd).
    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }
}

/// A virtio device model.
pub trait VirtioDevice: Send {
    /// The virtio device id ([`device_id`]).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// Feature bits the device offers (including [`VIRTIO_F_VERSION_1`]).
    fn features(&self) -> u64;
    /// Reads the device-specific configuration space; bytes past its end
    /// read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the configuration space; devices ignore it unless they have
    /// writable fields.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver set DRIVER_OK with these accepted features.
    fn activate(&mut self, _acked_features: u64) {}
    /// The driver notified queue `index`; processes what it can and returns
    /// whether any used ring changed (the transport then interrupts).
    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &Memory) -> bool;
    /// Moves host-side input (a socket, a tap) into the queues; called by
    /// the host I/O thread. Returns whether a used ring changed.
    fn poll_host(&mut self, _queues: &mut [Queue], _mem: &Memory) -> bool {
        false
    }
    /// The driver reset the device.
    fn reset(&mut self) {}
}

/// Pops every available chain of `queue`, validates it against `limits` and
/// hands it to `handle`, which returns the number of bytes it wrote into
/// the chain's writable buffers. A refused chain is returned with length 0
/// so the driver gets its buffers back. `handle` returning `None` stops the
/// loop and leaves the chain queued (the device cannot take it now).
/// Returns whether anything was put on the used ring.
pub fn process_chains(
    queue: &mut Queue,
    mem: &Memory,
    limits: chain::Limits,
    mut handle: impl FnMut(&chain::ValidChain) -> Option<u32>,
) -> bool {
    use virtio_queue::QueueOwnedT;
    let mut used = false;
    while let Some(desc_chain) = queue.pop_descriptor_chain(mem) {
        let head = desc_chain.head_index();
        let len = match chain::validate(desc_chain, mem, limits) {
            Ok(valid) => match handle(&valid) {
                Some(len) => len,
                None => {
                    queue.go_to_previous_position();
                    break;
                }
            },
            Err(_) => 0,
        };
        // add_used only fails for a head index past the queue size, which
        // pop_descriptor_chain never yields.
        let _ = queue.add_used(mem, head, len);
        used = true;
    }
    used
}
