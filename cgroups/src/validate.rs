//! Checks `linux.resources` against the value ranges the kernel accepts and
//! against what this host offers, before anything is created.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use crate::host::{CgroupMode, Host};
use crate::CgroupError;

/// Smallest and largest `cpu.shares` the kernel accepts without clamping.
pub const SHARES_RANGE: (u64, u64) = (2, 262_144);
/// The OCI (CFQ) block IO weight range.
pub const BLKIO_WEIGHT_RANGE: (u16, u16) = (10, 1000);

fn invalid(setting: impl Into<String>, msg: impl Into<String>) -> CgroupError {
    CgroupError::Invalid {
        setting: setting.into(),
        msg: msg.into(),
    }
}

fn unsupported(setting: impl Into<String>, msg: impl Into<String>) -> CgroupError {
    CgroupError::Unsupported {
        setting: setting.into(),
        msg: msg.into(),
    }
}

/// Checks `resources` on this host (layout detected from
/// `/proc/self/mountinfo`). Nothing is created or written.
pub fn validate(resources: &LinuxResources) -> Result<(), CgroupError> {
    validate_on(&Host::detect()?, resources)
}

/// Checks `resources` against the layout `host`.
pub fn validate_on(host: &Host, resources: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(cpu) = resources.cpu() {
        validate_cpu(host, cpu)?;
    }
    if let Some(mem) = resources.memory() {
        validate_memory(host, mem)?;
    }
    if resources.pids().is_some() {
        require(host, "pids", "linux.resources.pids.limit")?;
    }
    if let Some(limits) = resources.hugepage_limits() {
        for (i, l) in limits.iter().enumerate() {
            let setting = format!("linux.resources.hugepageLimits[{i}]");
            let kb = parse_page_size(l.page_size())
                .map_err(|m| invalid(format!("{setting}.pageSize"), m))?;
            let dir = PathBuf::from(format!("/sys/kernel/mm/hugepages/hugepages-{kb}kB"));
            if !dir.exists() {
                return Err(unsupported(
                    format!("{setting}.pageSize"),
                    format!(
                        "huge page size {} is not offered by this host (no {})",
                        l.page_size(),
                        dir.display()
                    ),
                ));
            }
            if l.limit() < 0 {
                return Err(invalid(
                    format!("{setting}.limit"),
                    format!("{} is negative", l.limit()),
                ));
            }
            if (l.limit() as u64) % (kb * 1024) != 0 {
                return Err(invalid(
                    format!("{setting}.limit"),
                    format!(
                        "{} is not a multiple of the page size {} ({} bytes)",
                        l.limit(),
                        l.page_size(),
                        kb * 1024
                    ),
                ));
            }
            if !hugetlb_available(host) {
                return Err(unsupported(
                    setting,
                    format!(
                        "the hugetlb controller is neither mounted as cgroup v1 nor offered by the cgroup2 hierarchy on this {} host",
                        host.mode
                    ),
                ));
            }
        }
    }
    if let Some(net) = resources.network() {
        if net.class_id().is_some() {
            validate_net(host, "net_cls", "linux.resources.network.classID")?;
        }
        if net.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            validate_net(host, "net_prio", "linux.resources.network.priorities")?;
        }
    }
    if let Some(rdma) = resources.rdma() {
        if !rdma.is_empty() {
            let ok = match host.mode {
                CgroupMode::Unified => host.has_v2("rdma"),
                _ => host.has_v1("rdma"),
            };
            if !ok {
                return Err(unsupported(
                    "linux.resources.rdma",
                    format!("no rdma controller on this {} host", host.mode),
                ));
            }
        }
    }
    if resources.devices().as_ref().is_some_and(|d| !d.is_empty())
        && host.mode != CgroupMode::Unified
        && !host.has_v1("devices")
    {
        // cgroup v2 enforces the allowlist with eBPF; v1 needs the controller.
        return Err(unsupported(
            "linux.resources.devices",
            "the devices cgroup v1 controller is not mounted: the device allowlist cannot be enforced",
        ));
    }
    if let Some(bio) = resources.block_io() {
        validate_blkio(host, bio)?;
    }
    if let Some(unified) = resources.unified() {
        for key in unified.keys() {
            validate_unified_key(host, key)?;
        }
    }
    Ok(())
}

fn require(host: &Host, controller: &str, setting: &str) -> Result<(), CgroupError> {
    let ok = match host.mode {
        CgroupMode::Unified => host.has_v2(controller),
        _ => host.has_v1(controller),
    };
    if ok {
        Ok(())
    } else {
        Err(unsupported(
            setting,
            format!(
                "the {controller} controller is not available on this {} host",
                host.mode
            ),
        ))
    }
}

pub(crate) fn hugetlb_available(host: &Host) -> bool {
    match host.mode {
        CgroupMode::Unified => host.has_v2("hugetlb"),
        CgroupMode::Legacy => host.has_v1("hugetlb"),
        CgroupMode::Hybrid => host.has_v1("hugetlb") || host.has_v2("hugetlb"),
    }
}

fn validate_net(host: &Host, controller: &str, setting: &str) -> Result<(), CgroupError> {
    if host.mode == CgroupMode::Unified {
        return Err(unsupported(
            setting,
            format!(
                "{controller} exists only in cgroup v1; on cgroup v2 classify traffic with eBPF"
            ),
        ));
    }
    if !host.has_v1(controller) {
        return Err(unsupported(
            setting,
            format!("the {controller} cgroup v1 controller is not mounted on this host"),
        ));
    }
    Ok(())
}

fn validate_cpu(host: &Host, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    let v2 = host.mode == CgroupMode::Unified;
    if let Some(s) = cpu.shares() {
        if s != 0 && !(SHARES_RANGE.0..=SHARES_RANGE.1).contains(&s) {
            return Err(invalid(
                "linux.resources.cpu.shares",
                format!(
                    "{s} is out of range [{}, {}]",
                    SHARES_RANGE.0, SHARES_RANGE.1
                ),
            ));
        }
    }
    if let Some(q) = cpu.quota() {
        if q < -1 || (q > 0 && q < 1000) {
            return Err(invalid(
                "linux.resources.cpu.quota",
                format!("{q} must be -1 (unlimited), 0 (unset) or at least 1000 microseconds"),
            ));
        }
    }
    if let Some(p) = cpu.period() {
        if p != 0 && !(1000..=1_000_000).contains(&p) {
            return Err(invalid(
                "linux.resources.cpu.period",
                format!("{p} is out of range [1000, 1000000] microseconds"),
            ));
        }
    }
    if let Some(b) = cpu.burst() {
        if let Some(q) = cpu.quota().filter(|q| *q > 0) {
            if b > q as u64 {
                return Err(invalid(
                    "linux.resources.cpu.burst",
                    format!("{b} is larger than the quota {q}"),
                ));
            }
        }
    }
    if let Some(i) = cpu.idle() {
        if !(0..=1).contains(&i) {
            return Err(invalid(
                "linux.resources.cpu.idle",
                format!("{i} must be 0 or 1"),
            ));
        }
    }
    let rt_runtime = cpu.realtime_runtime().filter(|r| *r != 0);
    let rt_period = cpu.realtime_period().filter(|p| *p != 0);
    if rt_runtime.is_some() || rt_period.is_some() {
        let setting = if rt_runtime.is_some() {
            "linux.resources.cpu.realtimeRuntime"
        } else {
            "linux.resources.cpu.realtimePeriod"
        };
        if v2 {
            return Err(unsupported(
                setting,
                "cgroup v2 has no real-time CPU bandwidth control",
            ));
        }
        if !host.root_has_file("cpu", "cpu.rt_runtime_us") {
            return Err(unsupported(
                setting,
                "the kernel has no real-time group scheduling (CONFIG_RT_GROUP_SCHED, cpu.rt_runtime_us)",
            ));
        }
        if let Some(r) = rt_runtime {
            if r < -1 {
                return Err(invalid(setting, format!("{r} must be -1 or positive")));
            }
            if let Some(p) = rt_period {
                if r > 0 && r as u64 > p {
                    return Err(invalid(
                        "linux.resources.cpu.realtimeRuntime",
                        format!("{r} is larger than the real-time period {p}"),
                    ));
                }
            }
        }
    }
    let wants_cpu = cpu.shares().is_some_and(|s| s != 0)
        || cpu.quota().is_some()
        || cpu.period().is_some_and(|p| p != 0)
        || cpu.burst().is_some()
        || cpu.idle().is_some();
    if wants_cpu {
        require(host, "cpu", "linux.resources.cpu")?;
    }
    let cpus = cpu.cpus().as_deref().filter(|s| !s.trim().is_empty());
    let mems = cpu.mems().as_deref().filter(|s| !s.trim().is_empty());
    if let Some(c) = cpus {
        let want = parse_list(c).map_err(|m| invalid("linux.resources.cpu.cpus", m))?;
        let have = online_list("/sys/devices/system/cpu/online");
        check_subset(&want, &have, "linux.resources.cpu.cpus", "CPU")?;
        require(host, "cpuset", "linux.resources.cpu.cpus")?;
    }
    if let Some(m) = mems {
        let want = parse_list(m).map_err(|e| invalid("linux.resources.cpu.mems", e))?;
        let have = online_list("/sys/devices/system/node/online");
        check_subset(&want, &have, "linux.resources.cpu.mems", "memory node")?;
        require(host, "cpuset", "linux.resources.cpu.mems")?;
    }
    Ok(())
}

fn check_subset(
    want: &BTreeSet<u32>,
    have: &BTreeSet<u32>,
    setting: &str,
    what: &str,
) -> Result<(), CgroupError> {
    if let Some(missing) = want.iter().find(|c| !have.contains(c)) {
        return Err(invalid(
            setting,
            format!(
                "{what} {missing} is not online on this host (online: {})",
                format_list(have)
            ),
        ));
    }
    Ok(())
}

fn online_list(path: &str) -> BTreeSet<u32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| parse_list(s.trim()).ok())
        .unwrap_or_else(|| BTreeSet::from([0]))
}

/// Parses a kernel list such as `0-3,5,7-8`.
pub fn parse_list(s: &str) -> Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    for part in s.trim().split(',') {
        let part = part.trim();
        let bad = || format!("{s:?} is not a list such as \"0-3,5\"");
        if part.is_empty() {
            return Err(bad());
        }
        if let Some((a, b)) = part.split_once('-') {
            let a: u32 = a.trim().parse().map_err(|_| bad())?;
            let b: u32 = b.trim().parse().map_err(|_| bad())?;
            if a > b || b - a > 65_536 {
                return Err(bad());
            }
            out.extend(a..=b);
        } else {
            out.insert(part.parse().map_err(|_| bad())?);
        }
    }
    Ok(out)
}

fn format_list(set: &BTreeSet<u32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

fn validate_memory(host: &Host, mem: &LinuxMemory) -> Result<(), CgroupError> {
    let v2 = host.mode == CgroupMode::Unified;
    require(host, "memory", "linux.resources.memory")?;
    let check = |v: Option<i64>, name: &str| -> Result<(), CgroupError> {
        match v {
            Some(x) if x < -1 => Err(invalid(
                format!("linux.resources.memory.{name}"),
                format!("{x} must be -1 (unlimited), 0 (unset) or a positive number of bytes"),
            )),
            _ => Ok(()),
        }
    };
    check(mem.limit(), "limit")?;
    check(mem.swap(), "swap")?;
    check(mem.reservation(), "reservation")?;
    check(mem.kernel(), "kernel")?;
    check(mem.kernel_tcp(), "kernelTCP")?;
    if let (Some(l), Some(s)) = (mem.limit(), mem.swap()) {
        if l > 0 && s > 0 && s < l {
            return Err(invalid(
                "linux.resources.memory.swap",
                format!("{s} (memory+swap) is smaller than the memory limit {l}"),
            ));
        }
    }
    if let Some(s) = mem.swap().filter(|s| *s != 0) {
        if v2 && mem.limit().is_none_or(|l| l == 0) && s != -1 {
            return Err(invalid(
                "linux.resources.memory.swap",
                "on cgroup v2 a swap limit needs a memory limit",
            ));
        }
        let swap_file = if v2 {
            "memory.swap.current"
        } else {
            "memory.memsw.usage_in_bytes"
        };
        if !v2 && !host.root_has_file("memory", swap_file) {
            return Err(unsupported(
                "linux.resources.memory.swap",
                "swap accounting is off on this host (no memory.memsw.* files; boot with swapaccount=1)",
            ));
        }
    }
    if let Some(sw) = mem.swappiness() {
        if v2 {
            return Err(unsupported(
                "linux.resources.memory.swappiness",
                "cgroup v2 has no per-cgroup swappiness",
            ));
        }
        if sw > 100 {
            return Err(invalid(
                "linux.resources.memory.swappiness",
                format!("{sw} is out of range [0, 100]"),
            ));
        }
    }
    // memory.kernel and memory.kernelTCP where the host cannot enforce
    // them are not errors: they are dropped with a warning when applied
    // (see `enforceable`), as runc 1.1 does.
    if mem.disable_oom_killer() == Some(true) && v2 {
        return Err(unsupported(
            "linux.resources.memory.disableOOMKiller",
            "cgroup v2 has no switch to disable the OOM killer",
        ));
    }
    if mem.use_hierarchy() == Some(false) {
        return Err(unsupported(
            "linux.resources.memory.useHierarchy",
            "memory accounting is always hierarchical on this kernel",
        ));
    }
    Ok(())
}

/// `/sys/dev/block/MAJ:MIN` for a block device, if the host has it.
pub fn block_device_dir(major: i64, minor: i64) -> Option<PathBuf> {
    if major < 0 || minor < 0 {
        return None;
    }
    let p = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    p.exists().then_some(p)
}

/// The active IO scheduler of a block device (`bfq`, `none`, ...).
pub fn block_device_scheduler(major: i64, minor: i64) -> Option<String> {
    let dir = block_device_dir(major, minor)?;
    let read = |p: &Path| std::fs::read_to_string(p.join("queue/scheduler")).ok();
    let text = read(&dir).or_else(|| read(&dir.join("..")))?;
    let start = text.find('[')?;
    let end = text[start..].find(']')?;
    Some(text[start + 1..start + end].to_string())
}

fn check_device(setting: &str, major: i64, minor: i64) -> Result<(), CgroupError> {
    if block_device_dir(major, minor).is_none() {
        return Err(invalid(
            setting,
            format!("block device {major}:{minor} does not exist on this host"),
        ));
    }
    Ok(())
}

fn check_weight(setting: &str, w: u16) -> Result<(), CgroupError> {
    let (lo, hi) = BLKIO_WEIGHT_RANGE;
    if w != 0 && !(lo..=hi).contains(&w) {
        return Err(invalid(
            setting,
            format!("{w} is out of range [{lo}, {hi}]"),
        ));
    }
    Ok(())
}

/// Whether a v1 host has the CFQ-era `blkio.weight` files.
pub(crate) fn v1_has_cfq_weight(host: &Host) -> bool {
    host.root_has_file("blkio", "blkio.weight")
}

/// Whether a v1 host has BFQ's blkio policy (its files show in child
/// groups as `blkio.bfq.weight`, at the root as `blkio.bfq.io_service_bytes`).
pub(crate) fn v1_has_bfq(host: &Host) -> bool {
    host.root_has_file("blkio", "blkio.bfq.io_service_bytes")
        || host.root_has_file("blkio", "blkio.bfq.weight")
}

fn validate_blkio(host: &Host, bio: &LinuxBlockIo) -> Result<(), CgroupError> {
    let v2 = host.mode == CgroupMode::Unified;
    let any = bio.weight().is_some_and(|w| w != 0)
        || bio.leaf_weight().is_some_and(|w| w != 0)
        || bio.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || bio
            .throttle_read_bps_device()
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        || bio
            .throttle_write_bps_device()
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        || bio
            .throttle_read_iops_device()
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        || bio
            .throttle_write_iops_device()
            .as_ref()
            .is_some_and(|v| !v.is_empty());
    if !any {
        return Ok(());
    }
    require(
        host,
        if v2 { "io" } else { "blkio" },
        "linux.resources.blockIO",
    )?;
    let weights_ok = v2 || v1_has_cfq_weight(host) || v1_has_bfq(host);
    if let Some(w) = bio.weight() {
        check_weight("linux.resources.blockIO.weight", w)?;
        if w != 0 && !weights_ok {
            return Err(unsupported(
                "linux.resources.blockIO.weight",
                "this host has neither blkio.weight (CFQ) nor blkio.bfq.weight (BFQ)",
            ));
        }
    }
    let leaf_ok = !v2 && host.root_has_file("blkio", "blkio.leaf_weight");
    if let Some(w) = bio.leaf_weight() {
        check_weight("linux.resources.blockIO.leafWeight", w)?;
        if w != 0 && !leaf_ok {
            return Err(unsupported(
                "linux.resources.blockIO.leafWeight",
                if v2 {
                    "cgroup v2 has no leaf weight"
                } else {
                    "blkio.leaf_weight exists only with the CFQ scheduler, which this kernel does not have (BFQ has no leaf weight)"
                },
            ));
        }
    }
    if let Some(devs) = bio.weight_device() {
        for (i, d) in devs.iter().enumerate() {
            let setting = format!("linux.resources.blockIO.weightDevice[{i}]");
            check_device(&setting, d.major(), d.minor())?;
            if let Some(w) = d.weight() {
                check_weight(&format!("{setting}.weight"), w)?;
                if w != 0 && !v2 && !v1_has_cfq_weight(host) {
                    if !v1_has_bfq(host) {
                        return Err(unsupported(
                            format!("{setting}.weight"),
                            "this host has neither blkio.weight_device nor blkio.bfq.weight_device",
                        ));
                    }
                    let sched = block_device_scheduler(d.major(), d.minor())
                        .unwrap_or_else(|| "unknown".into());
                    if sched != "bfq" {
                        return Err(unsupported(
                            format!("{setting}.weight"),
                            format!(
                                "device {}:{} uses the {sched} scheduler; per-device weights need bfq (echo bfq > /sys/dev/block/{}:{}/queue/scheduler)",
                                d.major(),
                                d.minor(),
                                d.major(),
                                d.minor()
                            ),
                        ));
                    }
                }
            }
            if let Some(w) = d.leaf_weight() {
                check_weight(&format!("{setting}.leafWeight"), w)?;
                if w != 0 && !leaf_ok {
                    return Err(unsupported(
                        format!("{setting}.leafWeight"),
                        "no leaf weights on this host (CFQ only)",
                    ));
                }
            }
        }
    }
    let throttles = [
        ("throttleReadBpsDevice", bio.throttle_read_bps_device()),
        ("throttleWriteBpsDevice", bio.throttle_write_bps_device()),
        ("throttleReadIOPSDevice", bio.throttle_read_iops_device()),
        ("throttleWriteIOPSDevice", bio.throttle_write_iops_device()),
    ];
    for (name, list) in throttles {
        for (i, d) in list.iter().flatten().enumerate() {
            let setting = format!("linux.resources.blockIO.{name}[{i}]");
            check_device(&setting, d.major(), d.minor())?;
            if !v2 && !host.root_has_file("blkio", "blkio.throttle.read_bps_device") {
                return Err(unsupported(
                    setting,
                    "the kernel has no blkio throttling (CONFIG_BLK_DEV_THROTTLING)",
                ));
            }
        }
    }
    Ok(())
}

const FORBIDDEN_UNIFIED: &[&str] = &[
    "cgroup.procs",
    "cgroup.threads",
    "cgroup.kill",
    "cgroup.type",
    "cgroup.subtree_control",
    "cgroup.freeze",
];

fn validate_unified_key(host: &Host, key: &str) -> Result<(), CgroupError> {
    let setting = format!("linux.resources.unified[{key:?}]");
    let well_formed = !key.is_empty()
        && !key.contains('/')
        && !key.contains('\0')
        && !key.starts_with('.')
        && key.contains('.');
    if !well_formed {
        return Err(invalid(
            setting,
            "not a cgroup v2 interface file name such as \"memory.high\"",
        ));
    }
    if FORBIDDEN_UNIFIED.contains(&key) {
        return Err(invalid(
            setting,
            "this file is managed by the runtime and cannot be set",
        ));
    }
    let controller = key.split('.').next().unwrap_or("");
    match host.mode {
        CgroupMode::Legacy => Err(unsupported(
            setting,
            "unified (cgroup v2) settings need a cgroup2 hierarchy; this host has only cgroup v1",
        )),
        CgroupMode::Hybrid | CgroupMode::Unified => {
            if controller == "cgroup" || host.has_v2(controller) {
                Ok(())
            } else if host.mode == CgroupMode::Hybrid {
                Err(unsupported(
                    setting,
                    format!(
                        "on this hybrid host the {controller} controller is not on the cgroup2 hierarchy (cgroup2 offers: {})",
                        host.unified_controllers().join(" ")
                    ),
                ))
            } else {
                Err(unsupported(
                    setting,
                    format!("the {controller} controller is not available on this host"),
                ))
            }
        }
    }
}

/// Parses a huge page size such as `2MB`, `1GB` or `64KB` into KiB.
pub fn parse_page_size(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a page size such as \"2MB\" or \"1GB\"");
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let kb = match &s[digits.len()..] {
        "KB" | "kB" => n,
        "MB" => n * 1024,
        "GB" => n * 1024 * 1024,
        _ => return Err(bad()),
    };
    if kb == 0 || !kb.is_power_of_two() {
        return Err(bad());
    }
    Ok(kb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_list("0-2,5").unwrap(), BTreeSet::from([0, 1, 2, 5]));
        assert!(parse_list("").is_err());
        assert!(parse_list("3-1").is_err());
        assert!(parse_list("a").is_err());
        assert_eq!(format_list(&BTreeSet::from([0, 1, 2, 5])), "0-2,5");
    }

    /// A host laid out under a temporary root: v1 hierarchies holding the
    /// given files at their root, and a cgroup2 mount offering
    /// `v2_controllers` (`None`: no cgroup2 mount).
    fn fake_host(
        v1: &[(&str, &[&str])],
        v2_controllers: Option<&str>,
    ) -> (tempfile::TempDir, Host) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let mut info = String::new();
        for (i, (c, files)) in v1.iter().enumerate() {
            let dir = root.join(c);
            std::fs::create_dir_all(&dir).unwrap();
            for f in *files {
                std::fs::write(dir.join(f), "").unwrap();
            }
            info.push_str(&format!(
                "{} 1 0:{i} / {} rw - cgroup cgroup rw,{c}\n",
                30 + i,
                dir.display()
            ));
        }
        if let Some(ctl) = v2_controllers {
            let dir = root.join("unified");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cgroup.controllers"), ctl).unwrap();
            info.push_str(&format!(
                "99 1 0:99 / {} rw - cgroup2 cgroup2 rw\n",
                dir.display()
            ));
        }
        let host = Host::from_mountinfo(&info, root).unwrap();
        (d, host)
    }

    fn res(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    /// The error's setting, or "ok".
    fn verdict(host: &Host, v: serde_json::Value) -> String {
        match validate_on(host, &res(v)) {
            Ok(()) => "ok".into(),
            Err(
                CgroupError::Unsupported { setting, .. } | CgroupError::Invalid { setting, .. },
            ) => setting,
            Err(e) => panic!("{e}"),
        }
    }

    /// The README's "Cgroup settings a host lacks" table, field by field: a
    /// setting whose controller or file is missing is an error naming it.
    #[test]
    fn a_setting_the_host_lacks_is_an_error_naming_it() {
        use serde_json::json;
        // A hybrid host with memory but no swap accounting, cpu without
        // real-time group scheduling or burst, no pids, net_cls, net_prio,
        // rdma, devices or cpuset; cgroup2 offers hugetlb only.
        let (_d, bare) = fake_host(
            &[
                ("memory", &["memory.limit_in_bytes"]),
                ("cpu", &["cpu.shares"]),
            ],
            Some("hugetlb"),
        );
        for (v, setting) in [
            (
                json!({"memory": {"swap": 1 << 30}}),
                "linux.resources.memory.swap",
            ),
            (
                json!({"memory": {"useHierarchy": false}}),
                "linux.resources.memory.useHierarchy",
            ),
            (
                json!({"cpu": {"realtimeRuntime": 1000}}),
                "linux.resources.cpu.realtimeRuntime",
            ),
            (
                json!({"cpu": {"realtimePeriod": 100000}}),
                "linux.resources.cpu.realtimePeriod",
            ),
            (json!({"cpu": {"cpus": "0"}}), "linux.resources.cpu.cpus"),
            (json!({"cpu": {"mems": "0"}}), "linux.resources.cpu.mems"),
            (json!({"pids": {"limit": 10}}), "linux.resources.pids.limit"),
            (
                json!({"network": {"classID": 1}}),
                "linux.resources.network.classID",
            ),
            (
                json!({"network": {"priorities": [{"name": "lo", "priority": 1}]}}),
                "linux.resources.network.priorities",
            ),
            (
                json!({"rdma": {"mlx5_0": {"hcaHandles": 1}}}),
                "linux.resources.rdma",
            ),
            (
                json!({"devices": [{"allow": false, "access": "rwm"}]}),
                "linux.resources.devices",
            ),
            (
                json!({"unified": {"memory.high": "1000000"}}),
                "linux.resources.unified[\"memory.high\"]",
            ),
        ] {
            assert_eq!(verdict(&bare, v.clone()), setting, "{v}");
        }
        // What this host does offer passes: kernel memory settings (dropped
        // with a warning where unenforceable, see `enforceable`), a
        // unified key of a controller on the cgroup2 side.
        for v in [
            json!({"memory": {"limit": 1 << 30, "kernel": 1 << 20, "kernelTCP": 1 << 20}}),
            json!({"memory": {"useHierarchy": true}}),
            json!({"cpu": {"shares": 512, "quota": 50000, "period": 100000, "idle": 1}}),
            json!({"unified": {"hugetlb.2MB.max": "0"}}),
            json!({"devices": []}),
        ] {
            assert_eq!(verdict(&bare, v.clone()), "ok", "{v}");
        }
        // With the controllers and files, the same settings pass.
        let (_d2, full) = fake_host(
            &[
                ("memory", &["memory.memsw.usage_in_bytes"]),
                ("cpu", &["cpu.rt_runtime_us"]),
                ("pids", &[]),
                ("net_cls", &[]),
                ("net_prio", &[]),
                ("rdma", &[]),
                ("devices", &[]),
            ],
            Some("hugetlb memory"),
        );
        for v in [
            json!({"memory": {"limit": 1i64 << 30, "swap": 2i64 << 30}}),
            json!({"cpu": {"realtimeRuntime": 1000, "realtimePeriod": 100000}}),
            json!({"pids": {"limit": 10}}),
            json!({"network": {"classID": 1, "priorities": [{"name": "lo", "priority": 1}]}}),
            json!({"rdma": {"mlx5_0": {"hcaHandles": 1}}}),
            json!({"devices": [{"allow": false, "access": "rwm"}]}),
            json!({"unified": {"memory.high": "1000000"}}),
        ] {
            assert_eq!(verdict(&full, v.clone()), "ok", "{v}");
        }
        // cgroup v2 has no v1-only knobs.
        let d3 = tempfile::tempdir().unwrap();
        std::fs::write(d3.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        let v2 = Host::unified_at(d3.path());
        for (v, setting) in [
            (
                json!({"memory": {"swappiness": 10}}),
                "linux.resources.memory.swappiness",
            ),
            (
                json!({"memory": {"disableOOMKiller": true}}),
                "linux.resources.memory.disableOOMKiller",
            ),
            (
                json!({"network": {"classID": 1}}),
                "linux.resources.network.classID",
            ),
            (
                json!({"cpu": {"realtimeRuntime": 1000}}),
                "linux.resources.cpu.realtimeRuntime",
            ),
        ] {
            assert_eq!(verdict(&v2, v.clone()), setting, "{v}");
        }
        assert_eq!(
            verdict(&v2, json!({"devices": [{"allow": false, "access": "rwm"}]})),
            "ok"
        );
    }

    #[test]
    fn page_sizes() {
        assert_eq!(parse_page_size("2MB").unwrap(), 2048);
        assert_eq!(parse_page_size("1GB").unwrap(), 1024 * 1024);
        assert_eq!(parse_page_size("64KB").unwrap(), 64);
        assert!(parse_page_size("3MB").is_err());
        assert!(parse_page_size("2M").is_err());
        assert!(parse_page_size("MB").is_err());
    }
}
