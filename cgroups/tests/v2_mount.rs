//! cgroup v2 through a cgroup2 hierarchy this test mounts itself. On a
//! hybrid host the controllers bound to v1 are absent there, so the test
//! checks what cgroup2 offers (core files, freezer, kill, hugetlb when it
//! is not bound to v1) and that the rest is refused by name. The
//! hierarchy is mounted only in a private mount namespace of the test.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;
use vessel_cgroups::blockio_priority::{
    parse_annotations, BANDWIDTH_ANNOTATION, PRIORITY_ANNOTATION,
};
use vessel_cgroups::{validate_on, Cgroup, CgroupMode, Host};

struct Mount(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn mount_cgroup2(test: &str) -> Option<Mount> {
    if !can_run(test) {
        return None;
    }
    // The hierarchy is mounted in a mount namespace of this test's thread
    // alone (libtest runs every test on a thread of its own), whose `/` is
    // made private first: the mount can never propagate to the host, and
    // it ends with the thread even if the unmount below never runs.
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS) {
        println!("SKIP {test}: cannot make a mount namespace: {e}");
        return None;
    }
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make / private in the test's mount namespace");
    let dir = tempfile::tempdir().ok()?;
    let path = dir.path().to_path_buf();
    if let Err(e) = nix::mount::mount(
        Some("none"),
        &path,
        Some("cgroup2"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    ) {
        println!("SKIP {test}: cannot mount a cgroup2 hierarchy here: {e}");
        return None;
    }
    let host_mounts = std::fs::read_to_string("/proc/1/mountinfo").unwrap_or_default();
    assert!(
        !host_mounts.contains(&*path.to_string_lossy()),
        "the test's cgroup2 mount at {} reached the host",
        path.display()
    );
    Some(Mount(path, dir))
}

/// libcgroups loads the v2 device filter (an eBPF program) on every v2
/// apply, after raising RLIMIT_MEMLOCK to 128 MiB; without CAP_SYS_RESOURCE
/// and a lower hard limit (this sandbox: 8 MiB) that fails. Returns why
/// apply cannot run here, if it cannot.
fn v2_apply_blocker() -> Option<String> {
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK).ok()?;
    if hard >= 128 << 20 {
        return None;
    }
    match nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_MEMLOCK,
        128 << 20,
        128 << 20,
    ) {
        Ok(()) => None,
        Err(e) => Some(format!(
            "libcgroups raises RLIMIT_MEMLOCK to 128 MiB before loading the v2 device filter, and this process cannot ({e}; hard limit {hard} bytes, no CAP_SYS_RESOURCE)"
        )),
    }
}

fn exists_under(root: &Path, rel: &Path) -> bool {
    root.join(rel.strip_prefix("/").unwrap_or(rel)).exists()
}

#[test]
fn v2_hierarchy_apply_freeze_stats_destroy() {
    let test = "v2_hierarchy_apply_freeze_stats_destroy";
    let Some(m) = mount_cgroup2(test) else {
        return;
    };
    let host = Host::unified_at(&m.0);
    assert_eq!(host.mode, CgroupMode::Unified);
    let controllers = host.unified_controllers();
    println!("controllers on the mounted cgroup2 hierarchy: {controllers:?}");
    let _subtree = SubtreeGuard::new(&host, "hugetlb");

    let path = unique_path("v2");
    let mut g = Guard::new(Cgroup::open_on(&opts(&path), host.clone()).expect("open"));
    let pid = g.spawn_sleeper();
    g.cg.add_task(pid).expect("add task");
    let dir = g.cg.v2_dir().unwrap();
    assert!(dir.starts_with(&m.0));
    assert!(read(&dir, "cgroup.procs").contains(&pid.to_string()));

    let hugetlb = controllers.iter().any(|c| c == "hugetlb");
    let mut res = json!({"unified": {"cgroup.max.descendants": "5", "cgroup.max.depth": "2"}});
    if hugetlb {
        res["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 8388608}]);
    } else {
        println!("hugetlb not on cgroup2 here: hugepageLimits not tested on v2");
    }
    let res = resources(res);
    validate_on(&host, &res).expect("valid on v2");
    match v2_apply_blocker() {
        Some(why) => println!("SKIP the apply part of {test}: {why}"),
        None => {
            g.cg.apply(&res, false).expect("apply");
            assert_eq!(read(&dir, "cgroup.max.descendants"), "5");
            assert_eq!(read(&dir, "cgroup.max.depth"), "2");
            if hugetlb {
                assert_eq!(read(&dir, "hugetlb.2MB.max"), "8388608");
            }
        }
    }

    assert_eq!(g.cg.pids().unwrap(), vec![pid]);
    assert!(!g.cg.is_frozen().unwrap());
    g.cg.freeze().expect("freeze");
    assert!(g.cg.is_frozen().unwrap());
    g.cg.thaw().expect("thaw");
    assert!(!g.cg.is_frozen().unwrap());

    let s = g.cg.stats().expect("stats");
    assert!(s["cpu"]["usage"]["total"].is_u64(), "{s}");
    if hugetlb {
        assert!(s["hugetlb"]["2MB"]["usage"].is_u64(), "{s}");
    }

    g.cg.destroy().expect("destroy");
    assert!(!exists_under(&m.0, &path));
    g.reap();
}

#[test]
fn v2_refuses_what_the_hierarchy_cannot_do() {
    let test = "v2_refuses_what_the_hierarchy_cannot_do";
    let Some(m) = mount_cgroup2(test) else {
        return;
    };
    let host = Host::unified_at(&m.0);
    let has = |c: &str| host.has_v2(c);
    let mut cases = vec![
        // Settings cgroup v2 has no file for, whatever the controllers.
        (
            json!({"cpu": {"realtimeRuntime": 1000, "realtimePeriod": 100000}}),
            "linux.resources.cpu.realtimeRuntime",
        ),
        (
            json!({"network": {"classID": 1}}),
            "linux.resources.network.classID",
        ),
        (
            json!({"blockIO": {"leafWeight": 300}}),
            "linux.resources.blockIO",
        ),
        (
            json!({"unified": {"bogus"    : "1"}}),
            "linux.resources.unified[\"bogus\"]",
        ),
    ];
    if has("memory") {
        cases.push((
            json!({"memory": {"swappiness": 10}}),
            "linux.resources.memory.swappiness",
        ));
        cases.push((
            json!({"memory": {"disableOOMKiller": true}}),
            "linux.resources.memory.disableOOMKiller",
        ));
    } else {
        cases.push((
            json!({"memory": {"limit": 1048576}}),
            "linux.resources.memory",
        ));
    }
    if !has("cpu") {
        cases.push((json!({"cpu": {"shares": 1024}}), "linux.resources.cpu"));
    }
    if !has("pids") {
        cases.push((json!({"pids": {"limit": 10}}), "linux.resources.pids.limit"));
    }
    if !has("io") {
        cases.push((
            json!({"blockIO": {"weight": 100}}),
            "linux.resources.blockIO",
        ));
    }
    if !has("memory") {
        cases.push((
            json!({"unified": {"memory.high": "1M"}}),
            "linux.resources.unified[\"memory.high\"]",
        ));
    }
    for (i, (v, setting)) in cases.into_iter().enumerate() {
        let res = resources(v.clone());
        let path = unique_path(&format!("v2bad{i}"));
        let g = Guard::new(Cgroup::open_on(&opts(&path), host.clone()).expect("open"));
        let err =
            g.cg.apply(&res, false)
                .expect_err(&format!("{v} must be refused"));
        assert!(err.to_string().contains(setting), "{v}: {err}");
        println!("refused as expected: {err}");
        assert!(!exists_under(&m.0, &path), "{v} left {}", path.display());
    }
    // The OOM-killer switch passed separately is refused too.
    let path = unique_path("v2oom");
    let g = Guard::new(Cgroup::open_on(&opts(&path), host.clone()).expect("open"));
    let err = g.cg.apply(&resources(json!({})), true).unwrap_err();
    assert!(err.to_string().contains("disableOOMKiller"), "{err}");
    assert!(!exists_under(&m.0, &path));
}

/// Device rules on cgroup v2 are an eBPF program attached to the cgroup
/// (libcgroups' cgroupsv2_devices). The kernel runs it for every process in
/// that cgroup2 directory, even on a hybrid host, so this checks real
/// enforcement: /dev/null allowed, /dev/zero denied.
#[test]
fn v2_device_rules_are_enforced_with_ebpf() {
    let test = "v2_device_rules_are_enforced_with_ebpf";
    if let Some(why) = v2_apply_blocker() {
        println!("SKIP {test}: {why}");
        return;
    }
    let Some(m) = mount_cgroup2(test) else {
        return;
    };
    let host = Host::unified_at(&m.0);
    let path = unique_path("v2dev");
    let g = Guard::new(Cgroup::open_on(&opts(&path), host.clone()).expect("open"));
    let (r, w) = nix::unistd::pipe().unwrap();
    // SAFETY: the test's child only reads a pipe, opens two files and exits.
    let child = match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            drop(w);
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&r), &mut b);
            let null = std::fs::File::open("/dev/null").is_ok();
            let zero = std::fs::File::open("/dev/zero").map_err(|e| e.raw_os_error());
            let code = match (null, zero) {
                (true, Err(Some(libc::EPERM))) => 0,
                (false, _) => 1,
                (true, Ok(_)) => 2,
                (true, Err(_)) => 3,
            };
            // SAFETY: leave the forked test process at once.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(r);
    g.cg.add_task(child.as_raw()).expect("add task");
    let res = resources(json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
    ]}));
    let applied = g.cg.apply(&res, false);
    drop(w);
    let st = nix::sys::wait::waitpid(child, None).unwrap();
    applied.expect("apply device rules on v2");
    assert_eq!(
        st,
        nix::sys::wait::WaitStatus::Exited(child, 0),
        "exit 2: /dev/zero was not denied; 1: /dev/null was denied; 3: other error"
    );
    g.cg.destroy().expect("destroy");
    assert!(!exists_under(&m.0, &path));
}

#[test]
fn v2_blockio_policy_uses_the_io_controller() {
    let test = "v2_blockio_policy_uses_the_io_controller";
    let Some(m) = mount_cgroup2(test) else {
        return;
    };
    let host = Host::unified_at(&m.0);
    if !host.has_v2("io") {
        println!("SKIP {test}: the io controller is not on cgroup2 here (bound to v1 blkio)");
        return;
    }
    let _subtree = SubtreeGuard::new(&host, "io");
    let Some(l) = LoopDev::new() else {
        println!("SKIP {test}: no loop device with bfq or mq-deadline");
        return;
    };
    let ann = std::collections::HashMap::from([
        (PRIORITY_ANNOTATION.to_string(), "idle".to_string()),
        (
            BANDWIDTH_ANNOTATION.to_string(),
            format!("{}=20%@100M", l.dev),
        ),
    ]);
    let policy = parse_annotations(&ann).unwrap().unwrap();
    let path = unique_path("v2io");
    let g = Guard::new(Cgroup::open_on(&opts(&path), host.clone()).expect("open"));
    let e = g.cg.apply_blockio_policy(&policy).expect("apply policy");
    let dir = g.cg.v2_dir().unwrap();
    let summary = e.summary();
    println!("{} ({}): {summary}", l.dev, l.scheduler);
    assert_eq!(e.ioprio, Some(3 << 13));
    assert!(summary.starts_with("ioprio=idle on "), "{summary}");
    let dev = format!("{}:{}", l.major, l.minor);
    let bps = (100u64 << 20) / 100 * 20;
    assert!(
        read(&dir, "io.max").contains(&format!("{dev} rbps={bps} wbps={bps}")),
        "{}",
        read(&dir, "io.max")
    );
    if dir.join("io.prio.class").exists() {
        assert_eq!(read(&dir, "io.prio.class"), "idle");
    }
    if l.scheduler == "bfq" {
        let w = read(&dir, "io.bfq.weight");
        assert!(
            w.contains("default 1") && w.contains(&format!("{dev} 200")),
            "{w}"
        );
        assert!(
            summary.contains(&format!("bfq-weight=200 on {dev}")),
            "{summary}"
        );
    } else {
        assert!(
            summary.contains(&format!("not enforced: share 20% of {dev} as a weight")),
            "{summary}"
        );
    }
    if dir.join("io.weight").exists() {
        // iocost's weight is written; whether it acts depends on the root's
        // io.cost.qos, and the report says which.
        assert!(read(&dir, "io.weight").starts_with("default "));
        assert!(
            summary.contains("iocost-weight=")
                || summary.contains("iocost is enabled on no device"),
            "{summary}"
        );
    }
    drop(g);
    assert!(!exists_under(&m.0, &path));
}
