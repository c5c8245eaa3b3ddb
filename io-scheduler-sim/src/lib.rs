//! Disk and IO-scheduler simulator.
//!
//! A deterministic discrete-event simulation of a block device (rotating disk
//! or NVMe SSD), a Linux-style page cache, the classic Linux IO schedulers and
//! the priority-aware anticipatory scheduler of "IO Containment" (Gupta, OLS
//! 2008). Workloads are fio-like job files; `experiments` reruns the paper.
#![warn(missing_docs)]

pub mod bench;
pub mod disk;
pub mod engine;
pub mod error;
pub mod experiments;
pub mod output;

pub mod pagecache;
pub mod request;
pub mod rng;
pub mod schedulers;
pub mod stats;
pub mod units;
pub mod workload;

pub use error::{Error, Result};
