//! A harness that feeds arbitrary bytes to the virtio devices as guest
//! memory contents and register traffic; shared by the cargo-fuzz target
//! (`vm-backend/fuzz`) and a randomized test run by `cargo test`.
//!
//! The first 64 KiB of guest RAM come from the input (descriptor tables,
//! rings and buffers alike are attacker-controlled), a hole follows, then
//! more RAM. The driver handshake is done properly with queue addresses and
//! sizes taken from the input, then the rest of the input is a list of
//! operations: notifications, host polls and raw register writes. The
//! harness must return without panicking, whatever the input.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::block::Block;
use super::console::{Console, Pipe};
use super::mmio::{status, MmioTransport};
use super::rng::Rng;
use super::vsock::{Vsock, VsockConfig};
use super::{Interrupt, Memory, VirtioDevice};
use crate::devices::BusDevice;

const RAM0: usize = 0x1_0000;

fn byte(data: &[u8], i: usize) -> u8 {
    data.get(i).copied().unwrap_or(0)
}

fn word(data: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([
        byte(data, i),
        byte(data, i + 1),
        byte(data, i + 2),
        byte(data, i + 3),
    ])
}

fn block_device() -> Option<Block> {
    // An anonymous in-memory file as the disk image.
    // SAFETY: memfd_create with a constant name; the result is checked.
    let fd = unsafe { libc::memfd_create(c"fuzz-disk".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(&[0x5a; 0x4000]).ok()?;
    let path = format!("/proc/self/fd/{fd}");
    let dev = Block::open(std::path::Path::new(&path), false, "fuzz").ok();
    drop(f);
    dev
}

/// A private directory for the vsock device's socket, removed with the
/// guard.
struct TempDir(std::path::PathBuf);
impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> Option<TempDir> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("vessel-fuzz-{}-{n}", std::process::id()));
    std::fs::create_dir(&p).ok()?;
    Some(TempDir(p))
}

/// Runs one input through a device chosen by its first byte.
pub fn exercise(data: &[u8]) {
    let Ok(mem): Result<Memory, _> =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM0), (GuestAddress(0x2_0000), RAM0)])
    else {
        return;
    };
    let fill = &data[..data.len().min(RAM0)];
    let _ = mem.write_slice(fill, GuestAddress(0));
    let rest = &data[fill.len().min(data.len())..];
    let ops = if rest.is_empty() { data } else { rest };

    let pipe = Arc::new(Mutex::new(Pipe {
        connected: true,
        connection_changed: true,
        ..Default::default()
    }));
    let vsock_dir = tempfile_dir();
    let device: Box<dyn VirtioDevice> = match byte(data, 0) % 4 {
        0 => Box::new(Rng::new()),
        1 => match block_device() {
            Some(b) => Box::new(b),
            None => return,
        },
        3 => {
            let Some(dir) = &vsock_dir else { return };
            let cfg = VsockConfig {
                guest_cid: 3,
                uds_path: dir.join("v.sock"),
            };
            let Ok(wake) = EventFd::new(libc::EFD_NONBLOCK) else {
                return;
            };
            match Vsock::new(&cfg, wake, Arc::default()) {
                Ok(v) => Box::new(v),
                Err(_) => return,
            }
        }
        _ => {
            pipe.lock()
                .unwrap_or_else(|e| e.into_inner())
                .to_guest
                .extend(fill.iter().take(300));
            let Ok(wake) = EventFd::new(libc::EFD_NONBLOCK) else {
                return;
            };
            Box::new(Console::new("fuzz", pipe.clone(), wake))
        }
    };
    let nqueues = device.queue_max_sizes().len();
    let Ok(evt) = EventFd::new(libc::EFD_NONBLOCK) else {
        return;
    };
    let mut t = MmioTransport::new(device, mem, Interrupt::new(evt));
    let w = |t: &mut MmioTransport, off: u32, v: u32| t.write(u64::from(off), &v.to_le_bytes());

    // A driver's handshake, with input-chosen queue geometry.
    w(&mut t, 0x70, status::ACKNOWLEDGE | status::DRIVER);
    w(&mut t, 0x24, 1);
    w(&mut t, 0x20, 1);
    w(&mut t, 0x24, 0);
    w(&mut t, 0x20, word(data, 1));
    w(
        &mut t,
        0x70,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
    for q in 0..nqueues as u32 {
        let g = 8 + q as usize * 8;
        let size = 1u32 << (byte(data, g) % 9);
        // Addresses in the input-filled area, mostly aligned, sometimes
        // not, sometimes in the hole or past the end.
        let addr = |i: usize| -> u32 {
            let raw = u32::from(u16::from_le_bytes([
                byte(data, g + i),
                byte(data, g + i + 1),
            ]));
            match byte(data, g + 7) % 8 {
                0 => raw.wrapping_mul(5) + 0x1_8000,
                1 => raw,
                _ => raw & !0xf,
            }
        };
        w(&mut t, 0x30, q);
        w(&mut t, 0x38, size);
        w(&mut t, 0x80, addr(1));
        w(&mut t, 0x90, addr(3));
        w(&mut t, 0xa0, addr(5));
        w(&mut t, 0x44, 1);
    }
    w(
        &mut t,
        0x70,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
    );

    // Then the operations: 6 bytes each.
    for op in ops.chunks(6).take(512) {
        let v = word(op, 2);
        match byte(op, 0) % 8 {
            0..=3 => w(&mut t, 0x50, v % (nqueues as u32 + 2)),
            4 => t.poll_host(),
            5 => {
                let mut b = [0u8; 4];
                t.read(u64::from(byte(op, 1)) * 4, &mut b);
            }
            6 => t.write(0x100 + u64::from(byte(op, 1)), op.get(2..).unwrap_or(&[])),
            _ => w(&mut t, u32::from(byte(op, 1)) * 4, v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random inputs through the harness: a cheap stand-in for the
    /// cargo-fuzz run in every `cargo test`.
    #[test]
    fn random_inputs_do_not_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..600 {
            let len = (next() % 0x1_1000) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = data.first_mut() {
                *b = round as u8;
            }
            exercise(&data);
        }
        exercise(&[]);
    }
}
