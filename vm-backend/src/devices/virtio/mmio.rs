//! The virtio-mmio transport (virtio 1.2, 4.2.2), version 2 registers.

use std::sync::Arc;

use virtio_bindings::bindings::virtio_mmio as reg;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;

use super::{Interrupt, Memory, VirtioDevice, INT_VRING};
use crate::devices::BusDevice;

/// Size of one device's register window.
pub const MMIO_WINDOW: u64 = 0x1000;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VENDOR: u32 = 0x5353_4556; // "VESS"

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error it cannot recover from.
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    /// The driver gave up.
    pub const FAILED: u32 = 0x80;
}

/// One virtio device with its queues, on the MMIO bus.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    queues: Vec<Queue>,
    mem: Memory,
    interrupt: Arc<Interrupt>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    config_generation: u32,
}

impl MmioTransport {
    /// Wraps `device`, whose queues live in `mem` and which interrupts
    /// through `interrupt`.
    pub fn new(device: Box<dyn VirtioDevice>, mem: Memory, interrupt: Arc<Interrupt>) -> Self {
        let queues = device
            .queue_max_sizes()
            .into_iter()
            // A zero or non-power-of-two maximum is a device bug; Queue::new
            // refuses it, and 1 is the smallest valid size.
            .map(|max| Queue::new(max).unwrap_or_else(|_| Queue::new(1).expect("size 1 is valid")))
            .collect();
        MmioTransport {
            device,
            queues,
            mem,
            interrupt,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            config_generation: 0,
        }
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// The interrupt of this device.
    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }

    /// Whether the driver finished initialisation.
    pub fn is_active(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && self.status & status::FAILED == 0
    }

    /// Lets the device move host-side input into its queues.
    pub fn poll_host(&mut self) {
        if self.is_active() && self.device.poll_host(&mut self.queues, &self.mem) {
            self.interrupt.signal(INT_VRING);
        }
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn reset(&mut self) {
        self.status = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        for q in &mut self.queues {
            q.reset();
        }
        self.interrupt.ack(u32::MAX);
        self.device.reset();
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let became_ok = value & status::DRIVER_OK != 0 && self.status & status::DRIVER_OK == 0;
        if value & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0 {
            // A driver without VERSION_1 speaks the legacy interface, which
            // this transport does not offer.
            if self.driver_features & super::VIRTIO_F_VERSION_1 == 0 {
                self.status = value & !status::FEATURES_OK;
                return;
            }
        }
        self.status = value;
        if became_ok {
            let mem = &self.mem;
            if self.queues.iter().any(|q| q.ready() && !q.is_valid(mem)) {
                // A ready queue whose rings lie outside RAM: refuse to run.
                self.status |= status::DEVICE_NEEDS_RESET;
                self.interrupt.signal(super::INT_CONFIG);
                return;
            }
            self.device.activate(self.driver_features);
        }
    }

    fn notify(&mut self, index: u32) {
        let i = index as usize;
        if !self.is_active() || self.status & status::DEVICE_NEEDS_RESET != 0 {
            return;
        }
        if !self.queues.get(i).is_some_and(|q| q.ready()) {
            return;
        }
        if self.device.process_queue(i, &mut self.queues, &self.mem) {
            self.interrupt.signal(INT_VRING);
        }
    }

    fn read_reg(&mut self, offset: u32) -> u32 {
        match offset {
            reg::VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            reg::VIRTIO_MMIO_VERSION => 2,
            reg::VIRTIO_MMIO_DEVICE_ID => self.device.device_type(),
            reg::VIRTIO_MMIO_VENDOR_ID => VENDOR,
            reg::VIRTIO_MMIO_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device.features() as u32,
                1 => (self.device.features() >> 32) as u32,
                _ => 0,
            },
            reg::VIRTIO_MMIO_QUEUE_NUM_MAX => self.selected().map_or(0, |q| q.max_size().into()),
            reg::VIRTIO_MMIO_QUEUE_READY => self.selected().map_or(0, |q| q.ready().into()),
            reg::VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt.status(),
            reg::VIRTIO_MMIO_STATUS => self.status,
            reg::VIRTIO_MMIO_CONFIG_GENERATION => self.config_generation,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u32, v: u32) {
        // Queue layout may change only while the driver sets it up.
        let setup = self.status & status::DRIVER_OK == 0;
        let hi = |old: u64, v: u32| (old & 0xffff_ffff) | (u64::from(v) << 32);
        let lo = |old: u64, v: u32| (old & !0xffff_ffff) | u64::from(v);
        match offset {
            reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::VIRTIO_MMIO_DRIVER_FEATURES if self.status & status::FEATURES_OK == 0 => {
                // The driver may only accept what the device offers.
                let offered = self.device.features();
                match self.driver_features_sel {
                    0 => self.driver_features = lo(self.driver_features, v) & offered,
                    1 => self.driver_features = hi(self.driver_features, v) & offered,
                    _ => {}
                }
            }
            reg::VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = v,
            reg::VIRTIO_MMIO_QUEUE_NUM if setup => {
                if let Some(q) = self.selected() {
                    // Invalid sizes (not a power of two, above the max) are
                    // refused by virtio-queue and leave the old size.
                    let _ = q.try_set_size(v as u16);
                }
            }
            reg::VIRTIO_MMIO_QUEUE_READY if setup => {
                if let Some(q) = self.selected() {
                    q.set_ready(v == 1);
                }
            }
            reg::VIRTIO_MMIO_QUEUE_NOTIFY => self.notify(v),
            reg::VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt.ack(v),
            reg::VIRTIO_MMIO_STATUS => self.set_status(v),
            reg::VIRTIO_MMIO_QUEUE_DESC_LOW
            | reg::VIRTIO_MMIO_QUEUE_DESC_HIGH
            | reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW
            | reg::VIRTIO_MMIO_QUEUE_AVAIL_HIGH
            | reg::VIRTIO_MMIO_QUEUE_USED_LOW
            | reg::VIRTIO_MMIO_QUEUE_USED_HIGH
                if setup =>
            {
                let Some(q) = self.selected() else { return };
                let is_hi = matches!(
                    offset,
                    reg::VIRTIO_MMIO_QUEUE_DESC_HIGH
                        | reg::VIRTIO_MMIO_QUEUE_AVAIL_HIGH
                        | reg::VIRTIO_MMIO_QUEUE_USED_HIGH
                );
                let set = |old: u64| if is_hi { hi(old, v) } else { lo(old, v) };
                // Misaligned addresses are refused by virtio-queue; the
                // queue then fails is_valid() at DRIVER_OK.
                let _ = match offset {
                    reg::VIRTIO_MMIO_QUEUE_DESC_LOW | reg::VIRTIO_MMIO_QUEUE_DESC_HIGH => {
                        let a = set(q.desc_table());
                        q.try_set_desc_table_address(GuestAddress(a))
                    }
                    reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW | reg::VIRTIO_MMIO_QUEUE_AVAIL_HIGH => {
                        let a = set(q.avail_ring());
                        q.try_set_avail_ring_address(GuestAddress(a))
                    }
                    _ => {
                        let a = set(q.used_ring());
                        q.try_set_used_ring_address(GuestAddress(a))
                    }
                };
            }
            _ => {}
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= u64::from(reg::VIRTIO_MMIO_CONFIG) {
            self.device
                .read_config(offset - u64::from(reg::VIRTIO_MMIO_CONFIG), data);
        } else if data.len() == 4 && offset % 4 == 0 {
            data.copy_from_slice(&self.read_reg(offset as u32).to_le_bytes());
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= u64::from(reg::VIRTIO_MMIO_CONFIG) {
            self.device
                .write_config(offset - u64::from(reg::VIRTIO_MMIO_CONFIG), data);
            self.config_generation = self.config_generation.wrapping_add(1);
        } else if let Ok(bytes) = <[u8; 4]>::try_from(data) {
            if offset % 4 == 0 {
                self.write_reg(offset as u32, u32::from_le_bytes(bytes));
            }
        }
    }
}

/// Copies `len` bytes of `config` from `offset` into `data`, leaving bytes
/// past its end as the bus set them (zero).
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if start >= config.len() {
        return;
    }
    let n = data.len().min(config.len() - start);
    data[..n].copy_from_slice(&config[start..start + n]);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::devices::virtio::chain::tests::test_memory;
    use crate::devices::virtio::rng::Rng;
    use vmm_sys_util::eventfd::EventFd;

    pub(crate) fn w(t: &mut MmioTransport, off: u32, v: u32) {
        t.write(u64::from(off), &v.to_le_bytes());
    }
    pub(crate) fn r(t: &mut MmioTransport, off: u32) -> u32 {
        let mut b = [0u8; 4];
        t.read(u64::from(off), &mut b);
        u32::from_le_bytes(b)
    }

    /// Drives the driver side of initialisation: features, one queue per
    /// entry of `rings` (desc, avail, used addresses), DRIVER_OK.
    pub(crate) fn handshake(t: &mut MmioTransport, rings: &[(u64, u64, u64, u16)]) {
        assert_eq!(r(t, reg::VIRTIO_MMIO_MAGIC_VALUE), MAGIC);
        assert_eq!(r(t, reg::VIRTIO_MMIO_VERSION), 2);
        w(
            t,
            reg::VIRTIO_MMIO_STATUS,
            status::ACKNOWLEDGE | status::DRIVER,
        );
        w(t, reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        let hi = r(t, reg::VIRTIO_MMIO_DEVICE_FEATURES);
        w(t, reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        let lo = r(t, reg::VIRTIO_MMIO_DEVICE_FEATURES);
        w(t, reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        w(t, reg::VIRTIO_MMIO_DRIVER_FEATURES, hi);
        w(t, reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        w(t, reg::VIRTIO_MMIO_DRIVER_FEATURES, lo);
        w(
            t,
            reg::VIRTIO_MMIO_STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_ne!(r(t, reg::VIRTIO_MMIO_STATUS) & status::FEATURES_OK, 0);
        for (i, &(d, a, u, size)) in rings.iter().enumerate() {
            w(t, reg::VIRTIO_MMIO_QUEUE_SEL, i as u32);
            assert!(r(t, reg::VIRTIO_MMIO_QUEUE_NUM_MAX) >= u32::from(size));
            w(t, reg::VIRTIO_MMIO_QUEUE_NUM, u32::from(size));
            for (lo_reg, hi_reg, v) in [
                (
                    reg::VIRTIO_MMIO_QUEUE_DESC_LOW,
                    reg::VIRTIO_MMIO_QUEUE_DESC_HIGH,
                    d,
                ),
                (
                    reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW,
                    reg::VIRTIO_MMIO_QUEUE_AVAIL_HIGH,
                    a,
                ),
                (
                    reg::VIRTIO_MMIO_QUEUE_USED_LOW,
                    reg::VIRTIO_MMIO_QUEUE_USED_HIGH,
                    u,
                ),
            ] {
                w(t, lo_reg, v as u32);
                w(t, hi_reg, (v >> 32) as u32);
            }
            w(t, reg::VIRTIO_MMIO_QUEUE_READY, 1);
        }
        w(
            t,
            reg::VIRTIO_MMIO_STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
    }

    fn rng_transport() -> (MmioTransport, Memory) {
        let mem = test_memory();
        let irq = Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        (
            MmioTransport::new(Box::new(Rng::new()), mem.clone(), irq),
            mem,
        )
    }

    #[test]
    fn handshake_reaches_driver_ok() {
        let (mut t, _) = rng_transport();
        assert_eq!(
            r(&mut t, reg::VIRTIO_MMIO_DEVICE_ID),
            super::super::device_id::RNG
        );
        handshake(&mut t, &[(0x1000, 0x2000, 0x3000, 16)]);
        assert!(t.is_active());
        // A reset clears everything.
        w(&mut t, reg::VIRTIO_MMIO_STATUS, 0);
        assert_eq!(r(&mut t, reg::VIRTIO_MMIO_STATUS), 0);
        assert_eq!(r(&mut t, reg::VIRTIO_MMIO_QUEUE_READY), 0);
    }

    #[test]
    fn legacy_drivers_and_bad_rings_are_refused() {
        let (mut t, _) = rng_transport();
        w(
            &mut t,
            reg::VIRTIO_MMIO_STATUS,
            status::ACKNOWLEDGE | status::DRIVER,
        );
        w(
            &mut t,
            reg::VIRTIO_MMIO_STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_eq!(
            r(&mut t, reg::VIRTIO_MMIO_STATUS) & status::FEATURES_OK,
            0,
            "no VERSION_1"
        );

        let (mut t, _) = rng_transport();
        // Rings in the hole between the two RAM ranges.
        handshake(&mut t, &[(0x18_0000, 0x18_1000, 0x18_2000, 16)]);
        assert_ne!(
            r(&mut t, reg::VIRTIO_MMIO_STATUS) & status::DEVICE_NEEDS_RESET,
            0
        );
        // Notifying it does nothing (and does not panic).
        w(&mut t, reg::VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        w(&mut t, reg::VIRTIO_MMIO_QUEUE_NOTIFY, 7);
    }

    #[test]
    fn odd_accesses_are_ignored() {
        let (mut t, _) = rng_transport();
        t.write(0x71, &[1]);
        t.write(0x70, &[1, 2]);
        assert_eq!(r(&mut t, reg::VIRTIO_MMIO_STATUS), 0);
        let mut b = [0u8; 3];
        t.read(0x0, &mut b);
        assert_eq!(b, [0, 0, 0]);
        w(&mut t, reg::VIRTIO_MMIO_QUEUE_SEL, 99);
        assert_eq!(r(&mut t, reg::VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
        w(&mut t, reg::VIRTIO_MMIO_QUEUE_NUM, 8);
        w(&mut t, reg::VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000);
    }
}
