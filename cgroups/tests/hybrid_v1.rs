//! Real cgroups on this host's v1 (hybrid) layout: every setting is applied
//! and read back from the cgroup files; bad input is refused and leaves
//! nothing behind. Each test removes what it created, also on failure.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use common::*;
use serde_json::json;
use vessel_cgroups::blockio_priority::{
    parse_annotations, BANDWIDTH_ANNOTATION, PRIORITY_ANNOTATION,
};
use vessel_cgroups::{validate_on, Cgroup, CgroupError, CgroupMode, CgroupOptions, Host};

/// Tests that toggle host-wide state (hugetlb in the cgroup2 root) take turns.
static HOST_STATE: Mutex<()> = Mutex::new(());

fn v1_host(test: &str) -> Option<Host> {
    if !can_run(test) {
        return None;
    }
    let host = Host::detect().expect("detect cgroup layout");
    if host.mode == CgroupMode::Unified {
        println!("SKIP {test}: this host is cgroup v2, not v1");
        return None;
    }
    Some(host)
}

#[test]
fn every_field_is_written_and_read_back() {
    let Some(host) = v1_host("every_field_is_written_and_read_back") else {
        return;
    };
    let _lock = HOST_STATE.lock().unwrap_or_else(|e| e.into_inner());
    let _subtree = SubtreeGuard::new(&host, "hugetlb");
    let path = unique_path("all");
    let mut g = Guard::new(Cgroup::open(&opts(&path)).expect("open"));
    let pid = g.spawn_sleeper();
    g.cg.add_task(pid).expect("add task");

    let hugetlb = host.has_v1("hugetlb") || host.has_v2("hugetlb");
    let (dmaj, dmin) = host_disk();
    let disk = format!("{dmaj}:{dmin}");
    let mut res = json!({
        "cpu": {
            "shares": 512, "quota": 50000, "period": 100000, "burst": 10000,
            "realtimeRuntime": 10000, "realtimePeriod": 1000000,
            "cpus": "0", "mems": "0", "idle": 0
        },
        "memory": {
            "limit": 268435456_i64, "reservation": 134217728_i64, "swap": 536870912_i64,
            "swappiness": 30, "kernelTCP": 67108864_i64, "disableOOMKiller": true
        },
        "pids": {"limit": 100},
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}
        ],
        "blockIO": {},
        "unified": {"cgroup.max.descendants": "10"}
    });
    // blkio settings exist only where the kernel has them: a weight with
    // CFQ (blkio.weight) or BFQ (blkio.bfq.weight), throttles with
    // CONFIG_BLK_DEV_THROTTLING. Each one the kernel has is tested.
    let has_weight = has_blkio_weight(&host);
    match has_weight {
        true => res["blockIO"]["weight"] = json!(500),
        false => println!(
            "this kernel has neither blkio.weight (CFQ) nor blkio.bfq.weight (BFQ): blockIO.weight not tested (its refusal is, in invalid_values_are_refused_and_leave_nothing)"
        ),
    }
    let throttles: Vec<(&str, &str, u64)> = [
        (
            "throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
            1048576,
        ),
        (
            "throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            2097152,
        ),
        (
            "throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            100,
        ),
        (
            "throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            200,
        ),
    ]
    .into_iter()
    .filter(|(field, file, _)| {
        let has = host.root_has_file("blkio", file);
        if !has {
            println!("this kernel has no {file}: blockIO.{field} not tested");
        }
        has
    })
    .collect();
    for (field, _, rate) in &throttles {
        res["blockIO"][*field] = json!([{"major": dmaj, "minor": dmin, "rate": rate}]);
    }
    if hugetlb {
        res["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 4194304}]);
    } else {
        println!("hugetlb not available on this host: hugepageLimits not tested");
    }
    // Per-device weights need bfq on the device.
    let loopdev = LoopDev::new().filter(|l| l.scheduler == "bfq");
    if let Some(l) = &loopdev {
        res["blockIO"]["weightDevice"] =
            json!([{"major": l.major, "minor": l.minor, "weight": 300}]);
    } else {
        println!("no loop device with bfq: weightDevice not tested");
    }
    let res = resources(res);
    validate_on(&host, &res).expect("valid");
    g.cg.apply(&res, true).expect("apply");

    let cpu = g.cg.v1_dir("cpu").unwrap();
    assert_eq!(read(&cpu, "cpu.shares"), "512");
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
    assert_eq!(read(&cpu, "cpu.cfs_burst_us"), "10000");
    assert_eq!(read(&cpu, "cpu.rt_runtime_us"), "10000");
    assert_eq!(read(&cpu, "cpu.rt_period_us"), "1000000");
    assert_eq!(read(&cpu, "cpu.idle"), "0");
    let cpuset = g.cg.v1_dir("cpuset").unwrap();
    assert_eq!(read(&cpuset, "cpuset.cpus"), "0");
    assert_eq!(read(&cpuset, "cpuset.mems"), "0");

    let mem = g.cg.v1_dir("memory").unwrap();
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "268435456");
    assert_eq!(read(&mem, "memory.soft_limit_in_bytes"), "134217728");
    assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "536870912");
    assert_eq!(read(&mem, "memory.swappiness"), "30");
    assert_eq!(read(&mem, "memory.kmem.tcp.limit_in_bytes"), "67108864");
    assert!(read(&mem, "memory.oom_control").contains("oom_kill_disable 1"));

    let pids = g.cg.v1_dir("pids").unwrap();
    assert_eq!(read(&pids, "pids.max"), "100");

    let devices = g.cg.v1_dir("devices").unwrap();
    let list = read(&devices, "devices.list");
    assert!(list.contains("c 1:3 rw"), "{list}");
    assert!(!list.contains("a *:* rwm"), "{list}");
    assert_eq!(g.cg.v1_paths()["devices"], devices);

    let blkio = g.cg.v1_dir("blkio").unwrap();
    if has_weight {
        let f = if blkio.join("blkio.weight").exists() {
            "blkio.weight"
        } else {
            "blkio.bfq.weight"
        };
        assert!(read(&blkio, f).contains("500"), "{f}");
    }
    for (_, file, rate) in &throttles {
        assert_eq!(read(&blkio, file), format!("{disk} {rate}"), "{file}");
    }
    if let Some(l) = &loopdev {
        let wd = read(&blkio, "blkio.bfq.weight_device");
        assert!(wd.contains(&format!("{}:{} 300", l.major, l.minor)), "{wd}");
    }

    let v2 = g.cg.v2_dir().expect("hybrid cgroup2 side");
    assert_eq!(read(&v2, "cgroup.max.descendants"), "10");
    if hugetlb {
        let (dir, file) = if host.has_v1("hugetlb") {
            (
                g.cg.v1_dir("hugetlb").unwrap(),
                "hugetlb.2MB.limit_in_bytes",
            )
        } else {
            (v2.clone(), "hugetlb.2MB.max")
        };
        assert_eq!(read(&dir, file), "4194304");
    }

    // The task is in every hierarchy, and pids() finds it.
    assert_eq!(g.cg.pids().unwrap(), vec![pid]);
    assert!(read(&v2, "cgroup.procs").contains(&pid.to_string()));

    // Stats in runc's shape.
    let s = g.cg.stats().expect("stats");
    assert_eq!(s["memory"]["usage"]["limit"], 268435456_u64);
    assert_eq!(s["memory"]["swap"]["limit"], 536870912_u64);
    assert!(s["memory"]["raw"].is_object());
    assert!(s["memory"]["kernelTCP"]["limit"].is_u64());
    assert_eq!(s["pids"]["current"], 1);
    assert_eq!(s["pids"]["limit"], 100);
    assert!(s["cpu"]["usage"]["total"].is_u64());
    assert!(s["cpu"]["usage"]["percpu"].is_array());
    assert!(s["cpu"]["throttling"]["periods"].is_u64());
    assert!(s["blkio"].is_object());
    if hugetlb {
        assert!(s["hugetlb"]["2MB"]["usage"].is_u64(), "{s}");
    }

    // Freezer.
    assert!(!g.cg.is_frozen().unwrap());
    g.cg.freeze().expect("freeze");
    assert!(g.cg.is_frozen().unwrap());
    g.cg.thaw().expect("thaw");
    assert!(!g.cg.is_frozen().unwrap());

    // Update: new values replace the old ones.
    let upd = resources(json!({
        "cpu": {"shares": 1024, "quota": -1},
        "memory": {"limit": 536870912_i64, "swap": 1073741824_i64},
        "pids": {"limit": -1}
    }));
    g.cg.apply(&upd, false).expect("update");
    assert_eq!(read(&cpu, "cpu.shares"), "1024");
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "-1");
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "536870912");
    assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "1073741824");
    assert_eq!(read(&pids, "pids.max"), "max");

    g.cg.destroy().expect("destroy");
    assert_nothing_left(&g.cg);
    g.reap();
}

#[test]
fn idle_and_burst_alone_are_not_skipped() {
    let Some(_host) = v1_host("idle_and_burst_alone_are_not_skipped") else {
        return;
    };
    let path = unique_path("idle");
    let g = Guard::new(Cgroup::open(&opts(&path)).expect("open"));
    // libcgroups skips a lone burst on v1; vessel must not.
    g.cg.apply(&resources(json!({"cpu": {"burst": 5000}})), false)
        .expect("burst");
    let cpu = g.cg.v1_dir("cpu").unwrap();
    assert_eq!(read(&cpu, "cpu.cfs_burst_us"), "5000");
    g.cg.apply(&resources(json!({"cpu": {"idle": 1}})), false)
        .expect("idle");
    assert_eq!(read(&cpu, "cpu.idle"), "1");
    // disableOOMKiller without any memory setting.
    g.cg.apply(&resources(json!({})), true).expect("oom");
    let mem = g.cg.v1_dir("memory").unwrap();
    assert!(read(&mem, "memory.oom_control").contains("oom_kill_disable 1"));
}

/// A kernel memory limit is accepted and dropped (no kernel enforces it
/// any more), as runc 1.1 does; the rest of the memory settings apply.
#[test]
fn kernel_memory_is_accepted_and_ignored() {
    let Some(host) = v1_host("kernel_memory_is_accepted_and_ignored") else {
        return;
    };
    let path = unique_path("kmem");
    let g = Guard::new(Cgroup::open(&opts(&path)).expect("open"));
    g.cg.apply(
        &resources(json!({"memory": {"limit": 67108864_i64, "kernel": 1073741824_i64}})),
        false,
    )
    .expect("memory.kernel must not fail the container");
    let mem = g.cg.v1_dir("memory").unwrap();
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "67108864");
    assert_ne!(read(&mem, "memory.kmem.limit_in_bytes"), "1073741824");
    // kernelTCP is applied where the host has the file.
    if host.root_has_file("memory", "memory.kmem.tcp.limit_in_bytes") {
        g.cg.apply(
            &resources(json!({"memory": {"kernelTCP": 33554432_i64}})),
            false,
        )
        .expect("kernelTCP");
        assert_eq!(read(&mem, "memory.kmem.tcp.limit_in_bytes"), "33554432");
    }
}

#[test]
fn invalid_values_are_refused_and_leave_nothing() {
    let Some(host) = v1_host("invalid_values_are_refused_and_leave_nothing") else {
        return;
    };
    let (dmaj, dmin) = host_disk();
    let cases = vec![
        (json!({"cpu": {"shares": 1}}), "linux.resources.cpu.shares"),
        (
            json!({"cpu": {"shares": 300000}}),
            "linux.resources.cpu.shares",
        ),
        (json!({"cpu": {"quota": 10}}), "linux.resources.cpu.quota"),
        (json!({"cpu": {"quota": -5}}), "linux.resources.cpu.quota"),
        (json!({"cpu": {"period": 10}}), "linux.resources.cpu.period"),
        (
            json!({"cpu": {"quota": 10000, "burst": 20000}}),
            "linux.resources.cpu.burst",
        ),
        (json!({"cpu": {"idle": 2}}), "linux.resources.cpu.idle"),
        (
            json!({"cpu": {"realtimeRuntime": 2000000, "realtimePeriod": 1000000}}),
            "linux.resources.cpu.realtimeRuntime",
        ),
        (json!({"cpu": {"cpus": "0-63"}}), "linux.resources.cpu.cpus"),
        (json!({"cpu": {"cpus": "zero"}}), "linux.resources.cpu.cpus"),
        (json!({"cpu": {"mems": "5"}}), "linux.resources.cpu.mems"),
        (
            json!({"memory": {"limit": -2}}),
            "linux.resources.memory.limit",
        ),
        (
            json!({"memory": {"limit": 1073741824_i64, "swap": 1048576}}),
            "linux.resources.memory.swap",
        ),
        (
            json!({"memory": {"swappiness": 200}}),
            "linux.resources.memory.swappiness",
        ),
        (
            json!({"memory": {"reservation": -7}}),
            "linux.resources.memory.reservation",
        ),
        (
            json!({"memory": {"useHierarchy": false}}),
            "linux.resources.memory.useHierarchy",
        ),
        (
            json!({"blockIO": {"weight": 5}}),
            "linux.resources.blockIO.weight",
        ),
        (
            json!({"blockIO": {"weight": 2000}}),
            "linux.resources.blockIO.weight",
        ),
        (
            json!({"blockIO": {"leafWeight": 100}}),
            "linux.resources.blockIO.leafWeight",
        ),
        (
            json!({"blockIO": {"weightDevice": [{"major": dmaj, "minor": dmin, "weight": 5000}]}}),
            "linux.resources.blockIO.weightDevice[0]",
        ),
        (
            json!({"blockIO": {"throttleReadBpsDevice": [{"major": 250, "minor": 250, "rate": 1}]}}),
            "linux.resources.blockIO.throttleReadBpsDevice[0]",
        ),
        (
            json!({"blockIO": {"throttleWriteIOPSDevice": [{"major": -1, "minor": 0, "rate": 1}]}}),
            "linux.resources.blockIO.throttleWriteIOPSDevice[0]",
        ),
        (
            json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 0}]}),
            "linux.resources.hugepageLimits[0].pageSize",
        ),
        (
            json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 1000}]}),
            "linux.resources.hugepageLimits[0].limit",
        ),
        (
            json!({"unified": {"../../etc/passwd": "x"}}),
            "linux.resources.unified",
        ),
        (
            json!({"unified": {"cgroup.procs": "1"}}),
            "linux.resources.unified",
        ),
    ];
    let mut cases = cases;
    // Settings this host cannot honour.
    if host.mode == CgroupMode::Hybrid && !host.has_v2("memory") {
        cases.push((
            json!({"unified": {"memory.high": "1G"}}),
            "linux.resources.unified[\"memory.high\"]",
        ));
    }
    if !host.has_v1("net_cls") {
        cases.push((
            json!({"network": {"classID": 1048577}}),
            "linux.resources.network.classID",
        ));
    }
    if !host.has_v1("net_prio") {
        cases.push((
            json!({"network": {"priorities": [{"name": "lo", "priority": 1}]}}),
            "linux.resources.network.priorities",
        ));
    }
    if !host.has_v1("rdma") {
        cases.push((
            json!({"rdma": {"mlx5_0": {"hcaHandles": 1}}}),
            "linux.resources.rdma",
        ));
    }
    if !has_blkio_weight(&host) {
        cases.push((
            json!({"blockIO": {"weight": 500}}),
            "linux.resources.blockIO.weight",
        ));
    }
    if std::fs::read_to_string(format!("/sys/dev/block/{dmaj}:{dmin}/queue/scheduler"))
        .is_ok_and(|s| !s.contains("[bfq]"))
        && !host.root_has_file("blkio", "blkio.weight")
    {
        cases.push((
            json!({"blockIO": {"weightDevice": [{"major": dmaj, "minor": dmin, "weight": 300}]}}),
            "linux.resources.blockIO.weightDevice[0].weight",
        ));
    }

    for (i, (v, setting)) in cases.into_iter().enumerate() {
        let res = resources(v.clone());
        let path = unique_path(&format!("bad{i}"));
        let cg = Cgroup::open(&opts(&path)).expect("open");
        let _g = Guard::new(Cgroup::open(&opts(&path)).expect("open"));
        let err = validate_on(&host, &res).expect_err(&format!("{v} should be refused"));
        assert!(
            err.to_string().contains(setting),
            "error for {v} does not name {setting}: {err}"
        );
        let err = cg
            .apply(&res, false)
            .expect_err(&format!("{v} should be refused"));
        assert!(
            matches!(
                err,
                CgroupError::Invalid { .. } | CgroupError::Unsupported { .. }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(setting), "{err}");
        println!("refused as expected: {err}");
        assert_nothing_left(&cg);
    }
}

/// Whether the v1 blkio controller has a weight: CFQ's `blkio.weight`, or
/// BFQ's policy (at the root it shows as `blkio.bfq.io_service_bytes`, in
/// child groups as `blkio.bfq.weight`).
fn has_blkio_weight(host: &Host) -> bool {
    [
        "blkio.weight",
        "blkio.bfq.weight",
        "blkio.bfq.io_service_bytes",
    ]
    .iter()
    .any(|f| host.root_has_file("blkio", f))
}

#[test]
fn failure_after_creation_removes_the_new_cgroup() {
    let Some(_host) = v1_host("failure_after_creation_removes_the_new_cgroup") else {
        return;
    };
    // Valid for validation, refused by the kernel: the realtime runtime
    // of the child exceeds what the root group has left.
    let path = unique_path("late");
    let g = Guard::new(Cgroup::open(&opts(&path)).expect("open"));
    let res = resources(json!({"cpu": {"realtimeRuntime": 990000, "realtimePeriod": 1000000}}));
    let err = g.cg.apply(&res, false).expect_err("kernel refuses");
    println!("refused by the kernel: {err}");
    assert!(err.to_string().contains("cpu"), "{err}");
    assert_nothing_left(&g.cg);
}

#[test]
fn pids_include_descendants_and_destroy_removes_children() {
    let Some(_host) = v1_host("pids_include_descendants_and_destroy_removes_children") else {
        return;
    };
    let path = unique_path("nest");
    let mut g = Guard::new(Cgroup::open(&opts(&path)).expect("open"));
    let a = g.spawn_sleeper();
    let b = g.spawn_sleeper();
    g.cg.add_task(a).expect("add a");
    g.cg.add_task(b).expect("add b");
    // A child cgroup made by the container (as with a cgroup namespace).
    let pids_dir = g.cg.v1_dir("pids").unwrap();
    let sub = pids_dir.join("inner");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("cgroup.procs"), b.to_string()).unwrap();
    let mut got = g.cg.pids().unwrap();
    got.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(got, want);
    g.cg.freeze().unwrap();
    // Destroy works on a frozen cgroup with a child cgroup.
    g.cg.destroy().expect("destroy");
    assert_nothing_left(&g.cg);
    for c in &mut g.children {
        let st = c.wait().unwrap();
        assert!(!st.success());
    }
    g.children.clear();
}

#[test]
fn blockio_priority_annotations_use_what_the_device_offers() {
    let Some(_host) = v1_host("blockio_priority_annotations_use_what_the_device_offers") else {
        return;
    };
    let Some(l) = LoopDev::new() else {
        println!(
            "SKIP blockio_priority_annotations_use_what_the_device_offers: no loop device with bfq or mq-deadline"
        );
        return;
    };
    let mut ann = HashMap::new();
    ann.insert(PRIORITY_ANNOTATION.to_string(), "be:7".to_string());
    ann.insert(
        BANDWIDTH_ANNOTATION.to_string(),
        format!("{}=20%@100M", l.dev),
    );
    let policy = parse_annotations(&ann).unwrap().unwrap();
    let path = unique_path("prio");
    let g = Guard::new(Cgroup::open(&opts(&path)).expect("open"));
    let enforced = g.cg.apply_blockio_policy(&policy).expect("apply policy");
    assert_eq!(enforced.ioprio, Some((2 << 13) | 7));
    let summary = enforced.summary();
    println!("{} ({}): {summary}", l.dev, l.scheduler);
    let name = l.dev.trim_start_matches("/dev/");
    assert!(summary.starts_with("ioprio=be:7 on "), "{summary}");
    assert!(
        summary
            .split(';')
            .next()
            .unwrap()
            .split([' ', ','])
            .any(|d| d == name),
        "{summary}"
    );
    let blkio = g.cg.v1_dir("blkio").unwrap();
    let dev = format!("{}:{}", l.major, l.minor);
    if l.scheduler == "bfq" {
        assert!(read(&blkio, "blkio.bfq.weight").contains("100"));
        assert!(read(&blkio, "blkio.bfq.weight_device").contains(&format!("{dev} 200")));
        assert!(
            summary.contains(&format!("bfq-weight=200 on {dev}")),
            "{summary}"
        );
    } else {
        // No BFQ: the share is throttled, and the report says it is not
        // weighted.
        assert!(!blkio.join("blkio.bfq.weight").exists());
        assert!(
            summary.contains(&format!("not enforced: share 20% of {dev} as a weight")),
            "{summary}"
        );
    }
    let bps = (100u64 << 20) / 100 * 20;
    assert!(
        summary.contains(&format!("throttle={dev} read/write {bps} B/s")),
        "{summary}"
    );
    assert_eq!(
        read(&blkio, "blkio.throttle.read_bps_device"),
        format!("{dev} {bps}")
    );
    assert_eq!(
        read(&blkio, "blkio.throttle.write_bps_device"),
        format!("{dev} {bps}")
    );

    // IO done inside the cgroup shows in the blkio statistics.
    let mut dd = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "read _; dd if={} of=/dev/null bs=64k count=16 iflag=direct 2>/dev/null",
            l.dev
        ))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn dd");
    g.cg.add_task(dd.id() as i32).expect("add dd");
    drop(dd.stdin.take());
    assert!(dd.wait().unwrap().success());
    let s = g.cg.stats().unwrap();
    let bytes = s["blkio"]["ioServiceBytesRecursive"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let read_bytes: u64 = bytes
        .iter()
        .filter(|e| e["major"] == l.major && e["minor"] == l.minor && e["op"] == "Read")
        .filter_map(|e| e["value"].as_u64())
        .sum();
    assert_eq!(read_bytes, 16 * 65536, "{s}");

    // A share on a device without bfq is refused, naming the annotations.
    let (dmaj, dmin) = host_disk();
    ann.insert(
        BANDWIDTH_ANNOTATION.to_string(),
        format!("{dmaj}:{dmin}=50%"),
    );
    let policy = parse_annotations(&ann).unwrap().unwrap();
    let path2 = unique_path("prio2");
    let g2 = Guard::new(Cgroup::open(&opts(&path2)).expect("open"));
    if std::fs::read_to_string(format!("/sys/dev/block/{dmaj}:{dmin}/queue/scheduler"))
        .is_ok_and(|s| !s.contains("[bfq]"))
    {
        let err = g2.cg.apply_blockio_policy(&policy).unwrap_err().to_string();
        assert!(err.contains(BANDWIDTH_ANNOTATION), "{err}");
        assert_nothing_left(&g2.cg);
    }

    // Malformed annotations.
    for (k, v) in [
        (PRIORITY_ANNOTATION, "rt:9"),
        (PRIORITY_ANNOTATION, "high"),
        (BANDWIDTH_ANNOTATION, "150%"),
        (BANDWIDTH_ANNOTATION, "/dev/null=10%"),
        (BANDWIDTH_ANNOTATION, "50%@1G"),
    ] {
        let a = HashMap::from([(k.to_string(), v.to_string())]);
        let err = parse_annotations(&a).unwrap_err().to_string();
        assert!(err.contains(k) && err.contains(v), "{err}");
    }
}

#[test]
fn systemd_cgroup_is_refused_without_systemd() {
    if vessel_cgroups::systemd_booted() {
        println!("SKIP systemd_cgroup_is_refused_without_systemd: systemd runs here");
        return;
    }
    let o = CgroupOptions {
        cgroups_path: None,
        systemd: true,
        container_id: "x".into(),
    };
    let err = Cgroup::open(&o).unwrap_err();
    assert!(matches!(err, CgroupError::Systemd(_)), "{err:?}");
    assert!(err.to_string().contains("--systemd-cgroup"), "{err}");
}

#[test]
fn cgroups_path_cannot_escape() {
    for p in ["/../../etc", "/a/../b", "/"] {
        let o = CgroupOptions {
            cgroups_path: Some(p.into()),
            systemd: false,
            container_id: "x".into(),
        };
        let err = Cgroup::open(&o).unwrap_err().to_string();
        assert!(err.contains("cgroupsPath"), "{p}: {err}");
    }
}

#[test]
fn many_cgroups_in_parallel_leave_nothing() {
    let Some(_host) = v1_host("many_cgroups_in_parallel_leave_nothing") else {
        return;
    };
    // Nested under one shared parent, to race on creating it.
    let parent = unique_path("par");
    let threads: Vec<_> = (0..24)
        .map(|i| {
            let path = parent.join(format!("c{i}"));
            std::thread::spawn(move || {
                let mut g = Guard::new(Cgroup::open(&opts(&path)).expect("open"));
                let pid = g.spawn_sleeper();
                g.cg.add_task(pid).expect("add task");
                g.cg.apply(
                    &resources(json!({"cpu": {"shares": 256 + i}, "pids": {"limit": 10}})),
                    false,
                )
                .expect("apply");
                assert_eq!(g.cg.pids().unwrap(), vec![pid]);
                g.cg.destroy().expect("destroy");
                assert_nothing_left(&g.cg);
                g.reap();
            })
        })
        .collect();
    let mut failed = 0;
    for t in threads {
        if t.join().is_err() {
            failed += 1;
        }
    }
    // The shared parent is the caller's to remove (as with runc).
    let pg = Cgroup::open(&opts(&parent)).expect("open parent");
    pg.destroy().expect("remove parent");
    assert_nothing_left(&pg);
    assert_eq!(failed, 0);
}
