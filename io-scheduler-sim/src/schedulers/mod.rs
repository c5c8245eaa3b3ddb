//! IO schedulers: noop, deadline, anticipatory, CFQ, BFQ and the paper's
//! priority-aware anticipatory scheduler.
//!
//! The engine hands every request to [`Scheduler::add`], asks
//! [`Scheduler::dispatch`] whenever the device has room, and reports each
//! completion. A non-work-conserving scheduler may answer [`Decision::Wait`]
//! (come back at that time, unless something arrives first) while requests
//! are pending; a work-conserving one never does.

mod anticipatory;
mod bfq;
mod cfq;
mod deadline;
mod flows;
mod noop;
mod queue;

pub use anticipatory::{Anticipatory, AsTunables, PrioTunables};
pub use bfq::{Bfq, BfqTunables};
pub use cfq::{Cfq, CfqTunables};
pub use deadline::{Deadline, DeadlineTunables};
pub use noop::{Noop, NoopTunables};
pub use queue::SortedFifo;

use crate::request::Request;
use crate::units::Time;
use serde::{Deserialize, Serialize};

/// What the scheduler wants the device to do next.
#[derive(Debug)]
pub enum Decision {
    /// Send this request to the device now.
    Dispatch(Request),
    /// Keep the device idle until this time (anticipation), unless an
    /// arrival or completion comes first.
    Wait(Time),
    /// Nothing to dispatch until the next arrival or completion.
    Idle,
}

/// An IO scheduler (Linux "elevator").
pub trait Scheduler {
    /// Short name, as in `/sys/block/*/queue/scheduler`.
    fn name(&self) -> &'static str;
    /// Queues a request submitted at `now`.
    fn add(&mut self, req: Request, now: Time);
    /// Picks the next request for the device.
    fn dispatch(&mut self, now: Time) -> Decision;
    /// Reports that a dispatched request finished at `now`.
    fn completed(&mut self, req: &Request, now: Time);
    /// Requests queued and not yet dispatched (merged requests count once).
    fn pending(&self) -> usize;
    /// Whether the scheduler dispatches whenever it has requests.
    fn work_conserving(&self) -> bool;
    /// Tells the scheduler a submitting context will issue no more IO.
    fn ctx_exited(&mut self, _ctx: u32) {}
}

/// A scheduler and its tunables; Linux's defaults when a field is left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum SchedulerConfig {
    /// FIFO with back merges.
    Noop(NoopTunables),
    /// Deadline: sorted batches with read/write FIFO expiry.
    Deadline(DeadlineTunables),
    /// Anticipatory (Linux 2.6.18 "as").
    #[serde(alias = "as")]
    Anticipatory(AsTunables),
    /// Completely Fair Queuing with ioprio classes and levels.
    Cfq(CfqTunables),
    /// Budget Fair Queueing (B-WF2Q+).
    Bfq(BfqTunables),
    /// The paper's priority-aware anticipatory scheduler.
    #[serde(alias = "as-prio")]
    Priority(PrioTunables),
}

impl SchedulerConfig {
    /// Names accepted by [`SchedulerConfig::by_name`].
    pub const NAMES: &'static [&'static str] =
        &["noop", "deadline", "anticipatory", "cfq", "bfq", "priority"];

    /// The scheduler with default tunables.
    pub fn by_name(name: &str) -> crate::Result<Self> {
        Ok(match name {
            "noop" => SchedulerConfig::Noop(NoopTunables::default()),
            "deadline" => SchedulerConfig::Deadline(DeadlineTunables::default()),
            "anticipatory" | "as" => SchedulerConfig::Anticipatory(AsTunables::default()),
            "cfq" => SchedulerConfig::Cfq(CfqTunables::default()),
            "bfq" => SchedulerConfig::Bfq(BfqTunables::default()),
            "priority" | "as-prio" => SchedulerConfig::Priority(PrioTunables::default()),
            other => {
                return Err(crate::Error::invalid(
                    "scheduler",
                    format!(
                        "unknown scheduler `{other}` (known: {})",
                        Self::NAMES.join(", ")
                    ),
                ))
            }
        })
    }

    /// Short name.
    pub fn name(&self) -> &'static str {
        match self {
            SchedulerConfig::Noop(_) => "noop",
            SchedulerConfig::Deadline(_) => "deadline",
            SchedulerConfig::Anticipatory(_) => "anticipatory",
            SchedulerConfig::Cfq(_) => "cfq",
            SchedulerConfig::Bfq(_) => "bfq",
            SchedulerConfig::Priority(_) => "priority",
        }
    }

    /// Builds the scheduler.
    pub fn build(&self) -> Box<dyn Scheduler> {
        match self {
            SchedulerConfig::Noop(t) => Box::new(Noop::new(t.clone())),
            SchedulerConfig::Deadline(t) => Box::new(Deadline::new(t.clone())),
            SchedulerConfig::Anticipatory(t) => Box::new(Anticipatory::new(t.clone(), None)),
            SchedulerConfig::Cfq(t) => Box::new(Cfq::new(t.clone())),
            SchedulerConfig::Bfq(t) => Box::new(Bfq::new(t.clone())),
            SchedulerConfig::Priority(t) => {
                Box::new(Anticipatory::new(t.anticipatory.clone(), Some(t.clone())))
            }
        }
    }
}

/// Helpers for scheduler unit tests: requests and a fake device.
#[cfg(test)]
pub(crate) mod testkit {
    use super::{Decision, Scheduler};
    use crate::request::{Dir, IoPrio, Origin, Request};
    use crate::units::Time;

    /// A request with the given id, sector, direction and priority from `ctx`.
    pub fn req(
        id: u64,
        lba: u64,
        dir: Dir,
        sync: bool,
        prio: IoPrio,
        ctx: u32,
        t: Time,
    ) -> Request {
        Request {
            id,
            lba,
            sectors: 8,
            dir,
            sync,
            prio,
            ctx,
            submitted: t,
            origin: Origin::Direct { job: ctx },
            merged: Vec::new(),
        }
    }

    /// Asks the scheduler for the next request at `now`, following `Wait`
    /// decisions (nothing else happens meanwhile); returns the request and
    /// the time it was dispatched.
    pub fn next(s: &mut dyn Scheduler, mut now: Time) -> Option<(Request, Time)> {
        for _ in 0..1000 {
            match s.dispatch(now) {
                Decision::Dispatch(r) => return Some((r, now)),
                Decision::Wait(t) => now = t.max(now + 1),
                Decision::Idle => return None,
            }
        }
        panic!("scheduler keeps waiting");
    }
}
