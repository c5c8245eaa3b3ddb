//! fio's random map: a random job reads each block of its file once per pass.
//!
//! fio (the paper's load generator, 1.x in 2008, and today unless
//! `norandommap` is set) keeps a bitmap of the blocks it has done and draws
//! until it finds a free one, so each pass visits every block once in a
//! random order: its own reads give a random reader no cache hits, and in
//! the cached tables every hit is a precached block seen for the first time.
//!
//! A bitmap costs a cache miss per IO on large files (a 4 GiB file of 4 KiB
//! blocks is a 128 KiB map). The same property (every block once per pass,
//! in a random order, a fresh order each pass) comes from a keyed
//! pseudo-random permutation of the block numbers, computed with no memory:
//! a four-round Feistel network over the next power of four, cycle-walked
//! back into range.

use crate::rng::Rng;

const ROUNDS: usize = 4;

/// The current pass's permutation and how far it has got.
#[derive(Debug, Clone)]
pub struct RandomMap {
    blocks: u64,
    /// Bits of each Feistel half; the domain is 4^half_bits >= blocks.
    half_bits: u32,
    keys: [u64; ROUNDS],
    done: u64,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finalizer: a cheap, well-spread 64-bit hash.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl RandomMap {
    /// A map of `blocks` (> 0) blocks; the first pass is keyed from `rng`.
    pub fn new(blocks: u64, rng: &mut Rng) -> Self {
        let bits = 64 - blocks.saturating_sub(1).leading_zeros();
        let mut m = RandomMap {
            blocks,
            half_bits: bits.div_ceil(2).max(1),
            keys: [0; ROUNDS],
            done: 0,
        };
        m.rekey(rng);
        m
    }

    fn rekey(&mut self, rng: &mut Rng) {
        for k in &mut self.keys {
            *k = rng.next_u64();
        }
        self.done = 0;
    }

    fn permute(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut l, mut r) = (x >> self.half_bits, x & mask);
        for k in self.keys {
            let f = mix(r ^ k) & mask;
            (l, r) = (r, l ^ f);
        }
        (l << self.half_bits) | r
    }

    /// The next block; a new pass (a new order) starts when one is complete.
    pub fn next(&mut self, rng: &mut Rng) -> u64 {
        if self.done == self.blocks {
            self.rekey(rng);
        }
        // A permutation of the whole domain; values beyond the file walk on
        // through the cycle until they land inside it (a bijection of
        // [0, blocks) since every cycle that leaves the range comes back).
        let mut v = self.permute(self.done);
        while v >= self.blocks {
            v = self.permute(v);
        }
        self.done += 1;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pass_visits_every_block_once_in_a_new_order() {
        let mut rng = Rng::new(3, 1);
        for n in [1u64, 2, 3, 1000, 4096, 5001] {
            let mut m = RandomMap::new(n, &mut rng);
            let mut passes = Vec::new();
            for _ in 0..2 {
                let mut seen = vec![false; n as usize];
                let mut order = Vec::new();
                for _ in 0..n {
                    let b = m.next(&mut rng);
                    assert!(b < n);
                    assert!(!seen[b as usize], "block {b} twice in one pass of {n}");
                    seen[b as usize] = true;
                    order.push(b);
                }
                passes.push(order);
            }
            if n >= 1000 {
                assert_ne!(passes[0], passes[1], "the second pass reuses the order");
                // Not the identity or a near-sorted order.
                let ascending = passes[0].windows(2).filter(|w| w[1] > w[0]).count();
                let frac = ascending as f64 / (n - 1) as f64;
                assert!((0.4..0.6).contains(&frac), "{n}: {frac} ascending");
            }
        }
    }
}
