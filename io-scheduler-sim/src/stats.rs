//! Latency and throughput statistics.

use crate::request::IoPrio;
use crate::units::to_ms;
use serde::Serialize;

/// Summary of a latency sample (ms).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencyStats {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Root mean square, sqrt(mean^2 + std^2): what the paper's "std dev"
    /// column holds (see `experiments::tables`).
    pub rms: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl LatencyStats {
    /// Summarizes latencies given in ns.
    pub fn from_ns(samples: &[u64]) -> Self {
        if samples.is_empty() {
            return LatencyStats::default();
        }
        let n = samples.len() as f64;
        let mean = samples.iter().map(|&s| s as f64).sum::<f64>() / n;
        let var = samples
            .iter()
            .map(|&s| (s as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let pct = |p: f64| to_ms(sorted[((p * (n - 1.0)).round() as usize).min(sorted.len() - 1)]);
        LatencyStats {
            count: samples.len() as u64,
            mean: mean / 1e6,
            std: var.sqrt() / 1e6,
            rms: (mean * mean + var).sqrt() / 1e6,
            min: to_ms(sorted[0]),
            max: to_ms(*sorted.last().expect("non-empty")),
            p50: pct(0.5),
            p95: pct(0.95),
            p99: pct(0.99),
        }
    }
}

/// Points of an empirical CDF (latency ms, cumulative fraction), at most `max_points`.
pub fn cdf_points(samples_ns: &[u64], max_points: usize) -> Vec<(f64, f64)> {
    if samples_ns.is_empty() {
        return Vec::new();
    }
    let mut s = samples_ns.to_vec();
    s.sort_unstable();
    let n = s.len();
    let step = (n / max_points.max(2)).max(1);
    let mut pts: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (to_ms(s[i]), (i + 1) as f64 / n as f64))
        .collect();
    pts.push((to_ms(s[n - 1]), 1.0));
    pts
}

/// What one job did.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    /// Job name.
    pub name: String,
    /// fio-style `rw`, plus `direct`/`buffered`.
    pub kind: String,
    /// IO priority.
    pub prio: IoPrio,
    /// IOs completed in the measured window.
    pub ios: u64,
    /// Bytes completed in the measured window.
    pub bytes: u64,
    /// Throughput in KiB/s over the measured window.
    pub bw_kb_s: f64,
    /// Per-IO latency as the job saw it.
    pub lat: LatencyStats,
    /// Whether the job file asked for it to be reported.
    pub report: bool,
    /// Raw latencies (ns), for CDFs.
    #[serde(skip)]
    pub samples: Vec<u64>,
}

/// Device-side counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceStats {
    /// Requests the device served (after merging).
    pub requests: u64,
    /// Submitted requests they carried.
    pub parts: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Fraction of the run the device was busy.
    pub utilization: f64,
}

/// Result of one simulation.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Scheduler name.
    pub scheduler: String,
    /// Simulated seconds.
    pub runtime_s: f64,
    /// Per job.
    pub jobs: Vec<JobResult>,
    /// Device counters.
    pub device: DeviceStats,
    /// Requests submitted to the scheduler.
    pub submitted: u64,
    /// Submitted requests completed.
    pub completed: u64,
    /// Events processed.
    pub events: u64,
    /// IOs the jobs completed (fio's count: from the cache or the device).
    pub ios: u64,
    /// Times a work-conserving scheduler left the device idle with IO pending.
    pub idle_with_pending: u64,
    /// Page-cache evictions.
    pub evictions: u64,
}

impl RunResult {
    /// The job named `name`.
    pub fn job(&self, name: &str) -> Option<&JobResult> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_a_known_sample() {
        let ns: Vec<u64> = [1u64, 2, 3, 4].iter().map(|v| v * 1_000_000).collect();
        let s = LatencyStats::from_ns(&ns);
        assert_eq!(s.count, 4);
        assert!((s.mean - 2.5).abs() < 1e-9);
        assert!((s.std - 1.118_033_988).abs() < 1e-6);
        // sqrt((1 + 4 + 9 + 16) / 4)
        assert!((s.rms - 7.5f64.sqrt()).abs() < 1e-9);
        assert_eq!(s.max, 4.0);
        assert_eq!(s.min, 1.0);
        let c = cdf_points(&ns, 100);
        assert_eq!(c.last().copied(), Some((4.0, 1.0)));
    }
}
