//! The device manager: one place that creates the VM's devices, gives each
//! its port or MMIO window and interrupt line, registers it on a bus and
//! records how the guest's ACPI tables describe it.
//!
//! Without it the monitor would repeat, per device, the same steps in the
//! right order (window, IRQ, irqfd, bus, DSDT entry); here a new device is
//! one call, and the DSDT cannot disagree with the buses.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

use super::arch::x86_64::layout;
use super::machine::Machine;
use super::vmm::KvmExtras;
use super::KvmError;
use crate::devices::acpi_pm::{AcpiSleep, SLEEP_LEN, SLEEP_PORT};
use crate::devices::i8042::{I8042, I8042_LEN, I8042_PORT};
use crate::devices::serial::{SerialDevice, COM1_IRQ, COM1_LEN, COM1_PORT};
use crate::devices::virtio::block::Block;
use crate::devices::virtio::console::{AgentSocket, Console, Pipe, AGENT_PORT_NAME};
use crate::devices::virtio::host_io::{HostIo, HostSource};
use crate::devices::virtio::mmio::{MmioTransport, MMIO_WINDOW};
use crate::devices::virtio::net::{open_tap, parse_mac, Net};
use crate::devices::virtio::rng::Rng;
use crate::devices::virtio::vsock::Vsock;
use crate::devices::virtio::{Interrupt, VirtioDevice};
use crate::devices::{Bus, BusDevice};
use crate::engine::VmConfig;

/// A virtio device as the guest will find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioSlot {
    /// Base of its register window.
    pub addr: u64,
    /// Its interrupt line (GSI).
    pub irq: u32,
}

/// The AML each kind of device is described by in the DSDT.
pub mod aml {
    use acpi_tables::aml::{self, Device, Interrupt, Memory32Fixed, Name, ResourceTemplate, IO};
    use acpi_tables::Aml;

    use crate::devices::acpi_pm::S5_SLEEP_TYPE;
    use crate::devices::serial::{COM1_IRQ, COM1_PORT};
    use crate::devices::virtio::mmio::MMIO_WINDOW;

    /// COM1, a 16550 (`PNP0501`).
    pub fn serial(out: &mut Vec<u8>) {
        let com1_io = IO::new(COM1_PORT as u16, COM1_PORT as u16, 1, 8);
        let com1_irq = Interrupt::new(true, true, false, false, COM1_IRQ);
        let com1_crs = ResourceTemplate::new(vec![&com1_io, &com1_irq]);
        let hid = aml::EISAName::new("PNP0501");
        let uid0 = 0u8;
        Device::new(
            "_SB_.COM1".into(),
            vec![
                &Name::new("_HID".into(), &hid),
                &Name::new("_UID".into(), &uid0),
                &Name::new("_CRS".into(), &com1_crs),
            ],
        )
        .to_aml_bytes(out);
    }

    /// virtio-mmio window `index` at `addr` on line `irq`: `LNRO0005`, the
    /// id Linux's virtio_mmio driver matches (a kernel without
    /// command-line virtio-mmio support, Debian's, finds devices only so).
    pub fn virtio_mmio(out: &mut Vec<u8>, index: usize, addr: u64, irq: u32) {
        let mem = Memory32Fixed::new(true, addr as u32, MMIO_WINDOW as u32);
        let irq = Interrupt::new(true, true, false, false, irq);
        let crs = ResourceTemplate::new(vec![&mem, &irq]);
        let hid: &'static str = "LNRO0005";
        let uid = index as u8;
        Device::new(
            format!("_SB_.V{index:03X}").as_str().into(),
            vec![
                &Name::new("_HID".into(), &hid),
                &Name::new("_UID".into(), &uid),
                &Name::new("_CRS".into(), &crs),
            ],
        )
        .to_aml_bytes(out);
    }

    /// `\_S5_`: SLP_TYPa for power-off (see devices::acpi_pm).
    pub fn s5(out: &mut Vec<u8>) {
        let (s5, zero) = (S5_SLEEP_TYPE, 0u8);
        Name::new(
            "_S5_".into(),
            &aml::Package::new(vec![&s5, &zero, &zero, &zero]),
        )
        .to_aml_bytes(out);
    }
}

/// Hands out the interrupt lines of virtio devices, from
/// [`layout::VIRTIO_IRQ_BASE`] to the IOAPIC's last input.
#[derive(Debug)]
pub struct IrqAllocator {
    next: u32,
}

impl Default for IrqAllocator {
    fn default() -> Self {
        IrqAllocator {
            next: layout::VIRTIO_IRQ_BASE,
        }
    }
}

impl IrqAllocator {
    /// The next free line.
    pub fn allocate(&mut self) -> Result<u32, KvmError> {
        let irq = self.next;
        if irq > layout::IRQ_MAX {
            return Err(KvmError::Device(format!(
                "too many virtio devices: IRQ {irq} is past the IOAPIC's last input {}",
                layout::IRQ_MAX
            )));
        }
        self.next += 1;
        Ok(irq)
    }
}

/// The last bytes the guest wrote to its console, kept so a stopping VM
/// can say what the guest printed last.
#[derive(Clone, Default)]
pub struct ConsoleTail(Arc<Mutex<std::collections::VecDeque<u8>>>);

const CONSOLE_TAIL_BYTES: usize = 2048;

impl ConsoleTail {
    /// The last `n` lines.
    pub fn lines(&self, n: usize) -> Vec<String> {
        let bytes: Vec<u8> = self
            .0
            .lock()
            .map(|b| b.iter().copied().collect())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<String> = text
            .lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }
}

/// A console writer that also keeps the last [`CONSOLE_TAIL_BYTES`].
struct TeeTail {
    out: Box<dyn Write + Send>,
    tail: ConsoleTail,
}

impl Write for TeeTail {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut t) = self.tail.0.lock() {
            t.extend(buf.iter().copied());
            let excess = t.len().saturating_sub(CONSOLE_TAIL_BYTES);
            t.drain(..excess);
        }
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The host ends of a VM's devices, which the monitor runs on threads.
pub struct HostSide {
    /// What the guest printed last on the serial console.
    pub console_tail: ConsoleTail,
    /// The agent socket behind the virtio console port.
    pub agent: AgentSocket,
    /// The taps' and the vsock device's I/O thread, when there is one.
    pub host_io: Option<HostIo>,
}

/// Every device of a VM, its buses and its ACPI descriptions.
#[derive(Default)]
pub struct DeviceManager {
    /// Port-IO devices.
    pub pio: Bus,
    /// MMIO devices.
    pub mmio: Bus,
    /// virtio devices added so far, in window order.
    pub virtio: Vec<(VirtioSlot, Arc<Mutex<MmioTransport>>)>,
    irqs: IrqAllocator,
    /// The DSDT's device descriptions (AML), in the order added.
    acpi: Vec<u8>,
    /// Whether the ACPI sleep registers are there (`\_S5_` follows the
    /// devices in the DSDT).
    s5: bool,
    /// Host descriptors the host I/O thread polls for the devices.
    host_sources: Vec<HostSource>,
}

fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> KvmError + '_ {
    move |e| KvmError::Io(what.to_string(), e)
}

/// An eventfd a device writes to wake its host side, and its clone.
fn wake_pair() -> Result<(EventFd, EventFd), KvmError> {
    let wake = EventFd::new(libc::EFD_NONBLOCK).map_err(io_err("creating an eventfd"))?;
    let clone = wake.try_clone().map_err(io_err("cloning an eventfd"))?;
    Ok((wake, clone))
}

impl DeviceManager {
    /// No devices yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The AML of every device added, for the DSDT.
    pub fn acpi_devices(&self) -> Vec<u8> {
        let mut out = self.acpi.clone();
        if self.s5 {
            aml::s5(&mut out);
        }
        out
    }

    /// The virtio devices as the guest finds them, in window order.
    pub fn virtio_slots(&self) -> Vec<VirtioSlot> {
        self.virtio.iter().map(|(s, _)| *s).collect()
    }

    fn add_pio(
        &mut self,
        dev: Arc<Mutex<dyn BusDevice>>,
        base: u64,
        len: u64,
    ) -> Result<(), KvmError> {
        self.pio
            .insert(dev, base, len)
            .map_err(|e| KvmError::Device(e.to_string()))
    }

    /// Adds the COM1 UART, its output going to `out`.
    pub fn add_serial(
        &mut self,
        m: &Machine,
        out: Box<dyn Write + Send>,
    ) -> Result<Arc<Mutex<SerialDevice>>, KvmError> {
        let dev = Arc::new(Mutex::new(SerialDevice::new(m.irq_line(COM1_IRQ)?, out)));
        self.add_pio(dev.clone(), COM1_PORT, COM1_LEN)?;
        aml::serial(&mut self.acpi);
        Ok(dev)
    }

    /// Adds the i8042 whose reset command writes [`Machine::exit_evt`].
    pub fn add_i8042(&mut self, m: &Machine) -> Result<(), KvmError> {
        let evt = m
            .exit_evt
            .try_clone()
            .map_err(io_err("cloning the exit eventfd"))?;
        self.add_pio(Arc::new(Mutex::new(I8042::new(evt))), I8042_PORT, I8042_LEN)
    }

    /// Adds the ACPI sleep registers, whose S5 request writes
    /// [`Machine::exit_evt`].
    pub fn add_acpi_sleep(&mut self, m: &Machine) -> Result<(), KvmError> {
        let evt = m
            .exit_evt
            .try_clone()
            .map_err(io_err("cloning the exit eventfd"))?;
        self.add_pio(
            Arc::new(Mutex::new(AcpiSleep::new(evt))),
            SLEEP_PORT,
            SLEEP_LEN,
        )?;
        self.s5 = true;
        Ok(())
    }

    /// Adds a virtio device in the next virtio-mmio window with the next
    /// interrupt line.
    pub fn add_virtio(
        &mut self,
        m: &Machine,
        device: Box<dyn VirtioDevice>,
    ) -> Result<(VirtioSlot, Arc<Mutex<MmioTransport>>), KvmError> {
        let n = self.virtio.len();
        let irq = self.irqs.allocate()?;
        let slot = VirtioSlot {
            addr: layout::VIRTIO_MMIO_START + n as u64 * MMIO_WINDOW,
            irq,
        };
        let interrupt = Interrupt::new(m.irq_line(irq)?);
        let transport = Arc::new(Mutex::new(MmioTransport::new(
            device,
            m.mem.clone(),
            interrupt,
        )));
        self.mmio
            .insert(transport.clone(), slot.addr, MMIO_WINDOW)
            .map_err(|e| KvmError::Device(e.to_string()))?;
        aml::virtio_mmio(&mut self.acpi, n, slot.addr, slot.irq);
        self.virtio.push((slot, transport.clone()));
        Ok((slot, transport))
    }

    /// Adds a virtio-net device on tap `name` (with `mac`, if given),
    /// served by the host I/O thread.
    pub fn add_net(&mut self, m: &Machine, name: &str, mac: Option<&str>) -> Result<(), KvmError> {
        let mac = match mac {
            Some(s) => Some(parse_mac(s).ok_or_else(|| {
                KvmError::Device(format!("tap {name}: invalid MAC address {s:?}"))
            })?),
            None => None,
        };
        let tap = open_tap(name).map_err(|e| KvmError::Device(e.to_string()))?;
        let tap_fd = tap.as_raw_fd();
        let (wake, dev_wake) = wake_pair()?;
        let starved = Arc::new(AtomicBool::new(false));
        let dev = Net::new(tap, mac, dev_wake, starved.clone());
        let (_, transport) = self.add_virtio(m, Box::new(dev))?;
        self.host_sources.push(HostSource {
            fd: tap_fd,
            wake,
            rx_starved: starved,
            transport,
        });
        Ok(())
    }

    /// Adds a virtio-vsock device with its host side on unix sockets,
    /// served by the host I/O thread.
    pub fn add_vsock(
        &mut self,
        m: &Machine,
        config: &crate::devices::virtio::vsock::VsockConfig,
    ) -> Result<(), KvmError> {
        let (wake, dev_wake) = wake_pair()?;
        let starved = Arc::new(AtomicBool::new(false));
        let dev = Vsock::new(config, dev_wake, starved.clone())
            .map_err(|e| KvmError::Device(e.to_string()))?;
        let epoll_fd = dev.epoll_fd();
        let (_, transport) = self.add_virtio(m, Box::new(dev))?;
        self.host_sources.push(HostSource {
            fd: epoll_fd,
            wake,
            rx_starved: starved,
            transport,
        });
        Ok(())
    }

    /// Creates every device `config` and `extras` ask for, in the order
    /// the guest has always found them: COM1, i8042, ACPI sleep, then the
    /// virtio windows (disks, agent console, rng, taps, vsock).
    pub fn create_devices(
        &mut self,
        m: &Machine,
        config: &VmConfig,
        extras: &KvmExtras,
    ) -> Result<HostSide, KvmError> {
        let console: Box<dyn Write + Send> = match &config.console_log {
            Some(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| KvmError::Io(format!("opening console log {}", p.display()), e))?,
            ),
            None => Box::new(std::io::sink()),
        };
        let console_tail = ConsoleTail::default();
        self.add_serial(
            m,
            Box::new(TeeTail {
                out: console,
                tail: console_tail.clone(),
            }),
        )?;
        self.add_i8042(m)?;
        self.add_acpi_sleep(m)?;
        for dev in &config.block_devices {
            let blk = Block::open(&dev.path, dev.read_only, &dev.serial)
                .map_err(|e| KvmError::Device(e.to_string()))?;
            self.add_virtio(m, Box::new(blk))?;
        }
        let pipe = Arc::new(Mutex::new(Pipe::default()));
        let (wake, dev_wake) = wake_pair()?;
        let console = Console::new(AGENT_PORT_NAME, pipe.clone(), dev_wake);
        let (_, agent_transport) = self.add_virtio(m, Box::new(console))?;
        self.add_virtio(m, Box::new(Rng::new()))?;
        for t in &config.taps {
            self.add_net(m, &t.tap, t.mac.as_deref())?;
        }
        let agent =
            AgentSocket::bind(&config.agent_socket, pipe, wake, agent_transport).map_err(|e| {
                KvmError::Io(
                    format!(
                        "listening on agent socket {}",
                        config.agent_socket.display()
                    ),
                    e,
                )
            })?;
        if let Some(v) = &extras.vsock {
            self.add_vsock(m, v)?;
        }
        let host_io = self.take_host_io()?;
        Ok(HostSide {
            console_tail,
            agent,
            host_io,
        })
    }

    /// The host I/O thread's work for the devices added so far, if any.
    pub fn take_host_io(&mut self) -> Result<Option<HostIo>, KvmError> {
        if self.host_sources.is_empty() {
            return Ok(None);
        }
        HostIo::new(std::mem::take(&mut self.host_sources))
            .map(Some)
            .map_err(io_err("creating the epoll set of the host I/O thread"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irqs_run_from_the_virtio_base_to_the_last_ioapic_input() {
        let mut a = IrqAllocator::default();
        let got: Vec<u32> = std::iter::from_fn(|| a.allocate().ok()).collect();
        assert_eq!(
            got,
            (layout::VIRTIO_IRQ_BASE..=layout::IRQ_MAX).collect::<Vec<_>>()
        );
        assert!(matches!(a.allocate(), Err(KvmError::Device(m)) if m.contains("too many")));
    }
}
