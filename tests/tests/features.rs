//! `vessel features`: the JSON shape runc prints, and claims that hold.

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
    c.config()["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": archs, "syscalls": rules
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
