//! fio's random map: a random job reads each block of its file once per pass.
//!
//! fio (the paper's load generator, 1.x in 2008, and today unless
//! `norandommap` is set) keeps a bitmap of the blocks it has done. It draws
//! a block up to five times; if all five are taken it scans forward from a
//! random point for the first free block. So a random reader never re-reads
//! a block within a pass: its own reads give it no cache hits, and in the
//! cached tables every hit is a precached block seen for the first time.

use crate::rng::Rng;

/// Tries at a random block before scanning (fio's `get_next_rand_offset`).
const TRIES: u32 = 5;

/// Blocks done in the current pass.
#[derive(Debug, Clone)]
pub struct RandomMap {
    bits: Vec<u64>,
    blocks: u64,
    free: u64,
}

impl RandomMap {
    /// A map of `blocks` blocks, all free.
    pub fn new(blocks: u64) -> Self {
        RandomMap {
            bits: vec![0; blocks.div_ceil(64) as usize],
            blocks,
            free: blocks,
        }
    }

    fn is_free(&self, b: u64) -> bool {
        self.bits[(b / 64) as usize] & (1 << (b % 64)) == 0
    }

    fn take(&mut self, b: u64) -> u64 {
        self.bits[(b / 64) as usize] |= 1 << (b % 64);
        self.free -= 1;
        b
    }

    /// The next block; when a pass is complete the map starts over (fio's
    /// `loops`/`time_based` rerun the file).
    pub fn next(&mut self, rng: &mut Rng) -> u64 {
        if self.free == 0 {
            self.bits.iter_mut().for_each(|w| *w = 0);
            self.free = self.blocks;
        }
        for _ in 0..TRIES {
            let b = rng.below(self.blocks);
            if self.is_free(b) {
                return self.take(b);
            }
        }
        // Scan word by word from a random point, wrapping; one is free.
        let start = rng.below(self.blocks);
        let words = self.bits.len();
        let mut w = (start / 64) as usize;
        let mut mask = !0u64 << (start % 64);
        for _ in 0..=words {
            let free = !self.bits[w] & mask;
            if free != 0 {
                let b = w as u64 * 64 + free.trailing_zeros() as u64;
                if b < self.blocks {
                    return self.take(b);
                }
            }
            w = (w + 1) % words;
            mask = !0;
        }
        unreachable!("free > 0 but no free block found")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_visits_every_block_once_then_restarts() {
        let mut rng = Rng::new(3, 1);
        let n = 1000;
        let mut m = RandomMap::new(n);
        let mut seen = vec![false; n as usize];
        for _ in 0..n {
            let b = m.next(&mut rng) as usize;
            assert!(!seen[b], "block {b} twice in one pass");
            seen[b] = true;
        }
        assert!(seen.iter().all(|&s| s));
        // The next pass starts over.
        assert!(m.next(&mut rng) < n);
        assert_eq!(m.free, n - 1);
    }
}
