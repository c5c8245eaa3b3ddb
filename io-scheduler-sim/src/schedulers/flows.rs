//! Per-process queues ("flows") shared by CFQ and BFQ: each sync submitter
//! gets its own queue, async IO shares one queue per priority, as Linux does.

use super::queue::SortedFifo;
use crate::request::{IoPrio, Request};
use crate::units::{Time, MS};
use std::collections::HashMap;

/// One flow's state.
#[derive(Debug)]
pub(super) struct Flow {
    pub prio: IoPrio,
    pub sync: bool,
    pub q: SortedFifo,
    pub dispatched: u32,
    pub last_end: u64,
    pub last_done: Option<Time>,
    pub ttime_mean: Time,
    pub ttime_samples: u64,
    pub ttime_total: u64,
    pub exited: bool,
    pub ctx: u32,
}

/// All flows, looked up by (ctx for sync or async marker, rank).
#[derive(Debug, Default)]
pub(super) struct Flows {
    pub flows: Vec<Flow>,
    index: HashMap<(u32, usize, bool), usize>,
}

impl Flows {
    /// The flow a request belongs to, created on first use.
    pub fn flow_for(&mut self, r: &Request) -> usize {
        let key = if r.sync {
            (r.ctx, r.prio.rank(), true)
        } else {
            (u32::MAX, r.prio.rank(), false)
        };
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        self.flows.push(Flow {
            prio: r.prio,
            sync: r.sync,
            q: SortedFifo::default(),
            dispatched: 0,
            last_end: 0,
            last_done: None,
            ttime_mean: 0,
            ttime_samples: 0,
            ttime_total: 0,
            exited: false,
            ctx: r.ctx,
        });
        let i = self.flows.len() - 1;
        self.index.insert(key, i);
        i
    }

    /// Updates the think-time estimate of a sync flow on arrival.
    pub fn note_arrival(&mut self, i: usize, now: Time) {
        let f = &mut self.flows[i];
        if f.sync && f.q.is_empty() && f.dispatched == 0 {
            if let Some(done) = f.last_done {
                let tt = now.saturating_sub(done).min(20 * MS);
                f.ttime_samples = (7 * f.ttime_samples + 256) / 8;
                f.ttime_total = (7 * f.ttime_total + 256 * tt) / 8;
                f.ttime_mean = (f.ttime_total + 128) / f.ttime_samples;
            }
        }
    }

    /// The flow's next request by the elevator from its last position.
    pub fn next_key(&mut self, i: usize, now: Time, back_max: u64) -> Option<super::queue::Key> {
        let f = &mut self.flows[i];
        if let Some((k, exp)) = f.q.fifo_head() {
            if exp <= now {
                return Some(k);
            }
        }
        f.q.elevator(f.last_end, back_max, 2)
    }

    /// Marks every flow of `ctx` as finished.
    pub fn exited(&mut self, ctx: u32) {
        for f in self.flows.iter_mut().filter(|f| f.ctx == ctx && f.sync) {
            f.exited = true;
        }
    }
}
