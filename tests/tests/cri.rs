//! Pods through the CRI, as a kubelet drives them: a private containerd
//! 1.6 with its CRI plugin, a CNI bridge on a private subnet, a busybox
//! image imported from a local archive, and vessel's shim under the
//! `vessel` (container mode) and `vessel-vm` (microVM) runtime handlers.
//! The client is the CRI's own gRPC API (`k8s-cri` over tonic); no
//! kubelet runs (Debian packages none, nor crictl).
//!
//! Each test drives one pod from RunPodSandbox to RemovePodSandbox and
//! then checks that nothing of it is left: processes, QEMU, mounts,
//! cgroups, veths on the bridge, the network namespace, the IP lease,
//! vessel's and containerd's state.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vessel_tests::clients::{self, wait_until};
use vessel_tests::cri::{
    self, api, container_config, pod_config, CriContainerd, CriError, CriSetup, HANDLER_CONTAINER,
    HANDLER_VM,
};
use vessel_tests::{leaks, shim_client, vm};

/// StopPodSandbox must come back within this (a VM sandbox's never did:
/// containerd retried a failing `kill --all` for ever).
const STOP_POD_LIMIT: Duration = Duration::from_secs(60);

fn setup(tag: &str, vessel: &Path) -> Option<CriContainerd> {
    let bins = clients::require_clients(&["containerd", "ctr"])?;
    if !cri::cni_available() {
        return None;
    }
    let shim = shim_client::shim_bin();
    let vm_config = format!(
        "[vm]\ncache_dir = {:?}\n",
        vm::test_cache().display().to_string()
    );
    Some(CriContainerd::start(
        &bins[0],
        &bins[1],
        &CriSetup {
            tag,
            vessel,
            shim: &shim,
            vm_config: &vm_config,
        },
    ))
}

#[track_caller]
fn must<T>(what: &str, env: &CriContainerd, r: Result<T, CriError>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}\n--- containerd log:\n{}", env.log_tail()))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

/// ExecSync that must succeed with status 0; its stdout, trimmed.
#[track_caller]
fn exec_ok(env: &CriContainerd, id: &str, cmd: &[&str]) -> String {
    let r = must(
        &format!("ExecSync {cmd:?}"),
        env,
        env.exec_sync(id, cmd, 30),
    );
    assert_eq!(
        r.exit_code,
        0,
        "ExecSync {cmd:?} in {id}: stdout {:?} stderr {:?}",
        text(&r.stdout),
        text(&r.stderr)
    );
    text(&r.stdout)
}

fn container_state(env: &CriContainerd, id: &str) -> (i32, i32) {
    let s = must("ContainerStatus", env, env.container_status(id))
        .status
        .unwrap_or_default();
    (s.state, s.exit_code)
}

#[track_caller]
fn wait_exited(env: &CriContainerd, id: &str) -> i32 {
    let mut last = (0, 0);
    let ok = wait_until(Duration::from_secs(30), || {
        last = container_state(env, id);
        last.0 == api::ContainerState::ContainerExited as i32
    });
    assert!(ok, "container {id} never exited: (state, exit) {last:?}");
    last.1
}

/// The `info` JSON of a verbose status.
fn info(map: &std::collections::HashMap<String, String>) -> serde_json::Value {
    map.get("info")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

/// The path of the namespace of `kind` in an OCI spec's JSON.
fn ns_path(spec: &serde_json::Value, kind: &str) -> Option<String> {
    spec["linux"]["namespaces"]
        .as_array()?
        .iter()
        .find(|n| n["type"] == kind)
        .and_then(|n| n["path"].as_str())
        .map(str::to_string)
}

/// A line of a CRI log file (`<time> <stream> <P|F> <text>`) whose text is `want`.
fn log_has(path: &Path, want: &str) -> bool {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            f.len() == 4 && (f[1] == "stdout" || f[1] == "stderr") && f[3] == want
        })
}

/// `GET /` from the host to `ip:port`: the body.
fn http_get(ip: &str, port: u16) -> std::io::Result<String> {
    let addr = format!("{ip}:{port}").parse().expect("socket address");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// What a pod made on the host, to check that it all went.
#[derive(Default)]
struct Trace {
    ids: Vec<String>,
    netns: Option<String>,
    ip: String,
    pids: Vec<i32>,
    cgroups: Vec<String>,
    /// Rootfs images VM mode cached for the pod (removed at the end).
    images: Vec<PathBuf>,
}

impl Trace {
    fn note_vm_image(&mut self, env: &CriContainerd, id: &str) {
        if let Ok((hash, _, _)) = vessel_vm::guest::tree_hash(&env.bundle(id).join("rootfs")) {
            let p = vm::test_cache().join(format!("rootfs-{hash}.erofs"));
            if !self.images.contains(&p) {
                self.images.push(p);
            }
        }
    }

    /// Everything of the pod still on the host.
    fn leftovers(&self, env: &CriContainerd) -> Vec<String> {
        let mut left = Vec::new();
        for id in &self.ids {
            for (pid, cmd) in leaks::processes_mentioning(id) {
                left.push(format!("process {pid}: {cmd}"));
            }
            for m in leaks::mounts_mentioning(id) {
                left.push(format!("mount: {m}"));
            }
            if cri::vessel_k8s_root().join(id).exists() {
                left.push(format!("vessel state of {id}"));
            }
            if env.bundle(id).exists() {
                left.push(format!("containerd bundle of {id}"));
            }
        }
        for cg in &self.cgroups {
            for d in leaks::cgroup_dirs(cg) {
                left.push(format!("cgroup {d}"));
            }
        }
        for p in &self.pids {
            if Path::new(&format!("/proc/{p}")).exists() {
                left.push(format!("sandbox process {p}"));
            }
        }
        if let Some(ns) = &self.netns {
            if Path::new(ns).exists() {
                left.push(format!("network namespace {ns}"));
            }
        }
        let brif = Path::new("/sys/class/net").join(&env.bridge).join("brif");
        for e in std::fs::read_dir(&brif).into_iter().flatten().flatten() {
            left.push(format!("veth {:?} on {}", e.file_name(), env.bridge));
        }
        let lease = env.scratch.join("ipam").join(&env.network);
        if !self.ip.is_empty() && lease.join(&self.ip).exists() {
            left.push(format!("IP lease {}", self.ip));
        }
        left
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        for i in &self.images {
            let _ = std::fs::remove_file(i);
        }
    }
}

/// The kubelet's calls for one pod of two long-running containers and one
/// that exits and is restarted, under `handler`. In a VM pod every
/// container runs inside the pod's one VM.
fn drive_pod(env: &mut CriContainerd, handler: &str, vm_mode: bool) -> Trace {
    let mut t = Trace::default();
    let name = format!("pod-{handler}");
    let pod_cfg = pod_config(env, &name, &[]);
    let log_dir = PathBuf::from(&pod_cfg.log_directory);

    eprintln!("RunPodSandbox ({handler})");
    let started = Instant::now();
    let pod = must("RunPodSandbox", env, env.run_pod(&pod_cfg, handler));
    eprintln!("  sandbox {pod} in {:?}", started.elapsed());
    env.note_vessel_id(&pod);
    t.ids.push(pod.clone());
    if vm_mode {
        t.note_vm_image(env, &pod);
    }

    eprintln!("PodSandboxStatus");
    let st = must("PodSandboxStatus", env, env.pod_status(&pod));
    let status = st.status.clone().unwrap_or_default();
    assert_eq!(
        status.state,
        api::PodSandboxState::SandboxReady as i32,
        "{status:?}"
    );
    assert_eq!(status.runtime_handler, handler);
    assert_eq!(
        status.metadata.as_ref().map(|m| m.name.as_str()),
        Some(name.as_str())
    );
    let ip = status.network.clone().unwrap_or_default().ip;
    let prefix = env.subnet.rsplit_once('.').map(|(p, _)| p).unwrap_or("");
    assert!(
        ip.starts_with(&format!("{prefix}.")),
        "pod IP {ip:?} not in {}",
        env.subnet
    );
    t.ip = ip.clone();
    let pinfo = info(&st.info);
    t.netns = ns_path(&pinfo["runtimeSpec"], "network");
    if let Some(ns) = &t.netns {
        env.note_netns(Path::new(ns));
    }
    assert!(
        t.netns.as_deref().is_some_and(|p| Path::new(p).exists()),
        "the pod's network namespace: {:?}",
        t.netns
    );
    if let Some(p) = pinfo["pid"].as_i64() {
        t.pids.push(p as i32);
    }
    t.cgroups.push(format!("{}/{pod}", env.cgroup_parent));
    let vst = clients::vessel_state(&cri::vessel_k8s_root(), &pod)
        .unwrap_or_else(|| panic!("vessel does not know the sandbox {pod}"));
    assert_eq!(
        vst["isolation"],
        if vm_mode { "vm" } else { "container" },
        "{vst}"
    );

    run_containers(env, &mut t, &pod, &pod_cfg, &log_dir, vm_mode);

    eprintln!("StopPodSandbox");
    let started = Instant::now();
    let r = env.stop_pod(&pod, STOP_POD_LIMIT);
    let took = started.elapsed();
    must("StopPodSandbox", env, r);
    eprintln!("  stopped in {took:?}");
    let st = must("PodSandboxStatus", env, env.pod_status(&pod));
    assert_eq!(
        st.status.unwrap_or_default().state,
        api::PodSandboxState::SandboxNotready as i32
    );
    eprintln!("RemovePodSandbox");
    must(
        "RemovePodSandbox",
        env,
        env.remove_pod(&pod, Duration::from_secs(60)),
    );
    match env.pod_status(&pod) {
        Err(CriError::Status(s)) if s.code() == tonic::Code::NotFound => {}
        other => panic!("PodSandboxStatus after RemovePodSandbox: {other:?}"),
    }
    t
}

/// The containers of the pod.
fn run_containers(
    env: &mut CriContainerd,
    t: &mut Trace,
    pod: &str,
    pod_cfg: &api::PodSandboxConfig,
    log_dir: &Path,
    vm_mode: bool,
) {
    let create_start =
        |env: &mut CriContainerd, t: &mut Trace, cfg: api::ContainerConfig| -> String {
            let name = cfg.metadata.as_ref().map(|m| m.name.clone()).unwrap();
            eprintln!("CreateContainer/StartContainer {name}");
            let id = must(
                "CreateContainer",
                env,
                env.create_container(pod, cfg, pod_cfg),
            );
            env.note_vessel_id(&id);
            t.ids.push(id.clone());
            t.cgroups.push(format!("{}/{id}", env.cgroup_parent));
            if vm_mode {
                t.note_vm_image(env, &id);
            }
            let started = Instant::now();
            if let Err(e) = env.start_container(&id) {
                panic!("StartContainer {name}: {e}\n{}", env.log_tail());
            }
            eprintln!("  started in {:?}", started.elapsed());
            if vm_mode {
                // The pod is the VM: no VM of its own, a relay on the host.
                let file = cri::vessel_k8s_root().join(&id).join("state.json");
                let st: serde_json::Value = std::fs::read(&file)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_else(|| panic!("vessel does not know {id}"));
                assert_eq!(st["vmPod"]["sandbox"], pod, "{st}");
                assert!(st.get("vm").is_none(), "{name} has a VM of its own: {st}");
            }
            id
        };

    let web = create_start(
        env,
        t,
        container_config(
            "web",
            0,
            &[
                "sh",
                "-c",
                "mkdir -p /tmp/www && echo pod-says-hi > /tmp/www/index.html && \
                 echo web-up && exec httpd -f -p 8080 -h /tmp/www",
            ],
        ),
    );
    let client = create_start(
        env,
        t,
        container_config(
            "client",
            0,
            &[
                "sh",
                "-c",
                "trap 'exit 0' TERM; echo client-up; while :; do sleep 1; done",
            ],
        ),
    );

    eprintln!("ContainerStatus");
    for id in [&web, &client] {
        let s = must("ContainerStatus", env, env.container_status(id))
            .status
            .unwrap_or_default();
        assert_eq!(
            s.state,
            api::ContainerState::ContainerRunning as i32,
            "{s:?}"
        );
        assert!(s.started_at > 0, "{s:?}");
        assert!(s.log_path.ends_with("/0.log"), "{s:?}");
    }

    eprintln!("ExecSync: hostname, uname -r");
    assert_eq!(
        exec_ok(env, &client, &["hostname"]),
        format!(
            "pod-{}",
            if vm_mode {
                HANDLER_VM
            } else {
                HANDLER_CONTAINER
            }
        )
    );
    let host_release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string();
    let release = exec_ok(env, &client, &["uname", "-r"]);
    if vm_mode {
        assert_ne!(release, host_release, "a VM pod runs the guest kernel");
    } else {
        assert_eq!(
            release, host_release,
            "a container runs on the host's kernel"
        );
    }

    eprintln!("container logs at the CRI's path");
    let web_log = log_dir.join("web/0.log");
    assert!(
        wait_until(Duration::from_secs(10), || log_has(&web_log, "web-up")),
        "{} lacks web-up: {:?}",
        web_log.display(),
        std::fs::read_to_string(&web_log)
    );
    assert!(wait_until(Duration::from_secs(10), || log_has(
        &log_dir.join("client/0.log"),
        "client-up"
    )));

    eprintln!("the pod IP from the host, localhost between containers");
    let mut body = String::new();
    let reached = wait_until(Duration::from_secs(15), || match http_get(&t.ip, 8080) {
        Ok(b) => {
            body = b;
            body.contains("pod-says-hi")
        }
        Err(e) => {
            body = e.to_string();
            false
        }
    });
    assert!(reached, "http://{}:8080/ from the host: {body}", t.ip);
    assert_eq!(
        exec_ok(
            env,
            &client,
            &["wget", "-q", "-O-", "http://127.0.0.1:8080/"]
        ),
        "pod-says-hi"
    );

    eprintln!("shared network and IPC namespaces, /dev/shm; own pid namespaces");
    let ns =
        |id: &str, kind: &str| exec_ok(env, id, &["readlink", &format!("/proc/self/ns/{kind}")]);
    assert_eq!(ns(&web, "net"), ns(&client, "net"));
    assert_eq!(ns(&web, "ipc"), ns(&client, "ipc"));
    assert_eq!(ns(&web, "uts"), ns(&client, "uts"));
    assert_ne!(ns(&web, "pid"), ns(&client, "pid"));
    let token = exec_ok(
        env,
        &web,
        &[
            "sh",
            "-c",
            "echo shm-$$-$RANDOM > /dev/shm/token; cat /dev/shm/token",
        ],
    );
    assert!(token.starts_with("shm-"), "{token}");
    assert_eq!(exec_ok(env, &client, &["cat", "/dev/shm/token"]), token);

    eprintln!("ExecSync: exit status, timeout, a missing binary");
    let r = must(
        "ExecSync",
        env,
        env.exec_sync(&client, &["sh", "-c", "echo out; echo err >&2; exit 7"], 10),
    );
    assert_eq!(
        (r.exit_code, text(&r.stdout), text(&r.stderr)),
        (7, "out".into(), "err".into())
    );
    let started = Instant::now();
    let r = env.exec_sync(&client, &["sleep", "30"], 1);
    let took = started.elapsed();
    assert!(r.is_err(), "ExecSync of sleep 30 with a 1 s timeout: {r:?}");
    assert!(
        took < Duration::from_secs(15),
        "the 1 s timeout took {took:?}"
    );
    let started = Instant::now();
    let r = env.exec_sync(&client, &["/no/such/binary"], 1);
    let took = started.elapsed();
    eprintln!("  missing binary: {took:?}: {r:?}");
    match &r {
        Err(CriError::Status(s)) => assert!(
            s.message().contains("/no/such/binary"),
            "the error names the binary: {s:?}"
        ),
        Ok(resp) => assert_ne!(resp.exit_code, 0, "{resp:?}"),
        Err(e) => panic!("ExecSync of a missing binary: {e}"),
    }
    // containerd's own deadline for a start that never exits is 60 s.
    assert!(
        took < Duration::from_secs(20),
        "ExecSync of a missing binary took {took:?}: the shim never released its waiter"
    );

    eprintln!("ContainerStats");
    let s = must("ContainerStats", env, env.container_stats(&web));
    assert_eq!(
        s.attributes.as_ref().map(|a| a.id.as_str()),
        Some(web.as_str())
    );
    let mem = s
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .map_or(0, |v| v.value);
    assert!(mem > 0, "working set: {s:?}");
    let cpu = s
        .cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .map_or(0, |v| v.value);
    assert!(cpu > 0, "cpu usage: {s:?}");

    eprintln!("UpdateContainerResources");
    let limit = 96u64 << 20;
    must(
        "UpdateContainerResources",
        env,
        env.update_resources(
            &client,
            api::LinuxContainerResources {
                memory_limit_in_bytes: limit as i64,
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                ..Default::default()
            },
        ),
    );
    if !vm_mode {
        let rel = format!("{}/{client}", env.cgroup_parent);
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let (file, want) = if v2 {
            (
                PathBuf::from("/sys/fs/cgroup")
                    .join(&rel)
                    .join("memory.max"),
                limit.to_string(),
            )
        } else {
            (
                leaks::v1_cgroup_dir("memory", &rel)
                    .unwrap_or_else(|| panic!("no memory cgroup {rel}"))
                    .join("memory.limit_in_bytes"),
                limit.to_string(),
            )
        };
        let got = std::fs::read_to_string(&file).unwrap_or_default();
        assert_eq!(got.trim(), want, "{}", file.display());
    }
    // The container still runs under its new limits.
    assert_eq!(exec_ok(env, &client, &["echo", "alive"]), "alive");

    eprintln!("a container that exits on its own, restarted as a kubelet does");
    let once = |attempt| {
        container_config(
            "once",
            attempt,
            &[
                "sh",
                "-c",
                "echo run >> /dev/shm/runs; echo once-ran; exit 3",
            ],
        )
    };
    let first = create_start(env, t, once(0));
    assert_eq!(wait_exited(env, &first), 3);
    let second = create_start(env, t, once(1));
    assert_eq!(wait_exited(env, &second), 3);
    assert_eq!(exec_ok(env, &client, &["cat", "/dev/shm/runs"]), "run\nrun");
    assert!(log_has(&log_dir.join("once/0.log"), "once-ran"));
    assert!(log_has(&log_dir.join("once/1.log"), "once-ran"));
    for id in [&first, &second] {
        must("RemoveContainer", env, env.remove_container(id));
    }

    eprintln!("StopContainer, RemoveContainer");
    must("StopContainer", env, env.stop_container(&client, 10));
    assert_eq!(
        container_state(env, &client).0,
        api::ContainerState::ContainerExited as i32
    );
    assert_eq!(
        container_state(env, &client).1,
        0,
        "the client's TERM trap exits 0"
    );
    must("StopContainer", env, env.stop_container(&web, 2));
    assert_eq!(
        container_state(env, &web).0,
        api::ContainerState::ContainerExited as i32
    );
    for id in [&web, &client] {
        must("RemoveContainer", env, env.remove_container(id));
        assert!(
            matches!(env.container_status(id), Err(CriError::Status(ref s)) if s.code() == tonic::Code::NotFound),
            "{id} still known after RemoveContainer"
        );
    }
}

#[track_caller]
fn assert_nothing_left(env: &CriContainerd, t: &Trace) {
    let mut left = Vec::new();
    let gone = wait_until(Duration::from_secs(15), || {
        left = t.leftovers(env);
        left.is_empty()
    });
    assert!(gone, "the pod left: {left:#?}\n{}", env.log_tail());
    let shims = env.shim_pids();
    assert!(shims.is_empty(), "shims left: {shims:?}");
}

/// Container mode (`vessel` handler): the whole of a pod's life.
#[test]
fn cri_vessel_pod_as_a_kubelet_drives_it() {
    let Some(mut env) = setup("ctr", &clients::vessel_abs()) else {
        return;
    };
    let t = drive_pod(&mut env, HANDLER_CONTAINER, false);
    assert_nothing_left(&env, &t);
}

/// VM mode (`vessel-vm` handler): the pod is the VM. The sandbox boots a
/// microVM and every app container is created inside it, sharing the pod
/// IP, localhost, IPC and UTS; StopPodSandbox must return promptly and
/// leave nothing.
#[test]
fn cri_vessel_vm_pod_as_a_kubelet_drives_it() {
    if clients::require_clients(&["containerd"]).is_none() || !vm::vm_available() {
        return;
    }
    let vessel = vm::static_vessel();
    let Some(mut env) = setup("vm", &vessel) else {
        return;
    };
    let t = drive_pod(&mut env, HANDLER_VM, true);
    assert_nothing_left(&env, &t);
}
