//! Beyond the paper: the Table 3 workload (64 KiB random reader against a
//! 64 KiB sequential direct reader) under every scheduler, with the
//! antagonist at equal and at lower priority.

use super::{job, PaperSettings, LOW};
use crate::engine;
use crate::schedulers::SchedulerConfig;
use crate::Result;
use serde::Serialize;

/// One scheduler's results.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    /// Scheduler.
    pub scheduler: String,
    /// Foreground alone: mean (ms).
    pub alone_mean: f64,
    /// Equal priority: foreground mean and max (ms), antagonist KiB/s.
    pub equal: (f64, f64, f64),
    /// Antagonist at be/7: foreground mean and max (ms), antagonist KiB/s.
    pub low: (f64, f64, f64),
    /// Requests simulated.
    pub requests: u64,
}

/// Simulated seconds per comparison run: a fixed window of the Table 3
/// workload (it is not a paper table, so it does not run a whole pass).
const COMPARE_RUNTIME_S: u64 = 120;

/// Runs the comparison.
pub fn run_compare(s: &PaperSettings) -> Result<Vec<CompareRow>> {
    let mut out = Vec::new();
    for name in SchedulerConfig::NAMES {
        let s = PaperSettings {
            scheduler: name.to_string(),
            ..s.clone()
        };
        let mut requests = 0;
        let mut one = |bg: Option<bool>| -> Result<(f64, f64, f64)> {
            let mut jobs = vec![job("fg", "randread", "64k", "10g")];
            if let Some(low) = bg {
                let mut b = job("bg", "read", "64k", "10g");
                b.direct = true;
                if low {
                    b.prio = LOW;
                }
                jobs.push(b);
            }
            let cfg = s.job_file(COMPARE_RUNTIME_S, jobs).resolve()?;
            let r = engine::run(&cfg);
            requests += r.submitted;
            let fg = r.job("fg").expect("fg job exists");
            let bg = r.job("bg").map(|b| b.bw_kb_s).unwrap_or(0.0);
            Ok((fg.lat.mean, fg.lat.max, bg))
        };
        let alone = one(None)?;
        let equal = one(Some(false))?;
        let low = one(Some(true))?;
        out.push(CompareRow {
            scheduler: name.to_string(),
            alone_mean: alone.0,
            equal,
            low,
            requests,
        });
    }
    Ok(out)
}
