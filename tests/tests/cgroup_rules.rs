//! What vessel does with a `linux.resources` setting this host lacks (the
//! README's "Cgroup settings a host lacks"): an error naming the setting
//! when the limit cannot be enforced, leaving nothing behind, and a warning
//! on stderr for the kernel memory limits runc also drops. Each case looks
//! at the host first: a controller that is mounted is checked to hold the
//! value instead. Also `linux.intelRdt` on a host without resctrl.

use std::path::Path;

use serde_json::{json, Value};
use vessel_tests::harness::{cgroup_value, fails, ok, stderr, Ctr};
use vessel_tests::require_root;

/// Whether a cgroup v1 hierarchy with `controller` is mounted.
fn v1_mounted(controller: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(" - ").map(|(_, r)| r.to_string()))
        .any(|r| {
            let f: Vec<&str> = r.split_whitespace().collect();
            f.first() == Some(&"cgroup")
                && f.get(2)
                    .is_some_and(|o| o.split(',').any(|x| x == controller))
        })
}

fn with_resources(tag: &str, res: Value) -> Ctr {
    let mut c = Ctr::new(tag, &["sleep", "1000"]);
    c.config()["linux"]["resources"] = res;
    c.write();
    c
}

#[test]
fn a_controller_the_host_lacks_is_an_error_naming_the_setting() {
    require_root!();
    for (controller, res, setting, file, want) in [
        (
            "net_cls",
            json!({"network": {"classID": 1048577}}),
            "linux.resources.network.classID",
            "net_cls.classid",
            "1048577",
        ),
        (
            "net_prio",
            json!({"network": {"priorities": [{"name": "lo", "priority": 5}]}}),
            "linux.resources.network.priorities",
            "net_prio.ifpriomap",
            "lo 5",
        ),
        (
            "rdma",
            json!({"rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 100}}}),
            "linux.resources.rdma",
            "rdma.max",
            "",
        ),
    ] {
        let c = with_resources("cgrule", res);
        let o = c.create_with(&[]);
        if v1_mounted(controller) {
            eprintln!("{controller} is mounted here: checking the value instead");
            if controller == "rdma" {
                // No RDMA device on a test host: the kernel refuses the name.
                continue;
            }
            ok(&o);
            let v = cgroup_value(controller, &c.id, file).unwrap_or_default();
            assert!(v.contains(want), "{file}: {v}");
        } else {
            let e = fails(&o);
            assert!(
                e.contains(setting) && e.contains(controller),
                "{controller}: {e}"
            );
            assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
        }
    }
}

#[test]
fn kernel_memory_limits_are_dropped_with_a_warning_or_enforced() {
    require_root!();
    let c = with_resources(
        "cgkmem",
        json!({"memory": {"limit": 67108864, "kernel": 16777216, "kernelTCP": 8388608}}),
    );
    let o = c.create_with(&[]);
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("level=warning") && err.contains("linux.resources.memory.kernel is ignored"),
        "{err}"
    );
    assert_eq!(
        cgroup_value("memory", &c.id, "memory.limit_in_bytes").as_deref(),
        Some("67108864")
    );
    // The TCP buffer limit is enforced where the kernel has the file, and
    // dropped with a warning where not.
    let tcp = cgroup_value("memory", &c.id, "memory.kmem.tcp.limit_in_bytes");
    match tcp {
        Some(v) => assert_eq!(v, "8388608", "memory.kmem.tcp.limit_in_bytes"),
        None => assert!(
            err.contains("linux.resources.memory.kernelTCP is ignored"),
            "{err}"
        ),
    }
    c.start();
    ok(&c.v(&["delete", "--force", &c.id]));
    assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
}

#[test]
fn a_device_allowlist_or_hierarchy_switch_that_cannot_be_enforced_is_refused() {
    require_root!();
    // Memory accounting has been hierarchical only since Linux 5.16:
    // useHierarchy false cannot be had (runc 1.1.5 ignores it silently).
    let c = with_resources("cghier", json!({"memory": {"useHierarchy": false}}));
    let e = fails(&c.create_with(&[]));
    assert!(e.contains("linux.resources.memory.useHierarchy"), "{e}");
    assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
    if !v1_mounted("devices") {
        let c = with_resources(
            "cgdev",
            json!({"devices": [{"allow": false, "access": "rwm"}]}),
        );
        let e = fails(&c.create_with(&[]));
        assert!(e.contains("linux.resources.devices"), "{e}");
    }
}

#[test]
fn intel_rdt_without_resctrl_is_an_error_naming_the_field() {
    require_root!();
    let resctrl = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" - resctrl "));
    if resctrl {
        eprintln!("skipped: this host has resctrl mounted (the unit tests cover the groups)");
        return;
    }
    assert!(!Path::new("/sys/fs/resctrl/tasks").exists());
    for rdt in [
        json!({}),
        json!({"closID": "gold"}),
        json!({"l3CacheSchema": "L3:0=f"}),
        json!({"enableMonitoring": true}),
    ] {
        let mut c = Ctr::new("rdt", &["true"]);
        c.config()["linux"]["intelRdt"] = rdt.clone();
        c.write();
        let e = fails(&c.create_with(&[]));
        assert!(
            e.contains("linux.intelRdt") && e.contains("resctrl"),
            "{rdt}: {e}"
        );
        assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
    }
    // A bad field is named before the host is looked at.
    let mut c = Ctr::new("rdtbad", &["true"]);
    c.config()["linux"]["intelRdt"] = json!({"closID": "../x"});
    c.write();
    let e = fails(&c.create_with(&[]));
    assert!(e.contains("linux.intelRdt.closID"), "{e}");
}
