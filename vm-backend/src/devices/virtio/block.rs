//! virtio-blk backed by a host file, read-only or read-write, with flush.
//!
//! Each request is `header (type, reserved, sector) | data... | status`.
//! Besides the chain checks every request is checked against the image:
//! data lengths are whole sectors, the range lies inside the disk, writes
//! to a read-only disk fail with IOERR, and unknown types get UNSUPP.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use virtio_queue::Queue;

use super::chain::{Limits, ValidChain};
use super::mmio::read_config_bytes;
use super::{device_id, process_chains, Memory, VirtioDevice, VIRTIO_F_VERSION_1};

/// Sector size of the virtio-blk interface.
pub const SECTOR: u64 = 512;
const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
/// Serial numbers are at most 20 bytes (VIRTIO_BLK_ID_BYTES).
pub const ID_BYTES: usize = 20;
const SEG_MAX: u32 = 126;
const QUEUE_SIZE: u16 = 256;
/// Largest request accepted (the Linux driver's default is far below).
const MAX_REQUEST: u64 = 32 << 20;

/// The block device.
#[derive(Debug)]
pub struct Block {
    file: File,
    sectors: u64,
    read_only: bool,
    serial: [u8; ID_BYTES],
}

/// Errors opening the image.
#[derive(Debug, thiserror::Error)]
#[error("block device image {path}: {source}")]
pub struct BlockError {
    /// The image.
    pub path: String,
    /// What failed.
    #[source]
    pub source: std::io::Error,
}

impl Block {
    /// Opens `path` (read-only if asked); the guest sees `serial`.
    pub fn open(path: &Path, read_only: bool, serial: &str) -> Result<Self, BlockError> {
        let err = |source| BlockError {
            path: path.display().to_string(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(err)?;
        let size = file.metadata().map_err(err)?.len();
        let mut id = [0u8; ID_BYTES];
        let s = serial.as_bytes();
        id[..s.len().min(ID_BYTES)].copy_from_slice(&s[..s.len().min(ID_BYTES)]);
        Ok(Block {
            file,
            // A partial last sector is not addressable.
            sectors: size / SECTOR,
            read_only,
            serial: id,
        })
    }

    /// Capacity in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Handles one validated request; returns bytes written to the guest.
    fn request(&mut self, c: &ValidChain, mem: &Memory) -> u32 {
        // The status byte is the last writable byte; without one the
        // request cannot even be answered.
        let wlen = c.writable_len();
        if wlen == 0 {
            return 0;
        }
        let mut hdr = [0u8; 16];
        if c.read_at(mem, 0, &mut hdr) != 16 {
            c.write_at(mem, wlen - 1, &[S_IOERR]);
            return 1;
        }
        let kind = u32::from_le_bytes(hdr[0..4].try_into().unwrap_or_default());
        let sector = u64::from_le_bytes(hdr[8..16].try_into().unwrap_or_default());
        let (status, written) = match kind {
            T_IN => self.read(c, mem, sector, wlen - 1),
            T_OUT => (self.write(c, mem, sector), 0),
            T_FLUSH if !self.read_only => (
                if self.file.sync_all().is_ok() {
                    S_OK
                } else {
                    S_IOERR
                },
                0,
            ),
            T_FLUSH => (S_OK, 0),
            T_GET_ID => {
                let n = c.write_at(mem, 0, &self.serial[..ID_BYTES.min((wlen - 1) as usize)]);
                (S_OK, n as u64)
            }
            _ => (S_UNSUPP, 0),
        };
        c.write_at(mem, wlen - 1, &[status]);
        (written + 1) as u32
    }

    /// Byte offset of `len` bytes at `sector`, if whole sectors in range.
    fn range(&self, sector: u64, len: u64) -> Option<u64> {
        if len % SECTOR != 0 || len > MAX_REQUEST {
            return None;
        }
        let end = sector.checked_add(len / SECTOR)?;
        (end <= self.sectors).then_some(sector * SECTOR)
    }

    fn read(&mut self, c: &ValidChain, mem: &Memory, sector: u64, len: u64) -> (u8, u64) {
        let Some(offset) = self.range(sector, len) else {
            return (S_IOERR, 0);
        };
        let mut buf = vec![0u8; len as usize];
        if self.file.read_exact_at(&mut buf, offset).is_err() {
            return (S_IOERR, 0);
        }
        (S_OK, c.write_at(mem, 0, &buf) as u64)
    }

    fn write(&mut self, c: &ValidChain, mem: &Memory, sector: u64) -> u8 {
        if self.read_only {
            return S_IOERR;
        }
        let len = c.readable_len().saturating_sub(16);
        let Some(offset) = self.range(sector, len) else {
            return S_IOERR;
        };
        let mut buf = vec![0u8; len as usize];
        if c.read_at(mem, 16, &mut buf) != buf.len() {
            return S_IOERR;
        }
        match self.file.write_all_at(&buf, offset) {
            Ok(()) => S_OK,
            Err(_) => S_IOERR,
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        device_id::BLOCK
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }
    fn features(&self) -> u64 {
        let ro = if self.read_only { VIRTIO_BLK_F_RO } else { 0 };
        VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_SEG_MAX | ro
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // capacity (u64), size_max (u32), seg_max (u32)
        let mut cfg = [0u8; 16];
        cfg[0..8].copy_from_slice(&self.sectors.to_le_bytes());
        cfg[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        read_config_bytes(&cfg, offset, data);
    }
    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &Memory) -> bool {
        let Some(q) = queues.get_mut(index) else {
            return false;
        };
        let limits = Limits {
            max_descriptors: SEG_MAX as usize + 2,
            max_bytes: MAX_REQUEST + 17,
        };
        process_chains(q, mem, limits, |c| Some(self.request(c, mem)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::chain::tests::{desc, link, test_memory, W};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    fn disk(sectors: u64) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.img");
        let data: Vec<u8> = (0..sectors * SECTOR).map(|i| (i / SECTOR) as u8).collect();
        std::fs::write(&p, data).unwrap();
        (dir, p)
    }

    /// Submits one request; returns (used len, status byte).
    fn submit(
        dev: &mut Block,
        mem: &Memory,
        kind: u32,
        sector: u64,
        data: u32,
        write_data: bool,
    ) -> (u32, u8) {
        let vq = MockSplitQueue::new(mem, 16);
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&kind.to_le_bytes());
        hdr[8..16].copy_from_slice(&sector.to_le_bytes());
        mem.write_slice(&hdr, GuestAddress(0x4_0000)).unwrap();
        let mut descs = vec![desc(0x4_0000, 16, 0)];
        if data > 0 {
            descs.push(desc(0x5_0000, data, if write_data { 0 } else { W }));
        }
        descs.push(desc(0x4_1000, 1, W));
        vq.add_desc_chains(&link(&descs, 0), 0).unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        mem.write_obj(0xeeu8, GuestAddress(0x4_1000)).unwrap();
        assert!(dev.process_queue(0, std::slice::from_mut(&mut q), mem));
        let used = vq.used().ring().ref_at(0).unwrap().load().len();
        (used, mem.read_obj(GuestAddress(0x4_1000)).unwrap())
    }

    #[test]
    fn reads_writes_flushes_and_identifies() {
        let (_d, p) = disk(8);
        let mem = test_memory();
        let mut dev = Block::open(&p, false, "rootfs").unwrap();
        assert_eq!(dev.sectors(), 8);
        assert_eq!(dev.features() & VIRTIO_BLK_F_RO, 0);
        let mut cap = [0u8; 8];
        dev.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 8);

        assert_eq!(submit(&mut dev, &mem, T_IN, 3, 1024, false), (1025, S_OK));
        let mut got = [0u8; 1024];
        mem.read_slice(&mut got, GuestAddress(0x5_0000)).unwrap();
        assert!(got[..512].iter().all(|&b| b == 3) && got[512..].iter().all(|&b| b == 4));

        mem.write_slice(&[0xab; 512], GuestAddress(0x5_0000))
            .unwrap();
        assert_eq!(submit(&mut dev, &mem, T_OUT, 7, 512, true), (1, S_OK));
        assert_eq!(submit(&mut dev, &mem, T_FLUSH, 0, 0, false), (1, S_OK));
        let on_disk = std::fs::read(&p).unwrap();
        assert!(on_disk[7 * 512..].iter().all(|&b| b == 0xab));

        assert_eq!(submit(&mut dev, &mem, T_GET_ID, 0, 20, false), (21, S_OK));
        let mut id = [0u8; 6];
        mem.read_slice(&mut id, GuestAddress(0x5_0000)).unwrap();
        assert_eq!(&id, b"rootfs");
        assert_eq!(submit(&mut dev, &mem, 99, 0, 0, false).1, S_UNSUPP);
    }

    #[test]
    fn refuses_out_of_range_partial_and_read_only_writes() {
        let (_d, p) = disk(8);
        let mem = test_memory();
        let mut dev = Block::open(&p, false, "x").unwrap();
        assert_eq!(
            submit(&mut dev, &mem, T_IN, 7, 1024, false).1,
            S_IOERR,
            "past the end"
        );
        assert_eq!(
            submit(&mut dev, &mem, T_IN, u64::MAX, 512, false).1,
            S_IOERR,
            "sector overflow"
        );
        assert_eq!(
            submit(&mut dev, &mem, T_IN, 0, 100, false).1,
            S_IOERR,
            "partial sector"
        );
        let mut ro = Block::open(&p, true, "x").unwrap();
        assert_ne!(ro.features() & VIRTIO_BLK_F_RO, 0);
        mem.write_slice(&[0xcd; 512], GuestAddress(0x5_0000))
            .unwrap();
        assert_eq!(submit(&mut ro, &mem, T_OUT, 0, 512, true).1, S_IOERR);
        assert!(
            std::fs::read(&p).unwrap()[..512].iter().all(|&b| b == 0),
            "image untouched"
        );
        assert!(Block::open(&p.with_extension("missing"), true, "x").is_err());
    }
}
