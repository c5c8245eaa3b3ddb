//! Bad input: each class fails `create` with a clear error naming the field
//! (or the file), a non-zero exit, and leaves nothing behind: no state dir,
//! no cgroup, no mount, no process.

use std::fs;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use vessel_tests::harness::{fails, ok, output_via_files, stdout, Ctr};
use vessel_tests::leaks;
use vessel_tests::require_root;

/// Creates a container whose config is changed by `mutate`; asserts create
/// fails, stderr mentions every string in `needles`, and nothing is left.
/// The workload names the id in its arguments, so a leaked process is found.
fn refused(tag: &str, needles: &[&str], mutate: impl FnOnce(&mut Ctr)) -> String {
    let mut c = Ctr::new(tag, &["sleep", "1000"]);
    let id = c.id.clone();
    c.config()["process"]["args"] = json!(["sh", "-c", "sleep 1000", id]);
    c.write();
    mutate(&mut c);
    let err = fails(&c.create_with(&[]));
    assert!(
        err.contains(&c.id),
        "error does not name the container: {err}"
    );
    assert_eq!(c.leftovers(), Vec::<String>::new(), "after: {err}");
    assert!(
        leaks::state_entries(c.root()).is_empty(),
        "state root not empty: {:?}",
        leaks::state_entries(c.root())
    );
    for n in needles {
        assert!(err.contains(n), "error does not mention {n:?}: {err}");
    }
    // `state` agrees that the container does not exist.
    fails(&c.v(&["state", &c.id]));
    err
}

fn set(c: &mut Ctr, f: impl FnOnce(&mut Value)) {
    f(c.config());
    c.write();
}

#[test]
fn malformed_json() {
    require_root!();
    refused("badjson", &["config.json"], |c| {
        fs::write(
            c.bundle.path().join("config.json"),
            "{\"ociVersion\": \"1.0.2\", oops",
        )
        .unwrap();
    });
    refused("nocfg", &["config.json"], |c| {
        fs::remove_file(c.bundle.path().join("config.json")).unwrap();
    });
}

#[test]
fn wrong_field_type_names_the_path() {
    require_root!();
    refused("badtype", &["linux.namespaces[1]"], |c| {
        set(c, |v| v["linux"]["namespaces"][1] = json!({"type": 5}))
    });
    refused("badtype2", &["process.user.uid"], |c| {
        set(c, |v| v["process"]["user"]["uid"] = json!("root"))
    });
}

#[test]
fn missing_rootfs() {
    require_root!();
    refused("norootfs", &["root.path"], |c| {
        fs::remove_dir_all(c.bundle.rootfs()).unwrap();
    });
}

#[test]
fn unknown_namespace_type() {
    require_root!();
    refused("badns", &["linux.namespaces[6]", "foo"], |c| {
        set(c, |v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "foo"}))
        })
    });
}

#[test]
fn namespace_path_missing_or_wrong_kind() {
    require_root!();
    refused(
        "nspath",
        &["linux.namespaces[1]", "/nonexistent/netns"],
        |c| {
            set(c, |v| {
                v["linux"]["namespaces"][1]["path"] = json!("/nonexistent/netns")
            })
        },
    );
    // The same namespace type twice.
    refused("nsdup", &["linux.namespaces"], |c| {
        set(c, |v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "pid"}))
        })
    });
    // A uts namespace file given for the network namespace.
    refused("nskind", &["linux.namespaces[1]"], |c| {
        set(c, |v| {
            v["linux"]["namespaces"][1]["path"] = json!("/proc/self/ns/uts")
        })
    });
}

#[test]
fn impossible_mounts() {
    require_root!();
    refused("badtmpfs", &["mounts[7]", "/x"], |c| {
        set(c, |v| {
            v["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["bogus=1"]
            }))
        })
    });
    refused("nobindsrc", &["mounts[7]", "/nonexistent/src"], |c| {
        set(c, |v| {
            v["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/x", "type": "bind", "source": "/nonexistent/src", "options": ["rbind"]
            }))
        })
    });
    refused("badfstype", &["mounts[7]"], |c| {
        set(c, |v| {
            v["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/x", "type": "nosuchfs", "source": "none"
            }))
        })
    });
}

#[test]
fn invalid_ids() {
    require_root!();
    let c = Ctr::new("ids", &["true"]);
    let b = c.bundle.path().to_str().unwrap().to_string();
    for id in ["../x", "a/b", "", ".", "..", "x\ny"] {
        let err = fails(&c.v(&["create", "--bundle", &b, id]));
        assert!(err.contains("id"), "{id:?}: {err}");
        assert!(leaks::state_entries(c.root()).is_empty(), "{id:?}");
    }
    // An escaping id makes nothing next to the root either.
    let sib = format!("vt-sibling-{}", std::process::id());
    let esc = format!("../{sib}");
    fails(&c.v(&["create", "--bundle", &b, &esc]));
    assert!(!c.root().parent().unwrap().join(&sib).exists());
    assert!(leaks::cgroup_dirs(&sib).is_empty());
}

#[test]
fn seccomp_unknown_syscall_and_notify() {
    require_root!();
    refused(
        "secunk",
        &["linux.seccomp.syscalls[0]", "notasyscall"],
        |c| {
            set(c, |v| {
                v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["notasyscall"], "action": "SCMP_ACT_ERRNO"}]})
            })
        },
    );
    refused("secnotify", &["SCMP_ACT_NOTIFY"], |c| {
        set(c, |v| {
            v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})
        })
    });
    refused("secact", &["linux.seccomp"], |c| {
        set(c, |v| {
            v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_BOGUS", "syscalls": []})
        })
    });
    refused("secarch", &["linux.seccomp"], |c| {
        set(c, |v| {
            v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_NOPE"], "syscalls": []})
        })
    });
}

#[test]
fn invalid_cgroup_values() {
    require_root!();
    refused("cgshares", &["linux.resources.cpu.shares"], |c| {
        set(c, |v| {
            v["linux"]["resources"]["cpu"] = json!({"shares": -5})
        })
    });
    refused("cgquota", &["linux.resources.cpu.quota"], |c| {
        set(c, |v| {
            v["linux"]["resources"]["cpu"] = json!({"quota": 500, "period": 100000})
        })
    });
    refused("cgcpus", &["linux.resources.cpu.cpus"], |c| {
        set(c, |v| {
            v["linux"]["resources"]["cpu"] = json!({"cpus": "999"})
        })
    });
    refused("cgswap", &["linux.resources.memory.swap"], |c| {
        set(c, |v| {
            v["linux"]["resources"]["memory"] = json!({"limit": 67108864, "swap": 4096})
        })
    });
    refused("cgpath", &["cgroupsPath"], |c| {
        set(c, |v| v["linux"]["cgroupsPath"] = json!("/../../escape"))
    });
}

#[test]
fn memory_limit_too_low_is_explained() {
    require_root!();
    // The init cannot even start under an 8 KiB limit; the error must say
    // why (runc: "container init was OOM-killed (memory limit too low?)").
    let err = refused("cgtiny", &[], |c| {
        set(c, |v| {
            v["linux"]["resources"]["memory"] = json!({"limit": 8192})
        })
    });
    let e = err.to_lowercase();
    assert!(
        e.contains("memory") || e.contains("oom"),
        "unexplained failure: {err}"
    );
}

#[test]
fn bad_rlimits() {
    require_root!();
    refused("rlimsoft", &["process.rlimits[0]", "RLIMIT_NOFILE"], |c| {
        set(c, |v| {
            v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 200, "hard": 100}])
        })
    });
    refused("rlimtype", &["process.rlimits[0]"], |c| {
        set(c, |v| {
            v["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}])
        })
    });
}

#[test]
fn bad_process() {
    require_root!();
    refused("noexe", &["/bin/nonexistent"], |c| {
        set(c, |v| {
            v["process"]["args"] = json!(["/bin/nonexistent", "x"])
        })
    });
    refused("noargs", &["process.args"], |c| {
        set(c, |v| v["process"]["args"] = json!([]))
    });
    refused("relcwd", &["process.cwd"], |c| {
        set(c, |v| v["process"]["cwd"] = json!("relative"))
    });
    refused("badcap", &["CAP_NOPE"], |c| {
        set(c, |v| {
            v["process"]["capabilities"]["bounding"]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_NOPE"))
        })
    });
    refused("noversion", &["ociVersion"], |c| {
        set(c, |v| {
            v.as_object_mut().unwrap().remove("ociVersion");
        })
    });
    // A device with an unknown type.
    refused("baddev", &["linux.devices[0]"], |c| {
        set(
            c,
            |v| {
                v["linux"]["devices"] =
                    json!([{"path": "/dev/x", "type": "z", "major": 1, "minor": 3}])
            },
        )
    });
}

#[test]
fn console_socket_missing_or_not_wanted() {
    require_root!();
    // process.terminal without a --console-socket.
    refused("noconsock", &[], |c| {
        set(c, |v| v["process"]["terminal"] = json!(true))
    });
    // A --console-socket that does not exist: the error names it.
    let mut c = Ctr::new("consock", &["sleep", "1000"]);
    c.config()["process"]["terminal"] = json!(true);
    c.write();
    let err = fails(&c.create_with(&["--console-socket", "/nonexistent/vessel.sock"]));
    assert!(err.contains("/nonexistent/vessel.sock"), "{err}");
    assert_eq!(c.leftovers(), Vec::<String>::new());
    // A --console-socket while process.terminal is false.
    c.config()["process"]["terminal"] = json!(false);
    c.write();
    let err = fails(&c.create_with(&["--console-socket", "/nonexistent/vessel.sock"]));
    assert!(err.contains("terminal"), "{err}");
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn bad_input_through_run_leaves_nothing() {
    require_root!();
    let mut c = Ctr::new("runbad", &["sleep", "1000"]);
    c.config()["process"]["args"] = json!(["/bin/nonexistent", c.id.clone()]);
    c.write();
    let err = fails(&c.run());
    assert!(err.contains("/bin/nonexistent"), "{err}");
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

/// Runs vessel like [`Ctr::v`] but killed after `secs` seconds, so an input
/// that makes vessel block (a fifo) or churn (/dev/zero) fails the test
/// instead of hanging it.
fn v_within(c: &Ctr, secs: u32, args: &[&str]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", &secs.to_string()])
        .arg(&c.bin)
        .arg("--root")
        .arg(c.root())
        .args(args)
        .stdin(Stdio::null());
    let o = output_via_files(&mut cmd);
    assert_ne!(
        o.status.code(),
        None,
        "vessel {args:?} was killed after {secs} s: it blocked or ran away"
    );
    o
}

/// Like [`refused`], with `create` bounded in time.
fn refused_fast(tag: &str, needles: &[&str], mutate: impl FnOnce(&mut Ctr)) -> String {
    let mut c = Ctr::new(tag, &["sleep", "1000"]);
    mutate(&mut c);
    let b = c.bundle.path().to_str().unwrap().to_string();
    let err = fails(&v_within(&c, 20, &["create", "--bundle", &b, &c.id]));
    assert!(
        err.contains(&c.id),
        "error does not name the container: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "error does not mention {n:?}: {err}");
    }
    assert_eq!(c.leftovers(), Vec::<String>::new(), "after: {err}");
    assert!(leaks::state_entries(c.root()).is_empty());
    err
}

#[test]
fn config_json_not_a_small_regular_file() {
    require_root!();
    let cfg = |c: &Ctr| c.bundle.path().join("config.json");
    refused_fast("cfgzero", &["config.json", "character device"], |c| {
        fs::remove_file(cfg(c)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", cfg(c)).unwrap();
    });
    refused_fast("cfgfifo", &["config.json", "fifo"], |c| {
        fs::remove_file(cfg(c)).unwrap();
        nix::unistd::mkfifo(&cfg(c), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    });
    refused_fast("cfgbig", &["config.json", "larger than the limit"], |c| {
        // Sparse: valid JSON would not matter, the size is refused first.
        let f = fs::OpenOptions::new().write(true).open(cfg(c)).unwrap();
        f.set_len(16 * 1024 * 1024 + 1).unwrap();
    });
}

/// Host sysctl values, read before and after each refused create.
fn host_sysctl(key: &str) -> String {
    fs::read_to_string(format!("/proc/sys/{}", key.replace('.', "/")))
        .unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// Removes the namespace of type `typ` from the config.
fn drop_ns(v: &mut Value, typ: &str) {
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != typ);
}

#[test]
fn sysctls_outside_the_containers_namespaces() {
    require_root!();
    let own_net = format!("/proc/{}/ns/net", std::process::id());
    // (key, value to try, namespace to remove, or to join the host's by path)
    let cases: &[(&str, &str, Option<&str>, bool)] = &[
        ("vm.swappiness", "33", None, false),
        ("kernel.pid_max", "40000", None, false),
        ("net.ipv4.ip_forward", "", Some("network"), false),
        ("net.ipv4.ip_forward", "", None, true),
        ("kernel.shmmax", "123456789", Some("ipc"), false),
        ("fs.mqueue.msg_max", "33", Some("ipc"), false),
        ("kernel.domainname", "vessel-sysctl", Some("uts"), false),
        ("kernel.hostname", "vessel-sysctl", Some("uts"), false),
    ];
    for &(key, value, remove, join_host_net) in cases {
        let before = host_sysctl(key);
        let value = match value {
            "" if before.trim() == "1" => "0",
            "" => "1",
            v if v == before.trim() => panic!("{key}: test value equals the host's"),
            v => v,
        };
        let tag = format!("sysctl{}", key.len());
        let err = refused_fast(&tag, &[&format!("linux.sysctl.{key}")], |c| {
            set(c, |v| {
                v["linux"]["sysctl"] = json!({ key: value });
                if let Some(ns) = remove {
                    drop_ns(v, ns);
                }
                if join_host_net {
                    drop_ns(v, "network");
                    v["linux"]["namespaces"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"type": "network", "path": own_net}));
                }
                // Hostname and domainname fields need a uts namespace.
                if remove == Some("uts") {
                    v.as_object_mut().unwrap().remove("hostname");
                }
            })
        });
        assert_eq!(host_sysctl(key), before, "{key} changed on the host: {err}");
    }
}

#[test]
fn namespaced_sysctls_are_set_inside() {
    require_root!();
    let keys = [
        "net.ipv4.ip_forward",
        "kernel.shmmax",
        "fs.mqueue.msg_max",
        "kernel.domainname",
    ];
    let before: Vec<String> = keys.iter().map(|k| host_sysctl(k)).collect();
    let fwd = if before[0].trim() == "1" { "0" } else { "1" };
    let want = [fwd, "123456789", "33", "vessel-sysctl"];
    let script: String = keys
        .iter()
        .map(|k| format!("cat /proc/sys/{}; ", k.replace('.', "/")))
        .collect();
    let mut c = Ctr::new("sysctlok", &["sh", "-c", &script]);
    c.config()["linux"]["sysctl"] = keys
        .iter()
        .zip(want)
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    c.write();
    let out = ok(&c.run());
    assert_eq!(out.lines().collect::<Vec<_>>(), want, "{out}");
    let after: Vec<String> = keys.iter().map(|k| host_sysctl(k)).collect();
    assert_eq!(after, before, "a host value changed");

    // net.* in a network namespace joined by path that is not the host's:
    // another container's.
    let a = Ctr::new("sysctlnet", &["sleep", "1000"]);
    a.create();
    let mut b = Ctr::new("sysctljoin", &["cat", "/proc/sys/net/ipv4/ip_forward"]);
    drop_ns(b.config(), "network");
    let path = format!("/proc/{}/ns/net", a.pid());
    b.config()["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "network", "path": path}));
    b.config()["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": fwd});
    b.write();
    assert_eq!(ok(&b.run()).trim(), fwd);
    assert_eq!(host_sysctl(keys[0]), before[0]);
}

#[test]
fn user_ids_beyond_2_pow_31_refused_at_create() {
    require_root!();
    for (field, id) in [
        ("uid", 4294967295u64),
        ("uid", 2147483648),
        ("gid", 4294967295),
    ] {
        refused(
            &format!("uid{field}"),
            &[&format!("process.user.{field}"), &id.to_string()],
            |c| set(c, |v| v["process"]["user"][field] = json!(id)),
        );
    }
    refused(
        "uidgids",
        &["process.user.additionalGids[1]", "4294967295"],
        |c| {
            set(c, |v| {
                v["process"]["user"]["additionalGids"] = json!([5, 4294967295u64])
            })
        },
    );
}

#[test]
fn exec_user_ids_and_process_file_checked() {
    require_root!();
    let c = Ctr::new("execids", &["sleep", "1000"]);
    c.create();
    c.start();
    // The largest id allowed still works.
    let out = ok(&c.exec_opts(&["--user", "2147483647:2147483647"], &["id", "-u"]));
    assert_eq!(out.trim(), "2147483647");
    let marker = format!("marker-{}", c.id);
    let run = ["sh", "-c", "echo ran", marker.as_str()];
    for (opts, needles) in [
        (vec!["--user", "4294967295"], vec!["--user", "4294967295"]),
        (vec!["--user", "0:4294967295"], vec!["--user", "gid"]),
        (vec!["--user", "2147483648:0"], vec!["--user", "uid"]),
        (
            vec!["--additional-gids", "4294967295"],
            vec!["--additional-gids", "4294967295"],
        ),
    ] {
        let o = c.exec_opts(&opts, &run);
        let err = fails(&o);
        assert!(!stdout(&o).contains("ran"), "{opts:?} ran: {o:?}");
        for n in needles {
            assert!(err.contains(n), "{opts:?}: {n:?} missing in {err}");
        }
    }
    // --process files: bad ids, and files that are no small regular file.
    let dir = tempfile::tempdir().unwrap();
    let pfile = |name: &str, user: Value| {
        let p = dir.path().join(name);
        let proc = json!({"args": run, "cwd": "/", "user": user});
        fs::write(&p, serde_json::to_vec(&proc).unwrap()).unwrap();
        p.to_str().unwrap().to_string()
    };
    for (name, user, field) in [
        (
            "uid.json",
            json!({"uid": 4294967295u64, "gid": 0}),
            "process.user.uid",
        ),
        (
            "gid.json",
            json!({"uid": 0, "gid": 4294967295u64}),
            "process.user.gid",
        ),
        (
            "gids.json",
            json!({"uid": 0, "gid": 0, "additionalGids": [4294967295u64]}),
            "process.user.additionalGids[0]",
        ),
    ] {
        let p = pfile(name, user);
        let o = c.v(&["exec", "--process", &p, &c.id]);
        let err = fails(&o);
        assert!(err.contains(field) && err.contains(&p), "{name}: {err}");
        assert!(!stdout(&o).contains("ran"), "{name} ran: {o:?}");
    }
    let zero = dir.path().join("zero.json");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let fifo = dir.path().join("fifo.json");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let big = dir.path().join("big.json");
    fs::File::create(&big)
        .unwrap()
        .set_len(16 * 1024 * 1024 + 1)
        .unwrap();
    for (p, what) in [
        (&zero, "character device"),
        (&fifo, "fifo"),
        (&big, "larger than the limit"),
    ] {
        let p = p.to_str().unwrap();
        let err = fails(&v_within(&c, 20, &["exec", "--process", p, &c.id]));
        assert!(err.contains(p) && err.contains(what), "{p}: {err}");
    }
    assert!(
        leaks::processes_mentioning(&marker).is_empty(),
        "a refused exec ran: {:?}",
        leaks::processes_mentioning(&marker)
    );
    assert_eq!(c.status(), "running");
}

/// runc's rule: proc and sysfs only on an ordinary directory, so an image
/// symlink `proc -> /sys` (or `sys -> /proc`) cannot redirect them.
#[test]
fn proc_or_sys_destination_that_is_a_symlink() {
    require_root!();
    for (tag, dir, target, typ) in [
        ("procsym", "proc", "/sys", "proc"),
        ("syssym", "sys", "/proc", "sysfs"),
    ] {
        let err = refused(tag, &["ordinary directory", "symlink"], |c| {
            let p = c.bundle.rootfs().join(dir);
            let _ = fs::remove_dir_all(&p);
            std::os::unix::fs::symlink(target, &p).unwrap();
        });
        let i = c_index(typ);
        assert!(
            err.contains(&format!("mounts[{i}]")) && err.contains(&format!("/{dir}")),
            "{tag}: the error does not name the mount: {err}"
        );
    }
}

/// Index of the first mount of type `typ` in `vessel spec`'s default config.
fn c_index(typ: &str) -> usize {
    let c = Ctr::new("idx", &["true"]);
    let v: Value =
        serde_json::from_slice(&fs::read(c.bundle.path().join("config.json")).unwrap()).unwrap();
    v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .position(|m| m["type"] == typ)
        .unwrap()
}
