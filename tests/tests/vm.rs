//! vm mode end to end under QEMU (TCG on the project machines): the
//! workload runs in a microVM with the guest kernel, through the same CLI
//! as a container. Each test boots one or two guests (a few seconds each).

use std::time::Duration;

use serde_json::json;
use vessel_tests::harness::{fails, ok, stderr, stdout, wait_for};
use vessel_tests::require_root;
use vessel_tests::vm::{vm_available, vmm_processes, VmCtr};

macro_rules! require_vm {
    () => {
        require_root!();
        if !vm_available() {
            return;
        }
    };
}

/// What a test must leave behind: nothing of the container.
fn assert_gone(c: &VmCtr, state_dir: &std::path::Path, scratch: Option<&str>) {
    assert!(
        !state_dir.exists(),
        "state dir {} left",
        state_dir.display()
    );
    assert!(
        vmm_processes(&state_dir.display().to_string()).is_empty(),
        "VMM of {} still runs",
        c.id
    );
    let left = vessel_tests::leaks::cgroup_dirs(&c.id);
    assert!(left.is_empty(), "cgroups left: {left:?}");
    if let Some(s) = scratch {
        assert!(!std::path::Path::new(s).exists(), "scratch image {s} left");
    }
}

#[test]
fn vm_run_echo_env_cwd_user_and_exit_code() {
    require_vm!();
    let mut c = VmCtr::new(
        "vmrun",
        &[
            "sh",
            "-c",
            "echo \"foo=$FOO cwd=$(pwd) uid=$(id -u) gid=$(id -g) kernel=$(uname -r)\"; \
             echo to-stderr >&2; exit 7",
        ],
    );
    c.config()["process"]["env"] = json!(["PATH=/bin", "FOO=bar"]);
    c.config()["process"]["cwd"] = json!("/tmp");
    c.config()["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    c.write();
    let o = c.run();
    assert_eq!(o.status.code(), Some(7), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("foo=bar cwd=/tmp uid=1000 gid=1000"), "{out}");
    let host = String::from_utf8(
        std::process::Command::new("uname")
            .arg("-r")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !out.contains(&format!("kernel={}", host.trim())),
        "the guest kernel is the host's: {out}"
    );
    assert!(stderr(&o).contains("to-stderr"), "{}", stderr(&o));
    assert_gone(&c, &c.root().join(&c.id), None);
}

#[test]
fn vm_lifecycle_state_exec_ps_kill_delete() {
    require_vm!();
    let c = VmCtr::new(
        "vmlife",
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo up; while true; do sleep 0.1; done",
        ],
    );
    ok(&c.create_with(&[]));
    let st = c.state();
    assert_eq!(st["status"], "created");
    assert_eq!(st["isolation"], "vm");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    let list = ok(&c.v(&["list"]));
    assert!(
        list.lines()
            .any(|l| l.contains(&c.id) && l.trim_end().ends_with("vm")),
        "{list}"
    );
    let state_dir = c.root().join(&c.id);
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("state.json")).unwrap()).unwrap();
    let scratch = raw["vm"]["scratch"].as_str().unwrap().to_string();
    let vmm = raw["vm"]["vmmPid"].as_i64().unwrap();
    // The VMM runs in the container's cgroup (nested under this test's own
    // memory cgroup: no cgroupsPath).
    let mem = vessel_tests::leaks::v1_cgroup_dir("memory", &c.id)
        .unwrap_or_else(|| panic!("no memory cgroup for {} ({})", c.id, raw["cgroupPath"]));
    let procs = std::fs::read_to_string(mem.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == vmm.to_string()),
        "VMM {vmm} not in {procs}"
    );

    c.start();
    assert_eq!(c.status(), "running");
    let o = c.exec(&[
        "sh",
        "-c",
        "echo in-exec $(cat /proc/1/cmdline | tr '\\0' ' '); exit 4",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stdout(&o).contains("in-exec sh -c trap"), "{}", stdout(&o));
    let ps = ok(&c.v(&["ps", "--format", "json", &c.id]));
    let pids: Vec<i64> = serde_json::from_str(ps.trim()).unwrap();
    assert!(!pids.is_empty(), "{ps}");
    let table = ok(&c.v(&["ps", &c.id]));
    assert!(table.contains("trap"), "{table}");
    // pause freezes the VMM's cgroup, resume thaws it; events shows it.
    ok(&c.v(&["pause", &c.id]));
    assert_eq!(c.status(), "paused");
    ok(&c.v(&["resume", &c.id]));
    assert_eq!(c.status(), "running");
    let ev: serde_json::Value =
        serde_json::from_str(&ok(&c.v(&["events", "--stats", &c.id]))).unwrap();
    let usage = ev["data"]["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
    assert!(usage > 1 << 20, "the VMM's memory shows in events: {ev}");
    let e = fails(&c.v(&["update", "--pids-limit", "10", &c.id]));
    assert!(e.contains("runs in a VM"), "{e}");
    ok(&c.v(&["update", "--memory", "900m", &c.id]));
    let o = c.exec(&["echo", "after-resume"]);
    assert!(stdout(&o).contains("after-resume"), "{}", stderr(&o));
    ok(&c.v(&["kill", &c.id, "TERM"]));
    assert!(c.wait_status("stopped"), "TERM did not stop the workload");
    ok(&c.v(&["delete", &c.id]));
    assert_gone(&c, &state_dir, Some(&scratch));
}

#[test]
fn vm_detached_exec_and_sigkill() {
    require_vm!();
    let c = VmCtr::new("vmkill", &["sleep", "600"]);
    ok(&c.create_with(&[]));
    c.start();
    let pidfile = c.root().join("exec.pid");
    let o = c.exec_opts(
        &["--detach", "--pid-file", pidfile.to_str().unwrap()],
        &["sh", "-c", "sleep 1; exit 9"],
    );
    ok(&o);
    let relay: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(relay > 0);
    // The relay exits with the exec'd process (conmon waits on it).
    assert!(
        wait_for(30, || !std::path::Path::new(&format!("/proc/{relay}"))
            .exists()),
        "the detached exec relay {relay} did not end"
    );
    // The guest's helper reports its error typed: the container and the
    // binary are named, as on a host.
    let e = fails(&c.exec(&["/no/such/exec-binary"]));
    assert!(
        e.contains("/no/such/exec-binary") && e.contains(&c.id),
        "{e}"
    );
    ok(&c.v(&["kill", &c.id, "KILL"]));
    assert!(c.wait_status("stopped"));
    // As runc: `kill --all` of a stopped container succeeds (containerd
    // sends it on StopPodSandbox and retries any error for ever), a plain
    // kill says the container is not running.
    ok(&c.v(&["kill", "--all", &c.id, "KILL"]));
    let e = fails(&c.v(&["kill", &c.id, "KILL"]));
    assert!(e.contains("not running") && e.contains(&c.id), "{e}");
    let state_dir = c.root().join(&c.id);
    ok(&c.v(&["delete", &c.id]));
    assert_gone(&c, &state_dir, None);
}

#[test]
fn vm_rootfs_is_isolated_and_memory_limit_sizes_the_guest() {
    require_vm!();
    let marker = format!("/tmp/vessel-host-marker-{}", std::process::id());
    std::fs::write(&marker, "host").unwrap();
    let mut c = VmCtr::new(
        "vmiso",
        &[
            "sh",
            "-c",
            "test -e /host-marker && echo SEES-HOST; \
             test -e /etc/debian_version || test -e /usr/bin || echo NO-HOST-FILES; \
             grep MemTotal /proc/meminfo; echo written > /newfile; cat /newfile",
        ],
    );
    // Even a bind mount of the host file is a copy, not the file.
    c.config()["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/host-marker", "type": "bind", "source": marker, "options": ["bind", "ro"]}));
    c.config()["linux"]["resources"] = json!({"memory": {"limit": 320i64 << 20}});
    c.config()["root"]["readonly"] = json!(false);
    c.write();
    let o = c.run();
    let _ = std::fs::remove_file(&marker);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains("SEES-HOST"),
        "the copied bind mount is missing: {out}"
    );
    assert!(out.contains("written"), "{out}");
    assert!(
        out.contains("NO-HOST-FILES"),
        "the guest sees host files: {out}"
    );
    let kb: u64 = out
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    // 320 MiB limit - 128 MiB for the VMM = 192 MiB of guest RAM; the kernel
    // reserves some of it.
    assert!(kb <= 192 * 1024 && kb > 150 * 1024, "MemTotal {kb} kB");
    // The host file written in the guest never reached the host.
    assert!(!std::path::Path::new(&c.bundle.rootfs().join("newfile")).exists());
}

#[test]
fn vm_bad_input_is_refused_and_leaves_nothing() {
    require_vm!();
    let c = VmCtr::new("vmbad", &["true"]);
    c.vm_config("kernel = \"/nonexistent/vmlinuz\"");
    let o = c.create_with(&[]);
    let msg = fails(&o);
    assert!(
        msg.contains("kernel") && msg.contains("/nonexistent/vmlinuz"),
        "{msg}"
    );
    assert!(!c.root().join(&c.id).exists());

    let mut c = VmCtr::new("vmbad2", &["true"]);
    c.config()["linux"]["namespaces"] =
        json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"}]);
    c.write();
    let msg = fails(&c.create_with(&[]));
    assert!(
        msg.contains("linux.namespaces") && msg.contains("network"),
        "{msg}"
    );
    assert!(!c.root().join(&c.id).exists());

    let mut c = VmCtr::new("vmbad3", &["true"]);
    c.config()["linux"]["resources"] = json!({"memory": {"limit": 100i64 << 20}});
    c.write();
    let msg = fails(&c.create_with(&[]));
    assert!(msg.contains("linux.resources.memory.limit"), "{msg}");

    // A dynamically linked binary cannot be the guest agent: vm mode says so.
    let mut c = VmCtr::new("vmbad4", &["true"]);
    c.ctr.bin = vessel_tests::vessel_bin();
    let msg = fails(&c.create_with(&[]));
    assert!(msg.contains("statically linked"), "{msg}");
    assert!(!c.root().join(&c.id).exists());

    // A workload that cannot start: the guest's own error, and nothing left.
    let c = VmCtr::new("vmbad5", &["/no/such/binary"]);
    let o = c.create_with(&[]);
    if o.status.success() {
        let e = fails(&c.v(&["start", &c.id]));
        assert!(e.contains("/no/such/binary"), "{e}");
    } else {
        assert!(fails(&o).contains("/no/such/binary"));
    }
    let _ = Duration::from_secs(0);
}

/// A network namespace with a veth pair to the host, removed on drop.
struct TestNet {
    name: String,
    host_if: String,
}

impl TestNet {
    fn new(n: u32) -> TestNet {
        let tag = std::process::id() % 10000;
        let name = format!("vt-vmnet-{tag}-{n}");
        let host_if = format!("vth{tag}{n}");
        let sh = |args: &[&str]| {
            let o = std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap();
            assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
        };
        vessel_tests::named_netns::add(&name);
        let net = TestNet { name, host_if };
        sh(&[
            "link",
            "add",
            &net.host_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &net.name,
        ]);
        sh(&[
            "addr",
            "add",
            &format!("10.213.{n}.1/24"),
            "dev",
            &net.host_if,
        ]);
        sh(&["link", "set", &net.host_if, "up"]);
        let ns = |args: &[&str]| {
            let mut a = vec!["netns", "exec", net.name.as_str(), "ip"];
            a.extend_from_slice(args);
            sh(&a);
        };
        ns(&["addr", "add", &format!("10.213.{n}.2/24"), "dev", "eth0"]);
        ns(&["link", "set", "eth0", "up"]);
        ns(&["link", "set", "lo", "up"]);
        ns(&["route", "add", "default", "via", &format!("10.213.{n}.1")]);
        net
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Deleting the namespace removes its veth end and with it ours.
        vessel_tests::named_netns::del(&self.name);
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn vm_gets_the_namespace_network_and_talks_to_the_host() {
    require_vm!();
    let net = TestNet::new(7);
    let mut c = VmCtr::new(
        "vmnet",
        &[
            "sh",
            "-c",
            "(ip -o addr show eth0; ip route; \
              echo hello-host | nc -w 10 10.213.7.1 7778 && echo SENT-OK; echo pong-from-vm) \
             | nc -l -p 7777",
        ],
    );
    let ns = c.config()["linux"]["namespaces"].as_array_mut().unwrap();
    for n in ns.iter_mut() {
        if n["type"] == "network" {
            n["path"] = json!(net.path());
        }
    }
    c.write();
    ok(&c.create_with(&[]));
    let state_dir = c.root().join(&c.id);
    // The guest reaches a listener on the host side of the veth.
    let listener = std::net::TcpListener::bind("10.213.7.1:7778").unwrap();
    let from_guest = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut got);
        got
    });
    c.start();
    // The host reaches the guest's listener through the namespace's veth.
    let mut got = String::new();
    let reached = wait_for(60, || {
        match std::net::TcpStream::connect_timeout(
            &"10.213.7.2:7777".parse().unwrap(),
            Duration::from_secs(2),
        ) {
            Ok(mut s) => {
                let _ = std::io::Read::read_to_string(&mut s, &mut got);
                got.contains("pong-from-vm")
            }
            Err(_) => false,
        }
    });
    assert!(
        reached,
        "no answer from the VM on 10.213.7.2:7777 (got {got:?})"
    );
    // Same address, MAC-carrying NIC named eth0, same default route; and the
    // guest reaches the host.
    assert!(
        got.contains("eth0") && got.contains("10.213.7.2/24"),
        "{got}"
    );
    assert!(got.contains("default via 10.213.7.1"), "{got}");
    assert!(got.contains("SENT-OK"), "{got}");
    assert_eq!(from_guest.join().unwrap(), "hello-host\n");
    assert!(c.wait_status("stopped"));
    ok(&c.v(&["delete", &c.id]));
    // The taps and filters are gone from the namespace.
    let links = std::process::Command::new("ip")
        .args(["netns", "exec", &net.name, "ip", "-o", "link"])
        .output()
        .unwrap();
    assert!(
        !stdout(&links).contains("vt-"),
        "tap left: {}",
        stdout(&links)
    );
    let filters = std::process::Command::new("ip")
        .args([
            "netns", "exec", &net.name, "tc", "filter", "show", "dev", "eth0", "ingress",
        ])
        .output()
        .unwrap();
    assert!(
        stdout(&filters).trim().is_empty(),
        "filters left: {}",
        stdout(&filters)
    );
    assert_gone(&c, &state_dir, None);
}

/// Receives the pty master sent to a console socket.
fn recv_master(listener: &std::os::unix::net::UnixListener) -> std::fs::File {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    listener.set_nonblocking(true).unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(60);
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if std::time::Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("no connection on the console socket: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the fd was just received and is owned by nobody else.
            return std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        }
    }
    panic!("no descriptor on the console socket");
}

/// Reads a pty master until `want` shows up (or 60 s pass).
fn read_until(master: &mut std::fs::File, want: &str) -> String {
    use std::os::fd::AsFd;
    let mut out = Vec::new();
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < end && !String::from_utf8_lossy(&out).contains(want) {
        let mut fds = [nix::poll::PollFd::new(
            master.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16)).unwrap() == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match std::io::Read::read(master, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

#[test]
fn vm_terminal_through_the_console_socket_and_exec_tty() {
    require_vm!();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut c = VmCtr::new(
        "vmtty",
        &[
            "sh",
            "-c",
            "[ -t 0 ] && echo stdin-is-tty; stty size; read line; echo \"got:$line\"; exit 5",
        ],
    );
    c.config()["process"]["terminal"] = json!(true);
    c.write();
    ok(&c.create_with(&["--console-socket", sock.to_str().unwrap()]));
    let mut master = recv_master(&listener);
    // The guest terminal follows the size of ours.
    let ws = libc::winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a pointer valid for the call.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&master),
            libc::TIOCSWINSZ,
            &ws,
        )
    };
    assert_eq!(rc, 0);
    c.start();
    let out = read_until(&mut master, "33 101");
    assert!(out.contains("stdin-is-tty"), "{out:?}");
    assert!(out.contains("33 101"), "window size: {out:?}");
    std::io::Write::write_all(&mut master, b"through the vm\n").unwrap();
    let out = read_until(&mut master, "got:through the vm");
    assert!(out.contains("got:through the vm"), "{out:?}");
    assert!(c.wait_status("stopped"));

    // exec --tty with a console socket in a running vm container.
    let c = VmCtr::new("vmtty2", &["sleep", "600"]);
    ok(&c.create_with(&[]));
    c.start();
    let sock2 = dir.path().join("console2.sock");
    let listener2 = std::os::unix::net::UnixListener::bind(&sock2).unwrap();
    let mut cmd = c.cmd();
    cmd.args([
        "exec",
        "--tty",
        "--console-socket",
        sock2.to_str().unwrap(),
        &c.id,
        "sh",
        "-c",
        "tty; exit 3",
    ]);
    let child = cmd.spawn().unwrap();
    let mut master = recv_master(&listener2);
    let out = read_until(&mut master, "/dev/pts/");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    let status = child.wait_with_output().unwrap();
    assert_eq!(status.status.code(), Some(3));
}

#[test]
fn vm_mode_from_flag_and_config_file_and_features_show_the_engine() {
    require_vm!();
    // No annotation: the runtime-wide default decides.
    let mut c = VmCtr::new("vmdefault", &["true"]);
    c.config()["annotations"] = json!({});
    c.write();
    c.ctr
        .global
        .extend(["--isolation".to_string(), "vm".to_string()]);
    ok(&c.create_with(&[]));
    assert_eq!(c.state()["isolation"], "vm");
    ok(&c.v(&["delete", "--force", &c.id]));

    // The configuration file's default, and the annotation winning over it.
    let mut c = VmCtr::new("vmconf", &["true"]);
    let text = std::fs::read_to_string(c.config_file()).unwrap();
    std::fs::write(c.config_file(), format!("isolation = \"vm\"\n{text}")).unwrap();
    c.config()["annotations"] = json!({"io.vessel.isolation": "container"});
    c.write();
    ok(&c.create_with(&[]));
    assert_eq!(c.state()["isolation"], "container");
    ok(&c.v(&["delete", "--force", &c.id]));

    let f: serde_json::Value = serde_json::from_str(&ok(&c.v(&["features"]))).unwrap();
    let a = &f["annotations"];
    assert_eq!(a["io.vessel.isolation.modes"], "container,vm", "{a}");
    assert!(
        a["io.vessel.vm.engine"] == "qemu" || a["io.vessel.vm.engine"] == "kvm",
        "{a}"
    );
    assert!(
        !a["io.vessel.vm.engine.reason"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{a}"
    );
}

/// The smallest `linux.resources.memory.limit` vm mode accepts, as
/// vm-backend/README.md documents it: a 96 MiB guest plus 128 MiB for QEMU.
const DOCUMENTED_MIN_LIMIT_MIB: i64 = 224;

#[test]
fn vm_boots_at_the_documented_minimum_memory_limit_and_refuses_below_it() {
    require_vm!();
    // One MiB below: refused before anything boots, naming the field.
    let mut c = VmCtr::new("vmmin-low", &["true"]);
    c.config()["linux"]["resources"] =
        json!({"memory": {"limit": (DOCUMENTED_MIN_LIMIT_MIB - 1) << 20}});
    c.write();
    let msg = fails(&c.create_with(&[]));
    assert!(
        msg.contains("linux.resources.memory.limit")
            && msg.contains(&format!("the minimum is {DOCUMENTED_MIN_LIMIT_MIB} MiB")),
        "{msg}"
    );
    assert!(!c.root().join(&c.id).exists());

    // Exactly the minimum: the guest boots and runs the workload.
    let mut c = VmCtr::new("vmmin", &["sh", "-c", "echo booted-at-the-minimum"]);
    c.config()["linux"]["resources"] = json!({"memory": {"limit": DOCUMENTED_MIN_LIMIT_MIB << 20}});
    c.write();
    let o = c.run();
    assert!(
        o.status.success() && stdout(&o).contains("booted-at-the-minimum"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert_gone(&c, &c.root().join(&c.id), None);
}

/// A memory cgroup made below this test's own, removed when dropped.
struct MemParent(std::path::PathBuf);

impl Drop for MemParent {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn vm_oom_kill_during_boot_fails_create_saying_so() {
    require_vm!();
    // No guest fits under a limit vessel refuses, so the OOM killer is
    // brought in by a limit vessel cannot see: the caller's own, above the
    // container's cgroup (a container without cgroupsPath nests under it).
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let Some(mem_own) = own.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
        ctrls
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_string())
    }) else {
        eprintln!("SKIP: no v1 memory hierarchy here (this test drives memory.limit_in_bytes)");
        return;
    };
    let parent = std::path::Path::new("/sys/fs/cgroup/memory")
        .join(mem_own.trim_start_matches('/'))
        .join(format!("vt-vmoom-{}", std::process::id()));
    std::fs::create_dir(&parent).unwrap();
    let parent = MemParent(parent);
    // 160 MiB: well below the 224 MiB a 96 MiB guest and QEMU need.
    std::fs::write(
        parent.0.join("memory.limit_in_bytes"),
        (160u64 << 20).to_string(),
    )
    .unwrap();

    let mut c = VmCtr::new("vmoom", &["true"]);
    c.config()["annotations"]["io.vessel.vm.memory_mib"] = json!("96");
    c.write();
    // vessel runs from the limited cgroup; this test stays where it is.
    let inner = c.cmd();
    let bundle = c.bundle.path().display().to_string();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(r#"echo $$ > "$0" || exit 97; exec "$@""#)
        .arg(parent.0.join("cgroup.procs"))
        .arg(inner.get_program())
        .args(inner.get_args())
        .args(["create", "--bundle", &bundle, &c.id])
        .stdin(std::process::Stdio::null());
    let o = vessel_tests::harness::output_via_files(&mut cmd);
    let msg = fails(&o);
    assert!(
        msg.contains("killed during boot by the OOM killer")
            && msg.contains("96 MiB guest")
            && msg.contains(&format!("{DOCUMENTED_MIN_LIMIT_MIB} MiB")),
        "{msg}"
    );
    assert!(
        !msg.contains("did not greet") || msg.contains("OOM"),
        "{msg}"
    );
    assert_gone(&c, &c.root().join(&c.id), None);
}

/// The pod is the VM: a container whose annotations name a vm-mode pod
/// sandbox (`io.kubernetes.cri.*`, as the CRI writes them) and whose IPC
/// and UTS namespace paths point at the sandbox's pid is created inside
/// the sandbox's VM, not in a VM of its own: it shares the guest kernel
/// and the sandbox's IPC and UTS namespaces, has its own pid namespace,
/// and its whole lifecycle (start, exec, kill, delete) goes through it.
#[test]
fn vm_pod_member_runs_inside_the_sandbox_vm() {
    require_vm!();
    let loop_sh = "trap 'exit 0' TERM; while true; do sleep 0.1; done";
    let mut sb = VmCtr::new("vmpod", &["sh", "-c", loop_sh]);
    sb.config()["annotations"]["io.kubernetes.cri.container-type"] = json!("sandbox");
    sb.config()["hostname"] = json!("the-pod");
    sb.write();
    ok(&sb.create_with(&[]));
    sb.start();
    let sb_pid = sb.pid();
    let sb_dir = sb.root().join(&sb.id);

    // The member's bundle, created in the sandbox's state root.
    let mut m = VmCtr::new("vmpodm", &["sh", "-c", loop_sh]);
    m.config()["annotations"] = json!({
        "io.vessel.isolation": "vm",
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.sandbox-id": sb.id,
    });
    let nss = m.config()["linux"]["namespaces"].as_array_mut().unwrap();
    nss.retain(|n| n["type"] != "uts" && n["type"] != "ipc");
    for kind in ["ipc", "uts"] {
        nss.push(json!({"type": kind, "path": format!("/proc/{sb_pid}/ns/{kind}")}));
    }
    m.config().as_object_mut().unwrap().remove("hostname");
    m.config()["root"]["readonly"] = json!(false);
    m.write();
    let mid = m.id.clone();
    let mb = m.bundle.path().to_str().unwrap().to_string();
    ok(&sb.v(&["create", "--bundle", &mb, &mid]));
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.root().join(&mid).join("state.json")).unwrap())
            .unwrap();
    assert_eq!(raw["isolation"], "vm", "{raw}");
    assert_eq!(raw["vmPod"]["sandbox"], sb.id.as_str(), "{raw}");
    assert!(
        raw.get("vm").is_none(),
        "the member has a VM of its own: {raw}"
    );
    // One VMM for the pod: the sandbox's.
    let root = sb.root().display().to_string();
    let qemus = vmm_processes(&root)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.starts_with("qemu"))
        })
        .count();
    assert_eq!(qemus, 1, "one VMM for the pod");
    ok(&sb.v(&["start", &mid]));
    let in_member = |args: &[&str]| {
        let mut a = vec!["exec", mid.as_str()];
        a.extend_from_slice(args);
        ok(&sb.v(&a)).trim().to_string()
    };
    let in_sandbox = |args: &[&str]| ok(&sb.exec(args)).trim().to_string();
    let ns = |f: &dyn Fn(&[&str]) -> String, kind: &str| {
        f(&["readlink", &format!("/proc/self/ns/{kind}")])
    };
    assert_eq!(ns(&in_member, "ipc"), ns(&in_sandbox, "ipc"));
    assert_eq!(ns(&in_member, "uts"), ns(&in_sandbox, "uts"));
    assert_ne!(ns(&in_member, "pid"), ns(&in_sandbox, "pid"));
    assert_ne!(ns(&in_member, "mnt"), ns(&in_sandbox, "mnt"));
    assert_eq!(in_member(&["hostname"]), "the-pod");
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(in_member(&["uname", "-r"]), in_sandbox(&["uname", "-r"]));
    assert_ne!(in_member(&["uname", "-r"]), host.trim(), "the guest kernel");
    // Its own root filesystem: a file made in the member is not the
    // sandbox's.
    in_member(&["sh", "-c", "echo mine > /member-file"]);
    let o = sb.exec(&["cat", "/member-file"]);
    assert!(!o.status.success(), "the sandbox sees the member's file");
    let ps = ok(&sb.v(&["ps", "--format", "json", &mid]));
    assert!(ps.trim().starts_with('['), "{ps}");

    // kill reaches the member's init; its relay exits and it stops.
    ok(&sb.v(&["kill", &mid, "TERM"]));
    assert!(
        wait_for(20, || {
            let o = sb.v(&["state", &mid]);
            serde_json::from_slice::<serde_json::Value>(&o.stdout)
                .is_ok_and(|v| v["status"] == "stopped")
        }),
        "TERM did not stop the member"
    );
    ok(&sb.v(&["delete", &mid]));
    assert!(!sb.root().join(&mid).exists());
    assert!(vmm_processes(&format!("{root}/{mid}")).is_empty());
    // The slot is free again: a second member takes it.
    let m2 = format!("{mid}-2");
    ok(&sb.v(&["create", "--bundle", &mb, &m2]));
    ok(&sb.v(&["start", &m2]));
    let o = sb.v(&["exec", &m2, "cat", "/member-file"]);
    assert!(!o.status.success(), "a new member sees the old one's layer");

    // Stopping the sandbox stops the VM and the member with it.
    ok(&sb.v(&["kill", &sb.id, "KILL"]));
    assert!(sb.wait_status("stopped"));
    assert!(
        wait_for(20, || vmm_processes(&format!("{root}/{m2}")).is_empty()),
        "the member's relay outlived the pod's VM"
    );
    ok(&sb.v(&["delete", &m2]));
    ok(&sb.v(&["delete", &sb.id]));
    assert_gone(&sb, &sb_dir, None);
    drop(m);
}
