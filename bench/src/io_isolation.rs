//! `vessel-bench io-isolation`: the "IO Containment" Table 3 experiment
//! with real containers.
//!
//! A loop device (a file on disk, `losetup --direct-io=on`) is bound into
//! every container. Its scheduler is the kernel's own: BFQ where the
//! kernel offers it, else mq-deadline (both dispatch by IO priority
//! class); nothing is written that the device does not list. Its queue
//! depth is cut to `--queue-depth` (4, the kernel's minimum) before the
//! scheduler is attached, so requests wait in the scheduler, where
//! priorities act, instead of in the loop driver's 128 slots (see
//! `bench/README.md`, "why the device is fair"). One foreground container runs a 64 KiB
//! random-read fio job with direct IO; 0..N antagonist containers run
//! 64 KiB sequential reads (or writes) of their own region of the device:
//! direct, buffered, or buffered with fio's `fadvise_hint`. The priority
//! cases give the foreground and the antagonists different priorities
//! through the `io.vessel.blockio.priority` annotation (vessel enforces it
//! with what the host has: the IO priority of the container's processes,
//! plus BFQ or iocost weights where present; the container's state says
//! which) or, with `--mechanism spec`, through `process.ioPriority`.
//!
//! Antagonists run with a memory limit so their buffered reads cannot be
//! served from a page cache filled by an earlier pass, and the device's
//! cache is flushed (BLKFLSBUF) before every case.
//!
//! fio and its libraries come from the host: `/usr` is bind-mounted
//! read-only over a busybox rootfs whose `/lib` and `/lib64` point into it.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::fio;
use crate::sys::{self, Cleanup};
use crate::table::{num, Table};

/// The annotation vessel maps to process IO priority (and BFQ or iocost
/// weights where the host has them).
pub const PRIORITY_ANNOTATION: &str = "io.vessel.blockio.priority";
/// The state annotation naming the mechanisms that enforce it.
pub const ENFORCED_ANNOTATION: &str = "io.vessel.blockio.enforced";

/// How priorities are given to the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// `io.vessel.blockio.priority` annotations (IO priority + BFQ weight).
    Annotation,
    /// `process.ioPriority` in the spec (IO priority only).
    Spec,
}

/// What the antagonists do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rw {
    /// Sequential reads (the paper's Table 3).
    Read,
    /// Sequential writes (the paper's Table 4).
    Write,
}

/// Flags of the io-isolation suite.
#[derive(Debug, Clone)]
pub struct Options {
    /// The vessel binary.
    pub vessel: PathBuf,
    /// Measured seconds of each case (after the ramp).
    pub runtime_s: u64,
    /// Seconds the foreground runs before fio starts counting.
    pub ramp_s: u64,
    /// Antagonist counts to sweep.
    pub antagonists: Vec<usize>,
    /// Size of the loop device in MiB.
    pub size_mib: u64,
    /// Antagonists read or write.
    pub rw: Rw,
    /// The foreground's priority (`rt:0`, `be:0`, ...).
    pub fg_priority: String,
    /// The antagonists' priority in the priority cases (`idle`, `be:7`).
    pub bg_priority: String,
    /// How priorities are given.
    pub mechanism: Mechanism,
    /// Memory limit of each antagonist container, MiB.
    pub antagonist_memory_mib: u64,
    /// Where the backing file goes (must be a disk, not tmpfs).
    pub tmpdir: PathBuf,
    /// Where to write the JSON results (the plot goes next to it).
    pub json: PathBuf,
    /// The device's scheduler: `None` picks bfq if offered, else
    /// mq-deadline.
    pub scheduler: Option<String>,
    /// Requests the device takes at once (`nr_requests` before the
    /// scheduler is attached; 4 is the kernel's minimum).
    pub queue_depth: u32,
    /// Largest request the device takes, KiB (`max_sectors_kb`).
    pub max_request_kib: u32,
}

/// What the antagonists of a case do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Load {
    /// No antagonist.
    None,
    /// Direct IO.
    Direct,
    /// Buffered IO, `fadvise_hint=0`.
    Buffered,
    /// Buffered IO, `fadvise_hint=sequential`.
    BufferedFadvise,
}

/// One case of the sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Case {
    /// The paper's name (`no-load`, `direct-64k`, `buf-prio-fadv`, ...).
    pub name: String,
    /// Antagonist kind.
    pub load: Load,
    /// Whether foreground and antagonists get different priorities.
    pub prio: bool,
    /// Number of antagonists.
    pub antagonists: usize,
}

/// The paper's name of a case.
pub fn case_name(load: Load, prio: bool) -> String {
    let base = match load {
        Load::None => return "no-load".to_string(),
        Load::Direct => "direct-64k",
        Load::Buffered => "buf",
        Load::BufferedFadvise => "buf-fadv",
    };
    match (load, prio) {
        (_, false) => base.to_string(),
        (Load::BufferedFadvise, true) => "buf-prio-fadv".to_string(),
        (_, true) => format!("{base}-prio"),
    }
}

/// The cases in run order: per antagonist count a no-load run, then each
/// load without and right after with priority; a last no-load run at the
/// end. The no-load runs track drift of the machine over the sweep.
pub fn plan(antagonists: &[usize]) -> Vec<Case> {
    let none = || Case {
        name: "no-load".to_string(),
        load: Load::None,
        prio: false,
        antagonists: 0,
    };
    let mut v = Vec::new();
    for &n in antagonists.iter().filter(|n| **n > 0) {
        v.push(none());
        for load in [Load::Direct, Load::Buffered, Load::BufferedFadvise] {
            for prio in [false, true] {
                v.push(Case {
                    name: case_name(load, prio),
                    load,
                    prio,
                    antagonists: n,
                });
            }
        }
    }
    v.push(none());
    v
}

/// The table order of the paper's Table 3 for one antagonist count.
const TABLE_ORDER: &[&str] = &[
    "direct-64k",
    "buf",
    "buf-fadv",
    "buf-prio",
    "buf-prio-fadv",
    "direct-64k-prio",
];

/// `process.ioPriority` for `rt:N`, `be:N`, `rt`, `be` or `idle`.
pub fn spec_io_priority(p: &str) -> Result<Value> {
    let p = p.trim();
    let (class, level) = match p.split_once(':') {
        Some((c, l)) => (
            c,
            l.parse::<u8>()
                .ok()
                .filter(|l| *l <= 7)
                .ok_or_else(|| anyhow!("priority {p:?}: level must be 0..=7"))?,
        ),
        None => (p, if p == "idle" { 0 } else { 4 }),
    };
    let class = match class {
        "rt" => "IOPRIO_CLASS_RT",
        "be" => "IOPRIO_CLASS_BE",
        "idle" => "IOPRIO_CLASS_IDLE",
        _ => bail!("priority {p:?}: expected rt:N, be:N or idle"),
    };
    Ok(json!({"class": class, "priority": level}))
}

/// `major:minor` of a device number (glibc's encoding).
pub fn dev_major_minor(rdev: u64) -> (u64, u64) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major, minor)
}

/// Decodes an ioprio value (`class << 13 | level`) as `rt:N`, `be:N`,
/// `idle` or `none`.
pub fn ioprio_string(v: i64) -> String {
    let class = (v >> 13) & 0x7;
    let level = v & 0x7;
    match class {
        0 => "none".to_string(),
        1 => format!("rt:{level}"),
        2 => format!("be:{level}"),
        3 => "idle".to_string(),
        _ => format!("class{class}:{level}"),
    }
}

fn ioprio_of(pid: i32) -> Option<String> {
    // SAFETY: ioprio_get(IOPRIO_WHO_PROCESS = 1, pid) takes integers only.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, pid) };
    (rc >= 0).then(|| ioprio_string(rc))
}

fn blkio_weight_of(pid: i32) -> Option<String> {
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = cg.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
        ctrl.split(',')
            .any(|c| c == "blkio")
            .then(|| path.to_string())
    })?;
    let dir = Path::new("/sys/fs/cgroup/blkio").join(path.trim_start_matches('/'));
    fs::read_to_string(dir.join("blkio.bfq.weight"))
        .ok()
        .map(|s| s.split_whitespace().last().unwrap_or("").to_string())
}

/// The loop device the experiment runs on.
struct LoopDev {
    path: PathBuf,
    major: u64,
    minor: u64,
    /// `/sys/block/loopN/stat`.
    stat: PathBuf,
    /// The stat file of the disk under the backing file, if found.
    host_stat: Option<PathBuf>,
    /// `/sys/block/loopN/inflight` (reads and writes in the driver).
    inflight: PathBuf,
    /// The active scheduler.
    scheduler: String,
}

const BLKFLSBUF: libc::c_ulong = 0x1261;

/// Drops the page cache of block device `dev`.
fn flush_buffers(dev: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = File::open(dev).with_context(|| format!("opening {}", dev.display()))?;
    // SAFETY: BLKFLSBUF takes no argument memory; the fd is open for the call.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), BLKFLSBUF, 0) };
    if rc != 0 {
        return Err(anyhow!(
            "BLKFLSBUF {}: {}",
            dev.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Writes `size_mib` MiB of non-zero, non-repeating data (so neither the
/// filesystem nor the host can skip the reads) and drops it from the cache.
fn write_backing_file(path: &Path, size_mib: u64) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..size_mib {
        sys::check_interrupted()?;
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf)?;
    }
    f.sync_all()?;
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise on an open fd takes integers only.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    Ok(())
}

fn is_tmpfs(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a live, writable struct.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type == libc::TMPFS_MAGIC
}

/// The schedulers a `queue/scheduler` file lists and the active one.
pub fn schedulers(text: &str) -> (Vec<String>, Option<String>) {
    let mut all = Vec::new();
    let mut active = None;
    for w in text.split_whitespace() {
        let name = w.trim_matches(['[', ']']).to_string();
        if w.starts_with('[') {
            active = Some(name.clone());
        }
        all.push(name);
    }
    (all, active)
}

/// The scheduler to use: `wanted` if the device offers it, else the first
/// of bfq and mq-deadline it offers (both order requests by IO priority).
pub fn pick_scheduler(offered: &[String], wanted: Option<&str>) -> Result<String> {
    let has = |s: &str| offered.iter().any(|o| o == s);
    match wanted {
        Some(w) if has(w) => Ok(w.to_string()),
        Some(w) => bail!("the device offers no {w:?} scheduler (it offers {offered:?})"),
        None => ["bfq", "mq-deadline"]
            .into_iter()
            .find(|s| has(s))
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow!("the device offers neither bfq nor mq-deadline ({offered:?}): no scheduler here orders by IO priority")
            }),
    }
}

fn write_queue(q: &Path, file: &str, value: &str) -> Result<()> {
    fs::write(q.join(file), value)
        .with_context(|| format!("writing {value:?} to {}", q.join(file).display()))
}

fn setup_loop(tmp: &Path, opts: &Options, cleanup: &mut Cleanup) -> Result<LoopDev> {
    let size_mib = opts.size_mib;
    let file = tmp.join("disk.img");
    println!(
        "writing a {size_mib} MiB backing file {} ...",
        file.display()
    );
    write_backing_file(&file, size_mib)?;
    let out = sys::output(
        Command::new("losetup")
            .args(["--find", "--show", "--direct-io=on"])
            .arg(&file),
    )
    .context("losetup (util-linux)")?;
    let path = PathBuf::from(out.trim());
    {
        let p = path.clone();
        cleanup.push(format!("losetup -d {}", p.display()), move || {
            sys::output(Command::new("losetup").arg("-d").arg(&p)).map(|_| ())
        });
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("losetup printed {out:?}"))?
        .to_string();
    let q = PathBuf::from(format!("/sys/block/{name}/queue"));
    let (offered, _) = schedulers(&fs::read_to_string(q.join("scheduler"))?);
    let sched = pick_scheduler(&offered, opts.scheduler.as_deref())
        .with_context(|| format!("{}", path.display()))?;
    // Without a scheduler, nr_requests sizes the driver's own tags (the
    // requests in flight at once); attaching the scheduler afterwards
    // keeps them and gives the scheduler its own, deeper pool.
    if offered.iter().any(|o| o == "none") {
        write_queue(&q, "scheduler", "none")?;
        write_queue(&q, "nr_requests", &opts.queue_depth.to_string())?;
    }
    write_queue(&q, "scheduler", &sched)?;
    write_queue(&q, "max_sectors_kb", &opts.max_request_kib.to_string())?;
    let (_, now) = schedulers(&fs::read_to_string(q.join("scheduler"))?);
    if now.as_deref() != Some(sched.as_str()) {
        bail!(
            "{} runs {now:?}, not {sched}",
            q.join("scheduler").display()
        );
    }
    let dio = fs::read_to_string(format!("/sys/block/{name}/loop/dio")).unwrap_or_default();
    if dio.trim() != "1" {
        println!(
            "warning: {name} direct IO is {:?} (losetup --direct-io=on did not take)",
            dio.trim()
        );
    }
    let (major, minor) = dev_major_minor(fs::metadata(&path)?.rdev());
    Ok(LoopDev {
        stat: PathBuf::from(format!("/sys/block/{name}/stat")),
        inflight: PathBuf::from(format!("/sys/block/{name}/inflight")),
        host_stat: backing_stat_file(&file),
        path,
        major,
        minor,
        scheduler: sched,
    })
}

/// Facts about the device for the record.
fn device_info(dev: &LoopDev) -> Value {
    let name = dev.path.file_name().unwrap_or_default().to_string_lossy();
    let q = |f: &str| {
        fs::read_to_string(format!("/sys/block/{name}/{f}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    // The scheduler's tunables as they are (mq-deadline: prio_aging_expire,
    // read_expire, ...; bfq: slice_idle, low_latency, ...).
    let mut iosched = serde_json::Map::new();
    if let Ok(rd) = fs::read_dir(format!("/sys/block/{name}/queue/iosched")) {
        for e in rd.flatten() {
            if let Ok(v) = fs::read_to_string(e.path()) {
                iosched.insert(
                    e.file_name().to_string_lossy().into_owned(),
                    json!(v.trim()),
                );
            }
        }
    }
    json!({
        "device": dev.path,
        "major_minor": format!("{}:{}", dev.major, dev.minor),
        "scheduler": q("queue/scheduler"),
        "active_scheduler": dev.scheduler,
        "rotational": q("queue/rotational"),
        "nr_requests": q("queue/nr_requests"),
        "read_ahead_kb": q("queue/read_ahead_kb"),
        "max_sectors_kb": q("queue/max_sectors_kb"),
        "iosched": iosched,
        "loop_dio": q("loop/dio"),
        "backing_file": q("loop/backing_file"),
        "host_disk_stat": dev.host_stat,
    })
}

/// The shared rootfs: busybox plus `/lib`, `/lib64` links into `/usr`,
/// which each container bind-mounts read-only from the host.
fn make_rootfs(root: &Path) -> Result<()> {
    crate::bundle::make_rootfs(root)?;
    fs::create_dir_all(root.join("usr"))?;
    fs::create_dir_all(root.join("out"))?;
    for l in ["lib", "lib64", "sbin"] {
        let target = format!("usr/{l}");
        if Path::new("/").join(l).exists() {
            symlink(&target, root.join(l))?;
        }
    }
    Ok(())
}

/// Cumulative IO counters of a block device from `/sys/block/<dev>/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevStat {
    /// Reads completed.
    pub reads: u64,
    /// 512-byte sectors read.
    pub read_sectors: u64,
    /// Writes completed.
    pub writes: u64,
    /// 512-byte sectors written.
    pub write_sectors: u64,
}

/// Parses the fields of a block device `stat` file.
pub fn parse_dev_stat(s: &str) -> Option<DevStat> {
    let f: Vec<u64> = s
        .split_whitespace()
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    Some(DevStat {
        reads: *f.first()?,
        read_sectors: *f.get(2)?,
        writes: *f.get(4)?,
        write_sectors: *f.get(6)?,
    })
}

fn dev_stat(stat_file: &Path) -> Option<DevStat> {
    parse_dev_stat(&fs::read_to_string(stat_file).ok()?)
}

/// The sysfs `stat` file of the block device holding `path`'s filesystem.
fn backing_stat_file(path: &Path) -> Option<PathBuf> {
    let dev = fs::metadata(path).ok()?.dev();
    let (ma, mi) = dev_major_minor(dev);
    let p = PathBuf::from(format!("/sys/dev/block/{ma}:{mi}/stat"));
    p.exists().then_some(p)
}

/// What the device itself served during a case.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DeviceLoad {
    /// MiB read from the loop device.
    pub read_mib: f64,
    /// MiB written to the loop device.
    pub write_mib: f64,
    /// Read requests completed.
    pub reads: u64,
    /// Write requests completed.
    pub writes: u64,
    /// Seconds between the two samples.
    pub seconds: f64,
}

impl DeviceLoad {
    fn between(a: DevStat, b: DevStat, seconds: f64) -> DeviceLoad {
        let mib = |s: u64| s as f64 * 512.0 / (1024.0 * 1024.0);
        DeviceLoad {
            read_mib: mib(b.read_sectors.saturating_sub(a.read_sectors)),
            write_mib: mib(b.write_sectors.saturating_sub(a.write_sectors)),
            reads: b.reads.saturating_sub(a.reads),
            writes: b.writes.saturating_sub(a.writes),
            seconds,
        }
    }

    /// Total MiB/s the device moved.
    pub fn mib_s(&self) -> f64 {
        if self.seconds > 0.0 {
            (self.read_mib + self.write_mib) / self.seconds
        } else {
            0.0
        }
    }
}

/// The in-container path of the device.
const DISK: &str = "/dev/benchdisk";

struct Env<'a> {
    opts: &'a Options,
    vessel: PathBuf,
    base: Value,
    root: PathBuf,
    bundles: PathBuf,
    out: PathBuf,
    logs: PathBuf,
    dev: LoopDev,
}

impl Env<'_> {
    fn vessel(&self) -> Command {
        let mut c = Command::new(&self.vessel);
        c.arg("--root").arg(&self.root);
        c
    }

    /// Writes the bundle of container `id` running `fio_args`.
    fn bundle(
        &self,
        id: &str,
        fio_args: Vec<String>,
        prio: Option<&str>,
        mem_mib: Option<u64>,
    ) -> Result<PathBuf> {
        let mut c = self.base.clone();
        let mut args = vec!["/usr/bin/fio".to_string()];
        args.extend(fio_args);
        args.push("--output-format=json".into());
        args.push(format!("--output=/out/{id}.json"));
        c["process"]["args"] = json!(args);
        if let Some(p) = prio {
            match self.opts.mechanism {
                Mechanism::Annotation => {
                    crate::bundle::set_annotation(&mut c, PRIORITY_ANNOTATION, p)
                }
                Mechanism::Spec => c["process"]["ioPriority"] = spec_io_priority(p)?,
            }
        }
        if let Some(m) = mem_mib {
            c["linux"]["resources"]["memory"] = json!({"limit": m * 1024 * 1024});
        }
        let dir = self.bundles.join(id);
        crate::bundle::write_config(&dir, &c)?;
        Ok(dir)
    }

    fn start(&self, id: &str, bundle: &Path) -> Result<Child> {
        let log = File::create(self.logs.join(format!("{id}.log")))?;
        self.vessel()
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting container {id}"))
    }

    fn log_tail(&self, id: &str) -> String {
        let s = fs::read_to_string(self.logs.join(format!("{id}.log"))).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// The container's init pid once it runs, and its state.
    fn pid_of(&self, id: &str) -> Option<(i32, Value)> {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end && !sys::interrupted() {
            if let Ok(s) = sys::output(self.vessel().args(["state", id])) {
                if let Ok(v) = serde_json::from_str::<Value>(&s) {
                    if v["status"] == "running" {
                        if let Some(p) = v["pid"].as_i64().filter(|p| *p > 0) {
                            return Some((p as i32, v));
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The IO priority and BFQ weight read back from the running
    /// container, and the mechanisms its state says enforce its policy.
    fn observe(&self, id: &str) -> Value {
        match self.pid_of(id) {
            Some((pid, state)) => json!({
                "ioprio": ioprio_of(pid),
                "blkio_bfq_weight": blkio_weight_of(pid),
                "enforced": state["annotations"][ENFORCED_ANNOTATION],
            }),
            None => json!(null),
        }
    }

    fn stop(&self, id: &str, child: &mut Child) {
        // fio writes its JSON when it gets SIGTERM.
        let _ = self.vessel().args(["kill", id, "TERM"]).output();
        if sys::wait_timeout(child, Duration::from_secs(15), id).is_err() {
            let _ = self.vessel().args(["kill", id, "KILL"]).output();
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.vessel().args(["delete", "-f", id]).output();
    }
}

/// The measured outcome of one case.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The case.
    pub case: Case,
    /// Foreground read statistics.
    pub fg: fio::Direction,
    /// Summed antagonist bandwidth, KiB/s (antagonists that reported).
    pub antagonist_kib_s: Option<f64>,
    /// How many antagonists reported.
    pub antagonists_reported: usize,
    /// How priorities were given (`none` without priority).
    pub priority_via: String,
    /// Foreground priority and weight seen in the running container.
    pub fg_observed: Value,
    /// First antagonist's priority and weight seen while it ran.
    pub antagonist_observed: Value,
    /// What the loop device served while the foreground ran.
    pub device: Option<DeviceLoad>,
    /// What the disk under the backing file served meanwhile (the loop
    /// device's IO plus everything else on the host, e.g. builds).
    pub host_disk: Option<DeviceLoad>,
    /// Most requests seen in the loop driver at once (sampled every 10 ms
    /// from `inflight`): the queue depth the scheduler dispatches into.
    pub max_inflight: Option<u32>,
    /// Share of the foreground's run during which some task waited for a
    /// CPU (/proc/pressure/cpu `some`), in percent: the machine's noise.
    pub cpu_pressure_pct: Option<f64>,
    /// Wall seconds the case took.
    pub wall_s: f64,
}

/// Samples a device's `inflight` file on a thread until stopped.
struct InflightSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Option<u32>>,
}

impl InflightSampler {
    fn start(file: PathBuf) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut max: Option<u32> = None;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(t) = fs::read_to_string(&file) {
                    let n: u32 = t
                        .split_whitespace()
                        .filter_map(|x| x.parse::<u32>().ok())
                        .sum();
                    max = Some(max.unwrap_or(0).max(n));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            max
        });
        Self { stop, handle }
    }

    fn stop(self) -> Option<u32> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().ok().flatten()
    }
}

fn run_case(env: &Env, idx: usize, case: &Case) -> Result<Outcome> {
    let o = env.opts;
    let t0 = Instant::now();
    flush_buffers(&env.dev.path)?;
    let size = o.size_mib * 1024 * 1024;
    let n = case.antagonists;
    let region = if n > 0 {
        (size / n as u64) & !(1024 * 1024 - 1)
    } else {
        0
    };
    let (fg_prio, bg_prio) = if case.prio {
        (Some(o.fg_priority.as_str()), Some(o.bg_priority.as_str()))
    } else {
        (None, None)
    };
    let via = match (case.prio, o.mechanism) {
        (false, _) => "none",
        (true, Mechanism::Annotation) => "annotation io.vessel.blockio.priority",
        (true, Mechanism::Spec) => "spec process.ioPriority",
    };
    let rw = match o.rw {
        Rw::Read => "read",
        Rw::Write => "write",
    };
    let mut ags: Vec<(String, Child)> = Vec::new();
    let result = (|| -> Result<Outcome> {
        for i in 0..n {
            let id = format!("io{idx}-ag{i}");
            let (direct, fadvise) = match case.load {
                Load::Direct => (1, "0"),
                Load::Buffered => (0, "0"),
                Load::BufferedFadvise => (0, "sequential"),
                Load::None => unreachable!("no-load has no antagonists"),
            };
            let args = vec![
                format!("--name=ag{i}"),
                format!("--filename={DISK}"),
                format!("--rw={rw}"),
                "--bs=64k".into(),
                format!("--direct={direct}"),
                "--ioengine=psync".into(),
                format!("--fadvise_hint={fadvise}"),
                "--invalidate=0".into(),
                "--time_based".into(),
                format!("--runtime={}s", o.runtime_s + o.ramp_s + 60),
                format!("--offset={}", region * i as u64),
                format!("--size={region}"),
            ];
            let b = env.bundle(&id, args, bg_prio, Some(o.antagonist_memory_mib))?;
            let child = env.start(&id, &b)?;
            ags.push((id, child));
        }
        let fg_id = format!("io{idx}-fg");
        let args = vec![
            "--name=fg".to_string(),
            format!("--filename={DISK}"),
            "--rw=randread".into(),
            "--bs=64k".into(),
            "--direct=1".into(),
            "--ioengine=psync".into(),
            "--invalidate=0".into(),
            "--randrepeat=0".into(),
            "--norandommap".into(),
            "--time_based".into(),
            format!("--ramp_time={}s", o.ramp_s),
            format!("--runtime={}s", o.runtime_s),
            format!("--size={size}"),
        ];
        let b = env.bundle(&fg_id, args, fg_prio, None)?;
        let stat0 = dev_stat(&env.dev.stat);
        let host0 = env.dev.host_stat.as_deref().and_then(dev_stat);
        let psi0 = sys::psi_some_total_us("cpu");
        let t_fg = Instant::now();
        let sampler = InflightSampler::start(env.dev.inflight.clone());
        let mut fg = env.start(&fg_id, &b)?;
        let fg_observed = env.observe(&fg_id);
        let antagonist_observed = ags
            .first()
            .map(|(id, _)| env.observe(id))
            .unwrap_or(Value::Null);
        let code = sys::wait_timeout(
            &mut fg,
            Duration::from_secs(o.runtime_s + o.ramp_s + 60),
            &format!("foreground container {fg_id}"),
        )?;
        let secs = t_fg.elapsed().as_secs_f64();
        let max_inflight = sampler.stop();
        let device = stat0
            .zip(dev_stat(&env.dev.stat))
            .map(|(a, b)| DeviceLoad::between(a, b, secs));
        let host_disk = host0
            .zip(env.dev.host_stat.as_deref().and_then(dev_stat))
            .map(|(a, b)| DeviceLoad::between(a, b, secs));
        let cpu_pressure_pct = psi0
            .zip(sys::psi_some_total_us("cpu"))
            .map(|(a, b)| b.saturating_sub(a) as f64 / 1e4 / secs);
        if code != 0 {
            bail!(
                "foreground container {fg_id} exited with {code}: {}",
                env.log_tail(&fg_id)
            );
        }
        let fg_out = env.out.join(format!("{fg_id}.json"));
        let text = fs::read_to_string(&fg_out)
            .with_context(|| format!("reading {} ({})", fg_out.display(), env.log_tail(&fg_id)))?;
        let jobs = fio::parse(&text)?;
        if jobs[0].error != 0 {
            bail!("fio in {fg_id} reported error {}", jobs[0].error);
        }
        let fgdir = jobs[0].read.clone();
        for (id, child) in ags.iter_mut() {
            env.stop(id, child);
        }
        let mut sum = 0.0;
        let mut reported = 0;
        for (id, _) in &ags {
            if let Some(j) = fs::read_to_string(env.out.join(format!("{id}.json")))
                .ok()
                .and_then(|t| fio::parse(&t).ok())
            {
                let d = match o.rw {
                    Rw::Read => &j[0].read,
                    Rw::Write => &j[0].write,
                };
                sum += d.bw_kib_s;
                reported += 1;
            }
        }
        Ok(Outcome {
            case: case.clone(),
            fg: fgdir,
            antagonist_kib_s: (reported > 0).then_some(sum),
            antagonists_reported: reported,
            priority_via: via.to_string(),
            fg_observed,
            antagonist_observed,
            device,
            host_disk,
            max_inflight,
            cpu_pressure_pct,
            wall_s: 0.0,
        })
    })();
    for (id, child) in ags.iter_mut() {
        if child.try_wait().ok().flatten().is_none() {
            env.stop(id, child);
        }
    }
    result.map(|mut r| {
        r.wall_s = t0.elapsed().as_secs_f64();
        r
    })
}

/// Deletes every container in `root`.
fn delete_all(vessel: &Path, root: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(root) else {
        return Ok(());
    };
    for e in entries.flatten() {
        if e.path().is_dir() {
            let id = e.file_name().to_string_lossy().into_owned();
            let _ = Command::new(vessel)
                .arg("--root")
                .arg(root)
                .args(["delete", "-f", &id])
                .output();
        }
    }
    Ok(())
}

/// The baseline: the median of the no-load runs' mean latencies (one run
/// per sweep block and one at the end; the median keeps a run that met a
/// burst of CPU contention from the other tenants from moving it).
pub fn baseline(outcomes: &[Outcome]) -> Option<f64> {
    let v: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.case.load == Load::None)
        .filter_map(|o| o.fg.lat.map(|l| l.mean_ms))
        .collect();
    crate::stats::Summary::of(&v).map(|s| s.median)
}

/// The goal, checked: with priority the foreground's mean stays
/// within `limit` x no-load; without it, it is many times worse.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Goal {
    /// The bound on mean / no-load for the priority cases.
    pub limit: f64,
    /// Priority cases within the bound.
    pub prio_within: usize,
    /// Priority cases measured.
    pub prio_cases: usize,
    /// Smallest and largest mean / no-load with priority.
    pub prio_range: Option<(f64, f64)>,
    /// Smallest and largest mean / no-load without priority.
    pub no_prio_range: Option<(f64, f64)>,
}

fn range(v: &[f64]) -> Option<(f64, f64)> {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (!v.is_empty()).then_some((lo, hi))
}

impl Goal {
    /// Checks `outcomes` against `limit`.
    pub fn of(outcomes: &[Outcome], limit: f64) -> Goal {
        let base = baseline(outcomes);
        let ratios = |prio: bool| -> Vec<f64> {
            outcomes
                .iter()
                .filter(|o| o.case.load != Load::None && o.case.prio == prio)
                .filter_map(|o| {
                    o.fg.lat
                        .zip(base)
                        .and_then(|(l, b)| crate::stats::ratio(l.mean_ms, b))
                })
                .collect()
        };
        let p = ratios(true);
        let np = ratios(false);
        Goal {
            limit,
            prio_within: p.iter().filter(|r| **r <= limit).count(),
            prio_cases: p.len(),
            prio_range: range(&p),
            no_prio_range: range(&np),
        }
    }

    /// One line for the report.
    pub fn sentence(&self) -> String {
        let r = |x: Option<(f64, f64)>| {
            x.map(|(a, b)| format!("{a:.2}-{b:.2}x"))
                .unwrap_or_else(|| "-".into())
        };
        format!(
            "mean / no-load: with priority {} ({} of {} cases within {}x), without priority {}",
            r(self.prio_range),
            self.prio_within,
            self.prio_cases,
            self.limit,
            r(self.no_prio_range)
        )
    }
}

/// The results as the paper's Table 3, one block per antagonist count.
pub fn render(outcomes: &[Outcome]) -> String {
    let base = baseline(outcomes);
    let mut t = Table::new(&[
        "case",
        "antag",
        "mean ms",
        "max ms",
        "std ms",
        "p99 ms",
        "KB/s",
        "x no-load",
        "antag MB/s",
        "dev MB/s",
        "host MB/s",
        "cpu psi %",
        "prio via",
    ])
    .align(12, crate::table::Align::Left);
    let row = |t: &mut Table, o: &Outcome| {
        let l = o.fg.lat;
        t.row(vec![
            o.case.name.clone(),
            o.case.antagonists.to_string(),
            num(l.map(|l| l.mean_ms), 2),
            num(l.map(|l| l.max_ms), 1),
            num(l.map(|l| l.stddev_ms), 2),
            num(l.and_then(|l| l.p99_ms), 1),
            num(Some(o.fg.bw_kib_s), 0),
            num(
                l.zip(base)
                    .and_then(|(l, b)| crate::stats::ratio(l.mean_ms, b)),
                2,
            ),
            num(o.antagonist_kib_s.map(|k| k / 1024.0), 1),
            num(o.device.map(|d| d.mib_s()), 1),
            num(o.host_disk.map(|d| d.mib_s()), 1),
            num(o.cpu_pressure_pct, 0),
            match (o.case.prio, o.priority_via.as_str()) {
                (false, _) => "-".to_string(),
                (true, v) => v.split_whitespace().next().unwrap_or("").to_string(),
            },
        ]);
    };
    for o in outcomes.iter().filter(|o| o.case.load == Load::None) {
        row(&mut t, o);
    }
    let mut counts: Vec<usize> = outcomes
        .iter()
        .map(|o| o.case.antagonists)
        .filter(|n| *n > 0)
        .collect();
    counts.sort_unstable();
    counts.dedup();
    for n in counts {
        for name in TABLE_ORDER {
            for o in outcomes
                .iter()
                .filter(|o| o.case.antagonists == n && o.case.name == *name)
            {
                row(&mut t, o);
            }
        }
    }
    t.render()
}

/// Foreground mean latency with and without priority for one load and
/// antagonist count: whether priorities help.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Effect {
    /// Antagonists.
    pub antagonists: usize,
    /// The antagonists' IO (`direct-64k`, `buf`, `buf-fadv`).
    pub load: String,
    /// Mean ms without priority.
    pub no_prio_ms: f64,
    /// Mean ms with priority.
    pub prio_ms: f64,
    /// `no_prio_ms / prio_ms`: how many times faster priority makes it.
    pub speedup: f64,
}

/// The priority effect of every load measured both ways.
pub fn effects(outcomes: &[Outcome]) -> Vec<Effect> {
    let mean = |n: usize, name: &str| {
        outcomes
            .iter()
            .find(|o| o.case.antagonists == n && o.case.name == name)
            .and_then(|o| o.fg.lat.map(|l| l.mean_ms))
    };
    let mut counts: Vec<usize> = outcomes.iter().map(|o| o.case.antagonists).collect();
    counts.sort_unstable();
    counts.dedup();
    let mut v = Vec::new();
    for n in counts.into_iter().filter(|n| *n > 0) {
        for (load, without, with) in [
            ("direct-64k", "direct-64k", "direct-64k-prio"),
            ("buf", "buf", "buf-prio"),
            ("buf-fadv", "buf-fadv", "buf-prio-fadv"),
        ] {
            if let (Some(a), Some(b)) = (mean(n, without), mean(n, with)) {
                v.push(Effect {
                    antagonists: n,
                    load: load.into(),
                    no_prio_ms: a,
                    prio_ms: b,
                    speedup: if b > 0.0 { a / b } else { 0.0 },
                });
            }
        }
    }
    v
}

/// The plot: per load and antagonist count, the foreground's mean latency
/// over no-load without and with priority, on a log2 scale (0 = no-load).
pub fn plot(outcomes: &[Outcome], scheduler: &str) -> Option<crate::plot::Bars> {
    let base = baseline(outcomes)?;
    let eff = effects(outcomes);
    if eff.is_empty() {
        return None;
    }
    let l2 = |ms: f64| Some(((ms / base).max(1.0)).log2()).map(|v| (v, v, v));
    Some(crate::plot::Bars {
        title: format!(
            "foreground 64 KiB random reads beside antagonists ({scheduler}); line: 1.5x no-load"
        ),
        y_desc: "log2(mean latency / no-load)".into(),
        categories: eff
            .iter()
            .map(|e| format!("{} x{}", e.load, e.antagonists))
            .collect(),
        series: vec![
            crate::plot::BarSeries {
                name: "no priority".into(),
                values: eff.iter().map(|e| l2(e.no_prio_ms)).collect(),
            },
            crate::plot::BarSeries {
                name: "priority (rt vs idle)".into(),
                values: eff.iter().map(|e| l2(e.prio_ms)).collect(),
            },
        ],
        reference: Some(1.5f64.log2()),
    })
}

/// Runs the suite, prints the table and writes the JSON.
pub fn run(opts: &Options) -> Result<()> {
    if opts.runtime_s == 0 {
        bail!("--runtime must be at least 1 second");
    }
    for p in [&opts.fg_priority, &opts.bg_priority] {
        spec_io_priority(p)?;
    }
    let fio_bin = Path::new("/usr/bin/fio");
    if !fio_bin.is_file() {
        bail!("/usr/bin/fio is missing: apt-get install -y fio");
    }
    if !opts.vessel.is_file() {
        bail!(
            "vessel binary {} not found (cargo build --release -p vessel, or pass --vessel)",
            opts.vessel.display()
        );
    }
    if crate::which("losetup").is_none() {
        bail!("losetup is missing: apt-get install -y mount");
    }
    let started = sys::now_utc();
    let load_before = sys::uptime();
    let psi0 = sys::psi_some_total_us("cpu");
    let t_all = Instant::now();
    fs::create_dir_all(&opts.tmpdir)?;
    if is_tmpfs(&opts.tmpdir) {
        println!(
            "warning: {} is tmpfs: the loop device will not touch a disk (pass --tmpdir on a disk)",
            opts.tmpdir.display()
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix("vessel-bench-io-")
        .tempdir_in(&opts.tmpdir)?;
    let mut cleanup = Cleanup::new();
    let vessel = fs::canonicalize(&opts.vessel)?;
    let dev = setup_loop(tmp.path(), opts, &mut cleanup)?;
    let device = device_info(&dev);
    let dev_scheduler = dev.scheduler.clone();
    println!(
        "device {} ({}:{}), scheduler {}, queue depth {}, requests <= {} KiB, direct-io loop",
        dev.path.display(),
        dev.major,
        dev.minor,
        dev.scheduler,
        opts.queue_depth,
        opts.max_request_kib
    );

    let rootfs = tmp.path().join("rootfs");
    make_rootfs(&rootfs)?;
    let out = tmp.path().join("out");
    let logs = tmp.path().join("logs");
    let root = tmp.path().join("state");
    for d in [&out, &logs, &root] {
        fs::create_dir_all(d)?;
    }
    let mut base = crate::bundle::vessel_spec(&vessel, &["/bin/true"])?;
    base["root"] = json!({"path": rootfs, "readonly": true});
    crate::bundle::add_mount(
        &mut base,
        "/usr",
        "bind",
        "/usr",
        &["rbind", "ro", "nosuid", "nodev"],
    );
    crate::bundle::add_mount(
        &mut base,
        "/out",
        "bind",
        &out.to_string_lossy(),
        &["rbind", "rw", "nosuid", "nodev", "noexec"],
    );
    crate::bundle::add_mount(
        &mut base,
        "/tmp",
        "tmpfs",
        "tmpfs",
        &["nosuid", "nodev", "size=16m"],
    );
    crate::bundle::add_block_device(&mut base, DISK, dev.major, dev.minor);
    {
        let (v, r) = (vessel.clone(), root.clone());
        cleanup.push("delete containers", move || delete_all(&v, &r));
    }
    let env = Env {
        opts,
        vessel: vessel.clone(),
        base,
        root,
        bundles: tmp.path().join("bundles"),
        out,
        logs,
        dev,
    };

    let cases = plan(&opts.antagonists);
    let per_case = opts.runtime_s + opts.ramp_s + 2;
    println!(
        "{} cases of ~{per_case} s: about {} min",
        cases.len(),
        (cases.len() as u64 * per_case).div_ceil(60)
    );
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut failures: Vec<Value> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        sys::check_interrupted()?;
        print!(
            "[{}/{}] {} with {} antagonist(s) ... ",
            i + 1,
            cases.len(),
            case.name,
            case.antagonists
        );
        let _ = std::io::stdout().flush();
        match run_case(&env, i, case) {
            Ok(o) => {
                let l = o.fg.lat;
                println!(
                    "mean {} ms, max {} ms, {} KB/s",
                    num(l.map(|l| l.mean_ms), 2),
                    num(l.map(|l| l.max_ms), 1),
                    num(Some(o.fg.bw_kib_s), 0)
                );
                outcomes.push(o);
            }
            Err(e) => {
                sys::check_interrupted()?;
                println!("failed: {e:#}");
                failures.push(json!({"case": case, "error": format!("{e:#}")}));
            }
        }
    }
    let load_after = sys::uptime();
    cleanup.run();

    println!(
        "\nforeground: 64 KiB random reads, direct IO; antagonists: 64 KiB sequential {}s; priority {} vs {} via {:?}",
        match opts.rw {
            Rw::Read => "read",
            Rw::Write => "write",
        },
        opts.fg_priority,
        opts.bg_priority,
        opts.mechanism
    );
    print!("{}", render(&outcomes));
    let goal = Goal::of(&outcomes, 1.5);
    println!("{}", goal.sentence());
    let effect = effects(&outcomes);
    for e in &effect {
        println!(
            "priority effect, {} x{}: {:.2} ms -> {:.2} ms ({:.1}x faster)",
            e.load, e.antagonists, e.no_prio_ms, e.prio_ms, e.speedup
        );
    }
    println!("load before: {load_before}");
    println!("load after:  {load_after}");
    let cpu_pressure_pct = psi0
        .zip(sys::psi_some_total_us("cpu"))
        .map(|(a, b)| b.saturating_sub(a) as f64 / 1e4 / t_all.elapsed().as_secs_f64());
    if let Some(p) = cpu_pressure_pct {
        println!("cpu pressure (some) over the run: {p:.0}%");
    }

    let json = json!({
        "suite": "io-isolation",
        "paper": "IO Containment (seed 003), Table 3 shape",
        "started": started,
        "kernel": sys::kernel(),
        "uptime_before": load_before,
        "uptime_after": load_after,
        "vessel": vessel,
        "fio": sys::version_of(fio_bin),
        "device": device,
        "settings": {
            "runtime_s": opts.runtime_s,
            "ramp_s": opts.ramp_s,
            "size_mib": opts.size_mib,
            "antagonist_rw": opts.rw,
            "fg_priority": opts.fg_priority,
            "bg_priority": opts.bg_priority,
            "mechanism": opts.mechanism,
            "antagonist_memory_mib": opts.antagonist_memory_mib,
            "scheduler": opts.scheduler,
            "queue_depth": opts.queue_depth,
            "max_request_kib": opts.max_request_kib,
            "foreground": "fio randread bs=64k direct=1 ioengine=psync iodepth=1 over the whole device",
            "antagonists": "fio sequential bs=64k ioengine=psync, each on its own 1/N region of the device; buf: fadvise_hint=0, buf-fadv: fadvise_hint=sequential",
        },
        "units": {"latency": "ms (fio lat_ns)", "bandwidth": "KiB/s (fio bw)"},
        "no_load_baseline_ms": baseline(&outcomes),
        "no_load_baseline": "median of the no-load runs' mean latencies",
        "goal": goal,
        "priority_effect": effect,
        "cpu_pressure_pct": cpu_pressure_pct,
        "cases": outcomes,
        "failures": failures,
    });
    crate::write_json(&opts.json, &json)?;
    println!("wrote {}", opts.json.display());
    if let Some(b) = plot(&outcomes, &dev_scheduler) {
        let base = opts.json.with_extension("");
        match crate::plot::bars_svg(&b).and_then(|svg| crate::plot::write_svg_png(&svg, &base)) {
            Ok(()) => println!("wrote {}.svg and .png", base.display()),
            Err(e) => println!("plot not written: {e:#}"),
        }
    }
    if outcomes.is_empty() {
        bail!("every case failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_stat() {
        let s = "  100 0 2048 5 7 0 4096 9 0 10 20 0 0 0 0 0 0\n";
        let d = parse_dev_stat(s).unwrap();
        assert_eq!(
            (d.reads, d.read_sectors, d.writes, d.write_sectors),
            (100, 2048, 7, 4096)
        );
        let l = DeviceLoad::between(DevStat::default(), d, 2.0);
        assert_eq!((l.read_mib, l.write_mib), (1.0, 2.0));
        assert_eq!(l.mib_s(), 1.5);
        assert!(parse_dev_stat("1 2").is_none());
    }

    #[test]
    fn case_names_follow_the_paper() {
        assert_eq!(case_name(Load::None, false), "no-load");
        assert_eq!(case_name(Load::Direct, false), "direct-64k");
        assert_eq!(case_name(Load::Direct, true), "direct-64k-prio");
        assert_eq!(case_name(Load::Buffered, true), "buf-prio");
        assert_eq!(case_name(Load::BufferedFadvise, false), "buf-fadv");
        assert_eq!(case_name(Load::BufferedFadvise, true), "buf-prio-fadv");
    }

    #[test]
    fn plan_sweeps_counts() {
        let p = plan(&[1, 2]);
        assert_eq!(p.len(), 3 + 2 * 6);
        assert_eq!(p[0].name, "no-load");
        assert_eq!(p[7].name, "no-load");
        assert_eq!(p.last().unwrap().name, "no-load");
        assert_eq!(p[1].name, "direct-64k");
        assert_eq!(p[2].name, "direct-64k-prio");
        assert!(p[1..7].iter().all(|c| c.antagonists == 1));
        assert!(p[8..14].iter().all(|c| c.antagonists == 2));
        assert_eq!(plan(&[0]).len(), 1);
    }

    #[test]
    fn spec_priorities() {
        assert_eq!(
            spec_io_priority("rt:0").unwrap(),
            json!({"class": "IOPRIO_CLASS_RT", "priority": 0})
        );
        assert_eq!(
            spec_io_priority("idle").unwrap()["class"],
            "IOPRIO_CLASS_IDLE"
        );
        assert_eq!(spec_io_priority("be").unwrap()["priority"], 4);
        assert!(spec_io_priority("be:8").is_err());
        assert!(spec_io_priority("x:1").is_err());
    }

    #[test]
    fn device_numbers_and_ioprio() {
        assert_eq!(dev_major_minor(0x0703), (7, 3));
        assert_eq!(dev_major_minor((259 << 8) | 1), (259, 1));
        assert_eq!(dev_major_minor(0x0010_0000 | 0x0700), (7, 256));
        assert_eq!(ioprio_string(1 << 13), "rt:0");
        assert_eq!(ioprio_string((2 << 13) | 7), "be:7");
        assert_eq!(ioprio_string(3 << 13), "idle");
        assert_eq!(ioprio_string(0), "none");
    }

    fn outcome(name: &str, load: Load, prio: bool, n: usize, mean: f64) -> Outcome {
        Outcome {
            case: Case {
                name: name.into(),
                load,
                prio,
                antagonists: n,
            },
            fg: fio::Direction {
                bw_kib_s: 1000.0,
                iops: 15.6,
                io_bytes: 1,
                lat: Some(fio::Latency {
                    n: 10,
                    mean_ms: mean,
                    max_ms: 2.0 * mean,
                    min_ms: 0.1,
                    stddev_ms: 1.0,
                    p99_ms: None,
                }),
                lat_source: "lat_ns",
            },
            antagonist_kib_s: (n > 0).then_some(2048.0),
            antagonists_reported: n,
            priority_via: if prio {
                "annotation io.vessel.blockio.priority".into()
            } else {
                "none".into()
            },
            fg_observed: Value::Null,
            antagonist_observed: Value::Null,
            device: None,
            host_disk: None,
            max_inflight: Some(4),
            cpu_pressure_pct: Some(12.5),
            wall_s: 1.0,
        }
    }

    #[test]
    fn renders_table3_shape() {
        let o = vec![
            outcome("no-load", Load::None, false, 0, 1.0),
            outcome("direct-64k-prio", Load::Direct, true, 2, 1.2),
            outcome("direct-64k", Load::Direct, false, 2, 9.0),
            outcome("no-load", Load::None, false, 0, 3.0),
        ];
        assert_eq!(baseline(&o), Some(2.0));
        let t = render(&o);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("case"), "{t}");
        assert!(lines[2].starts_with("no-load "), "{t}");
        assert!(lines[3].starts_with("no-load "), "{t}");
        assert!(lines[4].starts_with("direct-64k "), "{t}");
        assert!(lines[4].contains("4.50"), "{t}");
        assert!(lines[5].starts_with("direct-64k-prio"), "{t}");
        assert!(
            lines[5].contains("0.60") && lines[5].contains("annotation"),
            "{t}"
        );
        assert!(lines[5].contains("2.0"), "{t}");
        let g = Goal::of(&o, 1.5);
        assert_eq!((g.prio_within, g.prio_cases), (1, 1));
        assert_eq!(g.prio_range, Some((0.6, 0.6)));
        assert_eq!(g.no_prio_range, Some((4.5, 4.5)));
        assert_eq!(
            g.sentence(),
            "mean / no-load: with priority 0.60-0.60x (1 of 1 cases within 1.5x), without priority 4.50-4.50x"
        );
    }

    #[test]
    fn scheduler_choice_uses_what_the_device_lists() {
        let (all, active) = schedulers("none [mq-deadline] kyber\n");
        assert_eq!(all, ["none", "mq-deadline", "kyber"]);
        assert_eq!(active.as_deref(), Some("mq-deadline"));
        assert_eq!(pick_scheduler(&all, None).unwrap(), "mq-deadline");
        let with_bfq: Vec<String> = ["none", "mq-deadline", "bfq"].map(String::from).to_vec();
        assert_eq!(pick_scheduler(&with_bfq, None).unwrap(), "bfq");
        assert_eq!(
            pick_scheduler(&with_bfq, Some("mq-deadline")).unwrap(),
            "mq-deadline"
        );
        let e = pick_scheduler(&all, Some("bfq")).unwrap_err().to_string();
        assert!(e.contains("no \"bfq\" scheduler"), "{e}");
        let none: Vec<String> = vec!["none".into()];
        assert!(pick_scheduler(&none, None).is_err());
    }

    #[test]
    fn effects_pair_each_load_with_its_priority_case() {
        let o = vec![
            outcome("no-load", Load::None, false, 0, 1.0),
            outcome("buf", Load::Buffered, false, 4, 50.0),
            outcome("buf-prio", Load::Buffered, true, 4, 1.25),
            outcome("direct-64k", Load::Direct, false, 4, 2.0),
        ];
        let e = effects(&o);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].load.as_str(), e[0].antagonists), ("buf", 4));
        assert!((e[0].speedup - 40.0).abs() < 1e-9);
        let b = plot(&o, "mq-deadline").unwrap();
        assert_eq!(b.categories, ["buf x4"]);
        let v = b.series[1].values[0].unwrap().0;
        assert!((v - 1.25f64.log2()).abs() < 1e-9);
    }
}
