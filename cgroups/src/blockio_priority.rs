//! Container-level block IO priority and bandwidth share, after the
//! `blockio.priority` / `blockio.bandwidth` controls the "IO Containment"
//! paper proposes for cgroups, given as annotations:
//!
//! - `io.vessel.blockio.priority`: `rt:N`, `be:N` (N in 0..=7, 0 highest;
//!   `rt` and `be` alone mean level 4) or `idle`.
//! - `io.vessel.blockio.bandwidth`: comma-separated shares
//!   `[DEVICE=]PERCENT[%][@CAPACITY]`, where DEVICE is `MAJ:MIN` or a
//!   `/dev` path, PERCENT is 1..=100 and CAPACITY the device's bandwidth in
//!   bytes per second (suffix K, M or G, powers of 1024). A share without a
//!   device applies to every device.
//!
//! What enforces them is decided at `create`, per host and per device
//! ([`plan`]), from what the kernel offers:
//!
//! | policy | mechanism | where it acts |
//! |---|---|---|
//! | priority | `ioprio_set(class, level)` on the container's init, inherited by its children; `exec` sets it too | devices scheduled by mq-deadline or BFQ (always set) |
//! | priority | BFQ weight: rt 1000, be:N 100*(8-N), idle 1 (`blkio.bfq.weight`, `io.bfq.weight`) | devices scheduled by BFQ |
//! | priority | iocost `io.weight` (the same weight, converted) | cgroup v2, devices with iocost enabled |
//! | priority | `io.prio.class` (`promote-to-rt`, `restrict-to-be`, `idle`) | cgroup v2 kernels with the ioprio cgroup policy |
//! | PERCENT | BFQ weight 10*PERCENT, or iocost `io.weight` | as above; an error when the host has neither |
//! | DEVICE=PERCENT | `blkio.bfq.weight_device` / `io.bfq.weight` / `io.weight` `MAJ:MIN W` | that device if BFQ schedules it or iocost is enabled on it; else an error |
//! | @CAPACITY | `blkio.throttle.{read,write}_bps_device` / `io.max` = CAPACITY*PERCENT/100 | every device |
//!
//! A part of the policy nothing here enforces is an error naming the
//! annotation; what is enforced only in part (a share with a capacity on
//! a device without BFQ or iocost is throttled, not weighted) is applied
//! and said. The mechanisms in force go into the container's state as
//! [`ENFORCED_ANNOTATION`] and into the log.

use std::collections::HashMap;
use std::path::Path;

use crate::blockio_mechanisms::{
    devices, honours_ioprio, iocost_enabled, names, Device, Mechanism,
};
use crate::host::CgroupMode;
use crate::mapping::v2_io_weight;
use crate::validate::{block_device_dir, block_device_scheduler};
use crate::{write_file, Cgroup, CgroupError};

/// The priority annotation.
pub const PRIORITY_ANNOTATION: &str = "io.vessel.blockio.priority";
/// The bandwidth-share annotation.
pub const BANDWIDTH_ANNOTATION: &str = "io.vessel.blockio.bandwidth";
/// The annotation `create` adds to the container's state: which
/// mechanisms enforce its policy ([`Enforcement::summary`]).
pub const ENFORCED_ANNOTATION: &str = "io.vessel.blockio.enforced";

/// The kernel's IO scheduling classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoClass {
    /// IOPRIO_CLASS_RT (1).
    RealTime,
    /// IOPRIO_CLASS_BE (2).
    BestEffort,
    /// IOPRIO_CLASS_IDLE (3).
    Idle,
}

impl IoClass {
    /// The kernel's number for the class.
    pub fn number(self) -> u16 {
        match self {
            IoClass::RealTime => 1,
            IoClass::BestEffort => 2,
            IoClass::Idle => 3,
        }
    }
}

/// An IO priority: class and level (0 highest, 7 lowest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoPriority {
    /// The class.
    pub class: IoClass,
    /// The level inside the class (0 for idle).
    pub level: u8,
}

impl IoPriority {
    /// The value ioprio_set(2) takes: `class << 13 | level`.
    pub fn ioprio(&self) -> u16 {
        (self.class.number() << 13) | u16::from(self.level)
    }

    /// Parses `rt:N`, `be:N`, `rt`, `be` or `idle`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (class, level) = match s.split_once(':') {
            Some((c, l)) => (c, Some(l)),
            None => (s, None),
        };
        let class = match class {
            "rt" => IoClass::RealTime,
            "be" => IoClass::BestEffort,
            "idle" => IoClass::Idle,
            _ => {
                return Err(format!(
                    "class {class:?} is not one of rt, be, idle (e.g. \"be:0\", \"rt:4\", \"idle\")"
                ))
            }
        };
        let level = match (class, level) {
            (IoClass::Idle, None) => 0,
            (IoClass::Idle, Some(_)) => return Err("idle takes no level".into()),
            (_, None) => 4,
            (_, Some(l)) => match l.parse::<u8>() {
                Ok(n) if n <= 7 => n,
                _ => return Err(format!("level {l:?} is not a number in 0..=7")),
            },
        };
        Ok(Self { class, level })
    }

    /// The BFQ weight (1..=1000) this priority gives the cgroup.
    pub fn bfq_weight(&self) -> u16 {
        match self.class {
            IoClass::RealTime => 1000,
            IoClass::BestEffort => 100 * (8 - u16::from(self.level)),
            IoClass::Idle => 1,
        }
    }
}

/// One bandwidth share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BandwidthShare {
    /// The device (major, minor), or every device.
    pub device: Option<(u64, u64)>,
    /// Share of the device, 1..=100 percent.
    pub percent: u8,
    /// The device's bandwidth in bytes per second, to derive throttles.
    pub capacity: Option<u64>,
}

impl BandwidthShare {
    /// The BFQ weight (10..=1000) of the share.
    pub fn weight(&self) -> u16 {
        u16::from(self.percent) * 10
    }

    /// The throttle (bytes per second) when a capacity is given.
    pub fn throttle_bps(&self) -> Option<u64> {
        self.capacity
            .map(|c| (c / 100).saturating_mul(u64::from(self.percent)).max(1))
    }
}

/// The container-level block IO policy from the annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockIoPolicy {
    /// `io.vessel.blockio.priority`.
    pub priority: Option<IoPriority>,
    /// `io.vessel.blockio.bandwidth`.
    pub bandwidth: Vec<BandwidthShare>,
}

impl BlockIoPolicy {
    /// The ioprio value for the container's processes, if a priority is set.
    pub fn ioprio(&self) -> Option<u16> {
        self.priority.map(|p| p.ioprio())
    }
}

fn ann_err(key: &str, value: &str, msg: impl Into<String>) -> CgroupError {
    CgroupError::Annotation {
        key: key.into(),
        value: value.into(),
        msg: msg.into(),
    }
}

/// Reads the two annotations; `None` when neither is present.
pub fn parse_annotations(
    annotations: &HashMap<String, String>,
) -> Result<Option<BlockIoPolicy>, CgroupError> {
    let prio = annotations.get(PRIORITY_ANNOTATION);
    let bw = annotations.get(BANDWIDTH_ANNOTATION);
    if prio.is_none() && bw.is_none() {
        return Ok(None);
    }
    let mut policy = BlockIoPolicy::default();
    if let Some(v) = prio {
        policy.priority =
            Some(IoPriority::parse(v).map_err(|m| ann_err(PRIORITY_ANNOTATION, v, m))?);
    }
    if let Some(v) = bw {
        policy.bandwidth = parse_bandwidth(v).map_err(|m| ann_err(BANDWIDTH_ANNOTATION, v, m))?;
    }
    Ok(Some(policy))
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => (
            &s[..i],
            match &s[i..] {
                "K" | "k" => 1 << 10,
                "M" | "m" => 1 << 20,
                "G" | "g" => 1 << 30,
                other => return Err(format!("capacity suffix {other:?} is not K, M or G")),
            },
        ),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("capacity {s:?} is not a number of bytes per second"))?;
    if n == 0 {
        return Err("capacity must be positive".into());
    }
    n.checked_mul(mult)
        .ok_or_else(|| format!("capacity {s:?} is too large"))
}

fn parse_device(s: &str) -> Result<(u64, u64), String> {
    if s.starts_with('/') {
        let st = nix::sys::stat::stat(Path::new(s)).map_err(|e| format!("device {s}: {e}"))?;
        if st.st_mode & libc_s_ifmt() != libc_s_ifblk() {
            return Err(format!("{s} is not a block device"));
        }
        return Ok((
            nix::sys::stat::major(st.st_rdev),
            nix::sys::stat::minor(st.st_rdev),
        ));
    }
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("device {s:?} is neither MAJ:MIN nor a /dev path"))?;
    let maj = a
        .parse::<u64>()
        .map_err(|_| format!("device {s:?}: bad major"))?;
    let min = b
        .parse::<u64>()
        .map_err(|_| format!("device {s:?}: bad minor"))?;
    if block_device_dir(maj as i64, min as i64).is_none() {
        return Err(format!(
            "block device {maj}:{min} does not exist on this host"
        ));
    }
    Ok((maj, min))
}

fn libc_s_ifmt() -> u32 {
    nix::sys::stat::SFlag::S_IFMT.bits()
}

fn libc_s_ifblk() -> u32 {
    nix::sys::stat::SFlag::S_IFBLK.bits()
}

/// Parses the bandwidth annotation's value.
pub fn parse_bandwidth(v: &str) -> Result<Vec<BandwidthShare>, String> {
    let mut out: Vec<BandwidthShare> = Vec::new();
    if v.trim().is_empty() {
        return Err("empty; expected e.g. \"50%\" or \"8:0=25%@200M\"".into());
    }
    for item in v.split(',') {
        let item = item.trim();
        let (dev, rest) = match item.split_once('=') {
            Some((d, r)) => (Some(d.trim()), r.trim()),
            None => (None, item),
        };
        let (pct, cap) = match rest.split_once('@') {
            Some((p, c)) => (p, Some(c)),
            None => (rest, None),
        };
        let pct = pct.strip_suffix('%').unwrap_or(pct);
        let percent = match pct.parse::<u8>() {
            Ok(p) if (1..=100).contains(&p) => p,
            _ => {
                return Err(format!(
                    "{item:?}: share {pct:?} is not a percentage in 1..=100"
                ))
            }
        };
        let device = dev.map(parse_device).transpose()?;
        let capacity = cap.map(parse_size).transpose()?;
        if capacity.is_some() && device.is_none() {
            return Err(format!(
                "{item:?}: a capacity (@...) needs a device (DEVICE=PERCENT@CAPACITY)"
            ));
        }
        if out.iter().any(|o| o.device == device) {
            return Err(format!("{item:?}: the same device is given twice"));
        }
        out.push(BandwidthShare {
            device,
            percent,
            capacity,
        });
    }
    Ok(out)
}

fn unsupported(msg: impl Into<String>) -> CgroupError {
    CgroupError::Unsupported {
        setting: format!("annotations {PRIORITY_ANNOTATION}/{BANDWIDTH_ANNOTATION}"),
        msg: msg.into(),
    }
}

/// What the planner sees of the host and of the container's cgroup.
pub struct IoView<'a> {
    /// The io controller is on cgroup v2 (`io.*` files) rather than v1
    /// (`blkio.*`).
    pub v2: bool,
    /// Whether the container's cgroup directory has an interface file.
    pub has: &'a dyn Fn(&str) -> bool,
    /// The host's block devices and their schedulers.
    pub devices: Vec<Device>,
    /// Devices where iocost is enabled (v2 root `io.cost.qos`).
    pub iocost: Vec<(u64, u64)>,
}

impl IoView<'_> {
    fn scheduler(&self, major: u64, minor: u64) -> String {
        self.devices
            .iter()
            .find(|d| d.major == major && d.minor == minor)
            .map(|d| d.scheduler.clone())
            .or_else(|| block_device_scheduler(major as i64, minor as i64))
            .unwrap_or_else(|| "unknown".into())
    }

    fn bfq_devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.iter().filter(|d| d.scheduler == "bfq")
    }
}

/// Which mechanisms enforce a container's policy, and what they do not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enforcement {
    /// The ioprio value (`class << 13 | level`) for every process of the
    /// container, if the policy sets a priority.
    pub ioprio: Option<u16>,
    /// Each mechanism in force with what it does (devices, values).
    pub enforced: Vec<(Mechanism, String)>,
    /// Parts of the policy this host does not enforce, and why.
    pub not_enforced: Vec<String>,
}

impl Enforcement {
    /// One line for the container's state and the log:
    /// `ioprio=rt:0 on vda,loop3; throttle=...; not enforced: ...`.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .enforced
            .iter()
            .map(|(m, d)| format!("{m}={d}"))
            .collect();
        if !self.not_enforced.is_empty() {
            parts.push(format!("not enforced: {}", self.not_enforced.join(", ")));
        }
        parts.join("; ")
    }
}

/// The interface-file writes and the enforcement report of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// (file in the cgroup directory, value), in order.
    pub writes: Vec<(String, String)>,
    /// What enforces the policy.
    pub enforcement: Enforcement,
}

fn class_name(p: &IoPriority) -> String {
    match p.class {
        IoClass::RealTime => format!("rt:{}", p.level),
        IoClass::BestEffort => format!("be:{}", p.level),
        IoClass::Idle => "idle".into(),
    }
}

/// Decides, for this host and each device, how `policy` is enforced.
///
/// A part of the policy no mechanism here can enforce is an error naming
/// the annotation; a part enforced only in part (a per-device share with
/// a capacity on a device without BFQ or iocost: throttled, not
/// weighted) is applied and listed in [`Enforcement::not_enforced`].
pub fn plan(view: &IoView, policy: &BlockIoPolicy) -> Result<Plan, CgroupError> {
    let has = view.has;
    let mut plan = Plan::default();
    let e = &mut plan.enforcement;
    let w = &mut plan.writes;
    // The weight files: BFQ's (v1 `blkio.bfq.weight`, CFQ-era kernels'
    // `blkio.weight`; v2 `io.bfq.weight`), else iocost's `io.weight`.
    let (bfq_file, bfq_dev_file) = if view.v2 {
        ("io.bfq.weight", "io.bfq.weight")
    } else if has("blkio.weight") {
        ("blkio.weight", "blkio.weight_device")
    } else {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    };
    let bfq = has(bfq_file);
    let iocost = view.v2 && has("io.weight");
    let bfq_on = names(view.bfq_devices());
    let iocost_on = || -> String {
        let v: Vec<String> = view
            .iocost
            .iter()
            .map(|(a, b)| format!("{a}:{b}"))
            .collect();
        if v.is_empty() {
            "-".into()
        } else {
            v.join(",")
        }
    };

    // A weight for every device: the default share, else the priority's.
    let default_share = policy.bandwidth.iter().find(|b| b.device.is_none());
    let weight = default_share
        .map(|b| (b.weight(), format!("share {}%", b.percent)))
        .or_else(|| {
            policy
                .priority
                .map(|p| (p.bfq_weight(), format!("priority {}", class_name(&p))))
        });
    if let Some((wt, why)) = &weight {
        if bfq {
            w.push((bfq_file.into(), wt.to_string()));
            if bfq_on == "-" {
                e.not_enforced
                    .push(format!("bfq weight {wt} ({why}): no device uses bfq now"));
            } else {
                e.enforced
                    .push((Mechanism::BfqWeight, format!("{wt} on {bfq_on}")));
            }
        }
        if iocost {
            let v = v2_io_weight((*wt).max(10));
            w.push(("io.weight".into(), format!("default {v}")));
            if view.iocost.is_empty() {
                e.not_enforced.push(format!(
                    "io.weight {v} ({why}): iocost is enabled on no device"
                ));
            } else {
                e.enforced
                    .push((Mechanism::IocostWeight, format!("{v} on {}", iocost_on())));
            }
        }
        if default_share.is_some() && !bfq && !iocost {
            return Err(unsupported(format!(
                "{why} of every device needs BFQ or iocost weights and this host has neither (the cgroup has no {bfq_file} or io.weight); give DEVICE=PERCENT@CAPACITY to throttle instead"
            )));
        }
    }

    if let Some(p) = policy.priority {
        let on = names(view.devices.iter().filter(|d| honours_ioprio(&d.scheduler)));
        let off = names(
            view.devices
                .iter()
                .filter(|d| !honours_ioprio(&d.scheduler)),
        );
        e.ioprio = Some(p.ioprio());
        if on == "-" {
            e.not_enforced.push(format!(
                "ioprio {}: no device's scheduler orders by IO priority (none/kyber on {off})",
                class_name(&p)
            ));
        } else {
            e.enforced.insert(
                0,
                (Mechanism::Ioprio, format!("{} on {on}", class_name(&p))),
            );
        }
        if view.v2 && has("io.prio.class") {
            let class = match p.class {
                IoClass::RealTime => "promote-to-rt",
                IoClass::BestEffort => "restrict-to-be",
                IoClass::Idle => "idle",
            };
            w.push(("io.prio.class".into(), class.into()));
            e.enforced.push((Mechanism::CgroupPrioClass, class.into()));
        }
        if !e.enforced.iter().any(|(m, _)| *m != Mechanism::Throttle) {
            return Err(CgroupError::Unsupported {
                setting: format!("annotation {PRIORITY_ANNOTATION}"),
                msg: format!(
                    "no mechanism on this host enforces it: no device's scheduler orders by IO priority (schedulers: {}), no BFQ or iocost weight",
                    view.devices
                        .iter()
                        .map(|d| format!("{} {}", d.name, d.scheduler))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }

    for share in &policy.bandwidth {
        let Some((maj, min)) = share.device else {
            continue;
        };
        let sched = view.scheduler(maj, min);
        let dev = format!("{maj}:{min}");
        let weighted = if bfq && sched == "bfq" && has(bfq_dev_file) {
            w.push((bfq_dev_file.into(), format!("{dev} {}", share.weight())));
            e.enforced
                .push((Mechanism::BfqWeight, format!("{} on {dev}", share.weight())));
            true
        } else if iocost && view.iocost.contains(&(maj, min)) {
            let v = v2_io_weight(share.weight());
            w.push(("io.weight".into(), format!("{dev} {v}")));
            e.enforced
                .push((Mechanism::IocostWeight, format!("{v} on {dev}")));
            true
        } else {
            false
        };
        let why_not = || {
            format!(
                "{dev} uses the {sched} scheduler{}",
                if view.v2 && iocost {
                    " and iocost is not enabled on it"
                } else {
                    " and the io controller has no iocost here"
                }
            )
        };
        match share.throttle_bps() {
            Some(bps) => {
                if view.v2 {
                    if !has("io.max") {
                        return Err(unsupported("the cgroup has no io.max for a throttle"));
                    }
                    w.push(("io.max".into(), format!("{dev} rbps={bps} wbps={bps}")));
                } else {
                    if !has("blkio.throttle.read_bps_device") {
                        return Err(unsupported(
                            "the kernel has no blkio throttling (CONFIG_BLK_DEV_THROTTLING)",
                        ));
                    }
                    w.push((
                        "blkio.throttle.read_bps_device".into(),
                        format!("{dev} {bps}"),
                    ));
                    w.push((
                        "blkio.throttle.write_bps_device".into(),
                        format!("{dev} {bps}"),
                    ));
                }
                e.enforced
                    .push((Mechanism::Throttle, format!("{dev} read/write {bps} B/s")));
                if !weighted {
                    e.not_enforced.push(format!(
                        "share {}% of {dev} as a weight ({}): throttled only",
                        share.percent,
                        why_not()
                    ));
                }
            }
            None if !weighted => {
                return Err(unsupported(format!(
                    "a share of {dev} without a capacity needs BFQ or iocost on it: {}; give {dev}={}%@CAPACITY to throttle",
                    why_not(),
                    share.percent
                )));
            }
            None => {}
        }
    }
    Ok(plan)
}

/// Applies `policy` to `cg` and reports how it is enforced.
pub(crate) fn apply(cg: &Cgroup, policy: &BlockIoPolicy) -> Result<Enforcement, CgroupError> {
    let v2 = cg.host.mode == CgroupMode::Unified;
    let dir = if v2 { cg.v2_dir() } else { cg.v1_dir("blkio") };
    let Some(dir) = dir else {
        return Err(unsupported(format!(
            "no {} controller on this host",
            if v2 { "io" } else { "blkio" }
        )));
    };
    let iocost = if v2 {
        std::fs::read_to_string(cg.host.root.join("io.cost.qos"))
            .map(|q| iocost_enabled(&q))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let has = |f: &str| dir.join(f).exists();
    let view = IoView {
        v2,
        has: &has,
        devices: devices(),
        iocost,
    };
    let plan = plan(&view, policy)?;
    for (file, value) in &plan.writes {
        let path = dir.join(file);
        write_file(&path, value).map_err(|e| CgroupError::Write {
            setting: format!("annotations {PRIORITY_ANNOTATION}/{BANDWIDTH_ANNOTATION}"),
            file: path.clone(),
            value: value.clone(),
            msg: e.to_string(),
        })?;
    }
    Ok(plan.enforcement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities() {
        let p = IoPriority::parse("rt:4").unwrap();
        assert_eq!(p.ioprio(), (1 << 13) | 4);
        assert_eq!(IoPriority::parse("be:0").unwrap().ioprio(), 2 << 13);
        assert_eq!(IoPriority::parse("idle").unwrap().ioprio(), 3 << 13);
        assert_eq!(IoPriority::parse("be").unwrap().level, 4);
        assert_eq!(IoPriority::parse("be:7").unwrap().bfq_weight(), 100);
        assert_eq!(IoPriority::parse("be:0").unwrap().bfq_weight(), 800);
        assert_eq!(IoPriority::parse("rt:0").unwrap().bfq_weight(), 1000);
        for bad in ["", "rt:8", "be:-1", "be:x", "idle:3", "urgent", "rt:"] {
            assert!(IoPriority::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bandwidth() {
        let v = parse_bandwidth("50%").unwrap();
        assert_eq!(
            v,
            vec![BandwidthShare {
                device: None,
                percent: 50,
                capacity: None
            }]
        );
        assert_eq!(v[0].weight(), 500);
        for bad in ["", "0", "101%", "abc", "50%@100M", "50,60", "1:2:3=5"] {
            assert!(parse_bandwidth(bad).is_err(), "{bad}");
        }
        assert!(parse_bandwidth("999:999=10%")
            .unwrap_err()
            .contains("does not exist"));
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        assert!(parse_size("2X").is_err());
    }

    #[test]
    fn annotations() {
        let mut a = HashMap::new();
        assert_eq!(parse_annotations(&a).unwrap(), None);
        a.insert(PRIORITY_ANNOTATION.to_string(), "be:9".to_string());
        let e = parse_annotations(&a).unwrap_err().to_string();
        assert!(e.contains(PRIORITY_ANNOTATION) && e.contains("be:9"), "{e}");
        a.insert(PRIORITY_ANNOTATION.to_string(), "idle".to_string());
        a.insert(BANDWIDTH_ANNOTATION.to_string(), "25".to_string());
        let p = parse_annotations(&a).unwrap().unwrap();
        assert_eq!(p.ioprio(), Some(3 << 13));
        assert_eq!(p.bandwidth[0].percent, 25);
    }

    fn dev(name: &str, major: u64, minor: u64, scheduler: &str) -> Device {
        Device {
            name: name.into(),
            major,
            minor,
            scheduler: scheduler.into(),
        }
    }

    fn policy(prio: Option<&str>, bw: Option<&str>) -> BlockIoPolicy {
        BlockIoPolicy {
            priority: prio.map(|p| IoPriority::parse(p).unwrap()),
            bandwidth: bw.map(|b| parse_bandwidth(b).unwrap()).unwrap_or_default(),
        }
    }

    /// A policy with one device share (the device need not exist here).
    fn with_share(
        prio: Option<&str>,
        device: (u64, u64),
        percent: u8,
        capacity: Option<u64>,
    ) -> BlockIoPolicy {
        BlockIoPolicy {
            priority: prio.map(|p| IoPriority::parse(p).unwrap()),
            bandwidth: vec![BandwidthShare {
                device: Some(device),
                percent,
                capacity,
            }],
        }
    }

    fn files(list: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |f| list.contains(&f)
    }

    const V1_NO_BFQ: &[&str] = &[
        "blkio.throttle.read_bps_device",
        "blkio.throttle.write_bps_device",
    ];
    const V1_BFQ: &[&str] = &[
        "blkio.bfq.weight",
        "blkio.bfq.weight_device",
        "blkio.throttle.read_bps_device",
        "blkio.throttle.write_bps_device",
    ];
    const V2_IOCOST: &[&str] = &["io.weight", "io.max", "io.prio.class"];

    #[test]
    fn mq_deadline_host_enforces_priority_by_ioprio_alone() {
        let has = files(V1_NO_BFQ);
        let view = IoView {
            v2: false,
            has: &has,
            devices: vec![
                dev("vda", 254, 0, "mq-deadline"),
                dev("loop0", 7, 0, "none"),
            ],
            iocost: vec![],
        };
        let p = plan(&view, &policy(Some("rt:0"), None)).unwrap();
        assert!(p.writes.is_empty(), "{:?}", p.writes);
        assert_eq!(p.enforcement.ioprio, Some(1 << 13));
        assert_eq!(p.enforcement.summary(), "ioprio=rt:0 on vda");

        // A share with a capacity: throttled, and said not weighted.
        let p = plan(
            &view,
            &with_share(Some("idle"), (7, 0), 20, Some(100 << 20)),
        )
        .unwrap();
        let bps = (100u64 << 20) / 100 * 20;
        assert_eq!(
            p.writes,
            vec![
                (
                    "blkio.throttle.read_bps_device".into(),
                    format!("7:0 {bps}")
                ),
                (
                    "blkio.throttle.write_bps_device".into(),
                    format!("7:0 {bps}")
                ),
            ]
        );
        let s = p.enforcement.summary();
        assert!(s.starts_with("ioprio=idle on vda; throttle=7:0"), "{s}");
        assert!(
            s.contains("not enforced: share 20% of 7:0 as a weight"),
            "{s}"
        );

        // Neither a share of every device nor one without a capacity can be
        // enforced here: errors naming the annotation.
        for bw in ["50%", "254:0=50%"] {
            let e = plan(&view, &policy(None, Some(bw)))
                .unwrap_err()
                .to_string();
            assert!(e.contains(BANDWIDTH_ANNOTATION), "{e}");
        }
    }

    #[test]
    fn priority_is_an_error_where_no_scheduler_honours_it() {
        let has = files(V1_NO_BFQ);
        let view = IoView {
            v2: false,
            has: &has,
            devices: vec![dev("vda", 254, 0, "none"), dev("sda", 8, 0, "kyber")],
            iocost: vec![],
        };
        let e = plan(&view, &policy(Some("be:0"), None))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(PRIORITY_ANNOTATION) && e.contains("vda none"),
            "{e}"
        );
    }

    #[test]
    fn bfq_host_adds_weights() {
        let has = files(V1_BFQ);
        let view = IoView {
            v2: false,
            has: &has,
            devices: vec![dev("sda", 8, 0, "bfq"), dev("vda", 254, 0, "mq-deadline")],
            iocost: vec![],
        };
        let p = plan(
            &view,
            &with_share(Some("be:7"), (8, 0), 20, Some(100 << 20)),
        )
        .unwrap();
        assert_eq!(p.writes[0], ("blkio.bfq.weight".into(), "100".into()));
        assert_eq!(
            p.writes[1],
            ("blkio.bfq.weight_device".into(), "8:0 200".into())
        );
        let s = p.enforcement.summary();
        assert!(
            s.starts_with("ioprio=be:7 on sda,vda; bfq-weight=100 on sda; bfq-weight=200 on 8:0; throttle=8:0"),
            "{s}"
        );
        assert!(!s.contains("not enforced"), "{s}");
        // A device share on the mq-deadline device is not weighted.
        let e = plan(&view, &with_share(None, (254, 0), 20, None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("254:0 uses the mq-deadline scheduler"), "{e}");
    }

    #[test]
    fn v2_iocost_and_prio_class() {
        let has = files(V2_IOCOST);
        let view = IoView {
            v2: true,
            has: &has,
            devices: vec![
                dev("nvme0n1", 259, 0, "none"),
                dev("sda", 8, 0, "mq-deadline"),
            ],
            iocost: vec![(259, 0)],
        };
        let p = plan(&view, &with_share(Some("idle"), (259, 0), 50, None)).unwrap();
        assert_eq!(
            p.writes,
            vec![
                ("io.weight".into(), format!("default {}", v2_io_weight(10))),
                ("io.prio.class".into(), "idle".into()),
                ("io.weight".into(), format!("259:0 {}", v2_io_weight(500))),
            ]
        );
        let s = p.enforcement.summary();
        assert!(s.starts_with("ioprio=idle on sda; iocost-weight="), "{s}");
        assert!(s.contains("io.prio.class=idle"), "{s}");
        // iocost present but enabled nowhere: written, and said inactive.
        let view = IoView {
            iocost: vec![],
            ..view
        };
        let p = plan(&view, &policy(Some("rt"), None)).unwrap();
        assert!(p
            .enforcement
            .not_enforced
            .iter()
            .any(|n| n.contains("iocost is enabled on no device")));
    }
}
