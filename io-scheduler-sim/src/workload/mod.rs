//! fio-like job files and their resolution into simulation inputs.
//!
//! ```toml
//! [global]
//! seed = 1
//! runtime = "60s"
//! disk = "sata2008"          # preset, path to a TOML/JSON file, or an inline table
//! scheduler = "priority"     # name, or a table: { name = "anticipatory", antic_expire_ms = 0 }
//! page_cache = "7g"
//!
//! [[job]]
//! name = "fg"
//! rw = "randread"            # read | write | randread | randwrite
//! bs = "64k"
//! size = "10g"
//!
//! [[job]]
//! name = "logger"
//! rw = "read"
//! bs = "64k"
//! prio = "be/7"
//! direct = true
//! ```

mod spec;

pub use spec::{CacheConfig, DiskSpec, Global, JobFile, JobSpec, SchedSpec};

use crate::disk::DiskParams;
use crate::request::{Dir, IoPrio};
use crate::schedulers::SchedulerConfig;
use crate::units::{parse_duration, parse_size, Time, SECTOR};
use crate::{Error, Result};
use serde::Serialize;

/// Page size of the simulated page cache.
pub const PAGE: u64 = 4096;

/// File bytes mapped by one indirect block (1024 block numbers of 4 KiB blocks).
pub const INDIRECT_SPAN: u64 = 4 << 20;

/// File bytes mapped by one double-indirect block.
pub const DOUBLE_SPAN: u64 = 4 << 30;

/// A job ready to run.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// Name (clones get `name.N`).
    pub name: String,
    /// Sequential (else uniform random, block aligned).
    pub sequential: bool,
    /// Random jobs: each block once per pass (fio's random map), else with
    /// replacement (`norandommap`).
    pub randommap: bool,
    /// Direction.
    pub dir: Dir,
    /// Block size in bytes.
    pub bs: u64,
    /// `O_DIRECT` (else through the page cache).
    pub direct: bool,
    /// IOs kept in flight (1: synchronous).
    pub iodepth: u32,
    /// Index of its file.
    pub file: usize,
    /// Rate limit in bytes/s.
    pub rate: Option<u64>,
    /// Idle time between IOs.
    pub think: Time,
    /// IO priority.
    pub prio: IoPrio,
    /// When it starts issuing.
    pub start: Time,
    /// When it stops.
    pub end: Time,
    /// Drop its cached pages every this many bytes.
    pub fadvise_every: Option<u64>,
    /// Write back its dirty pages and wait every this many bytes.
    pub sync_every: Option<u64>,
    /// Stop after this many bytes.
    pub io_size: Option<u64>,
    /// Whether it appears in reports.
    pub report: bool,
}

/// A file on the device.
#[derive(Debug, Clone, Serialize)]
pub struct FileSpec {
    /// First sector.
    pub start_lba: u64,
    /// Size in bytes.
    pub size: u64,
    /// Bytes from its start that are in the page cache when the run begins.
    pub precache: u64,
}

/// Everything a simulation needs.
#[derive(Debug, Clone, Serialize)]
pub struct SimConfig {
    /// PRNG seed.
    pub seed: u64,
    /// End of the run.
    pub runtime: Time,
    /// Latencies of IOs started before this are not recorded.
    pub ramp: Time,
    /// The device.
    pub disk: DiskParams,
    /// The scheduler.
    pub scheduler: SchedulerConfig,
    /// Page cache and writeback settings.
    pub cache: CacheConfig,
    /// Jobs.
    pub jobs: Vec<Job>,
    /// Files.
    pub files: Vec<FileSpec>,
    /// CPU time per IO syscall (added between a job's IOs).
    pub syscall: Time,
    /// Largest request the block layer builds (bytes).
    pub max_request: u64,
    /// Whether block-map (indirect block) reads are modelled.
    pub indirect_blocks: bool,
    /// The run ends when a job with an `io_size` has done it.
    pub exitall: bool,
}

fn opt_size(field: &str, v: &Option<String>) -> Result<Option<u64>> {
    v.as_deref().map(|s| parse_size(field, s)).transpose()
}

fn opt_dur(field: &str, v: &Option<String>) -> Result<Option<Time>> {
    v.as_deref().map(|s| parse_duration(field, s)).transpose()
}

impl JobFile {
    /// Parses a job file (TOML).
    pub fn parse(path: &std::path::Path, text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|source| Error::Toml {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads and parses a job file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Resolves sizes, presets and file placement.
    pub fn resolve(&self) -> Result<SimConfig> {
        let g = &self.global;
        let disk = match &g.disk {
            DiskSpec::Name(n) => DiskParams::resolve(n)?,
            DiskSpec::Inline(p) => {
                p.validate()?;
                p.clone()
            }
        };
        let scheduler = match &g.scheduler {
            SchedSpec::Name(n) => SchedulerConfig::by_name(n)?,
            SchedSpec::Inline(c) => c.clone(),
        };
        let runtime = parse_duration("global.runtime", &g.runtime)?;
        if runtime == 0 {
            return Err(Error::invalid("global.runtime", "must be > 0"));
        }
        let ramp = parse_duration("global.ramp", &g.ramp)?;
        let max_request = parse_size("global.max_request", &g.max_request)?.max(PAGE);
        let capacity = disk.capacity_bytes();
        let mut files = Vec::new();
        let mut jobs = Vec::new();
        let mut next_free: u64 = 0;
        if self.jobs.is_empty() {
            return Err(Error::invalid("job", "the job file has no [[job]]"));
        }
        for (ji, js) in self.jobs.iter().enumerate() {
            let f = |k: &str| format!("job[{ji}] ({}).{k}", js.name);
            let (sequential, dir) = match js.rw.as_str() {
                "read" => (true, Dir::Read),
                "write" => (true, Dir::Write),
                "randread" => (false, Dir::Read),
                "randwrite" => (false, Dir::Write),
                other => {
                    return Err(Error::invalid(
                        f("rw"),
                        format!("`{other}` (use read, write, randread or randwrite)"),
                    ))
                }
            };
            let bs = parse_size(&f("bs"), &js.bs)?;
            if bs == 0 || bs % SECTOR != 0 {
                return Err(Error::invalid(
                    f("bs"),
                    "must be a positive multiple of 512",
                ));
            }
            let size = parse_size(&f("size"), &js.size)?;
            let size = size / bs * bs;
            if size == 0 {
                return Err(Error::invalid(f("size"), "must hold at least one block"));
            }
            let offset = opt_size(&f("offset"), &js.offset)?;
            let rate = opt_size(&f("rate"), &js.rate)?.filter(|&r| r > 0);
            let think = opt_dur(&f("thinktime"), &js.thinktime)?.unwrap_or(0);
            let start = opt_dur(&f("start_delay"), &js.start_delay)?.unwrap_or(0);
            let end = match opt_dur(&f("runtime"), &js.runtime)? {
                Some(r) => (start + r).min(runtime),
                None => runtime,
            };
            let fadvise_every = opt_size(&f("fadvise_dontneed"), &js.fadvise_dontneed)?;
            let sync_every = opt_size(&f("sync_every"), &js.sync_every)?;
            let io_size = opt_size(&f("io_size"), &js.io_size)?;
            if io_size == Some(0) {
                return Err(Error::invalid(f("io_size"), "must be > 0"));
            }
            let precache = opt_size(&f("precache"), &js.precache)?
                .unwrap_or(0)
                .min(size);
            if js.numjobs == 0 {
                return Err(Error::invalid(f("numjobs"), "must be >= 1"));
            }
            if js.iodepth == 0 || (js.iodepth > 1 && !js.direct) {
                return Err(Error::invalid(
                    f("iodepth"),
                    "must be >= 1, and above 1 only with direct = true (buffered IO is synchronous)",
                ));
            }
            for clone in 0..js.numjobs {
                // Each clone gets its own file, laid out after the previous
                // ones unless an offset is given (ext2 on a fresh disk).
                let base = match offset {
                    Some(o) => o + clone as u64 * size,
                    None => next_free,
                };
                let base = base.div_ceil(1 << 20) << 20;
                if base + size > capacity {
                    return Err(Error::invalid(
                        f("size"),
                        format!("files do not fit on a {capacity}-byte device"),
                    ));
                }
                next_free = next_free.max(base + size);
                files.push(FileSpec {
                    start_lba: base / SECTOR,
                    size,
                    precache,
                });
                jobs.push(Job {
                    name: if js.numjobs > 1 {
                        format!("{}.{clone}", js.name)
                    } else {
                        js.name.clone()
                    },
                    sequential,
                    randommap: !js.norandommap,
                    dir,
                    bs,
                    direct: js.direct,
                    iodepth: js.iodepth,
                    file: files.len() - 1,
                    rate,
                    think,
                    prio: js.prio,
                    start,
                    end,
                    fadvise_every: fadvise_every.filter(|&v| v > 0),
                    sync_every: sync_every.filter(|&v| v > 0),
                    io_size,
                    report: js.report,
                });
            }
        }
        let cache = g.cache.clone();
        cache.validate()?;
        Ok(SimConfig {
            seed: g.seed,
            runtime,
            ramp,
            disk,
            scheduler,
            cache,
            jobs,
            files,
            syscall: parse_duration("global.syscall", &g.syscall)?,
            max_request,
            indirect_blocks: g.indirect_blocks,
            exitall: g.exitall,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<SimConfig> {
        JobFile::parse(Path::new("t.toml"), text)?.resolve()
    }

    #[test]
    fn resolves_jobs_files_and_clones() {
        let c = parse(
            r#"
            [global]
            runtime = "10s"
            scheduler = { name = "deadline", fifo_batch = 4 }
            [[job]]
            name = "a"
            rw = "randread"
            bs = "64k"
            size = "1g"
            [[job]]
            name = "b"
            rw = "write"
            bs = "1m"
            size = "2g"
            numjobs = 2
            prio = "idle"
            rate = "4m"
            "#,
        )
        .unwrap();
        assert_eq!(c.jobs.len(), 3);
        assert_eq!(c.jobs[1].name, "b.0");
        assert_eq!(c.jobs[2].rate, Some(4 << 20));
        assert!(!c.jobs[0].sequential && c.jobs[1].sequential);
        // Files follow each other without overlap.
        assert_eq!(c.files[1].start_lba * 512, 1 << 30);
        assert_eq!(c.files[2].start_lba * 512, 3 << 30);
        match c.scheduler {
            SchedulerConfig::Deadline(t) => assert_eq!(t.fifo_batch, 4),
            other => panic!("wrong scheduler {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse("[[job]]\nname = \"x\"\nbs = \"3k1\"\n").unwrap_err();
        assert!(e.to_string().contains("job[0] (x).bs"), "{e}");
        let e = parse("[[job]]\nname = \"x\"\nbs = \"1000\"\n").unwrap_err();
        assert!(e.to_string().contains("multiple of 512"), "{e}");
        let e = parse("[global]\nscheduler = { name = \"priority\", antic = 1 }\n[[job]]\n")
            .unwrap_err();
        let chain = format!("{e} {:?}", std::error::Error::source(&e));
        assert!(chain.contains("unknown tunable `antic`"), "{chain}");
        assert!(parse("[global]\nruntime = \"0s\"\n[[job]]\n").is_err());
        assert!(parse("[global]\n").is_err());
    }
}
