//! deadline: a one-way elevator in batches of `fifo_batch`, with read and
//! write FIFOs whose expiry interrupts the sweep, and reads preferred over
//! writes up to `writes_starved` times (Linux 2.6.18 defaults).

use super::queue::{Key, SortedFifo};
use super::{Decision, Scheduler};
use crate::request::{Dir, Request};
use crate::units::{ms, Time};
use serde::{Deserialize, Serialize};

/// deadline tunables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadlineTunables {
    /// Read FIFO expiry (ms).
    pub read_expire_ms: f64,
    /// Write FIFO expiry (ms).
    pub write_expire_ms: f64,
    /// Requests per sorted batch.
    pub fifo_batch: u32,
    /// Read batches allowed before a pending write batch must run.
    pub writes_starved: u32,
    /// Largest merged request (sectors); 0 disables merging.
    pub max_sectors: u32,
}

impl Default for DeadlineTunables {
    fn default() -> Self {
        DeadlineTunables {
            read_expire_ms: 500.0,
            write_expire_ms: 5000.0,
            fifo_batch: 16,
            writes_starved: 2,
            max_sectors: 1024,
        }
    }
}

/// The deadline scheduler.
#[derive(Debug)]
pub struct Deadline {
    t: DeadlineTunables,
    q: [SortedFifo; 2],
    next: [Option<Key>; 2],
    batching: u32,
    starved: u32,
    dir: usize,
}

fn idx(d: Dir) -> usize {
    match d {
        Dir::Read => 0,
        Dir::Write => 1,
    }
}

impl Deadline {
    /// A deadline scheduler.
    pub fn new(t: DeadlineTunables) -> Self {
        Deadline {
            t,
            q: [SortedFifo::default(), SortedFifo::default()],
            next: [None, None],
            batching: 0,
            starved: 0,
            dir: 0,
        }
    }

    fn take(&mut self, d: usize, key: Key) -> Request {
        let r = self.q[d].remove(key).expect("key is queued");
        self.next[d] = self.q[d].after(key);
        self.batching += 1;
        self.dir = d;
        r
    }
}

impl Scheduler for Deadline {
    fn name(&self) -> &'static str {
        "deadline"
    }

    fn add(&mut self, req: Request, now: Time) {
        let d = idx(req.dir);
        let exp = now
            + ms(if d == 0 {
                self.t.read_expire_ms
            } else {
                self.t.write_expire_ms
            });
        self.q[d].insert(req, exp, self.t.max_sectors);
    }

    fn dispatch(&mut self, now: Time) -> Decision {
        // Continue the current sorted batch.
        if self.batching < self.t.fifo_batch {
            if let Some(k) = self.next[self.dir].filter(|k| self.q[self.dir].get(*k).is_some()) {
                return Decision::Dispatch(self.take(self.dir, k));
            }
        }
        let reads = !self.q[0].is_empty();
        let writes = !self.q[1].is_empty();
        let d = if reads && !(writes && self.starved >= self.t.writes_starved) {
            if writes {
                self.starved += 1;
            }
            0
        } else if writes {
            self.starved = 0;
            1
        } else {
            return Decision::Idle;
        };
        self.batching = 0;
        let head = self.q[d].fifo_head();
        let expired = head.is_some_and(|(_, exp)| exp <= now);
        let next = self.next[d].filter(|k| self.q[d].get(*k).is_some());
        let key = match (expired, next) {
            (false, Some(k)) => k,
            _ => head.expect("direction has requests").0,
        };
        Decision::Dispatch(self.take(d, key))
    }

    fn completed(&mut self, _req: &Request, _now: Time) {}

    fn pending(&self) -> usize {
        self.q[0].len() + self.q[1].len()
    }

    fn work_conserving(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::IoPrio;
    use crate::schedulers::testkit::{next, req};
    use crate::units::MS;
    use proptest::prelude::*;

    proptest! {
        /// A read far from a stream that always has requests just ahead of
        /// the elevator is still served within its FIFO expiry plus one batch.
        #[test]
        fn fifo_expiry_bounds_the_wait(far in 0u64..1000, start in 2000u64..1_000_000, svc_ms in 1u64..30, batch in 1u32..32) {
            let t = DeadlineTunables { fifo_batch: batch, ..DeadlineTunables::default() };
            let expire = ms(t.read_expire_ms);
            let mut s = Deadline::new(t);
            let svc = svc_ms * MS;
            let mut id = 1;
            let mut lba = start;
            for _ in 0..3 {
                s.add(req(id, lba, Dir::Read, true, IoPrio::DEFAULT, 1, 0), 0);
                id += 1;
                lba += 64;
            }
            // The stream is under way before the far read arrives.
            let (first, _) = next(&mut s, 0).expect("requests pending");
            prop_assert_eq!(first.id, 1);
            s.add(req(0, far, Dir::Read, true, IoPrio::DEFAULT, 0, 0), 0);
            s.add(req(id, lba, Dir::Read, true, IoPrio::DEFAULT, 1, 0), 0);
            id += 1;
            lba += 64;
            let mut now = svc;
            loop {
                let (r, at) = next(&mut s, now).expect("requests pending");
                if r.id == 0 {
                    prop_assert!(at <= expire + (batch as u64 + 1) * svc, "far read waited {} ms", at / MS);
                    break;
                }
                prop_assert!(at <= expire + (batch as u64 + 2) * svc + 1000 * svc, "runaway");
                now = at + svc;
                s.add(req(id, lba, Dir::Read, true, IoPrio::DEFAULT, 1, now), now);
                id += 1;
                lba += 64;
            }
        }
    }
}
