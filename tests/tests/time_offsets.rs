//! `linux.timeOffsets`: the container's CLOCK_MONOTONIC and CLOCK_BOOTTIME
//! are the host's shifted by the offsets, for the init and for an exec'd
//! process, with and without a user namespace (runc 1.1.5 refuses the
//! `time` namespace altogether). The clocks are read inside with the host's
//! python3, bind-mounted read-only with /usr: busybox has no applet that
//! prints CLOCK_MONOTONIC.

use std::path::Path;

use serde_json::{json, Value};
use vessel_tests::harness::{ok, Ctr};
use vessel_tests::require_root;

const PYTHON: &str = "/usr/bin/python3";
const READ_CLOCKS: &str = "import time; print(time.clock_gettime(time.CLOCK_MONOTONIC), \
                           time.clock_gettime(time.CLOCK_BOOTTIME))";
const MONOTONIC: f64 = 864_000.0;
const BOOTTIME: f64 = 1_728_000.5;

/// The host's (monotonic, boottime) now.
fn host_clocks() -> (f64, f64) {
    let read = |clock| {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid timespec for the call to fill.
        assert_eq!(unsafe { libc::clock_gettime(clock, &mut t) }, 0);
        t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
    };
    (read(libc::CLOCK_MONOTONIC), read(libc::CLOCK_BOOTTIME))
}

fn parse(out: &str) -> (f64, f64) {
    let v: Vec<f64> = out
        .split_whitespace()
        .map(|s| s.parse().unwrap_or_else(|_| panic!("clock in {out:?}")))
        .collect();
    assert_eq!(v.len(), 2, "{out}");
    (v[0], v[1])
}

/// The inside clocks minus the host's, read around `inside`: each shift
/// is the offset plus at most the time the reading took.
fn shift(inside: impl FnOnce() -> String) -> (f64, f64, String) {
    let before = host_clocks();
    let out = inside();
    let (m, b) = parse(&out);
    (m - before.0, b - before.1, out)
}

fn check(what: &str, (m, b, out): (f64, f64, String)) {
    // Each shift is the offset plus at most the time the reading took.
    assert!(
        (MONOTONIC..MONOTONIC + 60.0).contains(&m),
        "{what}: CLOCK_MONOTONIC shifted by {m}, want {MONOTONIC}: {out}"
    );
    assert!(
        (BOOTTIME..BOOTTIME + 60.0).contains(&b),
        "{what}: CLOCK_BOOTTIME shifted by {b}, want {BOOTTIME}: {out}"
    );
}

/// A container whose init writes its clocks to /dev/clocks and sleeps,
/// with a new time namespace, the offsets and the host's /usr (read-only),
/// optionally in a user namespace.
fn container(tag: &str, userns: bool) -> Ctr {
    let script = format!("{PYTHON} -c '{READ_CLOCKS}' > /dev/clocks; exec sleep 1000");
    let mut c = Ctr::new(tag, &["sh", "-c", &script]);
    let root = c.bundle.rootfs();
    std::fs::create_dir_all(root.join("usr")).unwrap();
    let mut binds = vec!["/usr".to_string()];
    for l in ["lib", "lib64"] {
        let host = Path::new("/").join(l);
        if host.is_symlink() {
            // A merged /usr: the link resolves inside the bound /usr.
            let target = std::fs::read_link(&host).unwrap();
            std::os::unix::fs::symlink(target, root.join(l)).unwrap();
        } else if host.is_dir() {
            std::fs::create_dir_all(root.join(l)).unwrap();
            binds.push(host.to_string_lossy().into_owned());
        }
    }
    let cfg: &mut Value = c.config();
    let ns = cfg["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "time"}));
    if userns {
        ns.push(json!({"type": "user"}));
        cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    }
    cfg["linux"]["timeOffsets"] = json!({
        "monotonic": {"secs": 864000, "nanosecs": 0},
        "boottime": {"secs": 1728000, "nanosecs": 500_000_000}
    });
    let mounts = cfg["mounts"].as_array_mut().unwrap();
    // cgroup v1 hierarchies cannot be mounted from a user namespace.
    mounts.retain(|m| m["type"] != "cgroup");
    for b in binds {
        mounts.push(json!({"destination": b, "type": "bind", "source": b,
                           "options": ["rbind", "ro"]}));
    }
    c.write();
    c
}

fn run_case(tag: &str, userns: bool) {
    if !Path::new(PYTHON).exists() {
        eprintln!("skipped: {PYTHON} is absent (it reads the clocks inside)");
        return;
    }
    if !Path::new("/proc/self/timens_offsets").exists() {
        eprintln!("skipped: the kernel has no time namespaces");
        return;
    }
    let c = container(tag, userns);
    // The init's view, written once it runs.
    check(
        &format!("{tag} init"),
        shift(|| {
            c.create();
            c.start();
            let mut out = String::new();
            let seen = vessel_tests::harness::wait_for(30, || {
                let o = c.exec(&["cat", "/dev/clocks"]);
                out = String::from_utf8_lossy(&o.stdout).into_owned();
                o.status.success() && out.ends_with('\n')
            });
            assert!(seen, "the init wrote no clocks: {out}");
            out
        }),
    );
    // An exec'd process joins the same time namespace.
    check(
        &format!("{tag} exec"),
        shift(|| ok(&c.exec(&[PYTHON, "-c", READ_CLOCKS]))),
    );
    ok(&c.v(&["delete", "--force", &c.id]));
    assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
}

#[test]
fn time_offsets_shift_monotonic_and_boottime() {
    require_root!();
    run_case("tofs", false);
}

#[test]
fn time_offsets_in_a_user_namespace() {
    require_root!();
    run_case("tofsu", true);
}

#[test]
fn time_offsets_without_a_time_namespace_or_for_another_clock_are_refused() {
    require_root!();
    let mut c = Ctr::new("tofsbad", &["true"]);
    c.config()["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 1}});
    c.write();
    let e = vessel_tests::harness::fails(&c.run());
    assert!(
        e.contains("linux.timeOffsets") && e.contains("time namespace"),
        "{e}"
    );
    c.config()["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    c.config()["linux"]["timeOffsets"] = json!({"realtime": {"secs": 1}});
    c.write();
    let e = vessel_tests::harness::fails(&c.run());
    assert!(e.contains("linux.timeOffsets.realtime"), "{e}");
    assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
}
