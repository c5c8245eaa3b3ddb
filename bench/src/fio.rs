//! Reading fio's `--output-format=json` output.

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

/// Latency statistics of one direction, converted to milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Number of IOs measured.
    pub n: u64,
    /// Mean latency.
    pub mean_ms: f64,
    /// Largest latency.
    pub max_ms: f64,
    /// Smallest latency.
    pub min_ms: f64,
    /// Standard deviation.
    pub stddev_ms: f64,
    /// 99th percentile (from clat_ns; absent when fio gave none).
    pub p99_ms: Option<f64>,
}

/// One direction (read or write) of one fio job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Direction {
    /// Bandwidth in KiB/s as fio reports it (`bw`).
    pub bw_kib_s: f64,
    /// IOs per second.
    pub iops: f64,
    /// Bytes transferred.
    pub io_bytes: u64,
    /// Total latency (`lat_ns`: submission + completion) if fio gave it,
    /// else completion latency (`clat_ns`).
    pub lat: Option<Latency>,
    /// Which fio statistic `lat` came from: `lat_ns` or `clat_ns`.
    pub lat_source: &'static str,
}

/// One job of a fio run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// `jobname`.
    pub name: String,
    /// fio's error code for the job (0 = none).
    pub error: i64,
    /// Reads.
    pub read: Direction,
    /// Writes.
    pub write: Direction,
}

#[derive(Deserialize)]
struct RawOutput {
    jobs: Vec<RawJob>,
}

#[derive(Deserialize)]
struct RawJob {
    jobname: String,
    #[serde(default)]
    error: i64,
    read: RawDir,
    write: RawDir,
}

#[derive(Deserialize)]
struct RawDir {
    #[serde(default)]
    io_bytes: u64,
    #[serde(default)]
    bw: f64,
    #[serde(default)]
    iops: f64,
    #[serde(default)]
    clat_ns: Option<RawLat>,
    #[serde(default)]
    lat_ns: Option<RawLat>,
}

#[derive(Deserialize)]
struct RawLat {
    #[serde(default, rename = "N")]
    n: u64,
    min: f64,
    max: f64,
    mean: f64,
    stddev: f64,
    #[serde(default)]
    percentile: Option<std::collections::BTreeMap<String, f64>>,
}

const NS_PER_MS: f64 = 1e6;

fn p99(l: &RawLat) -> Option<f64> {
    let p = l.percentile.as_ref()?;
    p.iter()
        .find(|(k, _)| k.parse::<f64>().ok() == Some(99.0))
        .map(|(_, v)| v / NS_PER_MS)
}

fn convert(l: &RawLat, p99_from: Option<&RawLat>) -> Latency {
    Latency {
        n: l.n,
        mean_ms: l.mean / NS_PER_MS,
        max_ms: l.max / NS_PER_MS,
        min_ms: l.min / NS_PER_MS,
        stddev_ms: l.stddev / NS_PER_MS,
        p99_ms: p99(l).or_else(|| p99_from.and_then(p99)),
    }
}

fn direction(d: &RawDir) -> Direction {
    let has = |l: &&RawLat| l.n > 0 || l.max > 0.0;
    let (lat, src) = match (
        d.lat_ns.as_ref().filter(has),
        d.clat_ns.as_ref().filter(has),
    ) {
        (Some(l), c) => (Some(convert(l, c)), "lat_ns"),
        (None, Some(c)) => (Some(convert(c, None)), "clat_ns"),
        (None, None) => (None, "none"),
    };
    Direction {
        bw_kib_s: d.bw,
        iops: d.iops,
        io_bytes: d.io_bytes,
        lat,
        lat_source: src,
    }
}

/// Parses fio's JSON output. Text before the first `{` (fio sometimes
/// prints warnings there) is skipped.
pub fn parse(text: &str) -> Result<Vec<Job>> {
    let start = text
        .find('{')
        .ok_or_else(|| anyhow!("fio output has no JSON object"))?;
    let raw: RawOutput = serde_json::from_str(&text[start..]).context("parsing fio JSON")?;
    if raw.jobs.is_empty() {
        return Err(anyhow!("fio JSON has no jobs"));
    }
    Ok(raw
        .jobs
        .iter()
        .map(|j| Job {
            name: j.jobname.clone(),
            error: j.error,
            read: direction(&j.read),
            write: direction(&j.write),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"fio: some warning
{
  "fio version" : "fio-3.33",
  "jobs" : [
    {
      "jobname" : "fg",
      "error" : 0,
      "read" : {
        "io_bytes" : 655360,
        "bw" : 6959,
        "iops" : 108.7,
        "slat_ns" : {"min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "N": 0},
        "clat_ns" : {
          "min" : 100000, "max" : 32000000, "mean" : 8900000.0, "stddev" : 9340000.0,
          "N" : 10,
          "percentile" : {"1.000000" : 120000, "99.000000" : 31000000}
        },
        "lat_ns" : {"min" : 101000, "max" : 32001000, "mean" : 8910000.0,
          "stddev" : 9340000.0, "N" : 10}
      },
      "write" : {
        "io_bytes" : 0, "bw" : 0, "iops" : 0.0,
        "clat_ns" : {"min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "N": 0},
        "lat_ns" : {"min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "N": 0}
      }
    }
  ]
}"#;

    #[test]
    fn parses_latency_in_ms() {
        let jobs = parse(SAMPLE).unwrap();
        let r = &jobs[0].read;
        assert_eq!(jobs[0].name, "fg");
        assert_eq!(r.bw_kib_s, 6959.0);
        assert_eq!(r.lat_source, "lat_ns");
        let l = r.lat.unwrap();
        assert!((l.mean_ms - 8.91).abs() < 1e-9);
        assert!((l.max_ms - 32.001).abs() < 1e-9);
        assert_eq!(l.n, 10);
        assert_eq!(l.p99_ms, Some(31.0));
        assert!(jobs[0].write.lat.is_none());
    }

    #[test]
    fn falls_back_to_clat() {
        let t = SAMPLE.replace(
            "\"lat_ns\" : {\"min\" : 101000",
            "\"x\" : {\"min\" : 101000",
        );
        let jobs = parse(&t).unwrap();
        assert_eq!(jobs[0].read.lat_source, "clat_ns");
        assert!((jobs[0].read.lat.unwrap().mean_ms - 8.9).abs() < 1e-9);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("fio: no output").is_err());
        assert!(parse(r#"{"jobs": []}"#).is_err());
    }
}
