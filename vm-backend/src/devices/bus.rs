//! Address-range dispatch for port-IO and MMIO exits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device reachable through guest loads and stores to an address range.
pub trait BusDevice: Send {
    /// The guest reads `data.len()` bytes at `offset` from the device's
    /// base. Bytes the device does not set read as whatever `data` held
    /// (the bus fills it with zeroes first).
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// The guest writes `data` at `offset` from the device's base.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Errors registering a device on a bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The new range overlaps one already registered.
    #[error("bus range {base:#x}+{len:#x} overlaps a registered device")]
    Overlap {
        /// Base of the refused range.
        base: u64,
        /// Its length.
        len: u64,
    },
    /// A range of length zero or past the end of the address space.
    #[error("bus range {base:#x}+{len:#x} is empty or wraps around")]
    BadRange {
        /// Base of the refused range.
        base: u64,
        /// Its length.
        len: u64,
    },
}

/// Shared handle to a device on a bus.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// A set of non-overlapping ranges, each owned by one device.
#[derive(Default, Clone)]
pub struct Bus {
    // base -> (length, device)
    ranges: BTreeMap<u64, (u64, SharedDevice)>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.ranges.iter().map(|(b, (l, _))| (*b, *l)))
            .finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `device` for `[base, base + len)`.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        let end = base.checked_add(len).filter(|_| len > 0);
        let Some(end) = end else {
            return Err(BusError::BadRange { base, len });
        };
        // The closest range starting at or below `end - 1` is the only one
        // that can overlap.
        if let Some((b, (l, _))) = self.ranges.range(..end).next_back() {
            if b + l > base {
                return Err(BusError::Overlap { base, len });
            }
        }
        self.ranges.insert(base, (len, device));
        Ok(())
    }

    /// The device holding `addr` and the offset of `addr` in its range.
    pub fn resolve(&self, addr: u64) -> Option<(SharedDevice, u64)> {
        let (base, (len, dev)) = self.ranges.range(..=addr).next_back()?;
        let offset = addr - base;
        (offset < *len).then(|| (dev.clone(), offset))
    }

    /// Dispatches a read; returns false when no device claims `addr`
    /// (`data` is then all ones, as on an unclaimed ISA port).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        data.fill(0);
        match self.resolve(addr) {
            Some((dev, offset)) => {
                lock(&dev).read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatches a write; returns false when no device claims `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr) {
            Some((dev, offset)) => {
                lock(&dev).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device, recovering from a poisoned lock: a device whose handler
/// panicked on one thread keeps its last state rather than taking every
/// vCPU down with it.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_by_range_and_refuses_overlaps() {
        let a = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(a.clone(), 0x3f8, 8).unwrap();
        assert_eq!(
            bus.insert(a.clone(), 0x3f0, 9),
            Err(BusError::Overlap {
                base: 0x3f0,
                len: 9
            })
        );
        assert_eq!(
            bus.insert(a.clone(), 0x3ff, 1),
            Err(BusError::Overlap {
                base: 0x3ff,
                len: 1
            })
        );
        assert!(bus.insert(a.clone(), 0x400, 1).is_ok());
        assert!(bus.insert(a.clone(), 0x3f0, 8).is_ok());
        assert_eq!(
            bus.insert(a.clone(), u64::MAX, 2),
            Err(BusError::BadRange {
                base: u64::MAX,
                len: 2
            })
        );
        let mut d = [0u8; 2];
        assert!(bus.read(0x3fa, &mut d));
        assert_eq!(d, [2, 2]);
        assert!(bus.write(0x3ff, &[9]));
        assert!(!bus.write(0x500, &[9]));
        assert!(!bus.read(0x3e0, &mut d));
        assert_eq!(d, [0xff, 0xff]);
        assert_eq!(lock(&a).0, vec![(7, vec![9])]);
    }
}
