//! The serde shape of job files.

use crate::disk::DiskParams;
use crate::request::IoPrio;
use crate::schedulers::SchedulerConfig;
use crate::units::{parse_duration, parse_size};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A whole job file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// Settings shared by all jobs.
    #[serde(default)]
    pub global: Global,
    /// The jobs (`[[job]]` tables).
    #[serde(rename = "job", default)]
    pub jobs: Vec<JobSpec>,
}

/// A device given by preset name or path, or inline.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum DiskSpec {
    /// Preset name or file path.
    Name(String),
    /// Inline parameters.
    Inline(DiskParams),
}

/// A scheduler given by name, or inline with tunables.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum SchedSpec {
    /// Name with default tunables.
    Name(String),
    /// Name plus tunables.
    Inline(SchedulerConfig),
}

// A name or a table; written out by hand so that a bad table reports the
// offending field instead of "did not match any variant".
impl<'de> Deserialize<'de> for DiskSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Ok(DiskSpec::Name(s)),
            other => DiskParams::deserialize(other)
                .map(DiskSpec::Inline)
                .map_err(|e| D::Error::custom(format!("disk: {e}"))),
        }
    }
}

impl<'de> Deserialize<'de> for SchedSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Ok(SchedSpec::Name(s)),
            other => {
                // Flattened tunables (priority) would silently drop a
                // misspelt key; check keys against the defaults' own.
                if let Some(name) = other.get("name").and_then(|n| n.as_str()) {
                    let known = SchedulerConfig::by_name(name)
                        .ok()
                        .and_then(|c| toml::Value::try_from(c).ok());
                    if let (Some(known), Some(given)) =
                        (known.as_ref().and_then(|k| k.as_table()), other.as_table())
                    {
                        if let Some(bad) = given.keys().find(|k| !known.contains_key(*k)) {
                            let mut names: Vec<&str> = known.keys().map(|k| k.as_str()).collect();
                            names.sort_unstable();
                            return Err(D::Error::custom(format!(
                                "scheduler: unknown tunable `{bad}` for {name} (known: {})",
                                names.join(", ")
                            )));
                        }
                    }
                }
                SchedulerConfig::deserialize(other)
                    .map(SchedSpec::Inline)
                    .map_err(|e| D::Error::custom(format!("scheduler: {e}")))
            }
        }
    }
}

/// Page cache and writeback settings (Linux 2.6.18 defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Memory available to the page cache.
    pub size: String,
    /// Sequential read-ahead window (KiB).
    pub read_ahead_kb: u64,
    /// Background writeback starts above this share of the cache (%).
    pub dirty_background_ratio: u32,
    /// Writers block above this share of the cache (%).
    pub dirty_ratio: u32,
    /// Dirty data older than this is written back by the periodic flush.
    pub dirty_expire: String,
    /// Period of the flush thread.
    pub writeback_interval: String,
    /// Async writeback requests in flight at once.
    pub writeback_inflight: u32,
    /// Memory copy rate for cache hits (MB/s).
    pub memcpy_mb_s: f64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            size: "7g".into(),
            read_ahead_kb: 128,
            dirty_background_ratio: 10,
            dirty_ratio: 40,
            dirty_expire: "30s".into(),
            writeback_interval: "5s".into(),
            writeback_inflight: 64,
            memcpy_mb_s: 2000.0,
        }
    }
}

impl CacheConfig {
    /// Checks values.
    pub fn validate(&self) -> Result<()> {
        parse_size("global.cache.size", &self.size)?;
        parse_duration("global.cache.dirty_expire", &self.dirty_expire)?;
        if parse_duration("global.cache.writeback_interval", &self.writeback_interval)? == 0 {
            return Err(Error::invalid(
                "global.cache.writeback_interval",
                "must be > 0",
            ));
        }
        if self.dirty_ratio == 0 || self.dirty_ratio > 100 || self.dirty_background_ratio > 100 {
            return Err(Error::invalid(
                "global.cache.dirty_ratio",
                "must be 1..=100",
            ));
        }
        if self.memcpy_mb_s.is_nan() || self.memcpy_mb_s <= 0.0 {
            return Err(Error::invalid("global.cache.memcpy_mb_s", "must be > 0"));
        }
        Ok(())
    }
}

/// `[global]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Global {
    /// PRNG seed.
    pub seed: u64,
    /// Length of the run.
    pub runtime: String,
    /// Warm-up excluded from latency statistics.
    pub ramp: String,
    /// Device.
    pub disk: DiskSpec,
    /// Scheduler.
    pub scheduler: SchedSpec,
    /// Page cache.
    pub cache: CacheConfig,
    /// CPU time per IO syscall.
    pub syscall: String,
    /// Largest request the block layer builds.
    pub max_request: String,
    /// Model the file system's block map (ext2: one 4 KiB indirect block per
    /// 4 MiB of file, read from disk the first time a region is used).
    pub indirect_blocks: bool,
    /// End the run when a job with an `io_size` has done it (fio's `exitall`).
    pub exitall: bool,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            seed: 1,
            runtime: "60s".into(),
            ramp: "0s".into(),
            disk: DiskSpec::Name("sata2008".into()),
            scheduler: SchedSpec::Name("anticipatory".into()),
            cache: CacheConfig::default(),
            syscall: "20us".into(),
            max_request: "512k".into(),
            indirect_blocks: true,
            exitall: false,
        }
    }
}

/// `[[job]]`: the fio options the simulator understands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobSpec {
    /// Name in reports.
    pub name: String,
    /// `read`, `write`, `randread` or `randwrite`.
    pub rw: String,
    /// Block size.
    pub bs: String,
    /// `O_DIRECT`.
    pub direct: bool,
    /// File size.
    pub size: String,
    /// Byte offset of the file on the device (default: after the previous files).
    pub offset: Option<String>,
    /// Rate limit, bytes per second.
    pub rate: Option<String>,
    /// Idle time between IOs.
    pub thinktime: Option<String>,
    /// IO priority: `be/0`..`be/7`, `rt/0`..`rt/7`, `idle`.
    pub prio: IoPrio,
    /// Clones, each with its own file.
    pub numjobs: u32,
    /// IOs kept in flight (fio's libaio `iodepth`); above 1 needs `direct`.
    pub iodepth: u32,
    /// Run length (default: the global runtime).
    pub runtime: Option<String>,
    /// Delay before the first IO.
    pub start_delay: Option<String>,
    /// `posix_fadvise(DONTNEED)` on what it touched every this many bytes.
    pub fadvise_dontneed: Option<String>,
    /// Write back its dirty pages (and wait) every this many bytes.
    pub sync_every: Option<String>,
    /// Bytes at the start of the file already in the page cache at time 0.
    pub precache: Option<String>,
    /// Random jobs draw blocks with replacement instead of fio's default
    /// random map (each block once per pass).
    pub norandommap: bool,
    /// Bytes after which the job stops (fio's `io_size`; default: runs for
    /// the whole runtime).
    pub io_size: Option<String>,
    /// Whether the job appears in reports.
    pub report: bool,
}

impl Default for JobSpec {
    fn default() -> Self {
        JobSpec {
            name: "job".into(),
            rw: "randread".into(),
            bs: "4k".into(),
            direct: false,
            size: "1g".into(),
            offset: None,
            rate: None,
            thinktime: None,
            prio: IoPrio::DEFAULT,
            numjobs: 1,
            iodepth: 1,
            runtime: None,
            start_delay: None,
            fadvise_dontneed: None,
            sync_every: None,
            precache: None,
            norandommap: false,
            io_size: None,
            report: true,
        }
    }
}
