//! Process attributes of the OCI spec, read back from inside the container:
//! `process.scheduler` (/proc/self/stat: nice, rt priority, policy),
//! `linux.memoryPolicy` (/proc/self/numa_maps), `process.execCPUAffinity`
//! (Cpus_allowed_list), `linux.personality` (/proc/self/personality) and
//! `process.ioPriority` (ioprio_get from the host), for the container's
//! init and for `exec`; and the refusals, which name the field and leave
//! nothing behind.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use vessel_tests::harness::{fails, ok, stdout, wait_for, Ctr};
use vessel_tests::require_root;

/// Fields of /proc/<pid>/stat as numbered by proc(5) (1-based): 19 nice,
/// 40 rt_priority, 41 policy.
fn stat_field(stat: &str, n: usize) -> i64 {
    // Field 2 (comm) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("stat has a comm") + 2..];
    rest.split_whitespace()
        .nth(n - 3)
        .unwrap_or_else(|| panic!("no field {n} in {stat:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("field {n} of {stat:?} is not a number"))
}

/// A foreground run of `args` with `edit` applied to the config; its stdout.
fn run_with(tag: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> (Ctr, String) {
    let mut c = Ctr::new(tag, args);
    edit(c.config());
    c.write();
    let out = ok(&c.run());
    (c, out)
}

/// A created and started container running `sleep`, for `exec`.
fn running(tag: &str, edit: impl FnOnce(&mut Value)) -> Ctr {
    let mut c = Ctr::new(tag, &["sleep", "1000"]);
    edit(c.config());
    c.write();
    c.create();
    c.start();
    c
}

/// Writes `process` (the container's process with `edit` applied and
/// `args`) to a file for `exec --process`.
fn process_file(c: &Ctr, args: &[&str], edit: impl FnOnce(&mut Value)) -> PathBuf {
    let mut p = c.bundle.config["process"].clone();
    p["args"] = json!(args);
    edit(&mut p);
    let path = c
        .bundle
        .path()
        .join(format!("process-{}.json", args.join("_").len()));
    fs::write(&path, serde_json::to_vec(&p).unwrap()).unwrap();
    path
}

fn exec_process(c: &Ctr, file: &Path) -> std::process::Output {
    c.exec_opts(&["--process", file.to_str().unwrap()], &[])
}

/// Asserts a create failed, naming `field`, and left nothing behind.
#[track_caller]
fn refused(c: &Ctr, field: &str) -> String {
    let err = fails(&c.create_with(&[]));
    assert!(err.contains(field), "error does not name {field}: {err}");
    assert!(
        err.contains(&c.id),
        "error does not name the container: {err}"
    );
    assert_eq!(c.leftovers(), Vec::<String>::new(), "{err}");
    err
}

#[test]
fn scheduler_policy_and_nice_for_init_and_exec() {
    require_root!();
    let (_c, stat) = run_with("sched", &["cat", "/proc/self/stat"], |cfg| {
        cfg["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
    });
    assert_eq!(stat_field(&stat, 41), 3, "policy SCHED_BATCH: {stat}");
    assert_eq!(stat_field(&stat, 19), 7, "nice: {stat}");

    // exec: the --process file's scheduler, not the container's.
    let c = running("schedx", |cfg| {
        cfg["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
    });
    let f = process_file(&c, &["cat", "/proc/self/stat"], |p| {
        p["scheduler"] = json!({"policy": "SCHED_IDLE",
                                "flags": ["SCHED_FLAG_RESET_ON_FORK"]});
    });
    let stat = ok(&exec_process(&c, &f));
    assert_eq!(stat_field(&stat, 41), 5, "policy SCHED_IDLE: {stat}");
    // Without a scheduler, exec runs SCHED_OTHER at nice 0.
    let f = process_file(&c, &["cat", "/proc/self/stat"], |p| {
        p.as_object_mut().unwrap().remove("scheduler");
    });
    let stat = ok(&exec_process(&c, &f));
    assert_eq!(
        (stat_field(&stat, 41), stat_field(&stat, 19)),
        (0, 0),
        "{stat}"
    );
}

#[test]
fn real_time_scheduler_is_applied_or_refused_by_name() {
    require_root!();
    // With real-time group scheduling (cgroup v1), the container's cgroup
    // needs a real-time budget for SCHED_FIFO.
    let rt_groups = Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists();
    let (_c, stat) = run_with("schedrt", &["cat", "/proc/self/stat"], |cfg| {
        cfg["process"]["scheduler"] = json!({"policy": "SCHED_FIFO", "priority": 10});
        if rt_groups {
            cfg["linux"]["resources"]["cpu"] =
                json!({"realtimeRuntime": 10000, "realtimePeriod": 1000000});
        }
    });
    assert_eq!(stat_field(&stat, 41), 1, "policy SCHED_FIFO: {stat}");
    assert_eq!(stat_field(&stat, 40), 10, "rt_priority: {stat}");
    if rt_groups {
        // Without a budget the kernel refuses: the error names the field.
        let mut c = Ctr::new("schedrt0", &["true"]);
        c.config()["process"]["scheduler"] = json!({"policy": "SCHED_RR", "priority": 5});
        c.write();
        let err = refused(&c, "process.scheduler");
        assert!(err.contains("sched_setattr"), "{err}");
    }
}

#[test]
fn deadline_scheduler_is_applied_or_refused_by_name() {
    require_root!();
    let mut c = Ctr::new("scheddl", &["cat", "/proc/self/stat"]);
    c.config()["process"]["scheduler"] = json!({
        "policy": "SCHED_DEADLINE", "runtime": 1_000_000, "deadline": 10_000_000, "period": 10_000_000
    });
    c.write();
    let o = c.run();
    if o.status.success() {
        let stat = stdout(&o);
        assert_eq!(stat_field(&stat, 41), 6, "policy SCHED_DEADLINE: {stat}");
    } else {
        // The kernel may refuse (admission control, cpusets, RT groups).
        let err = vessel_tests::harness::stderr(&o);
        assert!(
            err.contains("process.scheduler: sched_setattr"),
            "refused without naming the field: {err}"
        );
        eprintln!("SCHED_DEADLINE refused by this kernel: {err}");
    }
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn bad_scheduler_values_are_refused_at_create() {
    require_root!();
    for (sched, field) in [
        (
            json!({"policy": "SCHED_FIFO"}),
            "process.scheduler.priority",
        ),
        (
            json!({"policy": "SCHED_OTHER", "nice": 40}),
            "process.scheduler.nice",
        ),
        (json!({"policy": "SCHED_ISO"}), "process.scheduler.policy"),
        (
            json!({"policy": "SCHED_DEADLINE", "runtime": 5000, "deadline": 2000}),
            "process.scheduler.runtime",
        ),
        (
            json!({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_UTIL_CLAMP_MIN"]}),
            "process.scheduler.flags[0]",
        ),
        (
            json!({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_BOGUS"]}),
            "process.scheduler.flags[0]",
        ),
    ] {
        let mut c = Ctr::new("schedbad", &["true"]);
        c.config()["process"]["scheduler"] = sched;
        c.write();
        refused(&c, field);
    }
}

/// Whether numa_maps shows the task policy `want` ("bind:0", "weighted
/// interleave:0", ...) for its first mapping (which has no policy of its own).
fn numa_policy_is(maps: &str, want: &str) -> bool {
    maps.lines()
        .next()
        .and_then(|l| l.split_once(' '))
        .is_some_and(|(_, rest)| rest.starts_with(&format!("{want} ")))
}

fn online_nodes() -> Option<Vec<usize>> {
    let text = fs::read_to_string("/sys/devices/system/node/online").ok()?;
    let mut v = Vec::new();
    for part in text.trim().split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        v.extend(a.parse::<usize>().ok()?..=b.parse::<usize>().ok()?);
    }
    Some(v)
}

#[test]
fn memory_policy_for_init_and_exec() {
    require_root!();
    let Some(nodes) = online_nodes() else {
        eprintln!("SKIP: no NUMA in this kernel (/sys/devices/system/node/online)");
        return;
    };
    if !Path::new("/proc/self/numa_maps").exists() {
        eprintln!("SKIP: /proc/self/numa_maps is absent");
        return;
    }
    let n = nodes[0];
    for (pol, want) in [
        (
            json!({"mode": "MPOL_BIND", "nodes": n.to_string()}),
            format!("bind:{n}"),
        ),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": n.to_string(), "flags": ["MPOL_F_STATIC_NODES"]}),
            format!("interleave=static:{n}"),
        ),
        (
            json!({"mode": "MPOL_PREFERRED", "nodes": n.to_string()}),
            format!("prefer:{n}"),
        ),
        (json!({"mode": "MPOL_LOCAL"}), "local".to_string()),
    ] {
        let (_c, maps) = run_with("mpol", &["cat", "/proc/self/numa_maps"], |cfg| {
            cfg["linux"]["memoryPolicy"] = pol.clone();
        });
        assert!(numa_policy_is(&maps, &want), "{pol}: want {want}: {maps}");
    }
    // Weighted interleave came with Linux 6.9: applied, or refused by name.
    let mut c = Ctr::new("mpolw", &["cat", "/proc/self/numa_maps"]);
    c.config()["linux"]["memoryPolicy"] =
        json!({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": n.to_string()});
    c.write();
    let o = c.run();
    if o.status.success() {
        let maps = stdout(&o);
        let want = format!("weighted interleave:{n}");
        assert!(numa_policy_is(&maps, &want), "{maps}");
    } else {
        let err = vessel_tests::harness::stderr(&o);
        assert!(err.contains("linux.memoryPolicy: set_mempolicy"), "{err}");
    }
    // A combination only the kernel refuses (NUMA balancing is for BIND):
    // create fails naming the field, and leaves nothing.
    let mut c = Ctr::new("mpolk", &["true"]);
    c.config()["linux"]["memoryPolicy"] = json!({"mode": "MPOL_INTERLEAVE",
        "nodes": n.to_string(), "flags": ["MPOL_F_NUMA_BALANCING"]});
    c.write();
    let err = refused(&c, "linux.memoryPolicy: set_mempolicy");
    assert!(err.contains("Invalid argument"), "{err}");
    // exec'd processes get the container's policy too.
    let c = running("mpolx", |cfg| {
        cfg["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": n.to_string()});
    });
    let maps = ok(&c.exec(&["cat", "/proc/self/numa_maps"]));
    assert!(numa_policy_is(&maps, &format!("bind:{n}")), "{maps}");
}

#[test]
fn bad_memory_policies_are_refused_at_create() {
    require_root!();
    let absent = online_nodes().map(|v| (0..1024).find(|i| !v.contains(i)).unwrap());
    let mut cases = vec![
        (json!({"mode": "MPOL_BIND"}), "linux.memoryPolicy.nodes"),
        (
            json!({"mode": "MPOL_DEFAULT", "nodes": "0"}),
            "linux.memoryPolicy.nodes",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0-"}),
            "linux.memoryPolicy.nodes",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0",
                   "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
            "linux.memoryPolicy.flags",
        ),
        (json!({"mode": "MPOL_NOPE"}), "linux.memoryPolicy.mode"),
    ];
    if let Some(a) = absent {
        cases.push((
            json!({"mode": "MPOL_BIND", "nodes": a.to_string()}),
            "linux.memoryPolicy.nodes",
        ));
    }
    for (pol, field) in cases {
        let mut c = Ctr::new("mpolbad", &["true"]);
        c.config()["linux"]["memoryPolicy"] = pol.clone();
        c.write();
        let err = refused(&c, field);
        eprintln!("{pol}: {err}");
    }
}

/// The CPUs this test may use (its own affinity): the container inherits a
/// subset of them.
fn my_cpus() -> Vec<usize> {
    let s = fs::read_to_string("/proc/self/status").unwrap();
    let list = s
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    let mut v = Vec::new();
    for part in list.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        v.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap());
    }
    v
}

fn cpus_allowed(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or_else(|| panic!("no Cpus_allowed_list in {status}"))
        .trim()
        .to_string()
}

#[test]
fn exec_cpu_affinity_initial_final_and_reset() {
    require_root!();
    let cpus = my_cpus();
    if cpus.len() < 2 {
        eprintln!("SKIP: needs two CPUs, this test may use {cpus:?}");
        return;
    }
    let (a, b) = (cpus[0], cpus[1]);
    let all = fs::read_to_string("/proc/self/status")
        .map(|s| cpus_allowed(&s))
        .unwrap();
    // In config.json it is the template of `exec`; the spec says it does
    // not apply to init.
    let c = running("affin", |cfg| {
        cfg["process"]["execCPUAffinity"] = json!({"final": b.to_string()});
    });
    let init = fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap();
    assert_eq!(cpus_allowed(&init), all, "init's affinity changed");
    let st = ok(&c.exec(&["cat", "/proc/self/status"]));
    assert_eq!(cpus_allowed(&st), b.to_string(), "exec with config's final");

    for (aff, want) in [
        (json!({"final": a.to_string()}), a.to_string()),
        (json!({"initial": b.to_string()}), b.to_string()),
        (
            json!({"initial": b.to_string(), "final": a.to_string()}),
            a.to_string(),
        ),
    ] {
        let f = process_file(&c, &["cat", "/proc/self/status"], |p| {
            p["execCPUAffinity"] = aff.clone();
        });
        let st = ok(&exec_process(&c, &f));
        assert_eq!(cpus_allowed(&st), want, "{aff}");
    }
    // Without execCPUAffinity the process does not keep vessel's affinity.
    let f = process_file(&c, &["cat", "/proc/self/status"], |p| {
        p.as_object_mut().unwrap().remove("execCPUAffinity");
    });
    let mut cmd = std::process::Command::new("taskset");
    cmd.args(["-c", &a.to_string()])
        .arg(&c.bin)
        .arg("--root")
        .arg(c.root())
        .args(["exec", "--process", f.to_str().unwrap(), &c.id]);
    let st = ok(&vessel_tests::harness::output_via_files(&mut cmd));
    assert_eq!(cpus_allowed(&st), all, "exec kept its caller's affinity");
}

#[test]
fn bad_exec_cpu_affinity_is_refused_by_name() {
    require_root!();
    let mut c = Ctr::new("affbad", &["true"]);
    c.config()["process"]["execCPUAffinity"] = json!({"final": "3-1"});
    c.write();
    refused(&c, "process.execCPUAffinity");

    // A CPU the host lacks: exec fails naming the field, and nothing runs.
    let c = running("affbad2", |_| {});
    let f = process_file(&c, &["touch", "/tmp/ran"], |p| {
        p["execCPUAffinity"] = json!({"final": "8000"});
    });
    let err = fails(&exec_process(&c, &f));
    assert!(err.contains("process.execCPUAffinity.final"), "{err}");
    let f = process_file(&c, &["touch", "/tmp/ran"], |p| {
        p["execCPUAffinity"] = json!({"initial": "8000"});
    });
    let err = fails(&exec_process(&c, &f));
    assert!(err.contains("process.execCPUAffinity.initial"), "{err}");
    let ps = ok(&c.v(&["ps", &c.id]));
    assert_eq!(ps.lines().count(), 2, "only init runs: {ps}");
}

#[test]
fn personality_linux32_for_init_and_exec() {
    require_root!();
    let (_c, out) = run_with(
        "pers",
        &["sh", "-c", "cat /proc/self/personality; uname -m"],
        |cfg| cfg["linux"]["personality"] = json!({"domain": "LINUX32"}),
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("00000008"), "{out}");
    let m = lines.next().unwrap_or("");
    assert!(m.starts_with('i') && m.ends_with("86"), "uname -m: {out}");
    let c = running("persx", |cfg| {
        cfg["linux"]["personality"] = json!({"domain": "LINUX32"})
    });
    assert_eq!(
        ok(&c.exec(&["cat", "/proc/self/personality"])),
        "00000008\n"
    );
    let (_c, out) = run_with("pers64", &["cat", "/proc/self/personality"], |cfg| {
        cfg["linux"]["personality"] = json!({"domain": "LINUX"})
    });
    assert_eq!(out, "00000000\n");

    let mut c = Ctr::new("persbad", &["true"]);
    c.config()["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]});
    c.write();
    refused(&c, "linux.personality.flags");
}

fn ioprio_of(pid: i32) -> i64 {
    // SAFETY: ioprio_get(IOPRIO_WHO_PROCESS, pid) takes integers only.
    unsafe { libc::syscall(libc::SYS_ioprio_get, 1, pid) }
}

#[test]
fn io_priority_for_init_and_exec() {
    require_root!();
    let c = running("ioprio", |cfg| {
        cfg["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    });
    assert_eq!(ioprio_of(c.pid()), (2 << 13) | 6, "init");
    let f = process_file(&c, &["sleep", "1000"], |p| {
        p["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    });
    let pidfile = c.bundle.path().join("exec.pid");
    ok(&c.exec_opts(
        &[
            "-d",
            "--pid-file",
            pidfile.to_str().unwrap(),
            "--process",
            f.to_str().unwrap(),
        ],
        &[],
    ));
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_for(5, || ioprio_of(pid) >= 0));
    assert_eq!(ioprio_of(pid), 3 << 13, "exec'd process: IDLE");
    // It is the container's: delete --force ends it with the container.
}

fn features() -> Value {
    let o = std::process::Command::new(vessel_tests::vessel_bin())
        .arg("features")
        .output()
        .unwrap();
    serde_json::from_str(&ok(&o)).expect("features prints JSON")
}

fn list(v: &Value) -> Vec<String> {
    v.as_str()
        .map(|s| s.split(',').map(String::from).collect())
        .or_else(|| {
            v.as_array()
                .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        })
        .unwrap_or_else(|| panic!("not a list: {v}"))
}

#[test]
fn advertised_scheduler_policies_and_flags_are_applied() {
    require_root!();
    let f = features();
    let a = &f["annotations"];
    let policies = list(&a["io.vessel.process.scheduler.policies"]);
    let flags = list(&a["io.vessel.process.scheduler.flags"]);
    assert!(policies.len() >= 6, "{policies:?}");
    let rt_groups = Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists();
    for p in &policies {
        let (num, extra) = match p.as_str() {
            "SCHED_OTHER" => (0, json!({})),
            "SCHED_FIFO" => (1, json!({"priority": 1})),
            "SCHED_RR" => (2, json!({"priority": 1})),
            "SCHED_BATCH" => (3, json!({})),
            "SCHED_IDLE" => (5, json!({})),
            "SCHED_DEADLINE" => (
                6,
                json!({"runtime": 1_000_000, "deadline": 10_000_000, "period": 10_000_000}),
            ),
            other => panic!("features advertises {other}, which this test does not know"),
        };
        let mut sched = extra;
        sched["policy"] = json!(p);
        let (_c, stat) = run_with("featsched", &["cat", "/proc/self/stat"], |cfg| {
            cfg["process"]["scheduler"] = sched.clone();
            if rt_groups && (num == 1 || num == 2) {
                cfg["linux"]["resources"]["cpu"] =
                    json!({"realtimeRuntime": 10000, "realtimePeriod": 1000000});
            }
        });
        assert_eq!(stat_field(&stat, 41), num, "{p}: {stat}");
    }
    // Every flag is passed on: with SCHED_FLAG_KEEP_POLICY or _KEEP_PARAMS
    // the kernel keeps the policy (SCHED_OTHER), with the others
    // SCHED_BATCH applies.
    for flag in &flags {
        let want = if flag.starts_with("SCHED_FLAG_KEEP_") {
            0
        } else {
            3
        };
        let (_c, stat) = run_with("featschedf", &["cat", "/proc/self/stat"], |cfg| {
            cfg["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "flags": [flag]});
        });
        assert_eq!(stat_field(&stat, 41), want, "{flag}: {stat}");
    }
}

#[test]
fn advertised_memory_policy_modes_and_flags_are_applied() {
    require_root!();
    let Some(nodes) = online_nodes() else {
        eprintln!("SKIP: no NUMA in this kernel (/sys/devices/system/node/online)");
        return;
    };
    let n = nodes[0].to_string();
    let f = features();
    let mp = &f["linux"]["memoryPolicy"];
    for mode in list(&mp["modes"]) {
        let pol = match mode.as_str() {
            "MPOL_DEFAULT" | "MPOL_LOCAL" => json!({"mode": mode}),
            _ => json!({"mode": mode, "nodes": n}),
        };
        let mut c = Ctr::new("featmpol", &["true"]);
        c.config()["linux"]["memoryPolicy"] = pol.clone();
        c.write();
        let o = c.run();
        // Accepted: it runs, or only the kernel refuses (a mode newer than
        // it), by the field's name.
        if !o.status.success() {
            let err = vessel_tests::harness::stderr(&o);
            assert!(
                err.contains("linux.memoryPolicy: set_mempolicy"),
                "{pol}: {err}"
            );
            eprintln!("{mode}: refused by this kernel: {err}");
        }
    }
    for flag in list(&mp["flags"]) {
        let pol = json!({"mode": "MPOL_BIND", "nodes": n, "flags": [flag]});
        let (_c, _) = run_with("featmpolf", &["true"], |cfg| {
            cfg["linux"]["memoryPolicy"] = pol.clone();
        });
    }
}
