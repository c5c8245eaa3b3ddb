//! What a container gets from its config: namespaces, hostname, mounts,
//! read-only and masked paths, devices, process attributes, capabilities,
//! seccomp, io priority and cgroup limits. Each test checks from inside the
//! container (and, where it can, from the host).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use serde_json::{json, Value};
use vessel_tests::harness::{cgroup_value, fails, ok, stderr, stdout, Ctr};
use vessel_tests::require_root;

/// Runs `script` in a fresh container configured by `f`, in the foreground,
/// and returns its stdout (asserting exit 0).
fn sh(tag: &str, script: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut c = Ctr::new(tag, &["sh", "-c", script]);
    f(c.config());
    c.write();
    let o = c.run();
    ok(&o)
}

/// A running `sleep 1000` container configured by `f`.
fn sleeper(tag: &str, f: impl FnOnce(&mut Value)) -> Ctr {
    let mut c = Ctr::new(tag, &["sleep", "1000"]);
    f(c.config());
    c.write();
    c.create();
    c.start();
    c
}

fn add_ns(cfg: &mut Value, ns: Value) {
    cfg["linux"]["namespaces"].as_array_mut().unwrap().push(ns);
}

fn mounts(cfg: &mut Value) -> &mut Vec<Value> {
    cfg["mounts"].as_array_mut().unwrap()
}

fn cap_field(status: &str, key: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("{key} missing in {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn pid_uts_ipc_net_mnt_cgroup_namespaces() {
    require_root!();
    let out = sh(
        "ns",
        "echo $$; hostname; cat /proc/sys/kernel/domainname; ls /sys/class/net; \
         for n in pid uts ipc net mnt cgroup; do readlink /proc/self/ns/$n; done; \
         cat /proc/self/cgroup | grep -c ':/$'; ps | wc -l",
        |c| {
            c["hostname"] = json!("box-one");
            c["domainname"] = json!("dom.example");
        },
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "pid namespace: {out}");
    assert_eq!(lines[1], "box-one");
    assert_eq!(lines[2], "dom.example");
    assert_eq!(lines[3], "lo", "only lo in the net namespace: {out}");
    for (i, n) in ["pid", "uts", "ipc", "net", "mnt", "cgroup"]
        .iter()
        .enumerate()
    {
        let host = fs::read_link(format!("/proc/self/ns/{n}")).unwrap();
        assert_ne!(
            lines[4 + i],
            host.to_str().unwrap(),
            "{n} namespace shared with the host"
        );
    }
    // In its cgroup namespace every hierarchy's path is the root.
    let roots: usize = lines[10].parse().unwrap();
    assert!(roots >= 5, "cgroup namespace: {out}");
    // ps shows a header, sh, and ps itself (and possibly wc): nothing from the host.
    let n: usize = lines[11].parse().unwrap();
    assert!(n <= 5, "too many processes visible: {out}");
    // The host hostname is untouched.
    assert_ne!(
        fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "box-one"
    );
}

#[test]
fn without_a_namespace_the_host_one_is_shared() {
    require_root!();
    let out = sh("nons", "readlink /proc/self/ns/uts", |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "uts");
        c.as_object_mut().unwrap().remove("hostname");
    });
    assert_eq!(
        out.trim(),
        fs::read_link("/proc/self/ns/uts")
            .unwrap()
            .to_str()
            .unwrap()
    );
}

#[test]
fn user_namespace_mappings() {
    require_root!();
    let mut c = Ctr::new("userns", &["sleep", "1000"]);
    {
        let cfg = c.config();
        add_ns(cfg, json!({"type": "user"}));
        cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        // cgroup v1 hierarchies cannot be mounted from a user namespace.
        mounts(cfg).retain(|m| m["type"] != "cgroup");
    }
    c.write();
    c.create();
    c.start();
    let pid = c.pid();
    let map = fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    let f: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(f, ["0", "100000", "65536"], "uid_map {map}");
    let map = fs::read_to_string(format!("/proc/{pid}/gid_map")).unwrap();
    let f: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(f, ["0", "200000", "65536"], "gid_map {map}");
    // From the host the workload runs as the mapped ids.
    let md = fs::metadata(format!("/proc/{pid}")).unwrap();
    assert_eq!((md.uid(), md.gid()), (100000, 200000));
    let out = ok(&c.exec(&["sh", "-c", "id -u; id -g; cat /proc/self/uid_map"]));
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(&l[..2], ["0", "0"], "{out}");
    assert_eq!(
        l[2].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    assert_ne!(
        ok(&c.exec(&["readlink", "/proc/self/ns/user"])).trim(),
        fs::read_link("/proc/self/ns/user")
            .unwrap()
            .to_str()
            .unwrap()
    );
}

#[test]
fn time_namespace_offsets() {
    require_root!();
    let out = sh(
        "timens",
        "cat /proc/uptime; cat /proc/self/timens_offsets",
        |c| {
            add_ns(c, json!({"type": "time"}));
            c["linux"]["timeOffsets"] = json!({
                "monotonic": {"secs": 864000, "nanosecs": 0},
                "boottime": {"secs": 1728000, "nanosecs": 0}
            });
        },
    );
    let uptime: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    let host: f64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // /proc/uptime follows CLOCK_BOOTTIME.
    assert!(
        uptime >= host + 1_727_000.0,
        "uptime {uptime} vs host {host}: {out}"
    );
    assert!(out.contains("monotonic") && out.contains("864000"), "{out}");
}

/// A network namespace made with `ip netns add`, deleted on drop.
struct NetNs(String);
impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn join_namespace_by_path() {
    require_root!();
    let name = format!("vt-ns-{}", std::process::id());
    let st = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap();
    assert!(st.success());
    let ns = NetNs(name);
    // Bring lo up: a fresh namespace has it down.
    let st = Command::new("ip")
        .args(["-n", &ns.0, "link", "set", "lo", "up"])
        .status()
        .unwrap();
    assert!(st.success());
    let path = format!("/var/run/netns/{}", ns.0);
    let ino = fs::metadata(&path).unwrap().ino();
    let out = sh(
        "joinns",
        "readlink /proc/self/ns/net; cat /sys/class/net/lo/flags",
        |c| {
            for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
                if n["type"] == "network" {
                    n["path"] = json!(path);
                }
            }
        },
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], format!("net:[{ino}]"), "{out}");
    // lo is up (IFF_UP) only in the namespace the test made.
    assert_eq!(l[1], "0x9", "{out}");

    // Another container's namespace, by /proc/<pid>/ns/uts.
    let a = sleeper("joina", |c| c["hostname"] = json!("shared-uts"));
    let p = format!("/proc/{}/ns/uts", a.pid());
    let out = sh("joinb", "hostname", |c| {
        c.as_object_mut().unwrap().remove("hostname");
        for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "uts" {
                n["path"] = json!(p);
            }
        }
    });
    assert_eq!(out.trim(), "shared-uts");
}

/// A host tmpfs mounted for a test, unmounted on drop.
struct HostMount(std::path::PathBuf);
impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn mounts_tmpfs_bind_ro_rbind() {
    require_root!();
    let host = tempfile::tempdir().unwrap();
    let data = host.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("hello"), "from-host\n").unwrap();
    let tree = host.path().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &tree.join("sub"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    let _m = HostMount(tree.join("sub"));
    fs::write(tree.join("sub/inner"), "submount\n").unwrap();
    let hostp = host.path().to_str().unwrap().to_string();
    let before = vessel_tests::leaks::mounts_mentioning(&hostp);

    let script = "stat -c %a /mnt/t; grep ' /mnt/t ' /proc/mounts; \
                  cat /data/hello; touch /data/x 2>/dev/null && echo rw || echo ro; \
                  cat /rb/sub/inner; cat /b/sub/inner 2>/dev/null || echo no-sub; \
                  touch /mnt/t/ok && echo tmpfs-writable";
    let out = sh("mounts", script, |c| {
        let m = mounts(c);
        m.push(
            json!({"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
                      "options": ["nosuid", "nodev", "size=1m", "mode=1770"]}),
        );
        m.push(
            json!({"destination": "/data", "type": "bind", "source": data,
                      "options": ["bind", "ro"]}),
        );
        m.push(json!({"destination": "/rb", "type": "bind", "source": tree,
                      "options": ["rbind"]}));
        m.push(json!({"destination": "/b", "type": "bind", "source": tree,
                      "options": ["bind"]}));
    });
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "1770", "{out}");
    assert!(
        l[1].contains("tmpfs") && l[1].contains("nosuid") && l[1].contains("nodev"),
        "{out}"
    );
    assert!(l[1].contains("size=1024k"), "{out}");
    assert_eq!(l[2], "from-host");
    assert_eq!(l[3], "ro", "bind ro is writable: {out}");
    assert_eq!(l[4], "submount", "rbind did not carry the submount: {out}");
    assert_eq!(l[5], "no-sub", "plain bind carried the submount: {out}");
    assert_eq!(l[6], "tmpfs-writable");
    assert!(!data.join("x").exists());
    // Nothing mounted on the host by the container.
    assert_eq!(vessel_tests::leaks::mounts_mentioning(&hostp), before);
}

#[test]
fn readonly_root_masked_and_readonly_paths() {
    require_root!();
    let script = "touch /rootfs-write 2>/dev/null && echo root-rw || echo root-ro; \
                  wc -c < /proc/timer_list; wc -c < /proc/keys; ls /sys/firmware | wc -l; \
                  echo x > /proc/sysrq-trigger 2>/dev/null && echo sysrq-rw || echo sysrq-ro; \
                  grep ' /proc/sys ' /proc/mounts | grep -c ro, ; \
                  echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo sys-rw || echo sys-ro";
    let c = Ctr::new("ropaths", &["sh", "-c", script]);
    c.write();
    let out = ok(&c.run());
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(
        l,
        ["root-ro", "0", "0", "0", "sysrq-ro", "1", "sys-ro"],
        "{out}"
    );
    assert!(!c.bundle.rootfs().join("rootfs-write").exists());

    // With root.readonly false the rootfs is writable.
    let out = sh("rwroot", "touch /rootfs-write && echo root-rw", |c| {
        c["root"]["readonly"] = json!(false)
    });
    assert_eq!(out.trim(), "root-rw");
}

#[test]
fn devices_and_dev_symlinks() {
    require_root!();
    let script = "for d in null zero full random urandom tty; do \
                    stat -c '%n %F %t:%T' /dev/$d; done; \
                  for l in fd stdin stdout stderr ptmx; do echo $l=$(readlink /dev/$l); done; \
                  stat -c '%a %F %t:%T %u:%g' /dev/mydev; echo hi > /dev/mydev && echo wrote; \
                  head -c 4 /dev/zero | wc -c; \
                  ls /dev/sda 2>/dev/null || echo no-sda";
    let out = sh("devices", script, |c| {
        c["linux"]["devices"] = json!([{
            "path": "/dev/mydev", "type": "c", "major": 1, "minor": 3,
            "fileMode": 0o640, "uid": 0, "gid": 5
        }]);
    });
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(
        &l[..6],
        [
            "/dev/null character special file 1:3",
            "/dev/zero character special file 1:5",
            "/dev/full character special file 1:7",
            "/dev/random character special file 1:8",
            "/dev/urandom character special file 1:9",
            "/dev/tty character special file 5:0",
        ],
        "{out}"
    );
    assert_eq!(
        &l[6..11],
        [
            "fd=/proc/self/fd",
            "stdin=/proc/self/fd/0",
            "stdout=/proc/self/fd/1",
            "stderr=/proc/self/fd/2",
            "ptmx=pts/ptmx"
        ],
        "{out}"
    );
    assert_eq!(l[11], "640 character special file 1:3 0:5", "{out}");
    assert_eq!(l[12], "wrote");
    assert_eq!(l[13], "4");
    assert_eq!(l[14], "no-sda", "host block device visible: {out}");
}

#[test]
fn device_cgroup_denies_unlisted_devices() {
    require_root!();
    // A node for /dev/vda's class (block 254:0) or sda (8:0) made inside
    // with mknod must not be openable: the device cgroup denies it.
    let out = sh(
        "devcg",
        "mknod /tmp/blk b 8 0 2>/dev/null; head -c 1 /tmp/blk >/dev/null 2>&1 && echo opened || echo denied",
        |c| {
            mounts(c).push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}));
            c["process"]["capabilities"]["bounding"].as_array_mut().unwrap().push(json!("CAP_MKNOD"));
            c["process"]["capabilities"]["effective"].as_array_mut().unwrap().push(json!("CAP_MKNOD"));
            c["process"]["capabilities"]["permitted"].as_array_mut().unwrap().push(json!("CAP_MKNOD"));
        },
    );
    assert_eq!(out.trim(), "denied");
}

#[test]
fn process_env_cwd_user_groups_umask() {
    require_root!();
    let out = sh(
        "procattr",
        "echo $FOO; pwd; id -u; id -g; id -G; umask; touch /tmp/f; stat -c %a /tmp/f",
        |c| {
            c["process"]["env"]
                .as_array_mut()
                .unwrap()
                .push(json!("FOO=bar=baz"));
            c["process"]["cwd"] = json!("/tmp");
            c["process"]["user"] =
                json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20], "umask": 0o027});
            mounts(c).push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]}));
        },
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "bar=baz");
    assert_eq!(l[1], "/tmp");
    assert_eq!(l[2], "1000");
    assert_eq!(l[3], "1001");
    let mut g: Vec<&str> = l[4].split_whitespace().collect();
    g.sort();
    assert_eq!(g, ["10", "1001", "20"], "{out}");
    assert_eq!(l[5], "0027");
    assert_eq!(l[6], "640");
}

#[test]
fn rlimits_oom_score_nnp() {
    require_root!();
    let out = sh(
        "rlim",
        "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj; grep NoNewPrivs /proc/self/status",
        |c| {
            c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]);
            c["process"]["oomScoreAdj"] = json!(423);
            c["process"]["noNewPrivileges"] = json!(true);
        },
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[..3], ["100", "200", "423"], "{out}");
    assert!(l[3].ends_with('1'), "{out}");
    let out = sh("nnp0", "grep NoNewPrivs /proc/self/status", |c| {
        c["process"]["noNewPrivileges"] = json!(false);
    });
    assert!(out.trim().ends_with('0'), "{out}");
}

#[test]
fn sysctl_in_own_namespaces() {
    require_root!();
    let host_fwd = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_shm = fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let out = sh(
        "sysctl",
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax",
        |c| {
            let fwd = if host_fwd.trim() == "1" { "0" } else { "1" };
            c["linux"]["sysctl"] =
                json!({"net.ipv4.ip_forward": fwd, "kernel.shmmax": "123456789"});
        },
    );
    let l: Vec<&str> = out.lines().collect();
    assert_ne!(l[0], host_fwd.trim(), "{out}");
    assert_eq!(l[1], "123456789");
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(),
        host_shm
    );
}

#[test]
fn capabilities_sets() {
    require_root!();
    let default = (1u64 << 29) | (1 << 5) | (1 << 10); // AUDIT_WRITE, KILL, NET_BIND_SERVICE
    let out = sh("caps", "cat /proc/self/status", |_| {});
    assert_eq!(cap_field(&out, "CapBnd:"), default, "{out}");
    assert_eq!(cap_field(&out, "CapEff:"), default);
    assert_eq!(cap_field(&out, "CapPrm:"), default);
    assert_eq!(cap_field(&out, "CapInh:"), 0);
    assert_eq!(cap_field(&out, "CapAmb:"), 0);

    // A non-root user with inheritable + ambient CAP_NET_RAW (13) keeps it.
    let out = sh("capamb", "cat /proc/self/status", |c| {
        let caps = &mut c["process"]["capabilities"];
        for set in [
            "bounding",
            "effective",
            "permitted",
            "inheritable",
            "ambient",
        ] {
            caps[set] = json!(["CAP_NET_RAW", "CAP_KILL"]);
        }
        caps["ambient"] = json!(["CAP_NET_RAW"]);
        caps["inheritable"] = json!(["CAP_NET_RAW"]);
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    });
    assert_eq!(cap_field(&out, "CapBnd:"), (1 << 13) | (1 << 5), "{out}");
    assert_eq!(cap_field(&out, "CapInh:"), 1 << 13);
    assert_eq!(cap_field(&out, "CapAmb:"), 1 << 13);
    assert_eq!(
        cap_field(&out, "CapEff:"),
        1 << 13,
        "ambient cap not effective for uid 1000"
    );

    // Empty sets: nothing at all, and a privileged operation fails.
    let out = sh(
        "capnone",
        "grep Cap /proc/self/status; hostname x 2>/dev/null && echo renamed || echo denied",
        |c| c["process"]["capabilities"] = json!({}),
    );
    for k in ["CapBnd:", "CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
        assert_eq!(cap_field(&out, k), 0, "{k} {out}");
    }
    assert!(out.ends_with("denied\n"), "{out}");
}

fn seccomp_errno(errno: u32) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno},
            {"names": ["sethostname"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["setpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
             "args": [{"index": 2, "value": 7, "op": "SCMP_CMP_EQ"}]}
        ]
    })
}

#[test]
fn seccomp_errno_kill_and_args() {
    require_root!();
    let tmp = json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"});
    let out = sh(
        "secc",
        "mkdir /tmp/d 2>&1; echo rc=$?; touch /tmp/f && echo touched",
        |c| {
            c["linux"]["seccomp"] = seccomp_errno(1);
            mounts(c).push(tmp.clone());
        },
    );
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("rc=1") && out.contains("touched"), "{out}");
    let out = sh("secc38", "mkdir /tmp/d 2>&1; true", |c| {
        c["linux"]["seccomp"] = seccomp_errno(38);
        mounts(c).push(tmp.clone());
    });
    assert!(out.contains("Function not implemented"), "{out}");

    // Argument conditions: kill(_, SIGUSR1) is refused, kill(_, 0) is not
    // (pid 1 ignores an unhandled SIGUSR1, so an allowed one is harmless).
    let out = sh(
        "secargs",
        "kill -USR1 $$ 2>/dev/null && echo usr1-sent || echo usr1-refused; kill -0 $$ && echo sig0-ok",
        |c| {
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                              "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]}]
            });
        },
    );
    assert_eq!(out, "usr1-refused\nsig0-ok\n");
    let mut c = Ctr::new("seckill", &["hostname", "killed-by-seccomp"]);
    c.config()["linux"]["seccomp"] = seccomp_errno(1);
    c.write();
    let o = c.run();
    assert_eq!(
        o.status.code(),
        Some(128 + 31),
        "sethostname not killed by SIGSYS: {o:?}"
    );
    assert_eq!(stdout(&o), "");
    // A default action of ERRNO denies execve itself: run fails.
    let mut c = Ctr::new("secdef", &["true"]);
    c.config()["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"], "syscalls": []
    });
    c.write();
    let o = c.run();
    assert!(!o.status.success(), "{o:?}");
}

#[test]
fn io_priority_from_host() {
    require_root!();
    if Command::new("ionice").arg("-V").output().is_err() {
        eprintln!("SKIP: ionice (util-linux) not installed");
        return;
    }
    let c = sleeper("ioprio", |c| {
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 3});
    });
    let o = Command::new("ionice")
        .args(["-p", &c.pid().to_string()])
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), "best-effort: prio 3");
    let c = sleeper("ioprio2", |c| {
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    });
    let o = Command::new("ionice")
        .args(["-p", &c.pid().to_string()])
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), "idle");
}

#[test]
fn cgroup_limits_inside_and_on_host() {
    require_root!();
    let c = sleeper("cglim", |c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 67108864, "reservation": 33554432});
        c["linux"]["resources"]["pids"] = json!({"limit": 30});
        c["linux"]["resources"]["cpu"] =
            json!({"shares": 256, "quota": 20000, "period": 100000, "cpus": "0", "mems": "0"});
    });
    let id = &c.id;
    assert_eq!(
        cgroup_value("memory", id, "memory.limit_in_bytes").as_deref(),
        Some("67108864")
    );
    assert_eq!(
        cgroup_value("memory", id, "memory.soft_limit_in_bytes").as_deref(),
        Some("33554432")
    );
    assert_eq!(cgroup_value("pids", id, "pids.max").as_deref(), Some("30"));
    assert_eq!(
        cgroup_value("cpu", id, "cpu.shares").as_deref(),
        Some("256")
    );
    assert_eq!(
        cgroup_value("cpu", id, "cpu.cfs_quota_us").as_deref(),
        Some("20000")
    );
    assert_eq!(
        cgroup_value("cpuset", id, "cpuset.cpus").as_deref(),
        Some("0")
    );
    let procs = cgroup_value("memory", id, "cgroup.procs").unwrap();
    assert_eq!(procs, c.pid().to_string());
    let out = ok(&c.exec(&[
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max \
         /sys/fs/cgroup/cpu/cpu.cfs_quota_us; nproc",
    ]));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["67108864", "30", "20000", "1"],
        "{out}"
    );
    // The cgroup disappears on delete.
    drop(c);
}

#[test]
fn cgroups_path_honoured_and_removed() {
    require_root!();
    let rel = format!("vt-cgpath-{}/inner", std::process::id());
    let mut c = Ctr::new("cgpath", &["sleep", "1000"]);
    c.config()["linux"]["cgroupsPath"] = json!(format!("/{rel}"));
    c.config()["linux"]["resources"]["pids"] = json!({"limit": 12});
    c.write();
    c.create();
    c.start();
    assert_eq!(
        cgroup_value("pids", &rel, "pids.max").as_deref(),
        Some("12")
    );
    assert_eq!(
        cgroup_value("memory", &rel, "cgroup.procs").as_deref(),
        Some(c.pid().to_string().as_str())
    );
    assert!(
        vessel_tests::leaks::cgroup_dirs(&c.id).is_empty(),
        "cgroup made under the id too"
    );
    ok(&c.v(&["delete", "--force", &c.id]));
    assert!(
        vessel_tests::leaks::cgroup_dirs(&rel).is_empty(),
        "cgroup left after delete"
    );
    // Parent dirs made for the path: remove them (not the runtime's job to
    // keep or remove them; runc leaves them).
    for d in vessel_tests::leaks::cgroup_dirs(&format!("vt-cgpath-{}", std::process::id())) {
        let _ = fs::remove_dir(d);
    }
}

#[test]
fn memory_limit_enforced() {
    require_root!();
    // 16 MiB limit, swap the same: allocating 64 MiB in a tmpfs fails or
    // gets the workload killed.
    let mut c = Ctr::new(
        "oom",
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/t/big bs=1M count=64 2>/dev/null; echo size=$(wc -c < /t/big)",
        ],
    );
    {
        let cfg = c.config();
        cfg["linux"]["resources"]["memory"] = json!({"limit": 16777216, "swap": 16777216});
        mounts(cfg).push(json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["size=128m"]}));
    }
    c.write();
    let o = c.run();
    let out = stdout(&o);
    let written: Option<u64> = out
        .trim()
        .strip_prefix("size=")
        .and_then(|v| v.parse().ok());
    // Either the workload was OOM-killed, or the write stopped short.
    let limited = match written {
        Some(n) => n < 64 << 20,
        None => !o.status.success(),
    };
    assert!(limited, "64 MiB written under a 16 MiB limit: {o:?}");
    let _ = (fails, stderr);
}

#[test]
fn standard_mounts_and_no_pivot() {
    require_root!();
    let script = "cut -d' ' -f2,3 /proc/mounts; ls /";
    let out = sh("stdmounts", script, |_| {});
    for want in [
        "/ ",
        "/proc proc",
        "/dev tmpfs",
        "/dev/pts devpts",
        "/dev/shm tmpfs",
        "/dev/mqueue mqueue",
        "/sys sysfs",
        "/sys/fs/cgroup/memory cgroup",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(want)),
            "{want:?} missing: {out}"
        );
    }
    assert!(!out.lines().any(|l| l == "work"), "host / visible: {out}");

    // --no-pivot: same view without pivot_root.
    let c = Ctr::new("nopivot", &["sh", "-c", script]);
    let b = c.bundle.path().to_str().unwrap().to_string();
    let out = ok(&c.v(&["run", "--no-pivot", "--bundle", &b, &c.id]));
    assert!(
        out.lines().any(|l| l.starts_with("/dev/pts devpts")),
        "{out}"
    );
    assert!(out.lines().any(|l| l == "bin"), "{out}");
    assert!(
        !out.lines().any(|l| l == "work"),
        "host / visible with --no-pivot: {out}"
    );
}

#[test]
fn rootfs_propagation() {
    require_root!();
    let root_line = |out: &str| -> String {
        out.lines()
            .find(|l| l.split(' ').nth(4) == Some("/"))
            .unwrap_or_else(|| panic!("no / in {out}"))
            .to_string()
    };
    let out = sh("propdef", "cat /proc/self/mountinfo", |_| {});
    let l = root_line(&out);
    assert!(
        !l.contains("shared:") && !l.contains("master:"),
        "default is private: {l}"
    );
    // (rslave is not checked: this host's / is a private mount, so a slave
    // of it has no master to show.)
    let out = sh("propshared", "cat /proc/self/mountinfo", |c| {
        c["linux"]["rootfsPropagation"] = json!("shared")
    });
    assert!(root_line(&out).contains("shared:"), "shared: {out}");
}

/// `run --no-pivot` with rshared from a host whose `/` is shared (as under
/// systemd) must leave that host's mount table as it was. The "host" is a
/// namespace made by unshare(1): cut from the real host (private) and then
/// made rshared, so it dies with the shell and the real host is never at
/// risk. Its mountinfo before and after the container is compared.
#[test]
fn no_pivot_rshared_leaves_a_shared_host_unchanged() {
    require_root!();
    let mut c = Ctr::new("nopivshared", &["cat", "/proc/self/mountinfo"]);
    c.config()["linux"]["rootfsPropagation"] = json!("rshared");
    c.write();
    let work = tempfile::tempdir().unwrap();
    let script = r#"set -e
mount --make-rshared /
cat /proc/self/mountinfo > "$1/before"
rc=0
"$2" --root "$3" run --no-pivot --bundle "$4" "$5" > "$1/out" 2> "$1/err" || rc=$?
cat /proc/self/mountinfo > "$1/after"
exit $rc"#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(work.path())
    .arg(&c.bin)
    .arg(c.root())
    .arg(c.bundle.path())
    .arg(&c.id);
    let o = cmd.output().expect("unshare");
    let read = |f: &str| fs::read_to_string(work.path().join(f)).unwrap_or_default();
    assert!(
        o.status.success(),
        "{o:?}; vessel: {} {}",
        read("out"),
        read("err")
    );
    let (before, after) = (read("before"), read("after"));
    let host_root = before
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .expect("/ in the host's mountinfo");
    assert!(
        host_root.contains("shared:"),
        "the host's / is not shared: {host_root}"
    );
    let added: Vec<&str> = after.lines().filter(|l| !before.contains(l)).collect();
    // A mount whose directory another test deleted meanwhile is detached
    // in every namespace by the kernel: only a mount point that still
    // exists counts as removed by the container.
    let removed: Vec<&str> = before
        .lines()
        .filter(|l| !after.contains(l))
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| std::path::Path::new(&p.replace("\\040", " ")).exists())
        })
        .collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "the host's mount table changed: added {added:#?}, removed {removed:#?}"
    );
    // The container's own / is still shared, as asked.
    let inside = read("out");
    let root = inside
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no / in the container's mountinfo: {inside}"));
    assert!(root.contains("shared:"), "container / not shared: {root}");
    // And the real host never saw the bundle.
    let bundle = c.bundle.path().to_str().unwrap().to_string();
    assert_eq!(
        vessel_tests::leaks::mounts_mentioning(&bundle),
        Vec::<String>::new()
    );
}

#[test]
fn seccomp_trap_log_and_kill_thread() {
    require_root!();
    for (action, code) in [
        ("SCMP_ACT_TRAP", Some(128 + 31)),
        ("SCMP_ACT_KILL", Some(128 + 31)),
        ("SCMP_ACT_LOG", Some(1)),
    ] {
        // `hostname x` without CAP_SYS_ADMIN: EPERM (exit 1) when the call
        // is allowed (LOG), SIGSYS when trapped or killed.
        let mut c = Ctr::new("sectrap", &["hostname", "trapped"]);
        c.config()["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["sethostname"], "action": action}]
        });
        c.write();
        let o = c.run();
        assert_eq!(o.status.code(), code, "{action}: {o:?}");
    }
}

#[test]
fn exec_inherits_seccomp_caps_nnp_and_cgroup() {
    require_root!();
    let c = sleeper("execinh", |c| {
        c["linux"]["seccomp"] = seccomp_errno(1);
        mounts(c).push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    });
    let init = fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap();
    let out = ok(&c.exec(&[
        "sh",
        "-c",
        "mkdir /tmp/d 2>&1; cat /proc/self/status; cat /proc/self/cgroup",
    ]));
    assert!(
        out.contains("Operation not permitted"),
        "exec'd process escaped seccomp: {out}"
    );
    for k in ["CapBnd:", "CapEff:", "CapInh:"] {
        assert_eq!(cap_field(&out, k), cap_field(&init, k), "{k}");
    }
    let line = |s: &str, k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(line(&out, "NoNewPrivs:"), line(&init, "NoNewPrivs:"));
    assert_eq!(line(&out, "Seccomp:"), line(&init, "Seccomp:"));
    assert!(line(&out, "Seccomp:").ends_with('2'), "{out}");
    let cg = fs::read_to_string(format!("/proc/{}/cgroup", c.pid())).unwrap();
    let mem = |s: &str| {
        s.lines()
            .find(|l| l.contains(":memory:"))
            .unwrap_or("")
            .to_string()
    };
    // The container's cgroup (nested under the caller's: no cgroupsPath)
    // is the root of its cgroup namespace.
    let host = mem(&cg);
    let (hierarchy, path) = host.rsplit_once(':').unwrap();
    assert!(path.ends_with(&format!("/{}", c.id)), "{host}");
    assert_eq!(mem(&out), format!("{hierarchy}:/"), "{out}");
}
