//! `vessel features`: the JSON shape runc prints, and claims that hold.
//! Each advertised item is used for real here or in the suite named next
//! to it: scheduler and memory policy in spec_process.rs, netDevices in
//! spec_mounts.rs, SCMP_ACT_NOTIFY in seccomp_notify.rs.

use serde_json::{json, Value};
use vessel_tests::harness::{fails, ok, Ctr};
use vessel_tests::require_root;

fn features() -> Value {
    let o = std::process::Command::new(vessel_tests::vessel_bin())
        .arg("features")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    serde_json::from_slice(&o.stdout).expect("features prints JSON")
}

#[test]
fn features_json_shape() {
    let f = features();
    let min = f["ociVersionMin"].as_str().expect("ociVersionMin");
    let max = f["ociVersionMax"].as_str().expect("ociVersionMax");
    assert!(
        min.starts_with("1.") && max.starts_with("1."),
        "{min} {max}"
    );
    assert!(min <= max);
    let hooks: Vec<&str> = f["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&h), "hooks lacks {h}: {hooks:?}");
    }
    let ns: Vec<&str> = f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    for n in [
        "cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts",
    ] {
        assert!(ns.contains(&n), "namespaces lacks {n}: {ns:?}");
    }
    let caps = f["linux"]["capabilities"].as_array().unwrap();
    assert!(caps.contains(&json!("CAP_SYS_ADMIN")) && caps.contains(&json!("CAP_KILL")));
    let sc = &f["linux"]["seccomp"];
    assert_eq!(sc["enabled"], true);
    for key in ["actions", "operators", "archs"] {
        assert!(
            sc[key].as_array().is_some_and(|a| !a.is_empty()),
            "seccomp.{key}: {sc}"
        );
    }
    // NOTIFY works with a listener (tests/seccomp_notify.rs).
    assert!(
        sc["actions"]
            .as_array()
            .unwrap()
            .contains(&json!("SCMP_ACT_NOTIFY")),
        "{sc}"
    );
    let mo = f["mountOptions"].as_array().unwrap();
    for o in ["ro", "rbind", "nosuid", "nodev", "noexec", "bind"] {
        assert!(mo.contains(&json!(o)), "mountOptions lacks {o}");
    }
    let cg = &f["linux"]["cgroup"];
    assert_eq!(cg["v1"], true, "{cg}");
    assert_eq!(cg["v2"], true, "{cg}");
}

#[test]
fn advertised_seccomp_actions_and_operators_are_accepted() {
    require_root!();
    let f = features();
    let sc = &f["linux"]["seccomp"];
    let mut rules = Vec::new();
    // One rule per advertised action (on syscalls busybox `true` never makes),
    // and one per advertised operator.
    let spare = [
        "acct",
        "swapon",
        "swapoff",
        "reboot",
        "kexec_load",
        "init_module",
        "delete_module",
        "pivot_root",
    ];
    // NOTIFY needs a listener answering: tests/seccomp_notify.rs runs it.
    let actions = sc["actions"].as_array().unwrap().iter();
    for (i, a) in actions.filter(|a| *a != "SCMP_ACT_NOTIFY").enumerate() {
        let mut r = json!({"names": [spare[i % spare.len()]], "action": a});
        if a == "SCMP_ACT_ERRNO" {
            r["errnoRet"] = json!(1);
        }
        rules.push(r);
    }
    for op in sc["operators"].as_array().unwrap() {
        let value = 3;
        let mut arg = json!({"index": 0, "value": value, "op": op});
        if op == "SCMP_CMP_MASKED_EQ" {
            arg["valueTwo"] = json!(3);
        }
        rules.push(json!({"names": ["quotactl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": [arg]}));
    }
    let archs = sc["archs"].clone();
    let mut c = Ctr::new("featsec", &["sh", "-c", "echo ok"]);
    // Every flag the kernel supports, as advertised, is loaded with it.
    let flags = sc["supportedFlags"].clone();
    assert!(flags.as_array().is_some_and(|f| !f.is_empty()), "{sc}");
    c.config()["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": archs, "syscalls": rules,
        "flags": flags
    });
    c.write();
    let o = c.run();
    assert_eq!(ok(&o), "ok\n");
}

#[test]
fn advertised_namespaces_can_be_created() {
    require_root!();
    let f = features();
    let mut c = Ctr::new("featns", &["sh", "-c", "echo ok"]);
    let ns: Vec<Value> = f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| json!({"type": n}))
        .collect();
    c.config()["linux"]["namespaces"] = json!(ns);
    c.config()["linux"]["uidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    c.config()["linux"]["gidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    c.config()["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["type"] != "cgroup");
    c.write();
    assert_eq!(ok(&c.run()), "ok\n");
}

#[test]
fn systemd_cgroup_without_systemd_is_a_clear_error() {
    require_root!();
    if std::path::Path::new("/run/systemd/system").exists() {
        eprintln!("SKIP: systemd runs here; this checks the error where it does not");
        return;
    }
    let c = Ctr::new("featsysd", &["true"]);
    let b = c.bundle.path().to_str().unwrap().to_string();
    let mut cmd = c.cmd();
    cmd.args(["--systemd-cgroup", "create", "--bundle", &b, &c.id]);
    let o = vessel_tests::harness::output_via_files(&mut cmd);
    let err = fails(&o);
    assert!(err.to_lowercase().contains("systemd"), "{err}");
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

/// Options that need more than a fresh tmpfs: a bind source, an existing
/// mount, or an id mapping (spec_mounts.rs uses them).
const NOT_ON_TMPFS: &[&str] = &["bind", "rbind", "remount", "idmap", "ridmap"];

#[test]
fn advertised_mount_options_are_applied_not_passed_as_data() {
    require_root!();
    let f = features();
    let opts: Vec<String> = f["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    assert!(opts.len() > 40, "{opts:?}");
    // One tmpfs per option: tmpfs refuses data it does not know, so an
    // option vessel passed on as data would fail the mount. The bind
    // options go on a bind of a directory.
    let src = tempfile::tempdir().unwrap();
    let mut c = Ctr::new(
        "featmnt",
        &["sh", "-c", "grep -c ' /m[0-9]' /proc/self/mounts"],
    );
    let mut n = 0;
    for o in &opts {
        let m = if NOT_ON_TMPFS.contains(&o.as_str()) {
            if o != "bind" && o != "rbind" {
                continue;
            }
            json!({"destination": format!("/m{n}"), "type": "bind",
                   "source": src.path(), "options": [o]})
        } else {
            json!({"destination": format!("/m{n}"), "type": "tmpfs",
                   "source": "tmpfs", "options": [o]})
        };
        c.config()["mounts"].as_array_mut().unwrap().push(m);
        n += 1;
    }
    c.write();
    let out = ok(&c.run());
    assert_eq!(out.trim(), n.to_string(), "every mount is there");
}

#[test]
fn advertised_hooks_all_run() {
    require_root!();
    let f = features();
    let hooks: Vec<String> = f["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect();
    // createContainer and startContainer run in the container: the log's
    // directory is bound at its own path there.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hooks.log");
    let mut c = Ctr::new("feathook", &["true"]);
    c.config()["mounts"].as_array_mut().unwrap().push(json!({
        "destination": dir.path(), "type": "bind", "source": dir.path(), "options": ["rbind"]
    }));
    for h in &hooks {
        let script = format!("echo {h} >> {}", log.display());
        c.config()["hooks"][h] = json!([{"path": "/bin/sh", "args": ["sh", "-c", script]}]);
    }
    c.write();
    ok(&c.run());
    // poststop runs at delete (run deletes the container as it ends).
    let ran = std::fs::read_to_string(&log).unwrap();
    for h in &hooks {
        assert!(ran.lines().any(|l| l == h), "hook {h} did not run: {ran}");
    }
}

fn cap_mask(status: &str, key: &str) -> u64 {
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn advertised_capabilities_are_granted() {
    require_root!();
    let f = features();
    let caps: Vec<String> = f["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let last: usize = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Every capability of this kernel, in its order (so a name's position
    // is its number).
    assert!(caps.len() > last, "{} capabilities: {caps:?}", caps.len());
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let (bnd, prm) = (cap_mask(&ours, "CapBnd"), cap_mask(&ours, "CapPrm"));
    // The ones this (sandboxed) test may hold.
    let held: Vec<&String> = caps
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 64 && prm & (1 << i) != 0)
        .map(|(_, c)| c)
        .collect();
    let mut c = Ctr::new("featcaps", &["grep", "^Cap", "/proc/self/status"]);
    c.config()["process"]["capabilities"] = json!({
        "bounding": caps, "effective": held, "permitted": held
    });
    c.write();
    let out = ok(&c.run());
    // Nothing we hold was left out of the list, or granted under another name.
    assert_eq!(cap_mask(&out, "CapBnd"), bnd, "{out}");
    assert_eq!(cap_mask(&out, "CapPrm"), prm, "{out}");
}

#[test]
fn intel_rdt_is_enabled_exactly_where_resctrl_is_mounted() {
    let f = features();
    let resctrl = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" - resctrl "));
    assert_eq!(f["linux"]["intelRdt"]["enabled"], resctrl, "{}", f["linux"]);
    let ns: Vec<&str> = f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    // Each advertised namespace is one this kernel has.
    for n in ns {
        let proc = match n {
            "mount" => "mnt",
            "network" => "net",
            other => other,
        };
        assert!(
            std::path::Path::new("/proc/self/ns").join(proc).exists(),
            "{n}"
        );
    }
}
