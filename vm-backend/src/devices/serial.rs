//! The 8250 UART at COM1 (port 0x3f8, IRQ 4): vm-superio's model wired to
//! an interrupt line and an output sink.

use std::io::Write;

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::BusDevice;

/// COM1's first port.
pub const COM1_PORT: u64 = 0x3f8;
/// Ports the UART decodes.
pub const COM1_LEN: u64 = 8;
/// COM1's ISA interrupt.
pub const COM1_IRQ: u32 = 4;

/// An interrupt line raised by writing an eventfd registered with KVM as an
/// irqfd (or read by a test).
#[derive(Debug)]
pub struct IrqLine(pub EventFd);

impl Trigger for IrqLine {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The serial port device on the port-IO bus.
pub struct SerialDevice {
    inner: Serial<IrqLine, vm_superio::serial::NoEvents, Box<dyn Write + Send>>,
}

impl SerialDevice {
    /// A UART raising `irq` and writing what the guest sends to `out`.
    pub fn new(irq: EventFd, out: Box<dyn Write + Send>) -> Self {
        SerialDevice {
            inner: Serial::new(IrqLine(irq), out),
        }
    }

    /// Queues bytes for the guest to read (console input).
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.inner.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let (Ok(off), [byte]) = (u8::try_from(offset), data) {
            *byte = self.inner.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(off), [byte]) = (u8::try_from(offset), data) {
            // An output error (full disk for the console log) must not stop
            // the guest; the byte is dropped.
            let _ = self.inner.write(off, *byte);
            let _ = self.inner.writer_mut().flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmits_bytes_and_raises_the_irq_when_enabled() {
        let sink = Sink::default();
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut dev = SerialDevice::new(evt.try_clone().unwrap(), Box::new(sink.clone()));
        // IER: enable "transmitter holding register empty" interrupts.
        dev.write(1, &[0x02]);
        for b in b"ok\n" {
            dev.write(0, &[*b]);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"ok\n");
        assert!(evt.read().unwrap() >= 1);
        // Line status: transmitter empty.
        let mut lsr = [0u8];
        dev.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0);
        // Wider accesses are ignored, not a panic.
        dev.write(0, &[1, 2]);
        assert_eq!(sink.0.lock().unwrap().len(), 3);
    }
}
