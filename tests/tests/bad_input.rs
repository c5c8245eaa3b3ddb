//! Bad input: each class fails `create` with a clear error naming the field
//! (or the file), a non-zero exit, and leaves nothing behind: no state dir,
//! no cgroup, no mount, no process.

use std::fs;

use serde_json::{json, Value};
use vessel_tests::harness::{fails, Ctr};
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
