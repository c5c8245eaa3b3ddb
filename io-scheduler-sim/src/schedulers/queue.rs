//! A request queue kept both in disk order (for the elevator) and in arrival
//! order (for FIFO expiry), as deadline and anticipatory keep `sort_list` and
//! `fifo_list`.

use crate::request::Request;
use crate::units::Time;
use std::collections::{BTreeMap, VecDeque};

/// Key of a queued request: (start sector, id).
pub type Key = (u64, u64);

/// Requests sorted by sector with a FIFO of their expiry times.
#[derive(Debug, Default)]
pub struct SortedFifo {
    sort: BTreeMap<Key, Request>,
    // Entries whose key left `sort` are skipped lazily.
    fifo: VecDeque<(Key, Time)>,
}

impl SortedFifo {
    /// Number of queued requests.
    pub fn len(&self) -> usize {
        self.sort.len()
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.sort.is_empty()
    }

    /// Queues `req` with FIFO expiry `expire`; back-merges it into a queued
    /// request that ends where it starts if `max_sectors` allows. Returns
    /// true when it merged.
    pub fn insert(&mut self, req: Request, expire: Time, max_sectors: u32) -> bool {
        if max_sectors > 0 {
            if let Some((_, prev)) = self.sort.range_mut(..(req.lba, 0)).next_back() {
                if prev.can_back_merge(&req, max_sectors) {
                    prev.back_merge(req);
                    return true;
                }
            }
        }
        let key = (req.lba, req.id);
        self.sort.insert(key, req);
        self.fifo.push_back((key, expire));
        false
    }

    /// Removes a queued request.
    pub fn remove(&mut self, key: Key) -> Option<Request> {
        self.sort.remove(&key)
    }

    /// A queued request.
    pub fn get(&self, key: Key) -> Option<&Request> {
        self.sort.get(&key)
    }

    /// The oldest queued request and its expiry.
    pub fn fifo_head(&mut self) -> Option<(Key, Time)> {
        while let Some(&(key, exp)) = self.fifo.front() {
            if self.sort.contains_key(&key) {
                return Some((key, exp));
            }
            self.fifo.pop_front();
        }
        None
    }

    /// First request at or after `sector`.
    pub fn next_from(&self, sector: u64) -> Option<Key> {
        self.sort.range((sector, 0)..).next().map(|(k, _)| *k)
    }

    /// Last request starting before `sector`.
    pub fn prev_before(&self, sector: u64) -> Option<Key> {
        self.sort.range(..(sector, 0)).next_back().map(|(k, _)| *k)
    }

    /// First request strictly after `key` in disk order.
    pub fn after(&self, key: Key) -> Option<Key> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.sort
            .range((Excluded(key), Unbounded))
            .next()
            .map(|(k, _)| *k)
    }

    /// Lowest-sector request.
    pub fn first(&self) -> Option<Key> {
        self.sort.keys().next().copied()
    }

    /// The anticipatory elevator's choice from head position `last`: the
    /// nearest request ahead, or one behind if it is within `back_max`
    /// sectors and `penalty` times its distance is shorter; wraps to the
    /// lowest sector when nothing qualifies.
    pub fn elevator(&self, last: u64, back_max: u64, penalty: u64) -> Option<Key> {
        let fwd = self.next_from(last);
        let back = self.prev_before(last).filter(|k| last - k.0 <= back_max);
        match (fwd, back) {
            (Some(f), Some(b)) => {
                if (last - b.0).saturating_mul(penalty) < f.0 - last {
                    Some(b)
                } else {
                    Some(f)
                }
            }
            (Some(f), None) => Some(f),
            (None, Some(b)) => Some(b),
            (None, None) => self.first(),
        }
    }

    /// Iterates over queued requests in disk order.
    pub fn iter(&self) -> impl Iterator<Item = &Request> {
        self.sort.values()
    }
}
