//! CFQ: per-process queues served one at a time for a time slice; RT before
//! BE before IDLE; within a class, round robin with slices that grow with the
//! priority level (`base + base/5 * (4 - level)`); sync queues keep the disk
//! idle for `slice_idle` waiting for their next request.

use super::flows::Flows;
use super::{Decision, Scheduler};
use crate::request::{PrioClass, Request};
use crate::units::{ms, Time};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// CFQ tunables (Linux defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CfqTunables {
    /// Requests a queue may have on the device at once.
    pub quantum: u32,
    /// Sync FIFO expiry (ms).
    pub fifo_expire_sync_ms: f64,
    /// Async FIFO expiry (ms).
    pub fifo_expire_async_ms: f64,
    /// Base sync slice (ms).
    pub slice_sync_ms: f64,
    /// Base async slice (ms).
    pub slice_async_ms: f64,
    /// Async requests per slice, in quanta.
    pub slice_async_rq: u32,
    /// Idle wait for a sync queue's next request (ms); 0 disables.
    pub slice_idle_ms: f64,
    /// Farthest backward seek (KiB).
    pub back_seek_max_kb: u64,
    /// Largest merged request (sectors).
    pub max_sectors: u32,
}

impl Default for CfqTunables {
    fn default() -> Self {
        CfqTunables {
            quantum: 4,
            fifo_expire_sync_ms: 125.0,
            fifo_expire_async_ms: 250.0,
            slice_sync_ms: 100.0,
            slice_async_ms: 40.0,
            slice_async_rq: 2,
            slice_idle_ms: 8.0,
            back_seek_max_kb: 16 * 1024,
            max_sectors: 1024,
        }
    }
}

/// The CFQ scheduler.
#[derive(Debug)]
pub struct Cfq {
    t: CfqTunables,
    flows: Flows,
    rr: [VecDeque<usize>; 3],
    on_rr: Vec<bool>,
    active: Option<usize>,
    slice_end: Time,
    slice_rq: u32,
    idle_until: Option<Time>,
    pending: usize,
}

fn class_idx(c: PrioClass) -> usize {
    match c {
        PrioClass::Rt => 0,
        PrioClass::Be => 1,
        PrioClass::Idle => 2,
    }
}

impl Cfq {
    /// A CFQ scheduler.
    pub fn new(t: CfqTunables) -> Self {
        Cfq {
            t,
            flows: Flows::default(),
            rr: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
            on_rr: Vec::new(),
            active: None,
            slice_end: 0,
            slice_rq: 0,
            idle_until: None,
            pending: 0,
        }
    }

    fn slice(&self, i: usize) -> Time {
        let f = &self.flows.flows[i];
        let base = if f.sync {
            self.t.slice_sync_ms
        } else {
            self.t.slice_async_ms
        };
        let lvl = if f.prio.class == PrioClass::Idle {
            7.0
        } else {
            f.prio.level as f64
        };
        ms((base + base / 5.0 * (4.0 - lvl)).max(1.0))
    }

    fn enqueue_rr(&mut self, i: usize) {
        if self.on_rr.len() <= i {
            self.on_rr.resize(i + 1, false);
        }
        if !self.on_rr[i] && self.active != Some(i) {
            self.on_rr[i] = true;
            self.rr[class_idx(self.flows.flows[i].prio.class)].push_back(i);
        }
    }

    fn expire(&mut self) {
        if let Some(a) = self.active.take() {
            self.idle_until = None;
            if !self.flows.flows[a].q.is_empty() {
                self.enqueue_rr(a);
            }
        }
    }

    fn select(&mut self, now: Time) -> Option<usize> {
        for c in 0..3 {
            if c == 0 {
                // RT: most important level first, FIFO among equals.
                let best = self.rr[0]
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, &i)| self.flows.flows[i].prio.level)
                    .map(|(pos, _)| pos);
                if let Some(pos) = best {
                    let i = self.rr[0].remove(pos).expect("position exists");
                    return Some(self.start(i, now));
                }
            } else if let Some(i) = self.rr[c].pop_front() {
                return Some(self.start(i, now));
            }
        }
        None
    }

    fn start(&mut self, i: usize, now: Time) -> usize {
        self.on_rr[i] = false;
        self.active = Some(i);
        self.slice_end = now + self.slice(i);
        self.slice_rq = 0;
        self.idle_until = None;
        i
    }

    fn more_important_waiting(&self, a: usize) -> bool {
        match self.flows.flows[a].prio.class {
            PrioClass::Rt => false,
            PrioClass::Be => !self.rr[0].is_empty(),
            PrioClass::Idle => !self.rr[0].is_empty() || !self.rr[1].is_empty(),
        }
    }
}

impl Scheduler for Cfq {
    fn name(&self) -> &'static str {
        "cfq"
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
            self.enqueue_rr(i);
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
            if now >= self.slice_end || self.more_important_waiting(a) {
                self.expire();
                continue;
            }
            let f = &self.flows.flows[a];
            if f.q.is_empty() {
                let idle_ok = f.sync
                    && self.t.slice_idle_ms > 0.0
                    && !f.exited
                    && f.ttime_mean <= ms(self.t.slice_idle_ms);
                if !idle_ok {
                    self.expire();
                    continue;
                }
                if f.dispatched > 0 {
                    return Decision::Idle;
                }
                let until = self
                    .idle_until
                    .unwrap_or(now + ms(self.t.slice_idle_ms))
                    .min(self.slice_end);
                self.idle_until = Some(until);
                if now >= until {
                    self.expire();
                    continue;
                }
                return Decision::Wait(until);
            }
            let limit = if f.sync {
                self.t.quantum
            } else {
                self.t.quantum * self.t.slice_async_rq.max(1)
            };
            if !f.sync && self.slice_rq >= limit {
                self.expire();
                continue;
            }
            if f.dispatched >= self.t.quantum {
                return Decision::Idle;
            }
            let key = self
                .flows
                .next_key(a, now, self.t.back_seek_max_kb * 2)
                .expect("queue has requests");
            let f = &mut self.flows.flows[a];
            let r = f.q.remove(key).expect("key is queued");
            f.dispatched += 1;
            f.last_end = r.end();
            self.slice_rq += 1;
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
