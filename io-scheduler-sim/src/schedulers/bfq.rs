//! BFQ: each queue gets budgets (sectors) served exclusively; the next queue
//! is picked by B-WF2Q+ (among queues whose virtual start time is not after
//! the class's virtual time, the smallest virtual finish time), weights follow
//! the ioprio level (`(8 - level) * 10`), RT before BE before IDLE, sync
//! queues idle for `slice_idle`, and a queue that times out is charged its
//! whole budget (so seeky queues get time, not sectors).

use super::flows::Flows;
use super::{Decision, Scheduler};
use crate::request::{PrioClass, Request};
use crate::units::{ms, Time};
use serde::{Deserialize, Serialize};

/// BFQ tunables (Linux defaults where they exist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BfqTunables {
    /// Budget per service (KiB).
    pub max_budget_kb: u64,
    /// Longest service of a sync queue (ms).
    pub timeout_sync_ms: f64,
    /// Longest service of an async queue (ms).
    pub timeout_async_ms: f64,
    /// Idle wait for a sync queue's next request (ms); 0 disables.
    pub slice_idle_ms: f64,
    /// Sync FIFO expiry (ms).
    pub fifo_expire_sync_ms: f64,
    /// Async FIFO expiry (ms).
    pub fifo_expire_async_ms: f64,
    /// Farthest backward seek (KiB).
    pub back_seek_max_kb: u64,
    /// Largest merged request (sectors).
    pub max_sectors: u32,
}

impl Default for BfqTunables {
    fn default() -> Self {
        BfqTunables {
            max_budget_kb: 8192,
            timeout_sync_ms: 125.0,
            timeout_async_ms: 250.0,
            slice_idle_ms: 8.0,
            fifo_expire_sync_ms: 125.0,
            fifo_expire_async_ms: 250.0,
            back_seek_max_kb: 16 * 1024,
            max_sectors: 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Sched {
    start: f64,
    finish: f64,
    busy: bool,
}

/// The BFQ scheduler.
#[derive(Debug)]
pub struct Bfq {
    t: BfqTunables,
    flows: Flows,
    s: Vec<Sched>,
    vtime: [f64; 3],
    active: Option<usize>,
    served: u64,
    timeout_at: Time,
    idle_until: Option<Time>,
    pending: usize,
    budget: u64,
}

fn class_idx(c: PrioClass) -> usize {
    match c {
        PrioClass::Rt => 0,
        PrioClass::Be => 1,
        PrioClass::Idle => 2,
    }
}

impl Bfq {
    /// A BFQ scheduler.
    pub fn new(t: BfqTunables) -> Self {
        Bfq {
            budget: (t.max_budget_kb * 2).max(8),
            t,
            flows: Flows::default(),
            s: Vec::new(),
            vtime: [0.0; 3],
            active: None,
            served: 0,
            timeout_at: 0,
            idle_until: None,
            pending: 0,
        }
    }

    fn weight(&self, i: usize) -> f64 {
        let p = self.flows.flows[i].prio;
        match p.class {
            PrioClass::Idle => 10.0,
            _ => (8 - p.level.min(7)) as f64 * 10.0,
        }
    }

    fn activate(&mut self, i: usize) {
        if self.s.len() <= i {
            self.s.resize(i + 1, Sched::default());
        }
        if self.s[i].busy || self.active == Some(i) {
            return;
        }
        let c = class_idx(self.flows.flows[i].prio.class);
        let w = self.weight(i);
        let st = self.vtime[c].max(self.s[i].finish);
        self.s[i] = Sched {
            start: st,
            finish: st + self.budget as f64 / w,
            busy: true,
        };
    }

    /// Ends the active queue's service, charging `charge` sectors. With
    /// `still_active`, a sync queue that is empty only because its process
    /// has not issued its next request yet stays backlogged (BFQ's answer to
    /// deceptive idleness); otherwise an empty queue leaves the busy set and
    /// loses its place.
    fn expire(&mut self, charge: u64, still_active: bool) {
        let Some(a) = self.active.take() else {
            return;
        };
        self.idle_until = None;
        let c = class_idx(self.flows.flows[a].prio.class);
        let w = self.weight(a);
        let total_w: f64 = (0..self.s.len())
            .filter(|&i| {
                (self.s[i].busy || i == a) && class_idx(self.flows.flows[i].prio.class) == c
            })
            .map(|i| self.weight(i))
            .sum::<f64>()
            .max(w);
        self.vtime[c] += charge as f64 / total_w;
        let finish = self.s[a].start + charge as f64 / w;
        self.s[a].finish = finish;
        self.s[a].busy = false;
        let f = &self.flows.flows[a];
        let thinking = still_active
            && f.sync
            && !f.exited
            && self.t.slice_idle_ms > 0.0
            && f.ttime_mean <= ms(self.t.slice_idle_ms);
        if !f.q.is_empty() || thinking {
            self.s[a].start = finish;
            self.s[a].finish = finish + self.budget as f64 / w;
            self.s[a].busy = true;
        }
    }

    fn select(&mut self, now: Time) -> Option<usize> {
        for c in 0..3 {
            let members: Vec<usize> = (0..self.s.len())
                .filter(|&i| self.s[i].busy && class_idx(self.flows.flows[i].prio.class) == c)
                .collect();
            if members.is_empty() {
                continue;
            }
            let min_start = members
                .iter()
                .map(|&i| self.s[i].start)
                .fold(f64::INFINITY, f64::min);
            if self.vtime[c] < min_start {
                self.vtime[c] = min_start;
            }
            let v = self.vtime[c];
            let pick = members
                .iter()
                .copied()
                .filter(|&i| self.s[i].start <= v + 1e-9)
                .min_by(|&x, &y| {
                    self.s[x]
                        .finish
                        .partial_cmp(&self.s[y].finish)
                        .unwrap_or(std::cmp::Ordering::Equal)
                        .then(x.cmp(&y))
                })
                .expect("an eligible queue exists");
            self.s[pick].busy = false;
            self.active = Some(pick);
            self.served = 0;
            self.idle_until = None;
            let sync = self.flows.flows[pick].sync;
            self.timeout_at = now
                + ms(if sync {
                    self.t.timeout_sync_ms
                } else {
                    self.t.timeout_async_ms
                });
            return Some(pick);
        }
        None
    }

    fn more_important_waiting(&self, a: usize) -> bool {
        let ca = class_idx(self.flows.flows[a].prio.class);
        (0..self.s.len()).any(|i| self.s[i].busy && class_idx(self.flows.flows[i].prio.class) < ca)
    }
}

impl Scheduler for Bfq {
    fn name(&self) -> &'static str {
        "bfq"
    }

    fn add(&mut self, req: Request, now: Time) {
        let i = self.flows.flow_for(&req);
        self.flows.note_arrival(i, now);
        let exp = now
            + ms(if req.sync {
                self.t.fifo_expire_sync_ms
            } else {
                self.t.fifo_expire_async_ms
            });
        if !self.flows.flows[i].q.insert(req, exp, self.t.max_sectors) {
            self.pending += 1;
        }
        if self.active == Some(i) {
            self.idle_until = None;
        } else {
            self.activate(i);
        }
    }

    fn dispatch(&mut self, now: Time) -> Decision {
        if self.pending == 0 {
            return Decision::Idle;
        }
        loop {
            let a = match self.active {
                Some(a) => a,
                None => match self.select(now) {
                    Some(a) => a,
                    None => return Decision::Idle,
                },
            };
            if now >= self.timeout_at {
                // Timed out: charged the whole budget.
                self.expire(self.budget.max(self.served), true);
                continue;
            }
            if self.served >= self.budget || self.more_important_waiting(a) {
                self.expire(self.served, true);
                continue;
            }
            let f = &self.flows.flows[a];
            if f.q.is_empty() {
                let idle_ok = f.sync
                    && self.t.slice_idle_ms > 0.0
                    && !f.exited
                    && f.ttime_mean <= ms(self.t.slice_idle_ms);
                if !idle_ok {
                    self.expire(self.served, false);
                    continue;
                }
                if f.dispatched > 0 {
                    return Decision::Idle;
                }
                let until = self
                    .idle_until
                    .unwrap_or(now + ms(self.t.slice_idle_ms))
                    .min(self.timeout_at);
                self.idle_until = Some(until);
                if now >= until {
                    self.expire(self.served, false);
                    continue;
                }
                return Decision::Wait(until);
            }
            let key = self
                .flows
                .next_key(a, now, self.t.back_seek_max_kb * 2)
                .expect("queue has requests");
            let f = &mut self.flows.flows[a];
            let r = f.q.remove(key).expect("key is queued");
            f.dispatched += 1;
            f.last_end = r.end();
            self.served += r.sectors as u64;
            self.pending -= 1;
            return Decision::Dispatch(r);
        }
    }

    fn completed(&mut self, req: &Request, now: Time) {
        let i = self.flows.flow_for(req);
        let f = &mut self.flows.flows[i];
        f.dispatched = f.dispatched.saturating_sub(1);
        f.last_done = Some(now);
        if self.active == Some(i) && f.q.is_empty() && f.dispatched == 0 {
            self.idle_until = Some(now + ms(self.t.slice_idle_ms));
        }
    }

    fn pending(&self) -> usize {
        self.pending
    }

    fn work_conserving(&self) -> bool {
        self.t.slice_idle_ms <= 0.0
    }

    fn ctx_exited(&mut self, ctx: u32) {
        self.flows.exited(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Dir, IoPrio};
    use crate::schedulers::testkit::{next, req};

    /// Two always-backlogged sync queues share the disk by weight.
    #[test]
    fn service_follows_weights() {
        let mut s = Bfq::new(BfqTunables::default());
        let mut id = 0;
        let mut lba = [0u64, 1 << 30];
        for (ctx, l) in lba.iter_mut().enumerate() {
            for _ in 0..4 {
                id += 1;
                s.add(
                    req(
                        id,
                        *l,
                        Dir::Read,
                        true,
                        IoPrio::be(if ctx == 0 { 0 } else { 4 }),
                        ctx as u32,
                        0,
                    ),
                    0,
                );
                *l += 64;
            }
        }
        let mut served = [0u64; 2];
        let mut now = 0;
        for _ in 0..20_000 {
            let (r, at) = next(&mut s, now).expect("backlogged");
            served[r.ctx as usize] += r.sectors as u64;
            now = at + 100_000;
            s.completed(&r, now);
            // Keep the queue backlogged.
            id += 1;
            let c = r.ctx as usize;
            s.add(req(id, lba[c], Dir::Read, true, r.prio, r.ctx, now), now);
            lba[c] += 64;
        }
        let ratio = served[0] as f64 / served[1] as f64;
        assert!(
            (ratio - 2.0).abs() < 0.3,
            "be/0 : be/4 service ratio {ratio}"
        );
    }
}
