//! `create` in vm mode: plan the guest, build (or find cached) images,
//! start the supervisor that boots the VM and has the guest create the
//! container, then record the state and run the host's hooks. A failure
//! at any step leaves nothing: no state directory, cgroup, scratch image,
//! VM or supervisor.

use std::fs;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use vessel_cgroups::{Cgroup, CgroupOptions};
use vessel_vm::agent::{GuestRootfs, RunProcess};
use vessel_vm::engine::{BlockDevice, VmConfig};
use vessel_vm::guest::{
    build_rootfs_image, create_scratch_image, ImageFormat, InitramfsBuilder, DEFAULT_MODULES,
};

use super::guest_spec;
use super::resolve::resolve;
use super::supervisor::{Launch, LAUNCH_FILE};
use crate::container::create::{claim_dir, record, record_process};
use crate::container::{err, CreateOptions, Created, Error};
use crate::hooks::{self, Phase};
use crate::ledger::{Entry, Ledger, ProcRef, Role};
use crate::state::{NewDir, State, Status, VmState};
use crate::utils;

/// Serial numbers the guest finds its disks by.
const ROOTFS_SERIAL: &str = "rootfs";
const SCRATCH_SERIAL: &str = "scratch";
/// Default size of the writable layer (sparse).
const DEFAULT_SCRATCH_MIB: u32 = 1024;
/// Default wait for the guest agent (TCG boots take seconds).
const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// Undoes a half-made vm-mode container unless disarmed.
struct Cleanup<'a> {
    dir: &'a Path,
    cgroup: &'a Cgroup,
    scratch: Option<PathBuf>,
    supervisor: Option<i32>,
    net: Option<vessel_vm::net::NetAttachment>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.supervisor {
            // The VMM dies with it (PR_SET_PDEATHSIG).
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        for pid in self.cgroup.pids().unwrap_or_default() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.cgroup.destroy();
        if let Some(n) = &self.net {
            let _ = vessel_vm::net::detach(n);
        }
        if let Some(s) = &self.scratch {
            let _ = fs::remove_file(s);
        }
        let _ = crate::ledger::remove_state_dir(self.dir);
    }
}

/// Creates container `opts.id` as a microVM. `spec` was checked as for
/// container mode already.
pub fn create(
    opts: &CreateOptions,
    spec: &Spec,
    bundle: &Path,
    rootfs: &Path,
) -> Result<Created, Error> {
    let id = opts.id.as_str();
    let e = |m: String| err(id, m);
    let plan = guest_spec::plan(spec, &opts.vm).map_err(e)?;
    let host = resolve(&opts.vm).map_err(e)?;
    tracing::debug!("create {id}: vm mode, {}", host.reason);
    let initramfs = InitramfsBuilder::new(&host.agent)
        .modules(&host.kernel, DEFAULT_MODULES)
        .and_then(|b| b.build(&host.cache))
        .map_err(|x| e(format!("vm mode: building the initramfs: {x}")))?;
    let image = build_rootfs_image(rootfs, ImageFormat::Erofs, &host.cache).map_err(|x| {
        e(format!(
            "vm mode: building the image of {}: {x}",
            rootfs.display()
        ))
    })?;

    let linux = spec.linux().as_ref().expect("validated");
    let cgroup = Cgroup::open(&CgroupOptions {
        cgroups_path: linux.cgroups_path().clone(),
        systemd: opts.systemd_cgroup,
        container_id: id.into(),
    })
    .map_err(|x| err(id, x))?;
    let created_at = utils::now_rfc3339();
    let NewDir {
        dir,
        lock,
        mut ledger,
    } = claim_dir(opts, bundle, &created_at, "vm", &cgroup)?;
    let mut cleanup = Cleanup {
        dir: &dir,
        cgroup: &cgroup,
        scratch: None,
        supervisor: None,
        net: None,
        armed: true,
    };

    // The writable layer lives on disk beside the image cache, not in the
    // state directory (a tmpfs under /run).
    let scratch_dir = host.cache.join("scratch");
    fs::create_dir_all(&scratch_dir).map_err(|x| e(format!("{}: {x}", scratch_dir.display())))?;
    let scratch = scratch_dir.join(format!("{id}-{}.ext4", utils::now_nanos()));
    record(
        &mut ledger,
        id,
        &Entry::File {
            path: scratch.clone(),
        },
    )?;
    cleanup.scratch = Some(scratch.clone());
    create_scratch_image(
        &scratch,
        opts.vm.scratch_mib.unwrap_or(DEFAULT_SCRATCH_MIB) as u64,
    )
    .map_err(|x| e(format!("vm mode: the writable layer: {x}")))?;

    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    // `run` in the foreground with a terminal: the supervisor sends the pty
    // to a socket of ours, and `run` relays it.
    let own_console = if terminal && opts.console_socket.is_none() {
        let path = dir.join("console.sock");
        Some((
            UnixListener::bind(&path).map_err(|x| e(format!("{}: {x}", path.display())))?,
            path,
        ))
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
    // The container's network namespace (podman's or a CNI plugin's): its
    // interfaces are mirrored to taps the VM gets, configured alike in the
    // guest. Without one the guest has loopback only.
    let net = match &plan.netns {
        Some(ns) => Some(vessel_vm::net::attach(ns, id).map_err(|x| e(format!("vm mode: {x}")))?),
        None => None,
    };
    cleanup.net = net.clone();
    if let Some(n) = &net {
        record(
            &mut ledger,
            id,
            &Entry::Net {
                attachment: n.clone(),
            },
        )?;
        vm.taps = n.taps.clone();
    }
    let guest_net = net.as_ref().map(|n| n.guest.clone()).unwrap_or_default();
    let run = RunProcess {
        id: 1,
        process: spec.process().clone().unwrap_or_default(),
        rootfs: Some(GuestRootfs {
            device_serial: ROOTFS_SERIAL.into(),
            fstype: ImageFormat::Erofs.fstype().into(),
            writable_serial: Some(SCRATCH_SERIAL.into()),
        }),
        hostname: spec.hostname().clone(),
        container_id: Some(id.into()),
        config: Some(plan.config.clone()),
        files: plan.files.clone(),
        network: Some(serde_json::to_value(&guest_net).map_err(|x| e(x.to_string()))?),
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
        cgroup_path: cgroup.path().to_path_buf(),
        systemd_cgroup: opts.systemd_cgroup,
        resources: linux.resources().clone().map(|mut r| {
            // The host cgroup holds the VMM: memory, CPU and block IO limits
            // bound it; device rules and the pids limit are about the
            // workload's processes and apply in the guest (the VMM needs
            // /dev/kvm and /dev/net/tun, and its threads are not processes
            // of the container).
            r.set_devices(None);
            r.set_pids(None);
            r
        }),
        annotations: spec.annotations().clone().unwrap_or_default(),
        netns: plan.netns.clone(),
        boot_timeout: opts
            .vm
            .boot_timeout_secs
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_BOOT_TIMEOUT),
    };
    let json = serde_json::to_vec(&launch).map_err(|x| e(x.to_string()))?;
    fs::write(dir.join(LAUNCH_FILE), json)
        .map_err(|x| e(format!("{}: {x}", dir.join(LAUNCH_FILE).display())))?;

    let (supervisor, vmm_pid) = spawn_supervisor(&opts.root, &dir, &mut cleanup, &mut ledger)?;
    let pid = supervisor.pid;
    let vmm = record_process(&mut ledger, id, Role::Vmm, vmm_pid)
        .map_err(|_| e("the VMM exited during setup".into()))?;
    let mut state = State {
        oci_version: spec.version().clone(),
        id: id.into(),
        pid,
        status: Status::Created,
        bundle: bundle.to_path_buf(),
        rootfs: rootfs.to_path_buf(),
        created: utils::now_rfc3339(),
        owner: utils::owner_name(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        pid_start_time: supervisor.start,
        cgroup_path: cgroup.path().to_path_buf(),
        systemd_cgroup: opts.systemd_cgroup,
        isolation: "vm".into(),
        own_pid_ns: true,
        vm: Some(VmState {
            vmm_pid,
            vmm_start_time: vmm.start,
            engine: host.engine.name().into(),
            accel: host.engine.accel().into(),
            vcpus: plan.vcpus,
            memory_mib: plan.memory_mib,
            scratch: scratch.clone(),
            net,
        }),
        init_exe: None,
        problem: None,
    };
    let hooks = spec.hooks().as_ref();
    let creating =
        serde_json::to_string(&state.oci(Status::Creating)).map_err(|x| e(x.to_string()))?;
    hooks::run(hooks, Phase::Prestart, creating.as_bytes()).map_err(|x| err(id, x))?;
    hooks::run(hooks, Phase::CreateRuntime, creating.as_bytes()).map_err(|x| err(id, x))?;
    state.status = Status::Created;
    state
        .save(&dir)
        .map_err(|x| e(format!("write state: {x}")))?;
    if let Some(p) = &opts.pid_file {
        utils::write_atomic(p, pid.to_string().as_bytes())
            .map_err(|x| e(format!("--pid-file {}: {x}", p.display())))?;
    }
    let console = match own_console {
        Some((listener, path)) => {
            let (conn, _) = listener
                .accept()
                .map_err(|x| e(format!("{}: {x}", path.display())))?;
            let _ = fs::remove_file(&path);
            Some(conn)
        }
        None => None,
    };
    cleanup.armed = false;
    drop(cleanup);
    Ok(Created {
        pid,
        dir: dir.clone(),
        channel: None,
        lock,
        console,
        hooks: spec.hooks().clone(),
        state,
    })
}

/// Starts `vessel vm-supervise <dir>` with our stdio and waits until it
/// reports the container created in the guest (or why not). Returns it
/// (as recorded in the ledger) and the VMM's pid.
fn spawn_supervisor(
    root: &Path,
    dir: &Path,
    cleanup: &mut Cleanup<'_>,
    ledger: &mut Ledger,
) -> Result<(ProcRef, i32), Error> {
    let id = dir.file_name().unwrap_or_default().to_string_lossy();
    let mut recorded = Err(err(&id, "the VM supervisor did not start"));
    let report = spawn_and_wait(root, dir, |pid| {
        cleanup.supervisor = Some(pid);
        recorded = record_process(ledger, &id, Role::Supervisor, pid);
    });
    let supervisor = recorded?;
    let (_, vmm_pid) = report.map_err(|m| err(&id, m))?;
    Ok((supervisor, vmm_pid))
}

fn spawn_and_wait(
    root: &Path,
    dir: &Path,
    started: impl FnOnce(i32),
) -> Result<(i32, i32), String> {
    let log = dir.join("supervisor.log");
    let args: [&std::ffi::OsStr; 8] = [
        "--root".as_ref(),
        root.as_os_str(),
        "--log".as_ref(),
        log.as_os_str(),
        "--log-format".as_ref(),
        "json".as_ref(),
        "vm-supervise".as_ref(),
        dir.as_os_str(),
    ];
    let (pid, report) = super::spawn_reporting(&args, started)
        .map_err(|x| format!("starting the VM supervisor: {x}"))?;
    match report.strip_prefix("ok ") {
        Some(rest) => {
            let vmm_pid = rest
                .trim()
                .parse()
                .map_err(|_| format!("bad report from the VM supervisor: {report:?}"))?;
            Ok((pid, vmm_pid))
        }
        None if report.is_empty() => Err(format!(
            "the VM supervisor exited without a report (see {})",
            dir.join("supervisor.log").display()
        )),
        None => Err(report),
    }
}
