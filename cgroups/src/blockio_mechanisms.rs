//! The kernel mechanisms that can enforce a block IO policy, and which of
//! them this host has, per device.
//!
//! Kernels differ in what they offer (BFQ built in or not, the io
//! controller on cgroup v1 or v2, iocost enabled on a device or not), so
//! nothing here assumes one: each mechanism is detected from sysfs and the
//! cgroup filesystems when a container is created, and reported.

use std::path::Path;

use crate::host::{CgroupMode, Host};

/// A kernel mechanism that enforces (part of) a block IO policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mechanism {
    /// `ioprio_set(2)` on the container's processes (inherited across
    /// fork and given to exec'd processes); the mq-deadline and BFQ
    /// schedulers dispatch by its class (RT, BE, IDLE).
    Ioprio,
    /// BFQ's proportional weights (`blkio.bfq.weight*`, `io.bfq.weight`);
    /// act on devices BFQ schedules.
    BfqWeight,
    /// cgroup v2 `io.weight` through iocost; acts on devices where iocost
    /// is enabled in the root's `io.cost.qos`.
    IocostWeight,
    /// cgroup v2 `io.prio.class` (the ioprio cgroup policy).
    CgroupPrioClass,
    /// Bandwidth throttles (`blkio.throttle.*`, `io.max`); act on every
    /// device whatever its scheduler.
    Throttle,
}

impl Mechanism {
    /// Every mechanism, in report order.
    pub const ALL: [Mechanism; 5] = [
        Mechanism::Ioprio,
        Mechanism::BfqWeight,
        Mechanism::IocostWeight,
        Mechanism::CgroupPrioClass,
        Mechanism::Throttle,
    ];

    /// The name used in reports and annotations.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Ioprio => "ioprio",
            Mechanism::BfqWeight => "bfq-weight",
            Mechanism::IocostWeight => "iocost-weight",
            Mechanism::CgroupPrioClass => "io.prio.class",
            Mechanism::Throttle => "throttle",
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A whole block device (not a partition) and its active scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Kernel name (`vda`, `loop3`).
    pub name: String,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// The active scheduler (`mq-deadline`, `bfq`, `none`, ...).
    pub scheduler: String,
}

/// Whether a scheduler orders requests by the IO priority class.
pub fn honours_ioprio(scheduler: &str) -> bool {
    matches!(scheduler, "mq-deadline" | "bfq" | "cfq")
}

/// The bracketed entry of a `queue/scheduler` file.
pub fn active_scheduler(text: &str) -> Option<String> {
    let start = text.find('[')?;
    let end = text[start..].find(']')?;
    Some(text[start + 1..start + end].to_string())
}

/// The block devices under `sys_block` (normally `/sys/block`) that hold
/// data (size > 0, so unbound loop devices are left out) and have a
/// request queue.
pub fn devices_in(sys_block: &Path) -> Vec<Device> {
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let dir = e.path();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let size: u64 = read("size")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let (Some(dev), Some(sched)) = (read("dev"), read("queue/scheduler")) else {
            continue;
        };
        let Some((maj, min)) = dev.trim().split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (maj.parse(), min.parse()) else {
            continue;
        };
        if size == 0 {
            continue;
        }
        out.push(Device {
            name: e.file_name().to_string_lossy().into_owned(),
            major,
            minor,
            scheduler: active_scheduler(&sched).unwrap_or_else(|| sched.trim().to_string()),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The devices of this host (`/sys/block`).
pub fn devices() -> Vec<Device> {
    devices_in(Path::new("/sys/block"))
}

/// The devices on which iocost is enabled, from the text of the cgroup2
/// root's `io.cost.qos` (`MAJ:MIN enable=1 ctrl=auto ...`).
pub fn iocost_enabled(qos: &str) -> Vec<(u64, u64)> {
    qos.lines()
        .filter(|l| l.split_whitespace().any(|w| w == "enable=1"))
        .filter_map(|l| {
            let (maj, min) = l.split_whitespace().next()?.split_once(':')?;
            Some((maj.parse().ok()?, min.parse().ok()?))
        })
        .collect()
}

/// Whether the io controller is on a cgroup2 hierarchy of `host`, and
/// that hierarchy's root.
fn v2_io_root(host: &Host) -> Option<&Path> {
    if host.mode == CgroupMode::Unified && host.has_v2("io") {
        return Some(host.root.as_path());
    }
    None
}

/// A comma-separated list of device names, `-` when empty.
pub(crate) fn names<'a>(devs: impl Iterator<Item = &'a Device>) -> String {
    let v: Vec<&str> = devs.map(|d| d.name.as_str()).collect();
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// Whether some cgroup below `root` (one level) has interface file `file`
/// (files such as `io.prio.class` and `io.max` only exist below the root).
fn child_has_file(root: &Path, file: &str) -> bool {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join(file).exists())
}

/// One line per mechanism: whether this host offers it and where, for
/// `vessel features` (keys `io.vessel.blockio.<mechanism>`).
pub fn host_report(host: &Host) -> Vec<(String, String)> {
    let devs = devices();
    let v2 = v2_io_root(host);
    let by_sched = |f: &dyn Fn(&str) -> bool| names(devs.iter().filter(|d| f(&d.scheduler)));
    let mut out = Vec::new();
    for m in Mechanism::ALL {
        let line = match m {
            Mechanism::Ioprio => {
                let on = by_sched(&honours_ioprio);
                let off = by_sched(&|s| !honours_ioprio(s));
                if on == "-" {
                    format!("unavailable: no device's scheduler orders by IO priority class (none/kyber on {off})")
                } else {
                    format!("available: ioprio_set on the container's processes; honoured on {on} (mq-deadline/bfq); not on {off}")
                }
            }
            Mechanism::BfqWeight => {
                let on = by_sched(&|s| s == "bfq");
                let files = match host.mode {
                    CgroupMode::Unified => v2.is_some(),
                    _ => {
                        host.root_has_file("blkio", "blkio.bfq.io_service_bytes")
                            || host.root_has_file("blkio", "blkio.bfq.weight")
                    }
                };
                match (files, on.as_str()) {
                    (true, "-") => "unavailable: BFQ's cgroup policy is registered but no device uses bfq".to_string(),
                    (true, _) => format!("available: BFQ weights act on {on}"),
                    (false, _) => "unavailable: the kernel has no BFQ (no blkio.bfq.* files, no device offers bfq)".to_string(),
                }
            }
            Mechanism::IocostWeight => match v2 {
                None => "unavailable: the io controller is not on cgroup v2 here (iocost needs it)"
                    .to_string(),
                Some(root) => {
                    let qos = std::fs::read_to_string(root.join("io.cost.qos")).ok();
                    match qos {
                        None => {
                            "unavailable: the kernel has no iocost (no io.cost.qos)".to_string()
                        }
                        Some(q) => {
                            let on: Vec<String> = iocost_enabled(&q)
                                .into_iter()
                                .map(|(a, b)| format!("{a}:{b}"))
                                .collect();
                            if on.is_empty() {
                                "unavailable: iocost is enabled on no device (io.cost.qos)"
                                    .to_string()
                            } else {
                                format!("available: io.weight acts on {}", on.join(","))
                            }
                        }
                    }
                }
            },
            Mechanism::CgroupPrioClass => match v2 {
                Some(root) if child_has_file(root, "io.prio.class") => {
                    "available: io.prio.class (cgroup v2)".to_string()
                }
                Some(_) => "unavailable: the kernel has no ioprio cgroup policy (no io.prio.class)"
                    .to_string(),
                None => {
                    "unavailable: io.prio.class needs the io controller on cgroup v2".to_string()
                }
            },
            Mechanism::Throttle => {
                let ok = match host.mode {
                    CgroupMode::Unified => v2.is_some_and(|r| child_has_file(r, "io.max")),
                    _ => host.root_has_file("blkio", "blkio.throttle.read_bps_device"),
                };
                if ok {
                    format!(
                        "available: {} on every device",
                        if host.mode == CgroupMode::Unified {
                            "io.max"
                        } else {
                            "blkio.throttle.*"
                        }
                    )
                } else {
                    "unavailable: no blkio.throttle.* / io.max (CONFIG_BLK_DEV_THROTTLING)"
                        .to_string()
                }
            }
        };
        out.push((format!("io.vessel.blockio.{}", m.name()), line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedulers_and_qos() {
        assert_eq!(
            active_scheduler("none [mq-deadline] kyber\n").as_deref(),
            Some("mq-deadline")
        );
        assert_eq!(active_scheduler("none"), None);
        assert!(honours_ioprio("bfq") && honours_ioprio("mq-deadline"));
        assert!(!honours_ioprio("none") && !honours_ioprio("kyber"));
        let q = "8:0 enable=1 ctrl=auto rpct=0.00\n254:0 enable=0 ctrl=auto\n";
        assert_eq!(iocost_enabled(q), vec![(8, 0)]);
    }

    #[test]
    fn devices_from_a_sysfs_tree() {
        let t = tempfile::tempdir().unwrap();
        for (name, dev, size, sched) in [
            ("vda", "254:0", "100", "none [mq-deadline] kyber"),
            ("loop7", "7:7", "0", "[none] mq-deadline"),
            ("zram0", "253:0", "8", "none"),
        ] {
            let d = t.path().join(name);
            std::fs::create_dir_all(d.join("queue")).unwrap();
            std::fs::write(d.join("dev"), format!("{dev}\n")).unwrap();
            std::fs::write(d.join("size"), size).unwrap();
            std::fs::write(d.join("queue/scheduler"), sched).unwrap();
        }
        let v = devices_in(t.path());
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v[0].name, "vda");
        assert_eq!(v[0].scheduler, "mq-deadline");
        assert_eq!((v[1].major, v[1].minor), (253, 0));
        assert_eq!(v[1].scheduler, "none");
    }
}
