//! The paper's experiments: Tables 1-4 and the sweeps of Figures 1-6.

mod compare;
mod figures;
mod paper;
pub mod reference;
mod tables;

pub use compare::{run_compare, CompareRow};
pub use figures::{figure_specs, run_figure, FigureResult, FigureSpec, Series};
pub use paper::{run_paper, Check, PaperReport};
pub use tables::{run_table, table_specs, CellErrors, TableResult, TableRow, TableSpec, TARGET};

use crate::request::IoPrio;
use crate::workload::{Global, JobFile, JobSpec, SchedSpec};
use serde::Serialize;

/// Settings shared by every paper run.
#[derive(Debug, Clone, Serialize)]
pub struct PaperSettings {
    /// PRNG seed.
    pub seed: u64,
    /// Simulated seconds per table case.
    pub table_runtime_s: u64,
    /// Simulated seconds per figure point.
    pub figure_runtime_s: u64,
    /// Device preset or file.
    pub disk: String,
    /// Scheduler used for all cases (the paper's kernel ran its priority scheduler).
    pub scheduler: String,
    /// Page cache size (the paper's first machine had 8 GB of RAM).
    pub page_cache: String,
    /// CPU time per IO outside the measured latency (fio's own work).
    pub syscall: String,
}

impl Default for PaperSettings {
    fn default() -> Self {
        PaperSettings {
            seed: 1,
            table_runtime_s: 1800,
            figure_runtime_s: 30,
            disk: "sata2008".into(),
            scheduler: "priority".into(),
            page_cache: "7500m".into(),
            syscall: "250us".into(),
        }
    }
}

impl PaperSettings {
    pub(crate) fn job_file(&self, runtime_s: u64, jobs: Vec<JobSpec>) -> JobFile {
        let mut g = Global {
            seed: self.seed,
            runtime: format!("{runtime_s}s"),
            disk: crate::workload::DiskSpec::Name(self.disk.clone()),
            scheduler: SchedSpec::Name(self.scheduler.clone()),
            ..Global::default()
        };
        g.cache.size = self.page_cache.clone();
        g.syscall = self.syscall.clone();
        JobFile { global: g, jobs }
    }
}

/// The antagonists' priority in the "prio" cases (the foreground keeps the default be/4).
pub const LOW: IoPrio = IoPrio::be(7);

/// A job with the given name, `rw`, block size and file size; other fields default.
pub fn job(name: &str, rw: &str, bs: &str, size: &str) -> JobSpec {
    JobSpec {
        name: name.into(),
        rw: rw.into(),
        bs: bs.into(),
        size: size.into(),
        ..JobSpec::default()
    }
}
