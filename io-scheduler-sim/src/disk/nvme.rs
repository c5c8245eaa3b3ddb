//! NVMe SSD: flat access latency plus transfer, spread over internal channels.

use super::{positive, Disk};
use crate::request::{Dir, Request};
use crate::units::{Time, SECTOR, US};
use crate::Result;
use serde::{Deserialize, Serialize};

/// Parameters of an NVMe SSD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmeParams {
    /// Capacity in bytes.
    pub capacity_bytes: u64,
    /// Flash read latency (us).
    pub read_latency_us: f64,
    /// Write latency into the controller's buffer (us).
    pub write_latency_us: f64,
    /// Aggregate read bandwidth (MB/s).
    pub read_mb_s: f64,
    /// Aggregate write bandwidth (MB/s).
    pub write_mb_s: f64,
    /// Requests served in parallel (flash channels/dies).
    pub channels: u32,
    /// Submission queue depth the host may fill.
    pub queue_depth: u32,
}

impl Default for NvmeParams {
    fn default() -> Self {
        NvmeParams {
            capacity_bytes: 1_000_000_000_000,
            read_latency_us: 80.0,
            write_latency_us: 20.0,
            read_mb_s: 3200.0,
            write_mb_s: 2000.0,
            channels: 8,
            queue_depth: 64,
        }
    }
}

impl NvmeParams {
    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        positive("capacity_bytes", self.capacity_bytes as f64)?;
        positive("read_latency_us", self.read_latency_us)?;
        positive("write_latency_us", self.write_latency_us)?;
        positive("read_mb_s", self.read_mb_s)?;
        positive("write_mb_s", self.write_mb_s)?;
        positive("channels", self.channels as f64)?;
        positive("queue_depth", self.queue_depth as f64)
    }
}

/// The NVMe model: each channel serves one request at a time.
#[derive(Debug, Clone)]
pub struct Nvme {
    p: NvmeParams,
}

impl Nvme {
    /// Builds the model.
    pub fn new(p: NvmeParams) -> Self {
        Nvme { p }
    }
}

impl Disk for Nvme {
    fn queue_depth(&self) -> usize {
        self.p.queue_depth.max(self.p.channels) as usize
    }

    fn servers(&self) -> usize {
        self.p.channels as usize
    }

    fn capacity_sectors(&self) -> u64 {
        self.p.capacity_bytes / SECTOR
    }

    fn service(&mut self, req: &Request, _now: Time) -> Time {
        let (lat, mb_s) = match req.dir {
            Dir::Read => (self.p.read_latency_us, self.p.read_mb_s),
            Dir::Write => (self.p.write_latency_us, self.p.write_mb_s),
        };
        let per_channel = mb_s / self.p.channels as f64;
        let bytes = req.sectors as f64 * SECTOR as f64;
        (lat * US as f64 + bytes * 1e3 / per_channel) as Time
    }
}
