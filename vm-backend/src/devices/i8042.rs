//! Just enough of the i8042 keyboard controller for a guest to reset the
//! machine: a write of 0xfe (pulse reset line) to the command port, which
//! Linux uses for `reboot=k`. The VMM treats reset as shutdown (`-no-reboot`
//! semantics), as the container's VM never reboots.

use vmm_sys_util::eventfd::EventFd;

use super::BusDevice;

/// Data port (0x60); the command/status port is 0x64, offset 4.
pub const I8042_PORT: u64 = 0x60;
/// Ports decoded: 0x60..=0x64.
pub const I8042_LEN: u64 = 5;

const CMD_RESET: u8 = 0xfe;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;

/// The controller; `reset` is written when the guest asks for a reset.
#[derive(Debug)]
pub struct I8042 {
    reset: EventFd,
    pending: Option<u8>,
}

impl I8042 {
    /// A controller signalling resets on `reset`.
    pub fn new(reset: EventFd) -> Self {
        I8042 {
            reset,
            pending: None,
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let Some(byte) = data.first_mut() else { return };
        *byte = match offset {
            // Status: output buffer full when a reply waits; system flag set.
            4 => 0x04 | u8::from(self.pending.is_some()),
            0 => self.pending.take().unwrap_or(0),
            _ => 0,
        };
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data.first()) {
            (4, Some(&CMD_RESET)) => {
                // The vCPU loop sees this and stops the VM.
                let _ = self.reset.write(1);
            }
            (4, Some(&CMD_READ_OUTPUT_PORT)) => self.pending = Some(0x01),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_signals_and_others_do_not() {
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut dev = I8042::new(evt.try_clone().unwrap());
        dev.write(4, &[0xd0]);
        assert!(evt.read().is_err(), "no reset yet");
        let mut b = [0u8];
        dev.read(4, &mut b);
        assert_eq!(b[0] & 1, 1);
        dev.read(0, &mut b);
        assert_eq!(b[0], 1);
        dev.write(4, &[0xfe]);
        assert_eq!(evt.read().unwrap(), 1);
    }
}
