//! Statistics in the JSON shape of runc's `types.Stats` (what
//! `runc events --stats` prints under `data`), read from the cgroup files
//! of v1 or v2. A file the host lacks leaves its field at zero or out.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::host::CgroupMode;
use crate::Cgroup;

fn read(dir: &Path, file: &str) -> Option<String> {
    fs::read_to_string(dir.join(file)).ok()
}

/// A single number; `max` reads as `u64::MAX` (as runc reports it).
fn num(dir: &Path, file: &str) -> u64 {
    read(dir, file).map_or(0, |s| parse_num(s.trim()))
}

fn parse_num(s: &str) -> u64 {
    if s == "max" {
        u64::MAX
    } else {
        s.parse().unwrap_or(0)
    }
}

fn flat(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    read(dir, file)
        .map(|s| {
            s.lines()
                .filter_map(|l| {
                    let mut it = l.split_whitespace();
                    Some((it.next()?.to_string(), parse_num(it.next()?)))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn list(dir: &Path, file: &str) -> Vec<u64> {
    read(dir, file)
        .map(|s| s.split_whitespace().map(parse_num).collect())
        .unwrap_or_default()
}

fn entry(limit: u64, usage: u64, max: u64, failcnt: u64) -> Value {
    json!({"limit": limit, "usage": usage, "max": max, "failcnt": failcnt})
}

/// `MAJ:MIN Op Value` lines (v1 blkio files) as runc's BlkioStatEntry list.
fn blkio_entries(dir: &Path, file: &str) -> Option<Vec<Value>> {
    let text = read(dir, file)?;
    Some(
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() != 3 {
                    return None;
                }
                let (maj, min) = f[0].split_once(':')?;
                Some(json!({
                    "major": maj.parse::<u64>().ok()?,
                    "minor": min.parse::<u64>().ok()?,
                    "op": f[1],
                    "value": f[2].parse::<u64>().ok()?,
                }))
            })
            .collect(),
    )
}

fn clk_tck() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |v| v as u64)
}

/// The page sizes the host offers, as runc names them (`2MB`, `1GB`).
fn page_sizes() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir("/sys/kernel/mm/hugepages") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(kb) = name
                .strip_prefix("hugepages-")
                .and_then(|s| s.strip_suffix("kB"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            out.push(if kb >= 1 << 20 {
                format!("{}GB", kb >> 20)
            } else if kb >= 1 << 10 {
                format!("{}MB", kb >> 10)
            } else {
                format!("{kb}KB")
            });
        }
    }
    out.sort();
    out
}

fn non_empty(map: &mut Map<String, Value>, key: &str, v: Vec<Value>) {
    if !v.is_empty() {
        map.insert(key.into(), Value::Array(v));
    }
}

pub(crate) fn collect(cg: &Cgroup) -> Value {
    if cg.host.mode == CgroupMode::Unified {
        match cg.v2_dir() {
            Some(d) => v2(&d),
            None => json!({}),
        }
    } else {
        v1(cg)
    }
}

fn hugetlb_v2(dir: &Path) -> Value {
    let mut h = Map::new();
    for size in page_sizes() {
        if !dir.join(format!("hugetlb.{size}.current")).exists() {
            continue;
        }
        let events = flat(dir, &format!("hugetlb.{size}.events"));
        h.insert(
            size.clone(),
            json!({
                "usage": num(dir, &format!("hugetlb.{size}.current")),
                "failcnt": events.get("max").copied().unwrap_or(0),
            }),
        );
    }
    Value::Object(h)
}

fn v1(cg: &Cgroup) -> Value {
    let mut out = Map::new();

    // cpu: usage from cpuacct, throttling from cpu.
    let mut usage = Map::new();
    if let Some(d) = cg.v1_dir("cpuacct").filter(|d| d.exists()) {
        usage.insert("total".into(), json!(num(&d, "cpuacct.usage")));
        for (key, file) in [
            ("percpu", "cpuacct.usage_percpu"),
            ("percpu_kernel", "cpuacct.usage_percpu_sys"),
            ("percpu_user", "cpuacct.usage_percpu_user"),
        ] {
            let l = list(&d, file);
            if !l.is_empty() {
                usage.insert(key.into(), json!(l));
            }
        }
        let (kernel, user) = if d.join("cpuacct.usage_sys").exists() {
            (num(&d, "cpuacct.usage_sys"), num(&d, "cpuacct.usage_user"))
        } else {
            let st = flat(&d, "cpuacct.stat");
            let ns = 1_000_000_000 / clk_tck();
            (
                st.get("system").copied().unwrap_or(0) * ns,
                st.get("user").copied().unwrap_or(0) * ns,
            )
        };
        usage.insert("kernel".into(), json!(kernel));
        usage.insert("user".into(), json!(user));
    }
    let mut throttling = Map::new();
    if let Some(d) = cg.v1_dir("cpu").filter(|d| d.exists()) {
        let st = flat(&d, "cpu.stat");
        throttling.insert(
            "periods".into(),
            json!(st.get("nr_periods").copied().unwrap_or(0)),
        );
        throttling.insert(
            "throttledPeriods".into(),
            json!(st.get("nr_throttled").copied().unwrap_or(0)),
        );
        throttling.insert(
            "throttledTime".into(),
            json!(st.get("throttled_time").copied().unwrap_or(0)),
        );
    }
    out.insert(
        "cpu".into(),
        json!({"usage": usage, "throttling": throttling}),
    );

    // memory
    let mut memory = Map::new();
    if let Some(d) = cg.v1_dir("memory").filter(|d| d.exists()) {
        let data = |p: &str| {
            entry(
                num(&d, &format!("{p}.limit_in_bytes")),
                num(&d, &format!("{p}.usage_in_bytes")),
                num(&d, &format!("{p}.max_usage_in_bytes")),
                num(&d, &format!("{p}.failcnt")),
            )
        };
        let raw = flat(&d, "memory.stat");
        memory.insert(
            "cache".into(),
            json!(raw.get("cache").copied().unwrap_or(0)),
        );
        memory.insert("usage".into(), data("memory"));
        memory.insert("swap".into(), data("memory.memsw"));
        memory.insert("kernel".into(), data("memory.kmem"));
        memory.insert("kernelTCP".into(), data("memory.kmem.tcp"));
        memory.insert("raw".into(), json!(raw));
    }
    out.insert("memory".into(), Value::Object(memory));

    // pids
    let mut pids = Map::new();
    if let Some(d) = cg.v1_dir("pids").filter(|d| d.exists()) {
        pids.insert("current".into(), json!(num(&d, "pids.current")));
        let limit = num(&d, "pids.max");
        pids.insert(
            "limit".into(),
            json!(if limit == u64::MAX { 0 } else { limit }),
        );
    }
    out.insert("pids".into(), Value::Object(pids));

    // blkio: throttle counters see every device; BFQ's and CFQ's only
    // the devices they schedule.
    let mut blkio = Map::new();
    if let Some(d) = cg.v1_dir("blkio").filter(|d| d.exists()) {
        let pick = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| blkio_entries(&d, n))
                .unwrap_or_default()
        };
        non_empty(
            &mut blkio,
            "ioServiceBytesRecursive",
            pick(&[
                "blkio.throttle.io_service_bytes_recursive",
                "blkio.bfq.io_service_bytes_recursive",
                "blkio.io_service_bytes_recursive",
            ]),
        );
        non_empty(
            &mut blkio,
            "ioServicedRecursive",
            pick(&[
                "blkio.throttle.io_serviced_recursive",
                "blkio.bfq.io_serviced_recursive",
                "blkio.io_serviced_recursive",
            ]),
        );
        for (key, file) in [
            ("ioQueueRecursive", "blkio.io_queued_recursive"),
            ("ioServiceTimeRecursive", "blkio.io_service_time_recursive"),
            ("ioWaitTimeRecursive", "blkio.io_wait_time_recursive"),
            ("ioMergedRecursive", "blkio.io_merged_recursive"),
        ] {
            non_empty(&mut blkio, key, pick(&[file]));
        }
    }
    out.insert("blkio".into(), Value::Object(blkio));

    // hugetlb: v1 controller, or the cgroup2 side of a hybrid host.
    let hugetlb = match cg.v1_dir("hugetlb").filter(|d| d.exists()) {
        Some(d) => {
            let mut h = Map::new();
            for size in page_sizes() {
                let p = format!("hugetlb.{size}");
                if !d.join(format!("{p}.usage_in_bytes")).exists() {
                    continue;
                }
                h.insert(
                    size.clone(),
                    json!({
                        "usage": num(&d, &format!("{p}.usage_in_bytes")),
                        "max": num(&d, &format!("{p}.max_usage_in_bytes")),
                        "failcnt": num(&d, &format!("{p}.failcnt")),
                    }),
                );
            }
            Value::Object(h)
        }
        None => cg
            .v2_dir()
            .filter(|d| d.exists())
            .map_or(json!({}), |d| hugetlb_v2(&d)),
    };
    out.insert("hugetlb".into(), hugetlb);
    Value::Object(out)
}

fn v2(d: &Path) -> Value {
    let st = flat(d, "cpu.stat");
    let g = |k: &str| st.get(k).copied().unwrap_or(0);
    let cpu = json!({
        "usage": {
            "total": g("usage_usec") * 1000,
            "kernel": g("system_usec") * 1000,
            "user": g("user_usec") * 1000,
        },
        "throttling": {
            "periods": g("nr_periods"),
            "throttledPeriods": g("nr_throttled"),
            "throttledTime": g("throttled_usec") * 1000,
        },
    });

    let mut memory = Map::new();
    if d.join("memory.current").exists() {
        let raw = flat(d, "memory.stat");
        let events = flat(d, "memory.events");
        let usage = num(d, "memory.current");
        let limit = num(d, "memory.max");
        memory.insert("cache".into(), json!(raw.get("file").copied().unwrap_or(0)));
        memory.insert(
            "usage".into(),
            entry(
                limit,
                usage,
                num(d, "memory.peak"),
                events.get("max").copied().unwrap_or(0),
            ),
        );
        // runc reports v2 swap as memory+swap, like v1's memsw.
        if d.join("memory.swap.current").exists() {
            let swap_events = flat(d, "memory.swap.events");
            let swap_max = num(d, "memory.swap.max");
            memory.insert(
                "swap".into(),
                entry(
                    if limit == u64::MAX || swap_max == u64::MAX {
                        u64::MAX
                    } else {
                        limit + swap_max
                    },
                    usage + num(d, "memory.swap.current"),
                    0,
                    swap_events.get("fail").copied().unwrap_or(0),
                ),
            );
        }
        memory.insert("raw".into(), json!(raw));
    }

    let mut pids = Map::new();
    if d.join("pids.current").exists() {
        pids.insert("current".into(), json!(num(d, "pids.current")));
        let limit = num(d, "pids.max");
        pids.insert(
            "limit".into(),
            json!(if limit == u64::MAX { 0 } else { limit }),
        );
    }

    let mut blkio = Map::new();
    if let Some(text) = read(d, "io.stat") {
        let mut bytes = Vec::new();
        let mut ios = Vec::new();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let Some((maj, min)) = it.next().and_then(|dev| dev.split_once(':')) else {
                continue;
            };
            let (Ok(maj), Ok(min)) = (maj.parse::<u64>(), min.parse::<u64>()) else {
                continue;
            };
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let v: u64 = v.parse().unwrap_or(0);
                let e = |op: &str| json!({"major": maj, "minor": min, "op": op, "value": v});
                match k {
                    "rbytes" => bytes.push(e("Read")),
                    "wbytes" => bytes.push(e("Write")),
                    "rios" => ios.push(e("Read")),
                    "wios" => ios.push(e("Write")),
                    _ => {}
                }
            }
        }
        non_empty(&mut blkio, "ioServiceBytesRecursive", bytes);
        non_empty(&mut blkio, "ioServicedRecursive", ios);
    }

    json!({
        "cpu": cpu,
        "memory": memory,
        "pids": pids,
        "blkio": blkio,
        "hugetlb": hugetlb_v2(d),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_shape_from_fake_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let put = |f: &str, s: &str| fs::write(d.join(f), s).unwrap();
        put("cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 3\nnr_throttled 1\nthrottled_usec 7\n");
        put("memory.current", "4096\n");
        put("memory.max", "max\n");
        put("memory.stat", "anon 1\nfile 8192\n");
        put("memory.events", "low 0\nhigh 0\nmax 2\noom 0\n");
        put("pids.current", "3\n");
        put("pids.max", "100\n");
        put(
            "io.stat",
            "8:0 rbytes=512 wbytes=1024 rios=1 wios=2 dbytes=0 dios=0\n",
        );
        let v = v2(d);
        assert_eq!(v["cpu"]["usage"]["total"], 10_000);
        assert_eq!(v["cpu"]["usage"]["kernel"], 4_000);
        assert_eq!(v["cpu"]["throttling"]["throttledPeriods"], 1);
        assert_eq!(v["memory"]["usage"]["usage"], 4096);
        assert_eq!(v["memory"]["usage"]["limit"], u64::MAX);
        assert_eq!(v["memory"]["usage"]["failcnt"], 2);
        assert_eq!(v["memory"]["cache"], 8192);
        assert_eq!(v["pids"]["limit"], 100);
        let b = &v["blkio"]["ioServiceBytesRecursive"];
        assert_eq!(
            b[0],
            json!({"major": 8, "minor": 0, "op": "Read", "value": 512})
        );
        assert_eq!(v["blkio"]["ioServicedRecursive"][1]["op"], "Write");
    }

    #[test]
    fn v1_blkio_lines() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("f"),
            "254:0 Read 4096\n254:0 Write 0\n254:0 Total 4096\nTotal 4096\n",
        )
        .unwrap();
        let e = blkio_entries(dir.path(), "f").unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0],
            json!({"major": 254, "minor": 0, "op": "Read", "value": 4096})
        );
    }
}
