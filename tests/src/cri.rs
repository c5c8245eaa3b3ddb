//! The CRI as a kubelet drives it: a private containerd (Debian's 1.6)
//! with its CRI plugin on, vessel's shim under two runtime handlers
//! (`vessel`, container mode; `vessel-vm`, a runtime configuration with
//! `isolation = "vm"`) and runc's, a CNI bridge on a private subnet, a
//! busybox image imported from a local archive, and a blocking client of
//! the CRI's gRPC `RuntimeService` (the `k8s-cri` crate's generated
//! client over tonic, on the containerd socket).
//!
//! There is no kubelet and no crictl on these machines: the calls are the
//! ones a kubelet makes, in its order, but no kubelet runs.

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ListPodSandboxRequest, RemovePodSandboxRequest, StatusRequest, StopPodSandboxRequest,
    VersionRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::clients::{self, Daemon, Run, Scratch};
use crate::shim_client;

pub use k8s_cri::v1 as api;

/// The image every CRI test imports: busybox whose default command
/// sleeps, so that it also serves as the pods' sandbox ("pause") image.
pub const CRI_IMAGE: &str = "localhost/vessel-cri-busybox:test";

/// containerd's namespace for everything the CRI makes.
pub const K8S_NS: &str = "k8s.io";

/// Handler names in the containerd configuration this module writes.
pub const HANDLER_CONTAINER: &str = "vessel";
/// The VM-mode handler (`isolation = "vm"` through `ConfigPath`).
pub const HANDLER_VM: &str = "vessel-vm";
/// containerd's own runc shim, for comparisons.
pub const HANDLER_RUNC: &str = "runc";

/// The vessel state root the shim uses for the CRI's namespace (the CRI's
/// runtime options carry no `Root`).
pub fn vessel_k8s_root() -> PathBuf {
    Path::new(shim_client::SHIM_VESSEL_ROOT).join(K8S_NS)
}

/// A CRI call's failure: the gRPC status, or no answer in time.
#[derive(Debug)]
pub enum CriError {
    /// containerd answered with an error.
    Status(tonic::Status),
    /// No answer within the limit (the call may still be running).
    Timeout(&'static str, Duration),
}

impl std::fmt::Display for CriError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CriError::Status(s) => write!(f, "{:?}: {}", s.code(), s.message()),
            CriError::Timeout(what, d) => write!(f, "{what}: no answer in {d:?}"),
        }
    }
}

/// A blocking CRI client on a unix socket.
pub struct CriClient {
    rt: tokio::runtime::Runtime,
    channel: Channel,
}

impl CriClient {
    /// Connects to the gRPC server at `sock`.
    pub fn connect(sock: &Path) -> Result<CriClient, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let path = sock.to_path_buf();
        // The URI is required by tonic and ignored: the connector dials the socket.
        let endpoint = Endpoint::try_from("http://[::]:0").map_err(|e| e.to_string())?;
        let channel = rt
            .block_on(
                endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let s = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(s))
                    }
                })),
            )
            .map_err(|e| format!("connect {}: {e}", sock.display()))?;
        Ok(CriClient { rt, channel })
    }

    /// Runs one RuntimeService call with a time limit.
    pub fn call<T, F, Fut>(&self, what: &'static str, limit: Duration, f: F) -> Result<T, CriError>
    where
        F: FnOnce(RuntimeServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = RuntimeServiceClient::new(self.channel.clone());
        let _guard = self.rt.enter();
        match self.rt.block_on(tokio::time::timeout(limit, f(client))) {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(CriError::Status(s)),
            Err(_) => Err(CriError::Timeout(what, limit)),
        }
    }
}

/// One line of a free /24 under 10.244/14 for a pod network, chosen from
/// `seed` and not already routed on the host.
fn free_subnet(seed: u32) -> String {
    let routes = fs::read_to_string("/proc/1/net/route").unwrap_or_default();
    for k in 0..1024u32 {
        let n = (seed.wrapping_add(k * 7)) % 1024;
        let (b, c) = (244 + n / 256, n % 256);
        // /proc/net/route holds destinations little-endian in hex.
        let dest = format!("{:02X}{:02X}{:02X}{:02X}", 0, c, b, 10);
        if !routes.lines().any(|l| l.split('\t').nth(1) == Some(&dest)) {
            return format!("10.{b}.{c}.0/24");
        }
    }
    panic!("no free /24 under 10.244.0.0/14 for a pod network");
}

/// A busybox image archive (docker-archive, one layer) tagged
/// [`CRI_IMAGE`] whose command sleeps for ever: the pods' sandbox image
/// and, with explicit commands, their containers' image.
pub fn cri_image_archive(work: &Path) -> PathBuf {
    crate::clients::image_archive(work, "cri-image", CRI_IMAGE, &["sleep", "2147483647"])
}

/// A private containerd with the CRI plugin, its CNI bridge and the
/// shim under test. Dropping it stops and removes every pod sandbox it
/// knows (through the CRI, as a kubelet would), stops containerd by pid,
/// kills the shims it started, deletes the bridge and the scratch
/// directory (see [`Scratch`]).
pub struct CriContainerd {
    /// The scratch directory (bin/, configs, logs, containerd's root).
    pub scratch: Scratch,
    /// containerd's socket.
    pub sock: PathBuf,
    /// containerd's `--state` (tasks' bundles live below it).
    pub state: PathBuf,
    /// The pod network, e.g. `10.245.17.0/24`.
    pub subnet: String,
    /// The CNI bridge's name.
    pub bridge: String,
    /// The CNI network's name (host-local keeps its leases in
    /// `<scratch>/ipam/<network>/<ip>`).
    pub network: String,
    /// Directory for the pods' logs (`log_directory`).
    pub logs: PathBuf,
    /// The cgroup parent of the pods (relative to each hierarchy).
    pub cgroup_parent: String,
    /// The blocking CRI client.
    pub cri: CriClient,
    ctr: PathBuf,
    daemon: Option<Daemon>,
    /// Pods' network namespaces (bind mounts under /run/netns) to remove
    /// if containerd did not (a pod whose stop hung).
    netns: Vec<PathBuf>,
    /// Deletes the bridge after the pods are gone (fields drop after
    /// `drop` ran).
    _bridge_link: LinkGuard,
}

/// What a [`CriContainerd`] is made of.
pub struct CriSetup<'a> {
    /// A short tag: scratch directory, bridge and cgroup names.
    pub tag: &'a str,
    /// The `vessel` the shim runs (the static build: the VM handler's
    /// guest agent must be static).
    pub vessel: &'a Path,
    /// The shim binary.
    pub shim: &'a Path,
    /// Lines of vessel's runtime configuration for the `vessel-vm`
    /// handler (besides `isolation = "vm"`).
    pub vm_config: &'a str,
}

impl CriContainerd {
    /// Starts containerd with the CRI plugin and waits until the CRI
    /// answers and reports its network ready; imports [`CRI_IMAGE`].
    pub fn start(containerd: &Path, ctr: &Path, setup: &CriSetup) -> CriContainerd {
        let mut scratch = Scratch::new(&format!("cri-{}", setup.tag));
        let dir = scratch.path.clone();
        let bin_dir = dir.join("bin");
        fs::create_dir_all(&bin_dir).unwrap();
        for (src, name) in [
            (setup.shim, shim_client::SHIM_NAME),
            (setup.vessel, "vessel"),
        ] {
            let dst = bin_dir.join(name);
            if fs::hard_link(src, &dst).is_err() {
                fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
            }
        }
        let seed = std::process::id().wrapping_mul(31).wrapping_add(
            setup
                .tag
                .bytes()
                .fold(0u32, |a, b| a.wrapping_mul(131) + b as u32),
        );
        let subnet = free_subnet(seed);
        let bridge = format!("vcri{:06x}", seed & 0xff_ffff);
        let cgroup_parent = format!("vessel-cri-{}-{}", setup.tag, std::process::id());
        scratch.cgroup(&cgroup_parent);
        let logs = dir.join("pods");
        fs::create_dir_all(&logs).unwrap();

        let cni = dir.join("cni");
        fs::create_dir_all(&cni).unwrap();
        let network = format!("vessel-cri-{}", setup.tag);
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": network,
            "plugins": [{
                "type": "bridge",
                "bridge": bridge,
                // The bridge is made below with the host's address on it:
                // as a gateway the plugin would also turn on the host's
                // ip_forward, a host-wide change no test may make.
                "isGateway": false,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": subnet }]],
                    "dataDir": dir.join("ipam").display().to_string()
                }
            }]
        });
        fs::write(
            cni.join("10-vessel.conflist"),
            serde_json::to_vec_pretty(&conflist).unwrap(),
        )
        .unwrap();
        let bridge_link = make_bridge(&bridge, &subnet);
        let vm_toml = dir.join("vessel-vm.toml");
        fs::write(
            &vm_toml,
            format!("isolation = \"vm\"\n{}\n", setup.vm_config),
        )
        .unwrap();

        let root = dir.join("root");
        let state = dir.join("state");
        let sock = dir.join("ctrd.sock");
        let config = dir.join("containerd.toml");
        let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
        fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[{cri}]
  sandbox_image = "{image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  enable_selinux = false
  restrict_oom_score_adj = {restrict_oom}
[{cri}.cni]
  bin_dir = "{cni_bin}"
  conf_dir = "{cni}"
  max_conf_num = 1
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "{runc}"
[{cri}.containerd.runtimes.{runc}]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.{runc}.options]
  Root = "{runc_root}"
[{cri}.containerd.runtimes.{vessel}]
  runtime_type = "{shim_rt}"
  pod_annotations = ["io.vessel.*"]
  container_annotations = ["io.vessel.*"]
[{cri}.containerd.runtimes.{vessel_vm}]
  runtime_type = "{shim_rt}"
  pod_annotations = ["io.vessel.*"]
  container_annotations = ["io.vessel.*"]
[{cri}.containerd.runtimes.{vessel_vm}.options]
  ConfigPath = "{vm_toml}"
"#,
                root = root.display(),
                state = state.display(),
                sock = sock.display(),
                opt = dir.join("opt").display(),
                image = CRI_IMAGE,
                restrict_oom = !may_lower_oom_score_adj(),
                cni_bin = cni_bin_dir().display(),
                cni = cni.display(),
                runc = HANDLER_RUNC,
                runc_root = dir.join("runc").display(),
                vessel = HANDLER_CONTAINER,
                vessel_vm = HANDLER_VM,
                shim_rt = shim_client::RUNTIME,
                vm_toml = vm_toml.display(),
            ),
        )
        .unwrap();

        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(containerd);
        cmd.arg("--config").arg(&config).env("PATH", path);
        let mut daemon = Daemon::start("containerd", cmd, &dir.join("containerd.log"));
        daemon.wait_ready(&sock, Duration::from_secs(30));
        let cri = CriClient::connect(&sock)
            .unwrap_or_else(|e| panic!("CRI client: {e}\n{}", daemon.log_tail()));
        let env = CriContainerd {
            scratch,
            sock,
            state,
            subnet,
            bridge,
            network,
            logs,
            cgroup_parent,
            cri,
            ctr: ctr.to_path_buf(),
            daemon: Some(daemon),
            netns: Vec::new(),
            _bridge_link: bridge_link,
        };
        // The socket is up before the CRI is, and the CNI config loads
        // after it: wait for RuntimeReady and NetworkReady.
        let mut last = String::new();
        let ready = clients::wait_until(Duration::from_secs(30), || {
            let r = env
                .cri
                .call("Status", Duration::from_secs(5), |mut c| async move {
                    c.status(StatusRequest { verbose: false }).await
                });
            match r {
                Ok(s) => {
                    let conds = s.status.map(|s| s.conditions).unwrap_or_default();
                    last = format!("{conds:?}");
                    conds.len() >= 2 && conds.iter().all(|c| c.status)
                }
                Err(e) => {
                    last = e.to_string();
                    false
                }
            }
        });
        assert!(ready, "the CRI is not ready: {last}\n{}", env.log_tail());
        let v = env
            .cri
            .call("Version", Duration::from_secs(5), |mut c| async move {
                c.version(VersionRequest::default()).await
            })
            .unwrap_or_else(|e| panic!("CRI Version: {e}"));
        eprintln!(
            "CRI: {} {} (API {})",
            v.runtime_name, v.runtime_version, v.runtime_api_version
        );
        let archive = cri_image_archive(&env.scratch.path);
        let r = env
            .ctr(&["images", "import", archive.to_str().unwrap()])
            .check();
        assert!(r.stdout.contains(CRI_IMAGE), "ctr images import: {r}");
        let _ = fs::remove_file(&archive);
        env
    }

    /// `ctr -a <sock> -n k8s.io <args>`.
    pub fn ctr(&self, args: &[&str]) -> Run {
        let mut c = Command::new(&self.ctr);
        c.arg("-a").arg(&self.sock).args(["-n", K8S_NS]).args(args);
        clients::run(&mut c, Duration::from_secs(60))
    }

    /// The last lines of containerd's log.
    pub fn log_tail(&self) -> String {
        self.daemon
            .as_ref()
            .map(|d| d.log_tail())
            .unwrap_or_default()
    }

    /// The bundle directory containerd made for task `id`.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.state
            .join("io.containerd.runtime.v2.task")
            .join(K8S_NS)
            .join(id)
    }

    /// Pids of the shims this containerd started.
    pub fn shim_pids(&self) -> Vec<i32> {
        clients::processes_mentioning(&format!("-address {}", self.sock.display()))
    }

    /// Registers a vessel container id (sandbox or container) to
    /// force-delete on drop if the test left it.
    pub fn note_vessel_id(&mut self, id: &str) {
        self.scratch.vessel_container(&vessel_k8s_root(), id);
    }

    /// Registers a pod's network namespace file to remove on drop if
    /// containerd left it.
    pub fn note_netns(&mut self, path: &Path) {
        self.netns.push(path.to_path_buf());
    }

    /// Stops and removes every pod sandbox through the CRI (as a kubelet
    /// would); errors are printed, not raised (this is cleanup).
    pub fn remove_all_pods(&self) {
        let limit = Duration::from_secs(60);
        let pods = match self.cri.call("ListPodSandbox", limit, |mut c| async move {
            c.list_pod_sandbox(ListPodSandboxRequest::default()).await
        }) {
            Ok(r) => r.items,
            Err(e) => {
                eprintln!("cleanup: ListPodSandbox: {e}");
                return;
            }
        };
        for p in pods {
            let id = p.id.clone();
            eprintln!("cleanup: StopPodSandbox/RemovePodSandbox {id}");
            let r = self.cri.call("StopPodSandbox", limit, |mut c| {
                let pod_sandbox_id = id.clone();
                async move {
                    c.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id })
                        .await
                }
            });
            if let Err(e) = r {
                eprintln!("cleanup: StopPodSandbox {id}: {e}");
            }
            let r = self.cri.call("RemovePodSandbox", limit, |mut c| {
                let pod_sandbox_id = id.clone();
                async move {
                    c.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id })
                        .await
                }
            });
            if let Err(e) = r {
                eprintln!("cleanup: RemovePodSandbox {id}: {e}");
            }
        }
    }
}

impl Drop for CriContainerd {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            self.remove_all_pods();
        }
        let shims = self.shim_pids();
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(10));
        }
        // Shims outlive containerd by design: end the ones it started.
        for p in shims {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        clients::kill_processes_mentioning(&format!("-address {}", self.sock.display()));
        for ns in &self.netns {
            if ns.exists() {
                eprintln!("cleanup: network namespace {}", ns.display());
                let _ = nix::mount::umount2(ns, nix::mount::MntFlags::MNT_DETACH);
                let _ = fs::remove_file(ns);
            }
        }
        // The shim made vessel's root for the CRI's namespace: removed
        // when empty (another containerd's containers may still be in it).
        let _ = fs::remove_dir(vessel_k8s_root());
        // The scratch directory (dropped after this) force-deletes vessel
        // containers it was told of, unmounts and removes itself.
    }
}

/// Makes the pods' bridge with the subnet's first address on it, so the
/// host reaches the pods (a later drop deletes it).
fn make_bridge(bridge: &str, subnet: &str) -> LinkGuard {
    let host_ip = subnet.replace(".0/24", ".1/24");
    for args in [
        vec!["link", "add", bridge, "type", "bridge"],
        vec!["addr", "add", host_ip.as_str(), "dev", bridge],
        vec!["link", "set", bridge, "up"],
    ] {
        let r = clients::run(Command::new("ip").args(&args), Duration::from_secs(10));
        if !r.ok() {
            let _ = Command::new("ip").args(["link", "del", bridge]).status();
            panic!("ip {}: {r}", args.join(" "));
        }
    }
    LinkGuard(bridge.to_string())
}

/// A host link a test made: deleted when dropped.
struct LinkGuard(String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        if Path::new("/sys/class/net").join(&self.0).exists() {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }
}

/// Whether this process may lower its oom_score_adj (CAP_SYS_RESOURCE):
/// the CRI gives sandboxes -998, which fails without it unless
/// `restrict_oom_score_adj` keeps every value at or above containerd's own
/// (these machines' sandbox lacks the capability).
fn may_lower_oom_score_adj() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Where the CNI plugins are: Debian's containernetworking-plugins puts
/// them in /usr/lib/cni, upstream's tarball in /opt/cni/bin.
pub fn cni_bin_dir() -> PathBuf {
    ["/usr/lib/cni", "/opt/cni/bin"]
        .iter()
        .map(PathBuf::from)
        .find(|d| d.join("bridge").exists() && d.join("host-local").exists())
        .unwrap_or_else(|| PathBuf::from("/usr/lib/cni"))
}

/// Whether the CNI plugins the suite uses are installed; prints why not.
pub fn cni_available() -> bool {
    let d = cni_bin_dir();
    for p in ["bridge", "host-local", "loopback"] {
        if !d.join(p).exists() {
            eprintln!(
                "SKIP: CNI plugin {p} not in /usr/lib/cni or /opt/cni/bin \
                 (containernetworking-plugins)"
            );
            return false;
        }
    }
    true
}

/// A pod's sandbox configuration as a kubelet sends it: metadata, hostname,
/// log directory, cgroup parent, the network and IPC namespaces of the pod
/// and a pid namespace per container.
pub fn pod_config(
    env: &CriContainerd,
    name: &str,
    annotations: &[(&str, &str)],
) -> api::PodSandboxConfig {
    let log_directory = env.logs.join(name);
    fs::create_dir_all(&log_directory).unwrap();
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}-{}", std::process::id()),
            namespace: "vessel-cri".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_directory.display().to_string(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: format!("/{}", env.cgroup_parent),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: api::NamespaceMode::Pod as i32,
                    pid: api::NamespaceMode::Container as i32,
                    ipc: api::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container's configuration: [`CRI_IMAGE`] running `command`, its log
/// at `<name>/<attempt>.log` under the pod's log directory (the kubelet's
/// layout).
pub fn container_config(name: &str, attempt: u32, command: &[&str]) -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.into(),
            attempt,
        }),
        image: Some(api::ImageSpec {
            image: CRI_IMAGE.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/{attempt}.log"),
        linux: Some(api::LinuxContainerConfig {
            security_context: Some(api::LinuxContainerSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: api::NamespaceMode::Pod as i32,
                    pid: api::NamespaceMode::Container as i32,
                    ipc: api::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The kubelet's calls, each with a time limit (a hang is a failure).
impl CriContainerd {
    /// RunPodSandbox with `handler`; the sandbox id.
    pub fn run_pod(&self, cfg: &api::PodSandboxConfig, handler: &str) -> Result<String, CriError> {
        let req = api::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: handler.into(),
        };
        self.cri
            .call(
                "RunPodSandbox",
                Duration::from_secs(120),
                |mut c| async move { c.run_pod_sandbox(req).await },
            )
            .map(|r| r.pod_sandbox_id)
    }

    /// PodSandboxStatus (verbose: `info` holds containerd's details).
    pub fn pod_status(&self, id: &str) -> Result<api::PodSandboxStatusResponse, CriError> {
        let req = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        };
        self.cri.call(
            "PodSandboxStatus",
            Duration::from_secs(30),
            |mut c| async move { c.pod_sandbox_status(req).await },
        )
    }

    /// CreateContainer in pod `pod`; the container id.
    pub fn create_container(
        &self,
        pod: &str,
        cfg: api::ContainerConfig,
        sandbox: &api::PodSandboxConfig,
    ) -> Result<String, CriError> {
        let req = api::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(cfg),
            sandbox_config: Some(sandbox.clone()),
        };
        self.cri
            .call(
                "CreateContainer",
                Duration::from_secs(60),
                |mut c| async move { c.create_container(req).await },
            )
            .map(|r| r.container_id)
    }

    /// StartContainer.
    pub fn start_container(&self, id: &str) -> Result<(), CriError> {
        let req = api::StartContainerRequest {
            container_id: id.into(),
        };
        self.cri
            .call(
                "StartContainer",
                Duration::from_secs(120),
                |mut c| async move { c.start_container(req).await },
            )
            .map(|_| ())
    }

    /// ContainerStatus (verbose).
    pub fn container_status(&self, id: &str) -> Result<api::ContainerStatusResponse, CriError> {
        let req = api::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        };
        self.cri.call(
            "ContainerStatus",
            Duration::from_secs(30),
            |mut c| async move { c.container_status(req).await },
        )
    }

    /// ExecSync with a timeout in seconds (0: none); the call itself is
    /// limited to `timeout + 30` s.
    pub fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<api::ExecSyncResponse, CriError> {
        let req = api::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        };
        let limit = Duration::from_secs(timeout.max(0) as u64 + 30);
        self.cri.call(
            "ExecSync",
            limit,
            |mut c| async move { c.exec_sync(req).await },
        )
    }

    /// ContainerStats.
    pub fn container_stats(&self, id: &str) -> Result<api::ContainerStats, CriError> {
        let req = api::ContainerStatsRequest {
            container_id: id.into(),
        };
        self.cri
            .call(
                "ContainerStats",
                Duration::from_secs(30),
                |mut c| async move { c.container_stats(req).await },
            )
            .map(|r| r.stats.unwrap_or_default())
    }

    /// UpdateContainerResources.
    pub fn update_resources(
        &self,
        id: &str,
        linux: api::LinuxContainerResources,
    ) -> Result<(), CriError> {
        let req = api::UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(linux),
            ..Default::default()
        };
        self.cri
            .call(
                "UpdateContainerResources",
                Duration::from_secs(30),
                |mut c| async move { c.update_container_resources(req).await },
            )
            .map(|_| ())
    }

    /// StopContainer with a grace period in seconds.
    pub fn stop_container(&self, id: &str, grace: i64) -> Result<(), CriError> {
        let req = api::StopContainerRequest {
            container_id: id.into(),
            timeout: grace,
        };
        let limit = Duration::from_secs(grace.max(0) as u64 + 60);
        self.cri
            .call("StopContainer", limit, |mut c| async move {
                c.stop_container(req).await
            })
            .map(|_| ())
    }

    /// RemoveContainer.
    pub fn remove_container(&self, id: &str) -> Result<(), CriError> {
        let req = api::RemoveContainerRequest {
            container_id: id.into(),
        };
        self.cri
            .call(
                "RemoveContainer",
                Duration::from_secs(60),
                |mut c| async move { c.remove_container(req).await },
            )
            .map(|_| ())
    }

    /// StopPodSandbox, limited to `limit`.
    pub fn stop_pod(&self, id: &str, limit: Duration) -> Result<(), CriError> {
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.cri
            .call("StopPodSandbox", limit, |mut c| async move {
                c.stop_pod_sandbox(req).await
            })
            .map(|_| ())
    }

    /// RemovePodSandbox, limited to `limit`.
    pub fn remove_pod(&self, id: &str, limit: Duration) -> Result<(), CriError> {
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.cri
            .call("RemovePodSandbox", limit, |mut c| async move {
                c.remove_pod_sandbox(req).await
            })
            .map(|_| ())
    }
}
