//! noop: one FIFO, back merges with the newest request only.

use super::{Decision, Scheduler};
use crate::request::Request;
use crate::units::Time;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// noop tunables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoopTunables {
    /// Largest merged request (sectors); 0 disables merging.
    pub max_sectors: u32,
}

impl Default for NoopTunables {
    fn default() -> Self {
        NoopTunables { max_sectors: 1024 }
    }
}

/// The noop scheduler.
#[derive(Debug)]
pub struct Noop {
    t: NoopTunables,
    q: VecDeque<Request>,
}

impl Noop {
    /// A noop scheduler.
    pub fn new(t: NoopTunables) -> Self {
        Noop {
            t,
            q: VecDeque::new(),
        }
    }
}

impl Scheduler for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }

    fn add(&mut self, req: Request, _now: Time) {
        if self.t.max_sectors > 0 {
            if let Some(last) = self.q.back_mut() {
                if last.can_back_merge(&req, self.t.max_sectors) {
                    last.back_merge(req);
                    return;
                }
            }
        }
        self.q.push_back(req);
    }

    fn dispatch(&mut self, _now: Time) -> Decision {
        match self.q.pop_front() {
            Some(r) => Decision::Dispatch(r),
            None => Decision::Idle,
        }
    }

    fn completed(&mut self, _req: &Request, _now: Time) {}

    fn pending(&self) -> usize {
        self.q.len()
    }

    fn work_conserving(&self) -> bool {
        true
    }
}
