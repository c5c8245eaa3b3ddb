//! The anticipatory scheduler (Linux 2.6.18 `as-iosched`) and, when built with
//! [`PrioTunables`], the paper's priority scheduler on top of it.
//!
//! Vanilla AS: a one-way elevator with limited backward seeks, sync and async
//! FIFOs with expiry, alternating sync/async batches with time limits, and
//! anticipation: after a sync request completes the disk may stay idle for
//! up to `antic_expire` waiting for the same process's next, nearby request,
//! judged from its think time and mean seek distance.
//!
//! Priority mode ("IO Containment", section 3) keeps one sort list and one
//! FIFO per direction per priority level; a level's FIFO expires only while
//! that level is being served; each level has tokens (requests per round) and
//! a batch runs at one level in one direction while it has requests and
//! tokens; anticipation also waits for a higher-priority process instead of
//! dispatching a lower-priority request, and an arriving higher-priority
//! request breaks anticipation and interrupts a lower-priority batch; merges
//! happen only within a level. Tokens share the disk among the levels of one
//! class; classes are strict (RT before BE before IDLE), as ionice defines them.
//!
//! Requests are classed sync/async (as later kernels do) rather than
//! read/write, so direct writes are anticipated on like reads.

use super::queue::{Key, SortedFifo};
use super::{Decision, Scheduler};
use crate::request::{IoPrio, Request, WRITEBACK_CTX};
use crate::units::{ms, Time, MS};
use serde::{Deserialize, Serialize};

/// Anticipatory tunables (defaults of Linux 2.6.18 with HZ=1000).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsTunables {
    /// Sync FIFO expiry (ms).
    pub read_expire_ms: f64,
    /// Async FIFO expiry (ms).
    pub write_expire_ms: f64,
    /// Longest sync batch when async requests wait (ms).
    pub read_batch_expire_ms: f64,
    /// Longest async batch when sync requests wait (ms).
    pub write_batch_expire_ms: f64,
    /// Longest anticipation (ms); 0 turns anticipation off.
    pub antic_expire_ms: f64,
    /// Farthest backward seek the elevator takes (KiB).
    pub back_seek_max_kb: u64,
    /// Cost factor of a backward seek.
    pub back_seek_penalty: u64,
    /// Largest merged request (sectors); 0 disables merging.
    pub max_sectors: u32,
}

impl Default for AsTunables {
    fn default() -> Self {
        AsTunables {
            read_expire_ms: 125.0,
            write_expire_ms: 250.0,
            read_batch_expire_ms: 500.0,
            write_batch_expire_ms: 125.0,
            antic_expire_ms: 6.0,
            back_seek_max_kb: 512 * 1024,
            back_seek_penalty: 2,
            max_sectors: 1024,
        }
    }
}

/// Tunables of the priority scheduler: AS's plus tokens per level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrioTunables {
    /// The anticipatory core's tunables.
    #[serde(flatten)]
    pub anticipatory: AsTunables,
    /// Tokens (requests per round) of RT levels 0..=7.
    pub rt_tokens: Vec<u32>,
    /// Tokens of BE levels 0..=7.
    pub be_tokens: Vec<u32>,
    /// Tokens of the IDLE class.
    pub idle_tokens: u32,
    /// Whether an arriving higher-priority request ends a lower-priority batch.
    pub interrupt_batches: bool,
    /// Whether a level whose tokens are spent keeps its batch while it still
    /// has requests queued in the batch's direction (until the batch time
    /// runs out): the paper's "as long as there are requests in the chosen
    /// direction or there are tokens left".
    pub batch_while_queued: bool,
}

impl Default for PrioTunables {
    fn default() -> Self {
        // Tokens fall with the level like CFQ's slices do: level n gets 8 - n.
        let t: Vec<u32> = (0..8).map(|l| 8 - l).collect();
        PrioTunables {
            anticipatory: AsTunables::default(),
            rt_tokens: t.clone(),
            be_tokens: t,
            idle_tokens: 1,
            interrupt_batches: true,
            batch_while_queued: true,
        }
    }
}

impl PrioTunables {
    fn tokens(&self) -> Vec<u32> {
        let mut v = Vec::with_capacity(IoPrio::RANKS);
        for l in 0..8 {
            v.push(self.rt_tokens.get(l).copied().unwrap_or(1).max(1));
        }
        for l in 0..8 {
            v.push(self.be_tokens.get(l).copied().unwrap_or(1).max(1));
        }
        v.push(self.idle_tokens.max(1));
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Antic {
    Off,
    /// Waiting for the anticipated process's request to complete.
    WaitReq,
    /// Waiting for its next request, until `antic_start + antic_expire`.
    WaitNext,
    /// Anticipation ended; dispatch normally.
    Finished,
}

#[derive(Debug, Clone, Default)]
struct Ctx {
    ttime_samples: u64,
    ttime_total: u64,
    ttime_mean: Time,
    seek_samples: u64,
    seek_total: u64,
    seek_mean: u64,
    last_pos: u64,
    last_done: Option<Time>,
    queued: u32,
    dispatched: u32,
    exited: bool,
    rank: usize,
}

/// Anticipatory scheduler, optionally with the paper's priorities.
#[derive(Debug)]
pub struct Anticipatory {
    prio: Option<PrioTunables>,
    q: Vec<[SortedFifo; 2]>,
    ctxs: Vec<Ctx>,
    antic: Antic,
    antic_start: Time,
    antic_ctx: Option<u32>,
    ioc_finished: bool,
    batch_level: usize,
    batch_dir: usize,
    batch_expires: Time,
    batch_start: Time,
    changed_batch: bool,
    last_dir_at_level: Vec<usize>,
    last_sector: [u64; 2],
    last_check_fifo: Vec<[Time; 2]>,
    in_flight: usize,
    tokens: Vec<u32>,
    token_init: Vec<u32>,
    /// Bit l: level l has requests queued.
    pending_mask: u32,
    /// Bit l: level l has tokens left.
    token_mask: u32,
    pending: usize,
    expire: [Time; 2],
    batch_expire: [Time; 2],
    antic_expire: Time,
    antic_expire_ms: u64,
    back_max: u64,
    penalty: u64,
    max_sectors: u32,
}

const MAX_THINKTIME: Time = 20 * MS;

/// AS's "close request" radius at zero delay (sectors).
const CLOSE_SECTORS: u64 = 8192;

/// Class of a rank: 0 RT, 1 BE, 2 IDLE.
fn class_of(rank: usize) -> usize {
    rank / 8
}

/// Level bits of a class.
fn class_bits(class: usize) -> u32 {
    0xff << (8 * class)
}

/// Level bits of every class more important than `class`.
fn above_class(class: usize) -> u32 {
    (1 << (8 * class)) - 1
}

fn ctx_index(ctx: u32) -> usize {
    if ctx == WRITEBACK_CTX {
        0
    } else {
        ctx as usize + 1
    }
}

impl Anticipatory {
    /// Vanilla AS when `prio` is `None`, the priority scheduler otherwise.
    pub fn new(t: AsTunables, prio: Option<PrioTunables>) -> Self {
        let levels = if prio.is_some() { IoPrio::RANKS } else { 1 };
        let token_init = prio
            .as_ref()
            .map(|p| p.tokens())
            .unwrap_or_else(|| vec![u32::MAX]);
        Anticipatory {
            q: (0..levels)
                .map(|_| [SortedFifo::default(), SortedFifo::default()])
                .collect(),
            ctxs: Vec::new(),
            antic: Antic::Off,
            antic_start: 0,
            antic_ctx: None,
            ioc_finished: false,
            batch_level: 0,
            batch_dir: 0,
            batch_expires: 0,
            batch_start: 0,
            changed_batch: false,
            last_dir_at_level: vec![0; levels],
            last_sector: [0, 0],
            last_check_fifo: vec![[0, 0]; levels],
            in_flight: 0,
            tokens: token_init.clone(),
            token_init,
            pending_mask: 0,
            token_mask: (1 << levels) - 1,
            pending: 0,
            expire: [ms(t.read_expire_ms), ms(t.write_expire_ms)],
            batch_expire: [ms(t.read_batch_expire_ms), ms(t.write_batch_expire_ms)],
            antic_expire: ms(t.antic_expire_ms),
            antic_expire_ms: t.antic_expire_ms.max(0.0) as u64,
            back_max: t.back_seek_max_kb * 2,
            penalty: t.back_seek_penalty.max(1),
            max_sectors: t.max_sectors,
            prio,
        }
    }

    fn level(&self, r: &Request) -> usize {
        if self.prio.is_some() {
            r.prio.rank()
        } else {
            0
        }
    }

    fn ctx(&mut self, ctx: u32) -> &mut Ctx {
        let i = ctx_index(ctx);
        if i >= self.ctxs.len() {
            self.ctxs.resize_with(i + 1, Ctx::default);
        }
        &mut self.ctxs[i]
    }

    fn ctx_ref(&self, ctx: u32) -> Option<&Ctx> {
        self.ctxs.get(ctx_index(ctx))
    }

    fn level_pending(&self, l: usize) -> bool {
        self.pending_mask & (1 << l) != 0
    }

    /// The most important class (0 RT, 1 BE, 2 IDLE) with requests pending.
    fn top_class(&self) -> Option<usize> {
        (self.pending_mask != 0).then(|| class_of(self.pending_mask.trailing_zeros() as usize))
    }

    /// Whether another level could be served instead of `lvl` now: one of
    /// the same class with tokens, or any of a more important class.
    fn other_pending_with_tokens(&self, lvl: usize) -> bool {
        let c = class_of(lvl);
        let others = self.pending_mask & !(1 << lvl);
        others & above_class(c) != 0 || others & class_bits(c) & self.token_mask != 0
    }

    /// Whether a more important level has requests it may be served for:
    /// tokens left, or a more important class (classes are strict).
    fn higher_pending_with_tokens(&self, lvl: usize) -> bool {
        let lower = self.pending_mask & ((1 << lvl) - 1);
        lower & self.token_mask != 0 || lower & above_class(class_of(lvl)) != 0
    }

    fn refill(&mut self) {
        self.tokens.clone_from(&self.token_init);
        self.token_mask = (1 << self.q.len()) - 1;
    }

    fn update_pending_bit(&mut self, lvl: usize) {
        if self.q[lvl][0].is_empty() && self.q[lvl][1].is_empty() {
            self.pending_mask &= !(1 << lvl);
        } else {
            self.pending_mask |= 1 << lvl;
        }
    }

    /// AS checks a FIFO at most once per expiry period; a request can thus
    /// wait up to about twice its expiry before the FIFO forces it.
    fn fifo_expired(&mut self, lvl: usize, dir: usize, now: Time) -> bool {
        if now.saturating_sub(self.last_check_fifo[lvl][dir]) < self.expire[dir] {
            return false;
        }
        self.last_check_fifo[lvl][dir] = now;
        match self.q[lvl][dir].fifo_head() {
            Some((_, exp)) => now > exp,
            None => false,
        }
    }

    fn antic_expired(&self, now: Time) -> bool {
        self.ioc_finished && now >= self.antic_start + self.antic_expire
    }

    fn close_req(&self, c: &Ctx, r: &Request, now: Time) -> bool {
        let delay = if self.antic == Antic::Off || !self.ioc_finished {
            0
        } else {
            now.saturating_sub(self.antic_start) / MS
        };
        let delta: u64 = if delay == 0 {
            8192
        } else if delay <= 20 && delay <= self.antic_expire_ms {
            8192 << delay
        } else {
            return true;
        };
        let last = self.last_sector[self.batch_dir];
        let next = r.lba;
        if last <= next + delta / 2 && next <= last + delta {
            return true;
        }
        let s = last.abs_diff(next);
        c.seek_samples > 0 && c.seek_mean > s
    }

    fn can_break(&self, r: Option<&Request>, now: Time) -> bool {
        let Some(cid) = self.antic_ctx else {
            return true;
        };
        if r.is_some_and(|r| r.ctx == cid) {
            return true;
        }
        let Some(c) = self.ctx_ref(cid) else {
            return true;
        };
        let thinks_too_long = c.ttime_samples > 0 && c.ttime_mean > self.antic_expire;
        if let (Some(_), Some(r)) = (&self.prio, r) {
            let rl = r.prio.rank();
            if rl < c.rank {
                return true;
            }
            if rl > c.rank {
                // A lower-priority request waits for the anticipated
                // higher-priority process unless waiting cannot pay off.
                return c.exited
                    || self.tokens_spent(c, now)
                    || self.antic_expired(now)
                    || thinks_too_long;
            }
        }
        if self.antic_expired(now) || c.queued > 0 || c.dispatched > 0 {
            return true;
        }
        if let Some(r) = r {
            if r.sync && self.close_req(c, r, now) {
                return true;
            }
        }
        c.exited || thinks_too_long
    }

    fn can_anticipate(&self, next: Option<&Request>, now: Time) -> bool {
        if self.antic_ctx.is_none() || self.antic == Antic::Finished {
            return false;
        }
        if let (Some(_), Some(c)) = (&self.prio, self.antic_ctx.and_then(|c| self.ctx_ref(c))) {
            if self.tokens_spent(c, now) {
                return false;
            }
        }
        !self.can_break(next, now)
    }

    /// Whether the anticipated process's level has used its tokens while
    /// another level could be served. A sequential process's level keeps its
    /// batch (until the batch time runs out) even between its requests: its
    /// next request is about to arrive next to the head (deceptive idleness,
    /// the reason AS anticipates at all), so for a batch it counts as queued
    /// in the batch's direction, as the paper's rule "as long as there are
    /// requests in the chosen direction or there are tokens left" reads.
    /// Handing the disk to another level there would cost two seeks per
    /// request of the other level, all of them paid by the sequential
    /// reader (Figure 2). A random reader gets no such grace: serving
    /// another level costs it one seek it would pay anyway.
    fn tokens_spent(&self, c: &Ctx, now: Time) -> bool {
        self.tokens[c.rank] == 0
            && self.other_pending_with_tokens(c.rank)
            && !(self.batch_while_queued()
                && c.rank == self.batch_level
                && Self::sequential(c)
                && now < self.batch_start + self.batch_expire[self.batch_dir])
    }

    fn batch_while_queued(&self) -> bool {
        self.prio.as_ref().is_some_and(|p| p.batch_while_queued)
    }

    /// A process whose requests follow each other on the disk: mean seek
    /// within AS's "close" radius (8192 sectors, 4 MiB).
    fn sequential(c: &Ctx) -> bool {
        c.seek_samples > 0 && c.seek_mean <= CLOSE_SECTORS
    }

    fn choose_batch(&mut self) -> Option<(usize, usize)> {
        let lvl = if self.prio.is_some() {
            // Tokens share the disk among the levels of the most important
            // class with requests; less important classes wait.
            let top = self.top_class()?;
            let candidates = self.pending_mask & class_bits(top);
            if candidates & self.token_mask == 0 {
                self.refill();
            }
            (candidates & self.token_mask).trailing_zeros() as usize
        } else if self.level_pending(0) {
            0
        } else {
            return None;
        };
        let sync = !self.q[lvl][0].is_empty();
        let asy = !self.q[lvl][1].is_empty();
        let last = if self.prio.is_some() {
            self.last_dir_at_level[lvl]
        } else {
            self.batch_dir
        };
        let dir = if sync && asy {
            if last == 0 {
                1
            } else {
                0
            }
        } else if sync {
            0
        } else {
            1
        };
        Some((lvl, dir))
    }

    fn take(&mut self, lvl: usize, dir: usize, key: Key) -> Request {
        let r = self.q[lvl][dir].remove(key).expect("key is queued");
        self.update_pending_bit(lvl);
        self.pending -= 1;
        self.in_flight += 1;
        self.last_sector[dir] = r.end();
        let parts = r.parts() as u32;
        let c = self.ctx(r.ctx);
        c.queued = c.queued.saturating_sub(parts);
        c.dispatched += parts;
        if dir == 0 {
            self.antic_ctx = Some(r.ctx);
        } else {
            self.antic_ctx = None;
        }
        self.antic = Antic::Off;
        self.ioc_finished = false;
        if self.prio.is_some() {
            self.tokens[lvl] = self.tokens[lvl].saturating_sub(1);
            if self.tokens[lvl] == 0 {
                self.token_mask &= !(1 << lvl);
            }
        }
        r
    }

    fn update_history(&mut self, r: &Request, now: Time) {
        let rank = r.prio.rank();
        let c = self.ctx(r.ctx);
        c.rank = rank;
        if !r.sync {
            return;
        }
        if c.dispatched == 0 && c.queued == 0 {
            if let Some(done) = c.last_done {
                let tt = now.saturating_sub(done).min(MAX_THINKTIME);
                c.ttime_samples = (7 * c.ttime_samples + 256) / 8;
                c.ttime_total = (7 * c.ttime_total + 256 * tt) / 8;
                c.ttime_mean = (c.ttime_total + 128) / c.ttime_samples;
            }
        }
        let mut dist = r.lba.abs_diff(c.last_pos);
        if c.seek_samples > 0 {
            // Ignore outliers, as AS does.
            dist = dist.min(c.seek_mean * 4 + 2 * 1024 * 1024);
        }
        c.seek_samples = (7 * c.seek_samples + 256) / 8;
        c.seek_total = (7 * c.seek_total + 256 * dist) / 8;
        c.seek_mean = (c.seek_total + c.seek_samples / 2) / c.seek_samples;
        c.last_pos = r.end();
    }
}

impl Scheduler for Anticipatory {
    fn name(&self) -> &'static str {
        if self.prio.is_some() {
            "priority"
        } else {
            "anticipatory"
        }
    }

    fn add(&mut self, req: Request, now: Time) {
        self.update_history(&req, now);
        let parts = req.parts() as u32;
        self.ctx(req.ctx).queued += parts;
        if matches!(self.antic, Antic::WaitReq | Antic::WaitNext) && self.can_break(Some(&req), now)
        {
            self.antic = Antic::Finished;
        }
        let lvl = self.level(&req);
        let dir = if req.sync { 0 } else { 1 };
        let exp = now + self.expire[dir];
        if !self.q[lvl][dir].insert(req, exp, self.max_sectors) {
            self.pending += 1;
        }
        self.pending_mask |= 1 << lvl;
    }

    fn dispatch(&mut self, now: Time) -> Decision {
        if self.pending == 0 {
            return Decision::Idle;
        }
        match self.antic {
            Antic::WaitReq => return Decision::Idle,
            Antic::WaitNext => {
                let deadline = self.antic_start + self.antic_expire;
                if now < deadline {
                    return Decision::Wait(deadline);
                }
                self.antic = Antic::Finished;
            }
            Antic::Off | Antic::Finished => {}
        }
        if self.changed_batch {
            if self.in_flight > 0 {
                return Decision::Idle;
            }
            self.changed_batch = false;
        }
        let lvl = self.batch_level;
        let dir = self.batch_dir;
        let other_pending = !self.q[lvl][1 - dir].is_empty();
        let mut running = !(other_pending && now >= self.batch_expires);
        if let Some((interrupt, while_queued)) = self
            .prio
            .as_ref()
            .map(|p| (p.interrupt_batches, p.batch_while_queued))
        {
            if self.tokens[lvl] == 0 && !self.other_pending_with_tokens(lvl) {
                // Nobody else could use the disk: start a new round in place.
                self.refill();
            }
            // A sequential process of this level about to send its next
            // request counts as queued (see `tokens_spent`).
            let anticipated_here = self.antic != Antic::Finished
                && self
                    .antic_ctx
                    .and_then(|c| self.ctx_ref(c))
                    .is_some_and(|c| c.rank == lvl && Self::sequential(c));
            let spent = self.tokens[lvl] == 0
                && !(while_queued
                    && (!self.q[lvl][dir].is_empty() || anticipated_here)
                    && now < self.batch_start + self.batch_expire[dir]);
            if spent || (interrupt && self.higher_pending_with_tokens(lvl)) {
                running = false;
            }
        }
        if running {
            let next =
                self.q[lvl][dir].elevator(self.last_sector[dir], self.back_max, self.penalty);
            if dir == 0 && self.antic_expire > 0 {
                if self.fifo_expired(lvl, dir, now) {
                    let (key, _) = self.q[lvl][dir].fifo_head().expect("expired head");
                    return Decision::Dispatch(self.take(lvl, dir, key));
                }
                let cand = next.and_then(|k| self.q[lvl][dir].get(k));
                if self.can_anticipate(cand, now) {
                    if !self.ioc_finished {
                        self.antic = Antic::WaitReq;
                        return Decision::Idle;
                    }
                    self.antic = Antic::WaitNext;
                    return Decision::Wait(self.antic_start + self.antic_expire);
                }
            }
            if let Some(k) = next {
                if !other_pending {
                    self.batch_expires = now + self.batch_expire[dir];
                }
                let key = if self.fifo_expired(lvl, dir, now) {
                    self.q[lvl][dir].fifo_head().expect("expired head").0
                } else {
                    k
                };
                return Decision::Dispatch(self.take(lvl, dir, key));
            }
        }
        let Some((nl, nd)) = self.choose_batch() else {
            return Decision::Idle;
        };
        let changed_dir = nd != self.batch_dir;
        // A token refill that picks the same level and direction continues
        // the sweep rather than restarting from the FIFO head.
        let same = nl == self.batch_level && !changed_dir;
        self.batch_level = nl;
        self.batch_dir = nd;
        self.last_dir_at_level[nl] = nd;
        if !same {
            self.batch_start = now;
            self.batch_expires = now + self.batch_expire[nd];
            self.last_check_fifo[nl][nd] = now;
        }
        if changed_dir && self.in_flight > 0 {
            // Let the previous batch drain before switching direction.
            self.changed_batch = true;
            return Decision::Idle;
        }
        let key = if same {
            self.q[nl][nd]
                .elevator(self.last_sector[nd], self.back_max, self.penalty)
                .expect("chosen batch has requests")
        } else {
            self.q[nl][nd]
                .fifo_head()
                .expect("chosen batch has requests")
                .0
        };
        Decision::Dispatch(self.take(nl, nd, key))
    }

    fn completed(&mut self, req: &Request, now: Time) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let parts = req.parts() as u32;
        let c = self.ctx(req.ctx);
        c.dispatched = c.dispatched.saturating_sub(parts);
        c.last_done = Some(now);
        if self.changed_batch && self.in_flight == 0 {
            self.changed_batch = false;
        }
        if req.sync && self.antic_ctx == Some(req.ctx) {
            self.antic_start = now;
            self.ioc_finished = true;
            if self.antic == Antic::WaitReq {
                self.antic = Antic::WaitNext;
            }
        }
    }

    fn pending(&self) -> usize {
        self.pending
    }

    fn work_conserving(&self) -> bool {
        false
    }

    fn ctx_exited(&mut self, ctx: u32) {
        self.ctx(ctx).exited = true;
        if self.antic_ctx == Some(ctx) && matches!(self.antic, Antic::WaitReq | Antic::WaitNext) {
            self.antic = Antic::Finished;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Dir, PrioClass};
    use crate::schedulers::testkit::{next, req};
    use proptest::prelude::*;

    fn prio_of(code: u8) -> IoPrio {
        match code % 10 {
            0 => IoPrio {
                class: PrioClass::Rt,
                level: 3,
            },
            9 => IoPrio {
                class: PrioClass::Idle,
                level: 7,
            },
            l => IoPrio::be(l - 1),
        }
    }

    proptest! {
        /// Under the priority scheduler a request is never dispatched while
        /// a more important level has requests and tokens left.
        #[test]
        fn priorities_never_invert(
            arrivals in prop::collection::vec((0u64..1_000_000, 0u8..10, 0u32..6, any::<bool>(), 0u8..4), 1..200),
            svc_us in 100u64..20_000,
        ) {
            let mut s = Anticipatory::new(AsTunables::default(), Some(PrioTunables::default()));
            let svc = svc_us * 1000;
            let mut now = 0;
            let mut id = 0;
            let mut served = 0;
            let total = arrivals.len();
            for (lba, p, ctx, sync, burst) in arrivals {
                // A few arrivals, then one service.
                for k in 0..=burst as u64 {
                    id += 1;
                    let dir = if sync { Dir::Read } else { Dir::Write };
                    s.add(req(id, lba * 64 + k * 4096, dir, sync, prio_of(p), ctx, now), now);
                }
                let before = s.tokens.clone();
                let pending: Vec<usize> = (0..IoPrio::RANKS).filter(|&l| s.level_pending(l)).collect();
                let Some((r, at)) = next(&mut s, now) else { continue };
                let refilled = s.tokens.iter().zip(&before).any(|(a, b)| a > b);
                let rank = r.prio.rank();
                for &l in pending.iter().filter(|&&l| l < rank) {
                    prop_assert!(
                        class_of(l) == class_of(rank),
                        "class of rank {} dispatched while rank {} of a more important class was pending",
                        rank, l
                    );
                    prop_assert!(
                        before[l] == 0 && !refilled,
                        "rank {} dispatched while rank {} pending with {} tokens (refill {})",
                        rank, l, before[l], refilled
                    );
                }
                served += r.parts();
                now = at + svc;
                s.completed(&r, now);
            }
            // Drain: everything queued is eventually dispatched.
            while let Some((r, at)) = next(&mut s, now) {
                served += r.parts();
                now = at + svc;
                s.completed(&r, now);
            }
            prop_assert_eq!(s.pending(), 0);
            prop_assert!(served >= total);
        }

        /// Anticipatory: a sync read far from a sequential stream is served
        /// within twice the FIFO expiry (AS checks the FIFO once per period).
        #[test]
        fn as_fifo_expiry_bounds_the_wait(far in 0u64..1000, svc_us in 300u64..3000) {
            let t = AsTunables::default();
            let expire = ms(t.read_expire_ms);
            let mut s = Anticipatory::new(t, None);
            let svc = svc_us * 1000;
            let mut lba = 10_000_000u64;
            let mut id = 1;
            s.add(req(id, lba, Dir::Read, true, IoPrio::DEFAULT, 1, 0), 0);
            let (first, _) = next(&mut s, 0).expect("pending");
            let mut now = svc;
            s.completed(&first, now);
            s.add(req(0, far, Dir::Read, true, IoPrio::DEFAULT, 0, 0), 0);
            loop {
                // The streaming process issues its next request right away.
                id += 1;
                lba += 64;
                s.add(req(id, lba, Dir::Read, true, IoPrio::DEFAULT, 1, now), now);
                let (r, at) = next(&mut s, now).expect("pending");
                if r.id == 0 {
                    prop_assert!(at <= 2 * expire + 2 * svc, "far read waited {} us", at / 1000);
                    break;
                }
                prop_assert!(at <= 4 * expire, "runaway");
                now = at + svc;
                s.completed(&r, now);
            }
        }
    }

    #[test]
    fn priority_anticipation_waits_for_the_higher_level() {
        let mut s = Anticipatory::new(AsTunables::default(), Some(PrioTunables::default()));
        // High-priority process 0 reads; low-priority process 1 has a request queued.
        s.add(req(1, 1000, Dir::Read, true, IoPrio::be(0), 0, 0), 0);
        let (r, _) = next(&mut s, 0).unwrap();
        assert_eq!(r.id, 1);
        s.add(req(2, 9_000_000, Dir::Read, true, IoPrio::be(7), 1, 10), 10);
        s.completed(&r, 5_000_000);
        // Right after completion the scheduler waits for process 0 ...
        assert!(matches!(s.dispatch(5_000_000), Decision::Wait(_)));
        // ... whose next request breaks the anticipation and goes first.
        s.add(
            req(3, 500_000_000, Dir::Read, true, IoPrio::be(0), 0, 5_100_000),
            5_100_000,
        );
        match s.dispatch(5_100_000) {
            Decision::Dispatch(r) => assert_eq!(r.id, 3),
            other => panic!("expected dispatch, got {other:?}"),
        }
    }

    #[test]
    fn classes_are_strict_even_when_tokens_run_out() {
        let t = PrioTunables {
            rt_tokens: vec![1; 8],
            ..PrioTunables::default()
        };
        let rt = IoPrio {
            class: PrioClass::Rt,
            level: 0,
        };
        let mut s = Anticipatory::new(AsTunables::default(), Some(t));
        s.add(req(1, 1000, Dir::Read, true, rt, 0, 0), 0);
        let (r, _) = next(&mut s, 0).unwrap();
        // Its one token is spent; best-effort requests arrive before and
        // during the anticipation, neither breaks it.
        s.add(req(2, 9_000_000, Dir::Read, true, IoPrio::be(0), 1, 10), 10);
        s.completed(&r, 5_000_000);
        assert!(matches!(s.dispatch(5_000_000), Decision::Wait(_)));
        s.add(
            req(4, 9_000_064, Dir::Read, true, IoPrio::be(0), 1, 5_010_000),
            5_010_000,
        );
        assert!(matches!(s.dispatch(5_010_000), Decision::Wait(_)));
        s.add(req(3, 2000, Dir::Read, true, rt, 0, 5_050_000), 5_050_000);
        match s.dispatch(5_050_000) {
            Decision::Dispatch(r) => assert_eq!(r.id, 3),
            other => panic!("expected the RT request, got {other:?}"),
        }
    }

    #[test]
    fn vanilla_as_keeps_streaming_for_the_anticipated_process() {
        let mut s = Anticipatory::new(AsTunables::default(), None);
        s.add(req(1, 1000, Dir::Read, true, IoPrio::DEFAULT, 0, 0), 0);
        let (r, _) = next(&mut s, 0).unwrap();
        s.add(
            req(2, 900_000_000, Dir::Read, true, IoPrio::DEFAULT, 1, 10),
            10,
        );
        s.completed(&r, 1_000_000);
        assert!(matches!(s.dispatch(1_000_000), Decision::Wait(_)));
        s.add(
            req(3, 1008, Dir::Read, true, IoPrio::DEFAULT, 0, 1_050_000),
            1_050_000,
        );
        match s.dispatch(1_050_000) {
            Decision::Dispatch(r) => assert_eq!(r.id, 3),
            other => panic!("expected dispatch, got {other:?}"),
        }
    }
}
