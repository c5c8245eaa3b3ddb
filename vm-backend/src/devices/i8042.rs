//! The i8042 keyboard controller, as much as Linux's i8042 driver asks of
//! it: the controller configuration byte (CTR) read and write, the self
//! tests, keyboard/aux enable and disable, the output port, loopback, and
//! the reset pulse (0xfe) that `reboot=k` uses. The ACPI tables announce
//! an 8042, so Linux probes it at boot: a controller that does not answer
//! the CTR read costs a 1.1 s timeout ("Can't read CTR while initializing
//! i8042"). No keyboard is attached: the kernel runs with
//! `i8042.dumbkbd`, so the keyboard port is never sent commands that need
//! a device behind it. The VMM treats reset as shutdown (`-no-reboot`
//! semantics), as the container's VM never reboots.

use std::collections::VecDeque;

use vmm_sys_util::eventfd::EventFd;

use super::BusDevice;

/// Data port (0x60); the command/status port is 0x64, offset 4.
pub const I8042_PORT: u64 = 0x60;
/// Ports decoded: 0x60..=0x64.
pub const I8042_LEN: u64 = 5;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_AUX_DISABLE: u8 = 0xa7;
const CMD_AUX_ENABLE: u8 = 0xa8;
const CMD_AUX_TEST: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_KBD_DISABLE: u8 = 0xad;
const CMD_KBD_ENABLE: u8 = 0xae;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
const CMD_KBD_LOOPBACK: u8 = 0xd2;
const CMD_AUX_LOOPBACK: u8 = 0xd3;
const CMD_AUX_SEND: u8 = 0xd4;
const CMD_RESET: u8 = 0xfe;

/// Status: output buffer full.
const STATUS_OBF: u8 = 0x01;
/// Status: the system flag (self test passed).
const STATUS_SYS: u8 = 0x04;
/// Status: the last write was to the command port.
const STATUS_CMD: u8 = 0x08;
/// Status: the byte waiting came from the aux port.
const STATUS_AUX_DATA: u8 = 0x20;

/// CTR bits.
const CTR_KBD_DISABLE: u8 = 0x10;
const CTR_AUX_DISABLE: u8 = 0x20;
/// At power on: keyboard interrupt, system flag, scancode translation.
const CTR_DEFAULT: u8 = 0x01 | 0x04 | 0x40;

const SELF_TEST_OK: u8 = 0x55;
const PORT_TEST_OK: u8 = 0x00;
/// What a keyboard command gets with no keyboard: "no device" (the
/// driver's timeout reply), so nothing waits for an answer.
const NO_DEVICE: u8 = 0xfe;

/// Which write to the data port a command is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ctr,
    OutputPort,
    Loopback { aux: bool },
    AuxByte,
}

/// The controller; `reset` is written when the guest asks for a reset.
#[derive(Debug)]
pub struct I8042 {
    reset: EventFd,
    ctr: u8,
    output_port: u8,
    /// Bytes waiting in the output buffer, each with whether it came from
    /// the aux port.
    out: VecDeque<(u8, bool)>,
    expect: Option<Expect>,
    last_was_command: bool,
}

impl I8042 {
    /// A controller signalling resets on `reset`.
    pub fn new(reset: EventFd) -> Self {
        I8042 {
            reset,
            ctr: CTR_DEFAULT,
            output_port: 0x01,
            out: VecDeque::new(),
            expect: None,
            last_was_command: false,
        }
    }

    fn reply(&mut self, byte: u8) {
        // A real controller has a one-byte buffer; the driver never queues
        // more than a couple of replies, so a short queue is enough.
        if self.out.len() < 16 {
            self.out.push_back((byte, false));
        }
    }

    fn command(&mut self, cmd: u8) {
        self.expect = None;
        match cmd {
            CMD_READ_CTR => self.reply(self.ctr),
            CMD_WRITE_CTR => self.expect = Some(Expect::Ctr),
            CMD_AUX_DISABLE => self.ctr |= CTR_AUX_DISABLE,
            CMD_AUX_ENABLE => self.ctr &= !CTR_AUX_DISABLE,
            CMD_AUX_TEST | CMD_KBD_TEST => self.reply(PORT_TEST_OK),
            CMD_SELF_TEST => self.reply(SELF_TEST_OK),
            CMD_KBD_DISABLE => self.ctr |= CTR_KBD_DISABLE,
            CMD_KBD_ENABLE => self.ctr &= !CTR_KBD_DISABLE,
            CMD_READ_OUTPUT_PORT => self.reply(self.output_port),
            CMD_WRITE_OUTPUT_PORT => self.expect = Some(Expect::OutputPort),
            CMD_KBD_LOOPBACK => self.expect = Some(Expect::Loopback { aux: false }),
            CMD_AUX_LOOPBACK => self.expect = Some(Expect::Loopback { aux: true }),
            CMD_AUX_SEND => self.expect = Some(Expect::AuxByte),
            CMD_RESET => {
                // The vCPU loop sees this and stops the VM.
                let _ = self.reset.write(1);
            }
            // Other commands (pulse lines, vendor extensions) have no
            // effect and no reply.
            _ => {}
        }
    }

    fn data(&mut self, byte: u8) {
        match self.expect.take() {
            Some(Expect::Ctr) => self.ctr = byte,
            Some(Expect::OutputPort) => self.output_port = byte,
            Some(Expect::Loopback { aux }) => {
                if self.out.len() < 16 {
                    self.out.push_back((byte, aux));
                }
            }
            // No mouse and no keyboard: the device "does not answer".
            Some(Expect::AuxByte) => {
                if self.out.len() < 16 {
                    self.out.push_back((NO_DEVICE, true));
                }
            }
            None => self.reply(NO_DEVICE),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let Some(byte) = data.first_mut() else { return };
        *byte = match offset {
            4 => {
                let mut s = STATUS_SYS;
                if let Some(&(_, aux)) = self.out.front() {
                    s |= STATUS_OBF;
                    if aux {
                        s |= STATUS_AUX_DATA;
                    }
                }
                if self.last_was_command {
                    s |= STATUS_CMD;
                }
                s
            }
            0 => self.out.pop_front().map_or(0, |(b, _)| b),
            _ => 0,
        };
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&byte) = data.first() else { return };
        match offset {
            4 => {
                self.last_was_command = true;
                self.command(byte);
            }
            0 => {
                self.last_was_command = false;
                self.data(byte);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> (I8042, EventFd) {
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        (I8042::new(evt.try_clone().unwrap()), evt)
    }

    fn read(d: &mut I8042, off: u64) -> u8 {
        let mut b = [0u8];
        d.read(off, &mut b);
        b[0]
    }

    #[test]
    fn reset_command_signals_and_others_do_not() {
        let (mut dev, evt) = dev();
        dev.write(4, &[0xd0]);
        assert!(evt.read().is_err(), "no reset yet");
        assert_eq!(read(&mut dev, 4) & STATUS_OBF, STATUS_OBF);
        assert_eq!(read(&mut dev, 0), 1);
        dev.write(4, &[0xfe]);
        assert_eq!(evt.read().unwrap(), 1);
    }

    #[test]
    fn ctr_reads_back_what_was_written() {
        // Linux's i8042_controller_init: read the CTR until two reads
        // agree, then write it back changed.
        let (mut dev, _evt) = dev();
        assert_eq!(read(&mut dev, 4) & STATUS_OBF, 0, "buffer empty at start");
        dev.write(4, &[CMD_READ_CTR]);
        assert_eq!(read(&mut dev, 4) & STATUS_OBF, STATUS_OBF);
        let ctr = read(&mut dev, 0);
        assert_eq!(ctr, CTR_DEFAULT);
        assert_eq!(read(&mut dev, 4) & STATUS_OBF, 0, "read emptied it");
        dev.write(4, &[CMD_WRITE_CTR]);
        dev.write(0, &[0x65]);
        dev.write(4, &[CMD_READ_CTR]);
        assert_eq!(read(&mut dev, 0), 0x65);
        dev.write(4, &[CMD_KBD_ENABLE]);
        dev.write(4, &[CMD_READ_CTR]);
        assert_eq!(read(&mut dev, 0), 0x65 & !CTR_KBD_DISABLE);
    }

    #[test]
    fn self_tests_and_loopback_answer() {
        let (mut dev, _evt) = dev();
        dev.write(4, &[CMD_SELF_TEST]);
        assert_eq!(read(&mut dev, 0), SELF_TEST_OK);
        dev.write(4, &[CMD_KBD_TEST]);
        assert_eq!(read(&mut dev, 0), PORT_TEST_OK);
        dev.write(4, &[CMD_AUX_LOOPBACK]);
        dev.write(0, &[0x5a]);
        assert_eq!(read(&mut dev, 4) & STATUS_AUX_DATA, STATUS_AUX_DATA);
        assert_eq!(read(&mut dev, 0), 0x5a);
        // A keyboard command with no keyboard gets "no device", once.
        dev.write(0, &[0xf2]);
        assert_eq!(read(&mut dev, 0), NO_DEVICE);
        assert_eq!(read(&mut dev, 4) & STATUS_OBF, 0);
    }
}
