//! VM pods: the pod is the VM. A Kubernetes pod is a sandbox (the pause
//! container) and later containers that join its network, IPC and UTS
//! namespaces. When the sandbox is a vm-mode container, its `create`
//! boots the VM as for any container, with [`POD_SLOTS`] spare disks (pod
//! slots); each later container of the pod is a *member*: instead of a
//! VM of its own, its root filesystem image is written into a free slot
//! and the sandbox's guest agent creates it in the same VM, joining the
//! sandbox's guest namespaces (IPC and UTS, pid when the pod shares it;
//! the VM's network is the pod's), with its own mount namespace and guest
//! cgroup.
//!
//! On the host a member is a [`crate::vm::member`] relay process: the pid
//! its state reports (a shim waits on it), which holds the member's stdio
//! and exits as the member does, and which serves the member's control
//! socket by forwarding every request to the sandbox's supervisor.
//!
//! A container is a member when its annotations name a CRI sandbox
//! ([`CONTAINER_TYPE`] `container` and [`SANDBOX_ID`]) or when its
//! namespace paths point at the pid of a vm-mode container of the same
//! state root.

use crate::spec::annotation;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};
use vessel_vm::agent::{GuestFile, GuestRootfs, RunProcess};
use vessel_vm::guest::{build_rootfs_image, ImageFormat, RootfsImage};

use super::control::{self, Request};
use super::guest_spec::{self, GUEST_FILES};
use super::resolve::resolve;
use super::{VmBackend, VmError};
use crate::container::create::{runtime_hooks, Bundle, NewContainer, Spawned};
use crate::container::{stop_processes, Container, CreateOptions, Error, ExecOptions, ExecPlan};
use crate::isolation::{Backend, Spawner};
use crate::ledger::{Entry, Role};
use crate::process::channel::Channel;
use crate::state::{Mode, PodMemberState, Status, VmState};

/// The CRI annotation saying what a container is (`sandbox` or
/// `container`).
pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// The CRI annotation naming a container's pod sandbox.
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// Spare disks a pod sandbox's VM boots with: at most this many later
/// containers of the pod exist at once (a disk cannot be added to a
/// running microVM here).
pub const POD_SLOTS: u32 = 4;
/// Size of a pod slot (sparse: only what is written takes space), the
/// largest root filesystem image of a member.
pub const SLOT_BYTES: u64 = 4 << 30;
/// Serial of pod slot `k` is this followed by `k`.
pub const SLOT_SERIAL: &str = "pod-slot-";
/// File name of a member's launch description in its state directory.
pub const MEMBER_FILE: &str = "member.json";

/// Why a container cannot join its VM pod (each names the field or the
/// sandbox).
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The sandbox the annotations name is not running.
    #[error("annotation {SANDBOX_ID}: the pod sandbox {id:?} is {status}, not running")]
    NotRunning {
        /// The sandbox.
        id: String,
        /// Its status.
        status: Status,
    },
    /// A vm-mode sandbox made without pod slots.
    #[error(
        "the pod sandbox {id:?} is a VM without pod slots (it was not created with the \
         annotation {CONTAINER_TYPE}=sandbox), so no container can join it"
    )]
    NoSlots {
        /// The sandbox.
        id: String,
    },
    /// Every slot is taken.
    #[error("the pod sandbox {id:?} already runs {POD_SLOTS} containers (its pod slots)")]
    SlotsFull {
        /// The sandbox.
        id: String,
    },
    /// The image does not fit a slot.
    #[error("the root filesystem image {} ({size} bytes) exceeds a pod slot ({SLOT_BYTES} bytes)", .image.display())]
    TooLarge {
        /// The image.
        image: PathBuf,
        /// Its size.
        size: u64,
    },
    /// A namespace path that is neither the sandbox's nor the pod's network.
    #[error(
        "linux.namespaces[{index}].path: {} is not a namespace of the pod sandbox {sandbox:?} \
         (pid {pid}); a container of a VM pod joins only its pod's namespaces",
        .path.display()
    )]
    ForeignNamespace {
        /// Index in `linux.namespaces`.
        index: usize,
        /// The path.
        path: PathBuf,
        /// The sandbox.
        sandbox: String,
        /// Its pid.
        pid: i32,
    },
    /// The sandbox's bundle (its shared mounts are read from it).
    #[error("the pod sandbox's config.json: {0}")]
    SandboxSpec(String),
    /// `pause` and `resume` of one container of a VM pod.
    #[error("{0} of one container of a VM pod is not supported (pause or resume the pod sandbox)")]
    Unsupported(&'static str),
}

/// The pod sandbox a member joins.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Its container id.
    pub id: String,
    /// Its state directory (its control socket is there).
    pub dir: PathBuf,
    /// Its host pid (the VM supervisor).
    pub pid: i32,
    /// Its bundle.
    pub bundle: PathBuf,
    /// Its pod slots.
    pub slots: Vec<PathBuf>,
}

/// Whether `spec` is a CRI pod sandbox (its VM gets pod slots).
pub fn is_sandbox(spec: &Spec) -> bool {
    annotation(spec, CONTAINER_TYPE) == Some("sandbox")
}

/// The sandbox a CRI container's annotations name (a container of a pod,
/// not the sandbox itself), if any.
pub fn named_sandbox<'a>(spec: &'a Spec, id: &str) -> Option<&'a str> {
    match (
        annotation(spec, CONTAINER_TYPE),
        annotation(spec, SANDBOX_ID),
    ) {
        (Some("container"), Some(s)) if s != id => Some(s),
        _ => None,
    }
}

/// The VM pod a container about to be created belongs to, if any: the
/// sandbox its CRI annotations name, or the vm-mode container whose pid
/// its namespace paths name, in the same state root.
pub fn sandbox_of(opts: &CreateOptions, b: &Bundle) -> Result<Option<Pod>, Error> {
    let id = &opts.id;
    let sandbox = match named_sandbox(&b.spec, id) {
        Some(s) => match Container::peek(&opts.root, s) {
            Ok(c) => Some(c),
            // Not one of ours: the container is not a member (and vm mode
            // refuses the namespaces it joins, naming them).
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        },
        None => by_namespace_pid(&opts.root, &b.spec),
    };
    let Some(c) = sandbox else { return Ok(None) };
    let Mode::Vm(vm) = &c.state.mode else {
        return Ok(None);
    };
    let e = |x: PodError| Error::vm(id, VmError::Pod(x));
    let status = c.status();
    if !matches!(status, Status::Running | Status::Created) {
        return Err(e(PodError::NotRunning {
            id: c.id().into(),
            status,
        }));
    }
    if vm.pod_slots.is_empty() {
        return Err(e(PodError::NoSlots { id: c.id().into() }));
    }
    Ok(Some(Pod {
        id: c.id().into(),
        dir: c.dir.clone(),
        pid: c.state.pid,
        bundle: c.state.bundle.clone(),
        slots: vm.pod_slots.clone(),
    }))
}

/// The vm-mode container of `root` whose pid a namespace path of `spec`
/// (`/proc/<pid>/ns/...`) names.
fn by_namespace_pid(root: &Path, spec: &Spec) -> Option<Container> {
    let pids: Vec<i32> = spec
        .linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .filter_map(|ns| proc_pid(ns.path().as_deref()?))
        .collect();
    if pids.is_empty() {
        return None;
    }
    fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| Container::peek(root, &e.file_name().to_string_lossy()).ok())
        .find(|c| matches!(c.state.mode, Mode::Vm(_)) && pids.contains(&c.state.pid))
}

/// The pid of a `/proc/<pid>/ns/<kind>` path.
fn proc_pid(path: &Path) -> Option<i32> {
    let rest = path.strip_prefix("/proc").ok()?;
    let mut parts = rest.components();
    let pid = parts.next()?.as_os_str().to_str()?.parse().ok()?;
    (parts.next()?.as_os_str() == "ns").then_some(pid)
}

/// The name config.json gives a namespace type.
fn ns_name(t: LinuxNamespaceType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The member's spec as vm mode plans it: the namespaces it joins of the
/// sandbox (paths pointing at the sandbox's pid) lose their path and are
/// returned by name, to be joined in the guest; the pod's network is the
/// VM's. Any other namespace path is refused.
fn pod_namespaces(spec: &Spec, pod: &Pod) -> Result<(Spec, Vec<String>), PodError> {
    let mut spec = spec.clone();
    let mut join = Vec::new();
    let Some(mut linux) = spec.linux().clone() else {
        return Ok((spec, join));
    };
    let sandbox_net = sandbox_netns(pod);
    if let Some(list) = linux.namespaces().clone() {
        let mut kept = Vec::with_capacity(list.len());
        for (index, mut ns) in list.into_iter().enumerate() {
            if let Some(path) = ns.path().clone().filter(|p| !p.as_os_str().is_empty()) {
                let of_sandbox = proc_pid(&path) == Some(pod.pid);
                let net = ns.typ() == LinuxNamespaceType::Network;
                let pod_net = net && sandbox_net.as_deref() == Some(path.as_path());
                if !(of_sandbox || pod_net) {
                    return Err(PodError::ForeignNamespace {
                        index,
                        path,
                        sandbox: pod.id.clone(),
                        pid: pod.pid,
                    });
                }
                if !net {
                    join.push(ns_name(ns.typ()));
                }
                ns.set_path(None);
            }
            kept.push(ns);
        }
        linux.set_namespaces(Some(kept));
    }
    spec.set_linux(Some(linux));
    Ok((spec, join))
}

/// The network namespace path in the sandbox's own config.
fn sandbox_netns(pod: &Pod) -> Option<PathBuf> {
    let spec = crate::spec::load(&pod.bundle).ok()?;
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)?
        .path()
        .clone()
}

/// Where a member's copied bind sources go in the guest (the sandbox's
/// are under [`GUEST_FILES`]).
fn member_files(id: &str) -> String {
    format!("/run/vessel/members/{id}/files")
}

/// Rewrites the plan's copied bind sources for member `id`: a source the
/// sandbox also binds (the pod's /dev/shm, resolv.conf) is the sandbox's
/// copy in the guest, shared as on a host; the others are copied under
/// the member's own directory.
fn share_pod_mounts(
    id: &str,
    original: &Spec,
    config: &mut Spec,
    files: &mut Vec<GuestFile>,
    pod: &Pod,
) -> Result<(), PodError> {
    let sandbox =
        crate::spec::load(&pod.bundle).map_err(|e| PodError::SandboxSpec(e.to_string()))?;
    let sandbox_sources: Vec<Option<PathBuf>> = sandbox
        .mounts()
        .iter()
        .flatten()
        .map(|m| m.source().clone())
        .collect();
    let originals: Vec<Option<PathBuf>> = original
        .mounts()
        .iter()
        .flatten()
        .map(|m| m.source().clone())
        .collect();
    let Some(mut mounts) = config.mounts().clone() else {
        return Ok(());
    };
    let under = |path: &str, prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|r| r.starts_with('/'))
    };
    for (i, m) in mounts.iter_mut().enumerate() {
        let copied = format!("{GUEST_FILES}/{i}");
        if m.source().as_deref() != Some(Path::new(&copied)) {
            continue;
        }
        let shared = originals.get(i).cloned().flatten().and_then(|src| {
            sandbox_sources
                .iter()
                .position(|s| s.as_ref() == Some(&src))
        });
        match shared {
            Some(j) => {
                files.retain(|f| !under(&f.path, &copied));
                m.set_source(Some(format!("{GUEST_FILES}/{j}").into()));
            }
            None => {
                let own = format!("{}/{i}", member_files(id));
                for f in files.iter_mut().filter(|f| under(&f.path, &copied)) {
                    f.path = format!("{own}{}", &f.path[copied.len()..]);
                }
                m.set_source(Some(own.into()));
            }
        }
    }
    config.set_mounts(Some(mounts));
    Ok(())
}

/// What a member's relay needs (`<dir>/member.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberLaunch {
    /// The member's container id.
    pub id: String,
    /// The sandbox's container id.
    pub sandbox: String,
    /// The sandbox's state directory.
    pub sandbox_dir: PathBuf,
    /// The member as the guest creates it (its id is given by the
    /// sandbox's supervisor).
    pub run: RunProcess,
    /// The sandbox's namespaces it joins.
    pub join: Vec<String>,
    /// Where to send the host side of its terminal.
    pub console_socket: Option<PathBuf>,
}

/// What vm mode prepared for a member before its state directory is
/// claimed.
pub struct MemberSpawner {
    pod: Pod,
    config: Spec,
    files: Vec<GuestFile>,
    join: Vec<String>,
    image: RootfsImage,
}

/// Plans a member of `pod` and builds (or finds cached) its image.
pub fn prepare(opts: &CreateOptions, b: &Bundle, pod: Pod) -> Result<MemberSpawner, Error> {
    let e = |x: VmError| Error::vm(&opts.id, x);
    let (spec, join) = pod_namespaces(&b.spec, &pod).map_err(|x| e(VmError::Pod(x)))?;
    // Sizing is the sandbox's (the VM is booted); the plan's guest config
    // and copied files are what matters.
    let plan = guest_spec::plan(&spec, &opts.vm).map_err(|m| e(VmError::Plan(m)))?;
    let (mut config, mut files) = (plan.config, plan.files);
    share_pod_mounts(&opts.id, &b.spec, &mut config, &mut files, &pod)
        .map_err(|x| e(VmError::Pod(x)))?;
    let host = resolve(&opts.vm).map_err(|m| e(VmError::Resolve(m)))?;
    let image =
        build_rootfs_image(&b.rootfs, ImageFormat::Erofs, &host.cache).map_err(|source| {
            e(VmError::Image {
                what: format!("building the image of {}", b.rootfs.display()),
                source,
            })
        })?;
    tracing::debug!(
        "create {}: a container of the VM pod {}, joining {join:?}",
        opts.id,
        pod.id
    );
    Ok(MemberSpawner {
        pod,
        config,
        files,
        join,
        image,
    })
}

impl Spawner for MemberSpawner {
    fn mode(&self) -> Mode {
        Mode::VmPodMember(Box::default())
    }

    fn spawn(self: Box<Self>, new: &mut NewContainer<'_>) -> Result<Spawned, Error> {
        let id = new.opts.id.clone();
        let e = |x: VmError| Error::vm(&id, x);
        let file = |path: &Path, source| {
            e(VmError::File {
                path: path.to_path_buf(),
                source,
            })
        };
        let MemberSpawner {
            pod,
            config,
            files,
            join,
            image,
        } = *self;
        let (slot, claim) = claim_slot(&pod, &id).map_err(|x| match x {
            SlotError::Full => e(VmError::Pod(PodError::SlotsFull { id: pod.id.clone() })),
            SlotError::Io(path, source) => file(&path, source),
        })?;
        if let Err(x) = new.record(&Entry::File {
            path: claim.clone(),
        }) {
            let _ = fs::remove_file(&claim);
            return Err(x);
        }
        fill_slot(&image.path, &pod.slots[slot as usize]).map_err(|x| match x {
            SlotError::Full => unreachable!("filling a slot is not claiming one"),
            SlotError::Io(path, source) if source.kind() == std::io::ErrorKind::FileTooLarge => {
                e(VmError::Pod(PodError::TooLarge {
                    size: fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                    image: path,
                }))
            }
            SlotError::Io(path, source) => file(&path, source),
        })?;
        let b = new.bundle;
        let launch = MemberLaunch {
            id: id.clone(),
            sandbox: pod.id.clone(),
            sandbox_dir: pod.dir.clone(),
            run: RunProcess {
                process: b.spec.process().clone().unwrap_or_default(),
                rootfs: Some(GuestRootfs {
                    device_serial: format!("{SLOT_SERIAL}{slot}"),
                    fstype: ImageFormat::Erofs.fstype().into(),
                    writable_serial: None,
                }),
                container_id: Some(id.clone()),
                config: Some(Box::new(config)),
                files,
                ..RunProcess::default()
            },
            join,
            console_socket: new.opts.console_socket.clone(),
        };
        let path = new.dir.join(MEMBER_FILE);
        let json = serde_json::to_vec(&launch).map_err(|x| e(VmError::Json(x)))?;
        fs::write(&path, json).map_err(|x| file(&path, x))?;

        let dir = new.dir.to_path_buf();
        let cgroup = new.cgroup;
        let mut recorded = None;
        let report = super::member::spawn_relay(&new.opts.root, &dir, |pid| {
            // The relay is what the member's host cgroup holds (its
            // processes are the guest's): stats and updates reach it.
            recorded = Some(new.record_process(Role::Supervisor, pid).and_then(|r| {
                cgroup
                    .add_task(pid)
                    .map(|()| r)
                    .map_err(|x| Error::cgroup(&id, x))
            }));
        });
        let relay = match recorded {
            Some(r) => r?,
            None => return Err(report.err().map_or(e(VmError::VmmGone), e)),
        };
        let guest_pid = report.map_err(e)?;
        new.state.pid = relay.pid;
        new.state.pid_start_time = relay.start;
        new.state.mode = Mode::VmPodMember(Box::new(PodMemberState {
            sandbox: pod.id,
            slot,
            guest_pid,
        }));
        runtime_hooks(&new.state, b.spec.hooks().as_ref())?;
        Ok(Spawned::default())
    }
}

enum SlotError {
    Full,
    Io(PathBuf, std::io::Error),
}

/// The claim file of pod slot `k` in the sandbox's directory.
fn claim_path(pod_dir: &Path, k: u32) -> PathBuf {
    pod_dir.join(format!("slot-{k}.member"))
}

/// Claims a free slot of `pod` for `id` (its claim file is created
/// exclusively, so two creates never get the same slot).
fn claim_slot(pod: &Pod, id: &str) -> Result<(u32, PathBuf), SlotError> {
    for k in 0..pod.slots.len() as u32 {
        let path = claim_path(&pod.dir, k);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                let _ = f.write_all(id.as_bytes());
                return Ok((k, path));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(SlotError::Io(path, e)),
        }
    }
    Err(SlotError::Full)
}

/// Writes `image` over the start of `slot` (the VMM has the slot open:
/// its size, and so the guest disk's, must not change).
fn fill_slot(image: &Path, slot: &Path) -> Result<(), SlotError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| SlotError::Io(p, e)
    };
    let mut src = File::open(image).map_err(io(image))?;
    let size = src.metadata().map_err(io(image))?.len();
    if size > SLOT_BYTES {
        return Err(SlotError::Io(
            image.to_path_buf(),
            std::io::ErrorKind::FileTooLarge.into(),
        ));
    }
    let mut dst = OpenOptions::new()
        .write(true)
        .open(slot)
        .map_err(io(slot))?;
    std::io::copy(&mut src, &mut dst).map_err(io(slot))?;
    // The guest reads through the VMM, which reads the host's page cache:
    // no sync is needed for it to see the image.
    Ok(())
}

/// Makes the pod slots of a sandbox being created in `scratch_dir`:
/// sparse files of [`SLOT_BYTES`], each recorded before it is made.
pub fn make_slots(new: &mut NewContainer<'_>, scratch_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let id = new.id().to_string();
    let stamp = crate::utils::now_nanos();
    let mut slots = Vec::new();
    for k in 0..POD_SLOTS {
        let path = scratch_dir.join(format!("{id}-{stamp}-slot{k}.img"));
        new.record(&Entry::File { path: path.clone() })?;
        File::create(&path)
            .and_then(|f| f.set_len(SLOT_BYTES))
            .map_err(|source| {
                Error::vm(
                    &id,
                    VmError::File {
                        path: path.clone(),
                        source,
                    },
                )
            })?;
        slots.push(path);
    }
    Ok(slots)
}

/// The [`Backend`] of a container of a VM pod: its control socket is its
/// relay's, which forwards each request to the sandbox's supervisor.
#[derive(Debug, Clone)]
pub struct MemberBackend(pub PodMemberState);

impl MemberBackend {
    /// What reaches the member through its socket works as in vm mode.
    fn vm(&self) -> VmBackend {
        VmBackend(VmState::default())
    }
}

impl Backend for MemberBackend {
    fn live_status(&self, recorded: Status, dir: &Path, pid: i32) -> Status {
        self.vm().live_status(recorded, dir, pid)
    }

    fn own_pid_ns(&self) -> bool {
        // The relay is alone in its host cgroup; the member's processes
        // are in the guest.
        true
    }

    fn start(&self, c: &Container, sync: Option<&Channel>) -> Result<(), Error> {
        self.vm().start(c, sync)
    }

    fn signal(&self, c: &Container, sig: nix::sys::signal::Signal, all: bool) -> Result<(), Error> {
        self.vm().signal(c, sig, all)
    }

    fn stop(&self, c: &Container) -> Result<(), Error> {
        // The member's processes go with it in `release`; the relay here.
        stop_processes(c, None)
    }

    fn ps(&self, c: Container, format: &str, args: &[String]) -> Result<String, Error> {
        self.vm().ps(c, format, args)
    }

    fn exec(&self, c: Container, opts: &ExecOptions, plan: ExecPlan) -> Result<i32, Error> {
        self.vm().exec(c, opts, plan)
    }

    fn check_update(
        &self,
        _c: &Container,
        _res: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), Error> {
        // The host cgroup holds the relay alone, which any update fits
        // (containerd sends the container's device rules with each one);
        // the guest's limits are the sandbox's for now.
        Ok(())
    }

    fn pause(&self, c: &Container) -> Result<(), Error> {
        Err(Error::vm(
            c.id(),
            VmError::Pod(PodError::Unsupported("pause")),
        ))
    }

    fn resume(&self, c: &Container) -> Result<(), Error> {
        Err(Error::vm(
            c.id(),
            VmError::Pod(PodError::Unsupported("resume")),
        ))
    }

    fn release(&self, c: &Container) -> Result<(), Error> {
        let Some(root) = c.dir.parent() else {
            return Ok(());
        };
        let sandbox = root.join(&self.0.sandbox);
        if !control::socket_path(&sandbox).exists() {
            // The VM is gone, and everything of the member with it.
            return Ok(());
        }
        match control::request(
            &sandbox,
            &Request::DeleteMember {
                container: c.id().into(),
            },
            Some(Duration::from_secs(60)),
        ) {
            Ok(_) => Ok(()),
            // The VM stopped meanwhile.
            Err(_) if !control::socket_path(&sandbox).exists() => Ok(()),
            Err(cause) => Err(Error::vm(
                c.id(),
                VmError::Request {
                    what: "delete",
                    cause,
                },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_pid_reads_namespace_paths() {
        assert_eq!(proc_pid(Path::new("/proc/42/ns/ipc")), Some(42));
        assert_eq!(proc_pid(Path::new("/proc/42/status")), None);
        assert_eq!(proc_pid(Path::new("/var/run/netns/cni-1")), None);
    }

    fn pod(bundle: &Path) -> Pod {
        Pod {
            id: "sb".into(),
            dir: bundle.into(),
            pid: 42,
            bundle: bundle.into(),
            slots: vec![],
        }
    }

    fn spec(namespaces: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": namespaces}
        }))
        .unwrap()
    }

    #[test]
    fn sandbox_namespaces_are_joined_in_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(serde_json::json!([
            {"type": "pid"},
            {"type": "ipc", "path": "/proc/42/ns/ipc"},
            {"type": "uts", "path": "/proc/42/ns/uts"},
            {"type": "network", "path": "/proc/42/ns/net"},
            {"type": "mount"}
        ]));
        let (out, join) = pod_namespaces(&s, &pod(dir.path())).unwrap();
        assert_eq!(join, vec!["ipc".to_string(), "uts".to_string()]);
        let ns = out.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert_eq!(ns.len(), 5);
        assert!(ns.iter().all(|n| n.path().is_none()));
    }

    #[test]
    fn other_namespace_paths_are_refused_by_index() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(serde_json::json!([
            {"type": "pid"},
            {"type": "ipc", "path": "/proc/7/ns/ipc"}
        ]));
        let e = pod_namespaces(&s, &pod(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux.namespaces[1].path"), "{e}");
        assert!(e.contains("\"sb\""), "{e}");
    }
}
