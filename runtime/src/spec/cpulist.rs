//! The kernel's list format for CPU and NUMA node sets (`0-3,7`), used by
//! `process.execCPUAffinity` and `linux.memoryPolicy.nodes`, parsed into
//! the bitmask that sched_setaffinity(2) and set_mempolicy(2) take.

use super::{invalid, SpecError};

/// Bits in one mask word (the kernel's `unsigned long`).
const WORD_BITS: usize = libc::c_ulong::BITS as usize;

/// A set of CPU or node ids as a bitmask of `unsigned long` words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMask {
    words: Vec<libc::c_ulong>,
}

impl IdMask {
    /// Parses `text` (`0-3,7`: ids and inclusive ranges, comma separated)
    /// with ids below `limit`; `field` names the value in errors. An empty
    /// string is the empty set.
    pub fn parse(field: &str, text: &str, limit: usize) -> Result<IdMask, SpecError> {
        let mut mask = IdMask::default();
        if text.is_empty() {
            return Ok(mask);
        }
        let id = |s: &str| -> Result<usize, SpecError> {
            let n: usize = s.parse().map_err(|_| {
                invalid(
                    field,
                    format!("{text:?}: {s:?} is not a number (use a list like 0-3,7)"),
                )
            })?;
            if n >= limit {
                return Err(invalid(
                    field,
                    format!("{text:?}: {n} is above the largest id {}", limit - 1),
                ));
            }
            Ok(n)
        };
        for part in text.split(',') {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (id(a)?, id(b)?),
                None => {
                    let n = id(part)?;
                    (n, n)
                }
            };
            if lo > hi {
                return Err(invalid(
                    field,
                    format!("{text:?}: range {part} goes downwards"),
                ));
            }
            for i in lo..=hi {
                mask.set(i);
            }
        }
        Ok(mask)
    }

    /// Every id below `count`.
    pub fn all(count: usize) -> IdMask {
        let mut mask = IdMask::default();
        for i in 0..count {
            mask.set(i);
        }
        mask
    }

    fn set(&mut self, i: usize) {
        let w = i / WORD_BITS;
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (i % WORD_BITS);
    }

    /// Whether id `i` is in the set.
    pub fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / WORD_BITS)
            .is_some_and(|w| w & (1 << (i % WORD_BITS)) != 0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// The ids in the set, in order.
    pub fn ids(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.words.len() * WORD_BITS).filter(|i| self.contains(*i))
    }

    /// The mask words (the lowest ids first), as the kernel reads them.
    pub fn words(&self) -> &[libc::c_ulong] {
        &self.words
    }

    /// The number of bits the words hold.
    pub fn bits(&self) -> usize {
        self.words.len() * WORD_BITS
    }
}

/// Reads a sysfs list file (`/sys/devices/system/node/online`, ...); `None`
/// when the file is absent (a kernel without NUMA).
pub fn read_sys_list(path: &str, limit: usize) -> Option<IdMask> {
    let text = std::fs::read_to_string(path).ok()?;
    IdMask::parse(path, text.trim(), limit).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_ranges() {
        let m = IdMask::parse("f", "0-3,7,64", 1024).unwrap();
        assert_eq!(m.ids().collect::<Vec<_>>(), vec![0, 1, 2, 3, 7, 64]);
        assert_eq!(m.words(), &[0x8f, 1]);
        assert!(IdMask::parse("f", "", 8).unwrap().is_empty());
    }

    #[test]
    fn refuses_bad_lists_naming_the_field() {
        for bad in ["a", "1-", "3-1", "1,,2", "8", " 1", "-1"] {
            let e = IdMask::parse("process.execCPUAffinity.final", bad, 8)
                .unwrap_err()
                .to_string();
            assert!(e.contains("process.execCPUAffinity.final"), "{bad}: {e}");
        }
    }
}
