//! Descriptor-chain validation: the one gate between guest-controlled
//! queue contents and device code.
//!
//! virtio-queue's iterator already bounds a chain by the queue size (so a
//! `next` loop ends) and refuses nested indirect tables. On top of that a
//! chain is accepted only if every buffer lies wholly inside guest RAM
//! (never in the MMIO gap or past the end), device-readable buffers all
//! precede device-writable ones (virtio 1.2, 2.7.4.2), and the count and
//! total size are within the device's limits. Devices then copy through
//! [`ValidChain::read_at`] / [`ValidChain::write_at`], which use vm-memory's
//! checked accessors and never form a host pointer from a guest address.

use std::ops::Deref;

use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::Memory;

/// Bounds a device puts on the chains it accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most descriptors in one chain.
    pub max_descriptors: usize,
    /// Most bytes in all buffers of one chain.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_descriptors: 256,
            max_bytes: 16 << 20,
        }
    }
}

/// Why a chain was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// A buffer reaches outside guest RAM.
    #[error("descriptor buffer {addr:#x}+{len:#x} is outside guest memory")]
    OutOfBounds {
        /// Guest address of the buffer.
        addr: u64,
        /// Its length.
        len: u32,
    },
    /// A device-readable buffer follows a device-writable one.
    #[error("device-readable descriptor after a device-writable one")]
    ReadAfterWrite,
    /// More descriptors than the device accepts.
    #[error("descriptor chain longer than {0} descriptors")]
    TooManyDescriptors(usize),
    /// More bytes than the device accepts.
    #[error("descriptor chain larger than {0} bytes")]
    TooLarge(u64),
    /// The chain has no buffer of the kind the request needs.
    #[error("descriptor chain is malformed: {0}")]
    Malformed(&'static str),
}

/// A chain that passed [`validate`]: its buffers, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidChain {
    /// Index of the head descriptor (what goes into the used ring).
    pub head: u16,
    /// Device-readable buffers.
    pub readable: Vec<(GuestAddress, u32)>,
    /// Device-writable buffers.
    pub writable: Vec<(GuestAddress, u32)>,
}

/// Checks a chain popped from a queue.
pub fn validate<M>(
    chain: DescriptorChain<M>,
    mem: &Memory,
    limits: Limits,
) -> Result<ValidChain, ChainError>
where
    M: Deref<Target = Memory>,
{
    let mut out = ValidChain {
        head: chain.head_index(),
        readable: Vec::new(),
        writable: Vec::new(),
    };
    let mut total = 0u64;
    for (n, desc) in chain.enumerate() {
        if n >= limits.max_descriptors {
            return Err(ChainError::TooManyDescriptors(limits.max_descriptors));
        }
        let (addr, len) = (desc.addr(), desc.len());
        if !mem.check_range(addr, len as usize) {
            return Err(ChainError::OutOfBounds { addr: addr.0, len });
        }
        total += u64::from(len);
        if total > limits.max_bytes {
            return Err(ChainError::TooLarge(limits.max_bytes));
        }
        if desc.is_write_only() {
            out.writable.push((addr, len));
        } else if !out.writable.is_empty() {
            return Err(ChainError::ReadAfterWrite);
        } else {
            out.readable.push((addr, len));
        }
    }
    Ok(out)
}

/// Walks `bufs` from byte `offset` for `len` bytes, calling `f` with each
/// piece's guest address and its position in the request.
fn walk(
    bufs: &[(GuestAddress, u32)],
    offset: u64,
    len: usize,
    mut f: impl FnMut(GuestAddress, usize, usize) -> bool,
) -> usize {
    let mut skip = offset;
    let mut done = 0usize;
    for &(addr, blen) in bufs {
        if done == len {
            break;
        }
        let blen = u64::from(blen);
        if skip >= blen {
            skip -= blen;
            continue;
        }
        let n = ((blen - skip) as usize).min(len - done);
        if !f(GuestAddress(addr.0 + skip), done, n) {
            break;
        }
        done += n;
        skip = 0;
    }
    done
}

impl ValidChain {
    /// Total bytes the device may read.
    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|b| u64::from(b.1)).sum()
    }

    /// Total bytes the device may write.
    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|b| u64::from(b.1)).sum()
    }

    /// Copies readable bytes from `offset` into `buf`; returns how many.
    pub fn read_at(&self, mem: &Memory, offset: u64, buf: &mut [u8]) -> usize {
        let len = buf.len();
        walk(&self.readable, offset, len, |addr, at, n| {
            mem.read_slice(&mut buf[at..at + n], addr).is_ok()
        })
    }

    /// Copies `buf` into the writable buffers from `offset`; returns how
    /// many bytes were written.
    pub fn write_at(&self, mem: &Memory, offset: u64, buf: &[u8]) -> usize {
        walk(&self.writable, offset, buf.len(), |addr, at, n| {
            mem.write_slice(&buf[at..at + n], addr).is_ok()
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::{Queue, QueueOwnedT};
    use vm_memory::GuestMemoryMmap;

    /// 1 MiB of RAM at 0, a hole, 1 MiB at 2 MiB: buffers may not span the
    /// hole.
    pub(crate) fn test_memory() -> Memory {
        GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x10_0000),
            (GuestAddress(0x20_0000), 0x10_0000),
        ])
        .unwrap()
    }

    pub(crate) const W: u16 = virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE as u16;

    pub(crate) fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

    /// Sets NEXT flags and indexes so `descs`, stored from table index
    /// `first`, form one chain.
    pub(crate) fn link(descs: &[RawDescriptor], first: u16) -> Vec<RawDescriptor> {
        let next = virtio_bindings::bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
        descs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let d = SplitDescriptor::from(*d);
                let last = i + 1 == descs.len();
                let flags = if last {
                    d.flags() & !next
                } else {
                    d.flags() | next
                };
                let n = if last { 0 } else { first + i as u16 + 1 };
                RawDescriptor::from(SplitDescriptor::new(d.addr().0, d.len(), flags, n))
            })
            .collect()
    }

    fn check(descs: &[RawDescriptor], limits: Limits) -> Result<ValidChain, ChainError> {
        let mem = test_memory();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.build_desc_chain(descs).unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let chain = q.iter(&mem).unwrap().next().unwrap();
        validate(chain, &mem, limits)
    }

    #[test]
    fn accepts_a_well_formed_chain_and_copies_through_it() {
        let mem = test_memory();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.build_desc_chain(&[desc(0x8000, 3, 0), desc(0x9000, 2, 0), desc(0xa000, 4, W)])
            .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let chain = q.iter(&mem).unwrap().next().unwrap();
        let c = validate(chain, &mem, Limits::default()).unwrap();
        assert_eq!((c.readable_len(), c.writable_len()), (5, 4));
        mem.write_slice(b"abc", GuestAddress(0x8000)).unwrap();
        mem.write_slice(b"de", GuestAddress(0x9000)).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(c.read_at(&mem, 1, &mut buf), 4);
        assert_eq!(&buf, b"bcde");
        assert_eq!(
            c.write_at(&mem, 2, b"xyz"),
            2,
            "only 2 writable bytes remain"
        );
        let mut out = [0u8; 4];
        mem.read_slice(&mut out, GuestAddress(0xa000)).unwrap();
        assert_eq!(&out, b"\0\0xy");
    }

    #[test]
    fn refuses_buffers_outside_ram_or_across_the_hole() {
        for (addr, len) in [
            (0xf_ff00, 0x200),
            (0x30_0000, 1),
            (u64::MAX - 2, 8),
            (0x1f_ffff, 2),
        ] {
            assert_eq!(
                check(&[desc(0x1000, 1, 0), desc(addr, len, W)], Limits::default()),
                Err(ChainError::OutOfBounds { addr, len })
            );
        }
    }

    #[test]
    fn refuses_readable_after_writable_and_oversize() {
        assert_eq!(
            check(&[desc(0x1000, 1, W), desc(0x2000, 1, 0)], Limits::default()),
            Err(ChainError::ReadAfterWrite)
        );
        let small = Limits {
            max_descriptors: 2,
            max_bytes: 100,
        };
        assert_eq!(
            check(
                &[desc(0x1000, 1, 0), desc(0x2000, 1, 0), desc(0x3000, 1, W)],
                small
            ),
            Err(ChainError::TooManyDescriptors(2))
        );
        assert_eq!(
            check(&[desc(0x1000, 101, 0)], small),
            Err(ChainError::TooLarge(100))
        );
    }

    #[test]
    fn a_looping_chain_ends() {
        // Descriptor 0 -> 1 -> 0 -> ...: virtio-queue's ttl ends it after
        // queue-size steps; the limits then refuse it or it ends short.
        let mem = test_memory();
        let vq = MockSplitQueue::new(&mem, 4);
        let f = virtio_bindings::bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
        vq.desc_table()
            .store(
                0,
                RawDescriptor::from(SplitDescriptor::new(0x1000, 1, f, 1)),
            )
            .unwrap();
        vq.desc_table()
            .store(
                1,
                RawDescriptor::from(SplitDescriptor::new(0x2000, 1, f, 0)),
            )
            .unwrap();
        vq.avail().ring().ref_at(0).unwrap().store(0);
        vq.avail().idx().store(1);
        let mut q: Queue = vq.create_queue().unwrap();
        let chain = q.iter(&mem).unwrap().next().unwrap();
        let c = validate(chain, &mem, Limits::default()).unwrap();
        assert_eq!(c.readable.len(), 4, "bounded by the queue size");
    }
}
