//! `vessel events --stats` (runc's JSON shape) as containerd's cgroup
//! metrics, which `ctr task metrics` and the CRI read.

use containerd_shim::protos::cgroups::metrics::{
    BlkIOEntry, BlkIOStat, CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat, Throttle,
};
use serde_json::Value;

/// The type URL containerd registers for cgroup v1 metrics.
pub const METRICS_TYPE_URL: &str = "io.containerd.cgroups.v1.Metrics";

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn entry(v: &Value) -> MemoryEntry {
    MemoryEntry {
        limit: u(&v["limit"]),
        usage: u(&v["usage"]),
        max: u(&v["max"]),
        failcnt: u(&v["failcnt"]),
        ..Default::default()
    }
}

fn blkio(v: &Value) -> Vec<BlkIOEntry> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|e| BlkIOEntry {
                    op: e["op"].as_str().unwrap_or_default().to_string(),
                    major: u(&e["major"]),
                    minor: u(&e["minor"]),
                    value: u(&e["value"]),
                    ..Default::default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Converts the `data` object of `vessel events --stats`.
pub fn from_vessel_stats(d: &Value) -> Metrics {
    let cpu = &d["cpu"];
    let mem = &d["memory"];
    let raw = &mem["raw"];
    let r = |k: &str| u(&raw[k]);
    let percpu = cpu["usage"]["percpu"]
        .as_array()
        .map(|a| a.iter().map(u).collect())
        .unwrap_or_default();
    Metrics {
        pids: Some(PidsStat {
            current: u(&d["pids"]["current"]),
            limit: u(&d["pids"]["limit"]),
            ..Default::default()
        })
        .into(),
        cpu: Some(CPUStat {
            usage: Some(CPUUsage {
                total: u(&cpu["usage"]["total"]),
                kernel: u(&cpu["usage"]["kernel"]),
                user: u(&cpu["usage"]["user"]),
                per_cpu: percpu,
                ..Default::default()
            })
            .into(),
            throttling: Some(Throttle {
                periods: u(&cpu["throttling"]["periods"]),
                throttled_periods: u(&cpu["throttling"]["throttledPeriods"]),
                throttled_time: u(&cpu["throttling"]["throttledTime"]),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        memory: Some(MemoryStat {
            cache: u(&mem["cache"]),
            rss: r("rss").max(r("anon")),
            rss_huge: r("rss_huge").max(r("anon_thp")),
            mapped_file: r("mapped_file").max(r("file_mapped")),
            dirty: r("dirty").max(r("file_dirty")),
            writeback: r("writeback").max(r("file_writeback")),
            pg_fault: r("pgfault"),
            pg_maj_fault: r("pgmajfault"),
            inactive_anon: r("inactive_anon"),
            active_anon: r("active_anon"),
            inactive_file: r("inactive_file"),
            active_file: r("active_file"),
            unevictable: r("unevictable"),
            hierarchical_memory_limit: r("hierarchical_memory_limit"),
            total_rss: r("total_rss"),
            total_cache: r("total_cache"),
            usage: Some(entry(&mem["usage"])).into(),
            swap: Some(entry(&mem["swap"])).into(),
            kernel: Some(entry(&mem["kernel"])).into(),
            kernel_tcp: Some(entry(&mem["kernelTCP"])).into(),
            ..Default::default()
        })
        .into(),
        blkio: Some(BlkIOStat {
            io_service_bytes_recursive: blkio(&d["blkio"]["ioServiceBytesRecursive"]),
            io_serviced_recursive: blkio(&d["blkio"]["ioServicedRecursive"]),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_shaped_stats() {
        let d = serde_json::json!({
            "cpu": {"usage": {"total": 5000, "kernel": 1000, "user": 4000, "percpu": [3000, 2000]},
                    "throttling": {"periods": 3, "throttledPeriods": 1, "throttledTime": 9}},
            "memory": {"cache": 10, "usage": {"limit": 67108864, "usage": 4096, "max": 8192, "failcnt": 0},
                       "raw": {"rss": 2048, "pgfault": 7}},
            "pids": {"current": 2, "limit": 64},
            "blkio": {"ioServiceBytesRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 512}]}
        });
        let m = from_vessel_stats(&d);
        assert_eq!(m.cpu.usage.total, 5000);
        assert_eq!(m.cpu.usage.per_cpu, vec![3000, 2000]);
        assert_eq!(m.cpu.throttling.throttled_periods, 1);
        assert_eq!(m.memory.usage.limit, 67108864);
        assert_eq!(m.memory.rss, 2048);
        assert_eq!(m.memory.pg_fault, 7);
        assert_eq!(m.pids.current, 2);
        assert_eq!(m.pids.limit, 64);
        assert_eq!(m.blkio.io_service_bytes_recursive[0].value, 512);
    }
}
