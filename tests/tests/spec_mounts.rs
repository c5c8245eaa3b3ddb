//! Spec mount features: `nosymfollow`, the recursive `r*` options applied
//! with mount_setattr(AT_RECURSIVE), and what the kernel refuses.

use serde_json::{json, Value};
use vessel_tests::harness::{ok, Ctr};
use vessel_tests::require_root;

/// mount_setattr(2) exists (Linux 5.12+): fd -1 gives EBADF, not ENOSYS.
fn have_mount_setattr() -> bool {
    // SAFETY: an invalid fd and no attributes: the kernel only validates.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            std::ptr::null::<u8>(),
            0usize,
        )
    };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}

fn mounts(cfg: &mut Value) -> &mut Vec<Value> {
    cfg["mounts"].as_array_mut().unwrap()
}

/// Runs `script` in a container changed by `f`; returns its stdout.
fn sh(tag: &str, script: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut c = Ctr::new(tag, &["sh", "-c", script]);
    f(c.config());
    c.write();
    ok(&c.run())
}

/// mountinfo lines (from the container's output) whose mount point is
/// `dir` or below it: (mount point, per-mount options).
fn under(mountinfo: &str, dir: &str) -> Vec<(String, Vec<String>)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let mp = *f.get(4)?;
            let opts = f.get(5)?.split(',').map(String::from).collect();
            (mp == dir || mp.starts_with(&format!("{dir}/"))).then(|| (mp.to_string(), opts))
        })
        .collect()
}

#[test]
fn nosymfollow_refuses_symlinks_on_that_mount_only() {
    require_root!();
    let out = sh(
        "nosym",
        "echo hi > /t/f; ln -s /t/f /t/l; ln -s /t/f /tmp/l; \
         cat /t/l 2>/dev/null && echo followed-t; cat /tmp/l; grep ' /t ' /proc/self/mountinfo",
        |v| {
            mounts(v).push(
                json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosymfollow"]}),
            );
            mounts(v).push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
        },
    );
    assert!(!out.contains("followed-t"), "symlink on /t followed: {out}");
    assert!(out.contains("hi"), "symlink elsewhere not followed: {out}");
    let t = under(&out, "/t");
    assert_eq!(t.len(), 1, "{out}");
    assert!(t[0].1.contains(&"nosymfollow".to_string()), "{out}");
}

#[test]
fn recursive_options_reach_every_submount() {
    require_root!();
    if !have_mount_setattr() {
        eprintln!("SKIP: the kernel has no mount_setattr (Linux 5.12+)");
        return;
    }
    // The host's /sys has submounts (fs/cgroup at least): the recursive
    // options must apply to each of them, not only to the top.
    let out = sh("rrec", "cat /proc/self/mountinfo", |v| {
        mounts(v).push(
            json!({"destination": "/hs", "type": "bind", "source": "/sys",
            "options": ["rbind", "rro", "rnosuid", "rnodev", "rnoexec", "rnoatime",
                        "rnodiratime", "rnosymfollow"]}),
        );
    });
    let hs = under(&out, "/hs");
    assert!(hs.len() >= 2, "no submounts under /hs: {out}");
    for (mp, o) in &hs {
        for want in [
            "ro",
            "nosuid",
            "nodev",
            "noexec",
            "noatime",
            "nodiratime",
            "nosymfollow",
        ] {
            assert!(o.contains(&want.to_string()), "{mp} lacks {want}: {o:?}");
        }
    }
    // The clearing forms, after setting forms that the last one overrides;
    // and the atime modes (strictatime shows neither relatime nor noatime).
    let out = sh("rclr", "cat /proc/self/mountinfo", |v| {
        mounts(v).push(
            json!({"destination": "/hs", "type": "bind", "source": "/sys",
            "options": ["rbind", "rro", "rnosuid", "rnodev", "rnoexec", "rnodiratime",
                        "rnosymfollow", "rrw", "rsuid", "rdev", "rexec", "rdiratime",
                        "rsymfollow", "rstrictatime"]}),
        );
        mounts(v).push(
            json!({"destination": "/hr", "type": "bind", "source": "/sys",
            "options": ["rbind", "rnoatime", "ratime"]}),
        );
        mounts(v).push(
            json!({"destination": "/hn", "type": "bind", "source": "/sys",
            "options": ["rbind", "rnorelatime"]}),
        );
        mounts(v).push(
            json!({"destination": "/hq", "type": "bind", "source": "/sys",
            "options": ["rbind", "rstrictatime", "rnostrictatime"]}),
        );
    });
    let hs = under(&out, "/hs");
    assert!(hs.len() >= 2, "no submounts under /hs: {out}");
    for (mp, o) in &hs {
        for gone in [
            "ro",
            "nosuid",
            "nodev",
            "noexec",
            "nodiratime",
            "nosymfollow",
            "noatime",
            "relatime",
        ] {
            assert!(
                !o.contains(&gone.to_string()),
                "{mp} still has {gone}: {o:?}"
            );
        }
        assert!(o.contains(&"rw".to_string()), "{mp}: {o:?}");
    }
    for dir in ["/hr", "/hq"] {
        for (mp, o) in under(&out, dir) {
            assert!(o.contains(&"relatime".to_string()), "{mp}: {o:?}");
        }
    }
    for (mp, o) in under(&out, "/hn") {
        assert!(
            !o.contains(&"relatime".to_string()) && !o.contains(&"noatime".to_string()),
            "{mp} not strictatime: {o:?}"
        );
    }
}

fn drop_ns(v: &mut Value, typ: &str) {
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != typ);
}

fn mountinfo() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// Without a mount namespace the container shares the host's, is only
/// chrooted into its rootfs, and nothing is mounted: not the rootfs bind,
/// not /proc, not /dev.
#[test]
fn without_a_mount_namespace_nothing_is_mounted() {
    require_root!();
    let mut c = Ctr::new("nomntns", &["sh", "-c", "cat /marker > /out; ls / >> /out"]);
    std::fs::write(c.bundle.rootfs().join("marker"), "in-the-rootfs\n").unwrap();
    {
        let v = c.config();
        drop_ns(v, "mount");
        v["mounts"] = json!([]);
        v["linux"]["maskedPaths"] = json!([]);
        v["linux"]["readonlyPaths"] = json!([]);
        v["root"]["readonly"] = json!(false);
    }
    c.write();
    let bundle = c.bundle.path().to_str().unwrap().to_string();
    let before = mountinfo();
    c.create();
    let pid = c.pid();
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/mnt")).unwrap();
    assert_eq!(
        ns(&pid.to_string()),
        ns("self"),
        "not in the host's mount namespace"
    );
    // The init's root is the rootfs (chroot), not the host's /.
    let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
    assert_eq!(root, c.bundle.rootfs().canonicalize().unwrap());
    // An exec'd process shares the init's root (not the host's).
    let got = ok(&c.exec(&["cat", "/marker"]));
    assert_eq!(got, "in-the-rootfs\n");
    c.start();
    let out = c.bundle.rootfs().join("out");
    assert!(vessel_tests::harness::wait_for(10, || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("bin"))
    }));
    let got = std::fs::read_to_string(&out).unwrap();
    assert!(got.starts_with("in-the-rootfs\n"), "{got}");
    let after = mountinfo();
    let new: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
    assert!(
        new.iter().all(|l| !l.contains(&bundle)),
        "host mount table gained: {new:?}"
    );
    assert!(vessel_tests::leaks::mounts_mentioning(&bundle).is_empty());
}

/// Every field that needs a mount is refused without a mount namespace,
/// naming the field, and the host's mount table is left as it was.
#[test]
fn without_a_mount_namespace_mounts_are_refused() {
    require_root!();
    for (tag, field, f) in [
        (
            "nomnt-m",
            "mounts[0]",
            (|_v: &mut Value| {}) as fn(&mut Value),
        ),
        ("nomnt-p", "linux.maskedPaths", |v: &mut Value| {
            v["mounts"] = json!([]);
        }),
        ("nomnt-r", "root.readonly", |v: &mut Value| {
            v["mounts"] = json!([]);
            v["linux"]["maskedPaths"] = json!([]);
            v["linux"]["readonlyPaths"] = json!([]);
            v["root"]["readonly"] = json!(true);
        }),
    ] {
        let mut c = Ctr::new(tag, &["true"]);
        drop_ns(c.config(), "mount");
        f(c.config());
        c.write();
        let bundle = c.bundle.path().to_str().unwrap().to_string();
        let err = vessel_tests::harness::fails(&c.create_with(&[]));
        assert!(
            err.contains(field) && err.contains("mount namespace"),
            "{tag}: {err}"
        );
        assert!(vessel_tests::leaks::mounts_mentioning(&bundle).is_empty());
        assert_eq!(c.leftovers(), Vec::<String>::new());
    }
}

/// Relative `readonlyPaths` / `maskedPaths` entries count from the
/// container's root, as runc applies them (with `/` as working directory).
#[test]
fn relative_readonly_and_masked_paths_count_from_the_root() {
    require_root!();
    let mut c = Ctr::new(
        "relpaths",
        &[
            "sh",
            "-c",
            "touch /rodir/x 2>/dev/null && echo writable; echo \"secret=$(cat /hidden)\"; \
             touch /rwdir/y && echo rw-ok",
        ],
    );
    let r = c.bundle.rootfs();
    std::fs::create_dir(r.join("rodir")).unwrap();
    std::fs::create_dir(r.join("rwdir")).unwrap();
    std::fs::write(r.join("hidden"), "s3cret").unwrap();
    {
        let v = c.config();
        v["root"]["readonly"] = json!(false);
        v["linux"]["readonlyPaths"] = json!(["rodir", "./no/such/dir"]);
        v["linux"]["maskedPaths"] = json!(["../hidden"]);
    }
    c.write();
    let out = ok(&c.run());
    assert!(!out.contains("writable"), "rodir not read-only: {out}");
    assert!(out.contains("secret=\n"), "hidden not masked: {out}");
    assert!(out.contains("rw-ok"), "{out}");
    assert!(!r.join("rodir/x").exists());
}

/// The host's link names, from `ip -o link`.
fn host_links() -> Vec<String> {
    let o = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// A veth pair the test owns (this kernel may lack the dummy driver, and
/// loads no modules), deleted on drop; `.0` is the end that is moved.
struct Dummy(String);

impl Dummy {
    fn new(tag: &str) -> Dummy {
        let n = std::process::id() % 100_000;
        let name = format!("vt-{tag}{n}");
        let peer = format!("vt-{tag}p{n}");
        let ok = std::process::Command::new("ip")
            .args(["link", "add", &name, "type", "veth", "peer", "name", &peer])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip link add {name} type veth");
        Dummy(name)
    }
}

impl Drop for Dummy {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .status();
    }
}

/// `linux.netDevices`: a host link moves into the container (renamed, its
/// address and up state kept) at create, and back to the host at delete.
#[test]
fn net_devices_move_in_and_back() {
    require_root!();
    let name;
    {
        let d = Dummy::new("nd");
        name = d.0.clone();
        let ip = |args: &[&str]| {
            assert!(std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap()
                .success())
        };
        ip(&["addr", "add", "10.251.7.1/24", "dev", &d.0]);
        ip(&["link", "set", &d.0, "up"]);
        let mut c = Ctr::new("netdev", &["sleep", "1000"]);
        c.config()["linux"]["netDevices"] = json!({ d.0.clone(): {"name": "ctr0"} });
        c.write();
        c.create();
        assert!(!host_links().contains(&d.0), "still on the host");
        let o = c.exec(&[
            "sh",
            "-c",
            "ip -o addr show dev ctr0; ip -o link show dev ctr0",
        ]);
        let out = ok(&o);
        assert!(out.contains("10.251.7.1/24"), "address lost: {out}");
        assert!(out.contains("UP"), "not up: {out}");
        ok(&c.v(&["delete", "--force", &c.id]));
        assert!(host_links().contains(&d.0), "not returned to the host");
        let addr = std::process::Command::new("ip")
            .args(["-o", "addr", "show", "dev", &d.0])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&addr.stdout).contains("10.251.7.1/24"));
        assert!(!host_links().contains(&"ctr0".to_string()));
    }
    // Other tests (and other users of the host) change links meanwhile:
    // only ours are compared.
    let left: Vec<String> = host_links()
        .into_iter()
        .filter(|l| l.starts_with(&name[..5]) && l.ends_with(&name[5..]) || l == "ctr0")
        .collect();
    assert!(left.is_empty(), "links left on the host: {left:?}");
}

#[test]
fn net_devices_refused_without_netns_or_link() {
    require_root!();
    let d = Dummy::new("nr");
    let mut c = Ctr::new("netdev-nons", &["true"]);
    c.config()["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    c.config()["linux"]["netDevices"] = json!({ d.0.clone(): {} });
    c.write();
    let err = vessel_tests::harness::fails(&c.create_with(&[]));
    assert!(
        err.contains("linux.netDevices") && err.contains("network namespace"),
        "{err}"
    );
    assert!(host_links().contains(&d.0));

    let mut c = Ctr::new("netdev-nolink", &["true"]);
    c.config()["linux"]["netDevices"] = json!({"vt-nosuchlink0": {}});
    c.write();
    let err = vessel_tests::harness::fails(&c.create_with(&[]));
    assert!(err.contains("linux.netDevices.vt-nosuchlink0"), "{err}");
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

/// `idmap`: a bind mount whose owners are shifted by the mount's own
/// mappings (on-disk uid 1000 appears as 2000, gid 1000 as 3000), while
/// the same directory bound plainly shows the on-disk ids.
#[test]
fn idmap_bind_shifts_owners() {
    require_root!();
    if !have_mount_setattr() {
        eprintln!("SKIP: the kernel has no mount_setattr (Linux 5.12+)");
        return;
    }
    let src = tempfile::Builder::new()
        .prefix("vessel-idmap-")
        .tempdir()
        .unwrap();
    let f = src.path().join("f");
    std::fs::write(&f, "x").unwrap();
    std::os::unix::fs::chown(&f, Some(1000), Some(1000)).unwrap();
    let mut c = Ctr::new("idmap", &["sh", "-c", "stat -c '%u:%g' /plain/f /mapped/f"]);
    let s = src.path().to_str().unwrap();
    mounts(c.config()).push(json!({"destination": "/plain", "type": "bind", "source": s,
        "options": ["bind"]}));
    mounts(c.config()).push(
        json!({"destination": "/mapped", "type": "bind", "source": s,
        "options": ["bind", "idmap"],
        "uidMappings": [{"containerID": 1000, "hostID": 2000, "size": 1}],
        "gidMappings": [{"containerID": 1000, "hostID": 3000, "size": 1}]}),
    );
    let index = c.config()["mounts"].as_array().unwrap().len() - 1;
    c.write();
    let o = c.run();
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("mounts[{index}]")),
            "the error does not name the mount: {err}"
        );
        if err.contains("does not support idmapped mounts") {
            eprintln!("SKIP: {err}");
            return;
        }
        panic!("idmap mount failed: {err}");
    }
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out, "1000:1000\n2000:3000\n", "{out}");
}

#[test]
fn idmap_without_mappings_or_bind_is_refused() {
    require_root!();
    let mut c = Ctr::new("idmap-bad", &["true"]);
    mounts(c.config()).push(
        json!({"destination": "/m", "type": "bind", "source": "/tmp",
        "options": ["bind", "idmap"]}),
    );
    c.write();
    let err = vessel_tests::harness::fails(&c.create_with(&[]));
    assert!(err.contains("idmap needs uidMappings"), "{err}");
    let mut c = Ctr::new("idmap-bad2", &["true"]);
    mounts(c.config()).push(
        json!({"destination": "/m", "type": "tmpfs", "source": "tmpfs",
        "options": ["idmap"],
        "uidMappings": [{"containerID": 0, "hostID": 2000, "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 1}]}),
    );
    c.write();
    let err = vessel_tests::harness::fails(&c.create_with(&[]));
    assert!(err.contains("only apply to bind mounts"), "{err}");
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

/// `idmap` without mappings of its own takes the container's: in a user
/// namespace (0 -> 100000), a host root-owned file on the idmapped mount
/// is owned by the container's root, and by nobody on a plain bind.
#[test]
fn idmap_uses_the_containers_user_namespace_mappings() {
    require_root!();
    if !have_mount_setattr() {
        eprintln!("SKIP: the kernel has no mount_setattr (Linux 5.12+)");
        return;
    }
    let src = tempfile::Builder::new()
        .prefix("vessel-idmap-")
        .tempdir()
        .unwrap();
    std::fs::write(src.path().join("f"), "x").unwrap();
    // Container root (host uid 100000) looks the source up and creates
    // nothing in the root-owned rootfs: the mount points exist.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(src.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = src.path().to_str().unwrap().to_string();
    let mut c = Ctr::new(
        "idmapns",
        &[
            "sh",
            "-c",
            "stat -c '%u:%g' /plain/f /mapped/f; touch /mapped/g && echo wrote",
        ],
    );
    {
        let cfg = c.config();
        cfg["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        mounts(cfg).retain(|m| m["type"] != "cgroup");
        mounts(cfg).push(json!({"destination": "/plain", "type": "bind", "source": s,
            "options": ["bind"]}));
        mounts(cfg).push(
            json!({"destination": "/mapped", "type": "bind", "source": s,
            "options": ["rbind", "ridmap"]}),
        );
    }
    c.write();
    for d in ["plain", "mapped"] {
        std::fs::create_dir(c.bundle.rootfs().join(d)).unwrap();
    }
    let out = ok(&c.run());
    assert_eq!(out, "65534:65534\n0:0\nwrote\n", "{out}");
    // Written through the idmapped mount by container root: host root's.
    let md = std::fs::metadata(src.path().join("g")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((md.uid(), md.gid()), (0, 0));
}

/// A create that fails after the links moved in (here a failing prestart
/// hook) returns them; so does `delete --force` of a container known only
/// from its ledger (its state.json lost, as after a killed create).
#[test]
fn net_devices_return_after_failed_create_and_from_the_ledger() {
    require_root!();
    let d = Dummy::new("nf");
    let mut c = Ctr::new("netdev-fail", &["sleep", "1000"]);
    c.config()["linux"]["netDevices"] = json!({ d.0.clone(): {"name": "ctr1"} });
    c.config()["hooks"] = json!({"prestart": [{"path": "/bin/false"}]});
    c.write();
    vessel_tests::harness::fails(&c.create_with(&[]));
    assert!(
        host_links().contains(&d.0),
        "not returned after a failed create"
    );

    let mut c = Ctr::new("netdev-ledger", &["sleep", "1000"]);
    c.config()["linux"]["netDevices"] = json!({ d.0.clone(): {} });
    c.write();
    c.create();
    assert!(!host_links().contains(&d.0));
    std::fs::remove_file(c.root().join(&c.id).join("state.json")).unwrap();
    ok(&c.v(&["delete", "--force", &c.id]));
    assert!(
        host_links().contains(&d.0),
        "not returned by delete from the ledger"
    );
}
