//! virtio-rng: fills the guest's buffers from the host's getrandom(2).

use virtio_queue::Queue;

use super::chain::Limits;
use super::{device_id, process_chains, Memory, VirtioDevice, VIRTIO_F_VERSION_1};

/// Most bytes handed out per request.
const MAX_REQUEST: u64 = 64 << 10;

/// The entropy device (one queue).
#[derive(Debug, Default)]
pub struct Rng;

impl Rng {
    /// A new device.
    pub fn new() -> Self {
        Rng
    }
}

fn getrandom(buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of
        // `buf`, which is valid for writes.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        done += n as usize;
    }
    true
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        device_id::RNG
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![256]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }
    fn read_config(&self, _offset: u64, _data: &mut [u8]) {}

    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &Memory) -> bool {
        let Some(q) = queues.get_mut(index) else {
            return false;
        };
        let limits = Limits {
            max_descriptors: 64,
            max_bytes: u64::MAX >> 1,
        };
        process_chains(q, mem, limits, |c| {
            let want = c.writable_len().min(MAX_REQUEST) as usize;
            let mut buf = vec![0u8; want];
            if !getrandom(&mut buf) {
                return Some(0);
            }
            Some(c.write_at(mem, 0, &buf) as u32)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::chain::tests::{desc, test_memory, W};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::QueueT;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn fills_writable_buffers_and_skips_bad_chains() {
        let mem = test_memory();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.build_multiple_desc_chains(&[
            desc(0x8000, 64, W),
            desc(0x0f_fff0, 0x100, W), // runs off the end of the first range
            desc(0x9000, 8, W),
        ])
        .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let mut rng = Rng::new();
        assert!(rng.process_queue(0, std::slice::from_mut(&mut q), &mem));
        assert_eq!(
            q.used_idx(&mem, std::sync::atomic::Ordering::Acquire)
                .unwrap()
                .0,
            3
        );
        let lens: Vec<u32> = (0..3)
            .map(|i| vq.used().ring().ref_at(i).unwrap().load().len())
            .collect();
        assert_eq!(lens, vec![64, 0, 8]);
        let mut got = [0u8; 64];
        mem.read_slice(&mut got, GuestAddress(0x8000)).unwrap();
        assert!(
            got.iter().any(|&b| b != 0),
            "64 random bytes are not all zero"
        );
    }
}
