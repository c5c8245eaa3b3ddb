//! The ACPI sleep registers of a hardware-reduced platform, enough for
//! power-off: the guest writes `SLP_TYP | SLP_EN` to the sleep control
//! register for S5, and the VMM stops (the agent powers the guest off when
//! the container ends). The FADT points at these ports and the DSDT's
//! `_S5_` gives the sleep type.

use vmm_sys_util::eventfd::EventFd;

use super::BusDevice;

/// Sleep control register (status at +1).
pub const SLEEP_PORT: u64 = 0x600;
/// Ports decoded.
pub const SLEEP_LEN: u64 = 2;
/// SLP_TYP the DSDT's `_S5_` announces.
pub const S5_SLEEP_TYPE: u8 = 5;
const SLP_EN: u8 = 1 << 5;

/// The sleep registers; `exit` is written on a request to enter S5.
#[derive(Debug)]
pub struct AcpiSleep {
    exit: EventFd,
}

impl AcpiSleep {
    /// Registers signalling power-off on `exit`.
    pub fn new(exit: EventFd) -> Self {
        AcpiSleep { exit }
    }
}

impl BusDevice for AcpiSleep {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (0, Some(&v)) = (offset, data.first()) {
            if v & SLP_EN != 0 && (v >> 2) & 0x7 == S5_SLEEP_TYPE {
                let _ = self.exit.write(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_s5_with_slp_en_powers_off() {
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut dev = AcpiSleep::new(evt.try_clone().unwrap());
        dev.write(0, &[S5_SLEEP_TYPE << 2]); // no SLP_EN
        dev.write(0, &[(3 << 2) | SLP_EN]); // S3
        dev.write(1, &[(S5_SLEEP_TYPE << 2) | SLP_EN]); // status register
        assert!(evt.read().is_err());
        dev.write(0, &[(S5_SLEEP_TYPE << 2) | SLP_EN]);
        assert_eq!(evt.read().unwrap(), 1);
    }
}
