//! The vm-mode part of `create`: plan the guest and build (or find cached)
//! its images before the state directory is claimed; then make the
//! writable layer, attach the network, and start the supervisor that boots
//! the VM and has the guest create the container. Everything made is in the
//! ledger first, so the cleanup guard of `create` undoes it on failure.

use std::fs;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use vessel_vm::agent::{GuestRootfs, RunProcess};
use vessel_vm::engine::{BlockDevice, VmConfig};
use vessel_vm::guest::{
    build_rootfs_image, create_scratch_image, ImageFormat, Initramfs, InitramfsBuilder,
    RootfsImage, DEFAULT_MODULES,
};

use super::guest_spec::{self, GuestPlan};
use super::resolve::{resolve, VmHost};
use super::supervisor::{Launch, LAUNCH_FILE};
use super::VmError;
use crate::container::create::{runtime_hooks, Bundle, NewContainer, Spawned};
use crate::container::{CreateOptions, Error};
use crate::isolation::Spawner;
use crate::ledger::{Entry, ProcRef, Role};
use crate::state::{Mode, VmState};
use crate::utils;

/// Serial numbers the guest finds its disks by.
const ROOTFS_SERIAL: &str = "rootfs";
const SCRATCH_SERIAL: &str = "scratch";
/// Default size of the writable layer (sparse).
const DEFAULT_SCRATCH_MIB: u32 = 1024;
/// Default wait for the guest agent (TCG boots take seconds).
const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// What vm mode prepared before the state directory is claimed.
pub struct VmSpawner {
    plan: GuestPlan,
    host: VmHost,
    initramfs: Initramfs,
    image: RootfsImage,
}

/// Plans the guest (its spec, size and network) and builds its images.
/// The host-only checks of container mode (seccomp, namespaces) are left
/// to the guest, whose vessel runs the container.
pub fn prepare(opts: &CreateOptions, b: &Bundle) -> Result<VmSpawner, Error> {
    let e = |x: VmError| Error::vm(&opts.id, x);
    let plan = guest_spec::plan(&b.spec, &opts.vm).map_err(|m| e(VmError::Plan(m)))?;
    let host = resolve(&opts.vm).map_err(|m| e(VmError::Resolve(m)))?;
    tracing::debug!("create {}: vm mode, {}", opts.id, host.reason);
    let initramfs = InitramfsBuilder::new(&host.agent)
        .modules(&host.kernel, DEFAULT_MODULES)
        .and_then(|ib| ib.build(&host.cache))
        .map_err(|source| {
            e(VmError::Image {
                what: "building the initramfs".into(),
                source,
            })
        })?;
    let image =
        build_rootfs_image(&b.rootfs, ImageFormat::Erofs, &host.cache).map_err(|source| {
            e(VmError::Image {
                what: format!("building the image of {}", b.rootfs.display()),
                source,
            })
        })?;
    Ok(VmSpawner {
        plan,
        host,
        initramfs,
        image,
    })
}

impl Spawner for VmSpawner {
    fn mode(&self) -> Mode {
        Mode::Vm(Box::default())
    }

    fn spawn(self: Box<Self>, new: &mut NewContainer<'_>) -> Result<Spawned, Error> {
        let id = new.opts.id.clone();
        let id = id.as_str();
        let e = |x: VmError| Error::vm(id, x);
        let file = |path: &Path, source| {
            e(VmError::File {
                path: path.to_path_buf(),
                source,
            })
        };
        let opts = new.opts;
        let b = new.bundle;
        let dir = new.dir.to_path_buf();
        let VmSpawner {
            plan,
            host,
            initramfs,
            image,
        } = *self;

        // The writable layer lives on disk beside the image cache, not in
        // the state directory (a tmpfs under /run).
        let scratch_dir = host.cache.join("scratch");
        fs::create_dir_all(&scratch_dir).map_err(|x| file(&scratch_dir, x))?;
        let scratch = scratch_dir.join(format!("{id}-{}.ext4", utils::now_nanos()));
        new.record(&Entry::File {
            path: scratch.clone(),
        })?;
        create_scratch_image(
            &scratch,
            opts.vm.scratch_mib.unwrap_or(DEFAULT_SCRATCH_MIB) as u64,
        )
        .map_err(|source| {
            e(VmError::Image {
                what: "the writable layer".into(),
                source,
            })
        })?;

        // A pod sandbox's VM boots with spare disks for the pod's later
        // containers (see `pod`): a running microVM gets no new disk.
        let pod_slots = if super::pod::is_sandbox(&b.spec) {
            super::pod::make_slots(new, &scratch_dir)?
        } else {
            Vec::new()
        };

        // `run` in the foreground with a terminal: the supervisor sends the
        // pty to a socket of ours, and `run` relays it.
        let own_console = if b.terminal && opts.console_socket.is_none() {
            let path = dir.join("console.sock");
            Some((UnixListener::bind(&path).map_err(|x| file(&path, x))?, path))
        } else {
            None
        };

        let mut vm = VmConfig::new(
            host.kernel.image.clone(),
            initramfs.path.clone(),
            dir.join("agent.sock"),
        );
        vm.vcpus = plan.vcpus;
        vm.memory_mib = plan.memory_mib;
        vm.console_log = Some(dir.join("console.log"));
        vm.vmm_log = Some(dir.join("vmm.log"));
        vm.block_devices = vec![
            BlockDevice {
                path: image.path.clone(),
                read_only: true,
                serial: ROOTFS_SERIAL.into(),
            },
            BlockDevice {
                path: scratch.clone(),
                read_only: false,
                serial: SCRATCH_SERIAL.into(),
            },
        ];
        vm.block_devices
            .extend(pod_slots.iter().enumerate().map(|(k, path)| BlockDevice {
                path: path.clone(),
                read_only: true,
                serial: format!("{}{k}", super::pod::SLOT_SERIAL),
            }));
        // The container's network namespace (podman's or a CNI plugin's):
        // its interfaces are mirrored to taps the VM gets, configured alike
        // in the guest. Without one the guest has loopback only.
        let net = match &plan.netns {
            Some(ns) => {
                let n = vessel_vm::net::attach(ns, id).map_err(|x| e(VmError::Net(x)))?;
                let entry = Entry::Net {
                    attachment: n.clone(),
                };
                if let Err(x) = new.record(&entry) {
                    // Unrecorded, the cleanup guard would not know it.
                    let _ = vessel_vm::net::detach(&n);
                    return Err(x);
                }
                vm.taps = n.taps.clone();
                Some(n)
            }
            None => None,
        };
        // The block-IO policy (parsed once, by `create`'s check) bounds the
        // VMM's cgroup; its IO priority is the VMM's, set by the supervisor.
        let ioprio = match &b.blockio {
            Some(policy) => {
                let enforced = new
                    .cgroup
                    .apply_blockio_policy(policy)
                    .map_err(|x| Error::cgroup(id, x))?;
                new.state.annotations.insert(
                    vessel_cgroups::blockio_priority::ENFORCED_ANNOTATION.into(),
                    enforced.summary(),
                );
                enforced.ioprio
            }
            None => None,
        };
        let guest_net = net.as_ref().map(|n| n.guest.clone()).unwrap_or_default();
        let run = RunProcess {
            id: 1,
            process: b.spec.process().clone().unwrap_or_default(),
            rootfs: Some(GuestRootfs {
                device_serial: ROOTFS_SERIAL.into(),
                fstype: ImageFormat::Erofs.fstype().into(),
                writable_serial: Some(SCRATCH_SERIAL.into()),
            }),
            hostname: b.spec.hostname().clone(),
            container_id: Some(id.into()),
            config: Some(Box::new(plan.config.clone())),
            files: plan.files.clone(),
            network: Some(guest_net),
            ..RunProcess::default()
        };
        let launch = Launch {
            id: id.into(),
            vm,
            engine: host.engine.clone(),
            run,
            console_socket: opts
                .console_socket
                .clone()
                .or_else(|| own_console.as_ref().map(|(_, p)| p.clone())),
            cgroup_path: new.cgroup.path().to_path_buf(),
            systemd_cgroup: opts.systemd_cgroup,
            resources: b.linux().resources().clone().map(|mut r| {
                // The host cgroup holds the VMM: memory, CPU and block IO
                // limits bound it; device rules and the pids limit are about
                // the workload's processes and apply in the guest (the VMM
                // needs /dev/kvm and /dev/net/tun, and its threads are not
                // processes of the container).
                r.set_devices(None);
                r.set_pids(None);
                r
            }),
            ioprio,
            netns: plan.netns.clone(),
            boot_timeout: opts
                .vm
                .boot_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_BOOT_TIMEOUT),
        };
        let json = serde_json::to_vec(&launch).map_err(|x| e(VmError::Json(x)))?;
        fs::write(dir.join(LAUNCH_FILE), json).map_err(|x| file(&dir.join(LAUNCH_FILE), x))?;

        let (supervisor, vmm_pid) = spawn_supervisor(&opts.root, new)?;
        let vmm = new
            .record_process(Role::Vmm, vmm_pid)
            .map_err(|_| e(VmError::VmmGone))?;
        new.state.pid = supervisor.pid;
        new.state.pid_start_time = supervisor.start;
        new.state.mode = Mode::Vm(Box::new(VmState {
            vmm_pid,
            vmm_start_time: vmm.start,
            engine: host.engine.name().into(),
            accel: host.engine.accel().into(),
            vcpus: plan.vcpus,
            memory_mib: plan.memory_mib,
            scratch,
            net,
            pod_slots,
        }));
        runtime_hooks(&new.state, b.spec.hooks().as_ref())?;
        let console = match own_console {
            Some((listener, path)) => {
                let (conn, _) = listener.accept().map_err(|x| file(&path, x))?;
                let _ = fs::remove_file(&path);
                Some(conn)
            }
            None => None,
        };
        Ok(Spawned {
            channel: None,
            console,
        })
    }
}

/// Starts `vessel vm-supervise <dir>` with our stdio and waits until it
/// reports the container created in the guest (or why not). Returns it
/// (as recorded in the ledger) and the VMM's pid.
fn spawn_supervisor(root: &Path, new: &mut NewContainer<'_>) -> Result<(ProcRef, i32), Error> {
    let id = new.id().to_string();
    let dir = new.dir.to_path_buf();
    let mut recorded = None;
    let report = spawn_and_wait(root, &dir, |pid| {
        recorded = Some(new.record_process(Role::Supervisor, pid));
    });
    let report = report.map_err(|x| Error::vm(&id, x));
    let supervisor = match recorded {
        Some(r) => r?,
        None => {
            return Err(report
                .err()
                .unwrap_or_else(|| Error::vm(&id, VmError::VmmGone)))
        }
    };
    let (_, vmm_pid) = report?;
    Ok((supervisor, vmm_pid))
}

fn spawn_and_wait(
    root: &Path,
    dir: &Path,
    started: impl FnOnce(i32),
) -> Result<(i32, i32), VmError> {
    let log = dir.join("supervisor.log");
    let (pid, report) = super::spawn_internal(root, dir, &log, "vm-supervise", started)?;
    match report.strip_prefix("ok ") {
        Some(rest) => {
            let vmm_pid = rest.trim().parse().map_err(|_| {
                VmError::Boot(format!("bad report from the VM supervisor: {report:?}"))
            })?;
            Ok((pid, vmm_pid))
        }
        None if report.is_empty() => Err(VmError::NoReport {
            log: dir.join("supervisor.log"),
        }),
        None => Err(VmError::Boot(report)),
    }
}
