//! The block IO mappings vessel writes itself, because libcgroups 0.7
//! skips or mis-maps them: on v1 it ignores `leafWeight` and
//! `weightDevice` silently; on v2 its weight conversion overflows a `u16`
//! and it has no `io.weight` fallback for per-device weights.
//!
//! Each function returns the list of writes (file, value, setting) so the
//! mapping can be checked without a kernel.

use std::path::Path;

use oci_spec::runtime::LinuxBlockIo;

use crate::CgroupError;

/// One write into a cgroup interface file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWrite {
    /// Interface file name inside the cgroup directory.
    pub file: String,
    /// What is written (one line).
    pub value: String,
    /// The `linux.resources` setting it comes from (for errors).
    pub setting: String,
}

fn w(file: &str, value: String, setting: String) -> FileWrite {
    FileWrite {
        file: file.to_string(),
        value,
        setting,
    }
}

fn unsupported(setting: String, msg: &str) -> CgroupError {
    CgroupError::Unsupported {
        setting,
        msg: msg.to_string(),
    }
}

/// Converts an OCI (CFQ-style) block IO weight in [10, 1000] to the cgroup
/// v2 `io.weight` range [1, 10000], linearly, as runc does.
pub fn v2_io_weight(weight: u16) -> u32 {
    if weight == 0 {
        return 0;
    }
    let w = u32::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// One throttle list: OCI name, v1 file, v2 `io.max` key, (major, minor, rate).
type Throttle = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(i64, i64, u64)>,
);

/// The throttle lists of `bio` with their OCI names and their v1 file and
/// v2 `io.max` key.
fn throttles(bio: &LinuxBlockIo) -> [Throttle; 4] {
    let list = |v: &Option<Vec<oci_spec::runtime::LinuxThrottleDevice>>| {
        v.iter()
            .flatten()
            .map(|d| (d.major(), d.minor(), d.rate()))
            .collect::<Vec<_>>()
    };
    [
        (
            "throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
            "rbps",
            list(bio.throttle_read_bps_device()),
        ),
        (
            "throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            "wbps",
            list(bio.throttle_write_bps_device()),
        ),
        (
            "throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            "riops",
            list(bio.throttle_read_iops_device()),
        ),
        (
            "throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            "wiops",
            list(bio.throttle_write_iops_device()),
        ),
    ]
}

/// The cgroup v1 blkio writes for `bio`; `has(file)` tells whether the
/// cgroup directory has an interface file.
///
/// weight: `blkio.weight` (CFQ) or else `blkio.bfq.weight` (same range);
/// leafWeight: `blkio.leaf_weight` (CFQ only); weightDevice:
/// `blkio.weight_device` or else `blkio.bfq.weight_device` (`MAJ:MIN W`);
/// throttles: `blkio.throttle.*_device` (`MAJ:MIN RATE`, 0 removes).
pub fn v1_blkio_writes(
    bio: &LinuxBlockIo,
    has: &dyn Fn(&str) -> bool,
) -> Result<Vec<FileWrite>, CgroupError> {
    let mut out = Vec::new();
    let weight_file = if has("blkio.weight") {
        Some("blkio.weight")
    } else if has("blkio.bfq.weight") {
        Some("blkio.bfq.weight")
    } else {
        None
    };
    if let Some(weight) = bio.weight().filter(|x| *x != 0) {
        let setting = "linux.resources.blockIO.weight".to_string();
        let file = weight_file.ok_or_else(|| {
            unsupported(
                setting.clone(),
                "neither blkio.weight nor blkio.bfq.weight exists",
            )
        })?;
        out.push(w(file, weight.to_string(), setting));
    }
    if let Some(leaf) = bio.leaf_weight().filter(|x| *x != 0) {
        let setting = "linux.resources.blockIO.leafWeight".to_string();
        if !has("blkio.leaf_weight") {
            return Err(unsupported(
                setting,
                "blkio.leaf_weight does not exist (CFQ only; BFQ has no leaf weight)",
            ));
        }
        out.push(w("blkio.leaf_weight", leaf.to_string(), setting));
    }
    for (i, d) in bio.weight_device().iter().flatten().enumerate() {
        let base = format!("linux.resources.blockIO.weightDevice[{i}]");
        if let Some(weight) = d.weight().filter(|x| *x != 0) {
            let setting = format!("{base}.weight");
            let file = if has("blkio.weight_device") {
                "blkio.weight_device"
            } else if has("blkio.bfq.weight_device") {
                "blkio.bfq.weight_device"
            } else {
                return Err(unsupported(
                    setting,
                    "neither blkio.weight_device nor blkio.bfq.weight_device exists",
                ));
            };
            out.push(w(
                file,
                format!("{}:{} {weight}", d.major(), d.minor()),
                setting,
            ));
        }
        if let Some(leaf) = d.leaf_weight().filter(|x| *x != 0) {
            let setting = format!("{base}.leafWeight");
            if !has("blkio.leaf_weight_device") {
                return Err(unsupported(
                    setting,
                    "blkio.leaf_weight_device does not exist (CFQ only)",
                ));
            }
            out.push(w(
                "blkio.leaf_weight_device",
                format!("{}:{} {leaf}", d.major(), d.minor()),
                setting,
            ));
        }
    }
    for (name, file, _, list) in throttles(bio) {
        for (i, (maj, min, rate)) in list.into_iter().enumerate() {
            out.push(w(
                file,
                format!("{maj}:{min} {rate}"),
                format!("linux.resources.blockIO.{name}[{i}]"),
            ));
        }
    }
    Ok(out)
}

/// The cgroup v2 io writes for `bio`; `has(file)` tells whether the cgroup
/// directory has an interface file.
///
/// weight: `io.bfq.weight` (BFQ, same [1, 1000] range, written as is) or
/// else `io.weight` (`default N`, converted to [1, 10000]); weightDevice:
/// the same files with `MAJ:MIN W`; leafWeight: refused (v2 has none);
/// throttles: `io.max` `MAJ:MIN rbps=N` (0 is written as `max`).
pub fn v2_io_writes(
    bio: &LinuxBlockIo,
    has: &dyn Fn(&str) -> bool,
) -> Result<Vec<FileWrite>, CgroupError> {
    let mut out = Vec::new();
    let bfq = has("io.bfq.weight");
    let iow = has("io.weight");
    if let Some(weight) = bio.weight().filter(|x| *x != 0) {
        let setting = "linux.resources.blockIO.weight".to_string();
        if bfq {
            out.push(w("io.bfq.weight", weight.to_string(), setting));
        } else if iow {
            out.push(w(
                "io.weight",
                format!("default {}", v2_io_weight(weight)),
                setting,
            ));
        } else {
            return Err(unsupported(
                setting,
                "neither io.bfq.weight (BFQ) nor io.weight (io.cost) exists",
            ));
        }
    }
    if bio.leaf_weight().is_some_and(|x| x != 0) {
        return Err(unsupported(
            "linux.resources.blockIO.leafWeight".into(),
            "cgroup v2 has no leaf weight",
        ));
    }
    for (i, d) in bio.weight_device().iter().flatten().enumerate() {
        let base = format!("linux.resources.blockIO.weightDevice[{i}]");
        if let Some(weight) = d.weight().filter(|x| *x != 0) {
            let setting = format!("{base}.weight");
            if bfq {
                out.push(w(
                    "io.bfq.weight",
                    format!("{}:{} {weight}", d.major(), d.minor()),
                    setting,
                ));
            } else if iow {
                out.push(w(
                    "io.weight",
                    format!("{}:{} {}", d.major(), d.minor(), v2_io_weight(weight)),
                    setting,
                ));
            } else {
                return Err(unsupported(
                    setting,
                    "neither io.bfq.weight nor io.weight exists",
                ));
            }
        }
        if d.leaf_weight().is_some_and(|x| x != 0) {
            return Err(unsupported(
                format!("{base}.leafWeight"),
                "cgroup v2 has no leaf weight",
            ));
        }
    }
    for (name, _, key, list) in throttles(bio) {
        for (i, (maj, min, rate)) in list.into_iter().enumerate() {
            let value = if rate == 0 {
                "max".to_string()
            } else {
                rate.to_string()
            };
            out.push(w(
                "io.max",
                format!("{maj}:{min} {key}={value}"),
                format!("linux.resources.blockIO.{name}[{i}]"),
            ));
        }
    }
    Ok(out)
}

/// Performs `plan` in the cgroup directory `dir`, one `write(2)` per line
/// (the kernel parses one line per write).
pub fn write_plan(dir: &Path, plan: &[FileWrite]) -> Result<(), CgroupError> {
    for w in plan {
        let file = dir.join(&w.file);
        crate::write_file(&file, &w.value).map_err(|e| CgroupError::Write {
            setting: w.setting.clone(),
            file: file.clone(),
            value: w.value.clone(),
            msg: e.to_string(),
        })?;
    }
    Ok(())
}

/// Maps and writes `bio` into the cgroup v1 blkio directory `dir`.
pub fn apply_v1_blkio(dir: &Path, bio: &LinuxBlockIo) -> Result<(), CgroupError> {
    let plan = v1_blkio_writes(bio, &|f| dir.join(f).exists())?;
    write_plan(dir, &plan)
}

/// Maps and writes `bio` into the cgroup v2 directory `dir`.
pub fn apply_v2_io(dir: &Path, bio: &LinuxBlockIo) -> Result<(), CgroupError> {
    let plan = v2_io_writes(bio, &|f| dir.join(f).exists())?;
    write_plan(dir, &plan)
}

/// The `linux.resources` setting a cgroup interface file carries, to name
/// it in errors the kernel gives for files libcgroups wrote.
pub fn setting_for_file(file: &str) -> Option<&'static str> {
    Some(match file {
        "cpu.shares" | "cpu.weight" => "linux.resources.cpu.shares",
        "cpu.cfs_quota_us" | "cpu.max" => "linux.resources.cpu.quota",
        "cpu.cfs_period_us" => "linux.resources.cpu.period",
        "cpu.cfs_burst_us" | "cpu.max.burst" => "linux.resources.cpu.burst",
        "cpu.rt_runtime_us" => "linux.resources.cpu.realtimeRuntime",
        "cpu.rt_period_us" => "linux.resources.cpu.realtimePeriod",
        "cpu.idle" => "linux.resources.cpu.idle",
        "cpuset.cpus" => "linux.resources.cpu.cpus",
        "cpuset.mems" => "linux.resources.cpu.mems",
        "memory.limit_in_bytes" | "memory.max" => "linux.resources.memory.limit",
        "memory.soft_limit_in_bytes" | "memory.low" => "linux.resources.memory.reservation",
        "memory.memsw.limit_in_bytes" | "memory.swap.max" => "linux.resources.memory.swap",
        "memory.swappiness" => "linux.resources.memory.swappiness",
        "memory.kmem.limit_in_bytes" => "linux.resources.memory.kernel",
        "memory.kmem.tcp.limit_in_bytes" => "linux.resources.memory.kernelTCP",
        "memory.oom_control" => "linux.resources.memory.disableOOMKiller",
        "pids.max" => "linux.resources.pids.limit",
        "devices.allow" | "devices.deny" => "linux.resources.devices",
        _ if file.starts_with("hugetlb.") => "linux.resources.hugepageLimits",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
    };

    fn bio() -> LinuxBlockIo {
        LinuxBlockIoBuilder::default()
            .weight(500u16)
            .weight_device(vec![LinuxWeightDeviceBuilder::default()
                .major(8)
                .minor(0)
                .weight(300u16)
                .build()
                .unwrap()])
            .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                .major(8)
                .minor(0)
                .rate(1_048_576u64)
                .build()
                .unwrap()])
            .throttle_write_iops_device(vec![LinuxThrottleDeviceBuilder::default()
                .major(8)
                .minor(16)
                .rate(0u64)
                .build()
                .unwrap()])
            .build()
            .unwrap()
    }

    #[test]
    fn v2_files_in_a_fake_cgroup_root() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("c1");
        std::fs::create_dir(&dir).unwrap();
        for f in ["io.weight", "io.max"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let b = LinuxBlockIoBuilder::default()
            .weight(1000u16)
            .build()
            .unwrap();
        apply_v2_io(&dir, &b).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("io.weight")).unwrap(),
            "default 10000"
        );
        let t = LinuxBlockIoBuilder::default()
            .throttle_write_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                .major(259)
                .minor(1)
                .rate(4096u64)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        apply_v2_io(&dir, &t).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("io.max")).unwrap(),
            "259:1 wbps=4096"
        );
        // With BFQ's file present, the OCI weight is written unconverted.
        std::fs::write(dir.join("io.bfq.weight"), "").unwrap();
        let b = LinuxBlockIoBuilder::default()
            .weight(250u16)
            .build()
            .unwrap();
        apply_v2_io(&dir, &b).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("io.bfq.weight")).unwrap(),
            "250"
        );
        // Nothing to write to: a clear error naming the setting and file.
        let gone = root.path().join("missing");
        std::fs::create_dir(&gone).unwrap();
        // (a directory where the file should be: the write fails even as root)
        std::fs::create_dir(gone.join("io.weight")).unwrap();
        let b = LinuxBlockIoBuilder::default()
            .weight(100u16)
            .build()
            .unwrap();
        let e = apply_v2_io(&gone, &b).unwrap_err().to_string();
        assert!(
            e.contains("linux.resources.blockIO.weight") && e.contains("io.weight"),
            "{e}"
        );
        assert_eq!(
            setting_for_file("cpu.rt_runtime_us"),
            Some("linux.resources.cpu.realtimeRuntime")
        );
        assert_eq!(
            setting_for_file("hugetlb.2MB.max"),
            Some("linux.resources.hugepageLimits")
        );
    }

    #[test]
    fn weight_conversion() {
        assert_eq!(v2_io_weight(0), 0);
        assert_eq!(v2_io_weight(10), 1);
        assert_eq!(v2_io_weight(1000), 10000);
        assert_eq!(v2_io_weight(500), 1 + 490 * 9999 / 990);
        assert_eq!(v2_io_weight(100), 1 + 90 * 9999 / 990);
    }

    #[test]
    fn v1_prefers_cfq_then_bfq() {
        let plan = v1_blkio_writes(&bio(), &|f| {
            f.starts_with("blkio.bfq") || f.starts_with("blkio.throttle")
        })
        .unwrap();
        let files: Vec<_> = plan
            .iter()
            .map(|p| (p.file.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            files,
            vec![
                ("blkio.bfq.weight", "500"),
                ("blkio.bfq.weight_device", "8:0 300"),
                ("blkio.throttle.read_bps_device", "8:0 1048576"),
                ("blkio.throttle.write_iops_device", "8:16 0"),
            ]
        );
        let cfq = v1_blkio_writes(&bio(), &|_| true).unwrap();
        assert_eq!(cfq[0].file, "blkio.weight");
        assert_eq!(cfq[1].file, "blkio.weight_device");
        let err = v1_blkio_writes(&bio(), &|_| false).unwrap_err().to_string();
        assert!(err.contains("linux.resources.blockIO.weight"), "{err}");
    }

    #[test]
    fn v1_leaf_weight_refused_without_cfq() {
        let b = LinuxBlockIoBuilder::default()
            .leaf_weight(200u16)
            .build()
            .unwrap();
        let err = v1_blkio_writes(&b, &|f| f.starts_with("blkio.bfq")).unwrap_err();
        assert!(err.to_string().contains("leafWeight"), "{err}");
        let ok = v1_blkio_writes(&b, &|_| true).unwrap();
        assert_eq!(ok[0].file, "blkio.leaf_weight");
    }

    #[test]
    fn v2_bfq_then_io_weight() {
        let plan = v2_io_writes(&bio(), &|f| f == "io.bfq.weight").unwrap();
        let files: Vec<_> = plan
            .iter()
            .map(|p| (p.file.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            files,
            vec![
                ("io.bfq.weight", "500"),
                ("io.bfq.weight", "8:0 300"),
                ("io.max", "8:0 rbps=1048576"),
                ("io.max", "8:16 wiops=max"),
            ]
        );
        let plan = v2_io_writes(&bio(), &|f| f == "io.weight").unwrap();
        assert_eq!(plan[0].value, format!("default {}", v2_io_weight(500)));
        assert_eq!(plan[1].value, format!("8:0 {}", v2_io_weight(300)));
        let err = v2_io_writes(&bio(), &|_| false).unwrap_err().to_string();
        assert!(err.contains("blockIO.weight"), "{err}");
        let leaf = LinuxBlockIoBuilder::default()
            .leaf_weight(100u16)
            .build()
            .unwrap();
        assert!(v2_io_writes(&leaf, &|_| true).is_err());
    }
}
