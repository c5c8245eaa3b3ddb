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
