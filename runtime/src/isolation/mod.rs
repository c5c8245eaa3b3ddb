//! The isolation backend of a container, chosen once.
//!
//! A container is isolated either by namespaces and cgroups on the host
//! kernel ([`crate::host`], "container mode") or inside a microVM
//! ([`crate::vm`]). The mode is decided once, at `create`
//! ([`policy::decide`]), and recorded once in the state as a [`Mode`] that
//! carries the mode's own data. From then on every command reaches the
//! mode's code through the [`Backend`] trait: this module is the only
//! place that maps a mode to its code, so no other code tests the mode.
//!
//! `create` is one skeleton for both modes ([`crate::container::create`]):
//! it validates the bundle, claims the state directory, opens the cgroup,
//! arms the cleanup guard and builds the [`State`]; what differs is asked
//! of a [`Spawner`] that [`prepare`] returns for the chosen mode.

pub mod config;
pub mod entry;
pub mod policy;

pub use crate::vm::VmDefaults;
pub use config::{default_mode, Isolation, RuntimeConfig, ISOLATION_ANNOTATION};
pub use policy::{Decision, DefaultFrom, Policy, Reason, REASON_ANNOTATION};

use std::path::Path;

use nix::sys::signal::Signal;
use oci_spec::runtime::LinuxResources;

use crate::container::create::{Bundle, NewContainer, Spawned};
use crate::container::{Container, CreateOptions, Error, ExecOptions, ExecPlan};
use crate::ledger::{Owned, ProcRef, Role};
use crate::process::channel::Channel;
use serde::{Deserialize, Serialize};

use crate::state::{HostState, Mode, PodMemberState, Status, VmState};

/// What a container's isolation mode does for each command after `create`.
///
/// Implemented by [`crate::host::HostBackend`] (container mode) and
/// [`crate::vm::VmBackend`]; [`Mode::backend`] picks one from the state.
pub trait Backend {
    /// The live status of a container whose main process (init or VM
    /// supervisor, `pid`) still runs, given the status last recorded.
    fn live_status(&self, recorded: Status, dir: &Path, pid: i32) -> Status;

    /// Whether the end of the main process ends every process of the
    /// container (a pid namespace, a VM); if not, `delete` kills what is
    /// left in the cgroup.
    fn own_pid_ns(&self) -> bool;

    /// Lets a created container's workload run. `sync` is the channel of a
    /// foreground `run` (container mode starts over it instead of the exec
    /// fifo).
    fn start(&self, c: &Container, sync: Option<&Channel>) -> Result<(), Error>;

    /// Sends `sig` to the workload, or with `all` to every process.
    fn signal(&self, c: &Container, sig: Signal, all: bool) -> Result<(), Error>;

    /// Kills everything the container runs and waits until it is gone.
    fn stop(&self, c: &Container) -> Result<(), Error>;

    /// Releases what a container made before vessel kept a ledger holds
    /// outside its state directory (only its state names it).
    fn release_unledgered(&self, _c: &Container) {}

    /// What `ps` prints: `format` is `table` or `json`, `args` go to ps(1).
    /// Takes the container so that its lock is released while ps runs.
    fn ps(&self, c: Container, format: &str, args: &[String]) -> Result<String, Error>;

    /// Runs a new process in the container; its exit code, or 0 detached.
    /// Takes the container: its lock is not held while the process runs.
    fn exec(&self, c: Container, opts: &ExecOptions, plan: ExecPlan) -> Result<i32, Error>;

    /// Refuses an update this mode cannot apply; the update itself goes to
    /// the container's cgroup in both modes.
    fn check_update(&self, _c: &Container, _res: &LinuxResources) -> Result<(), Error> {
        Ok(())
    }

    /// Freezes the container (its cgroup: the workload, or the VMM).
    fn pause(&self, c: &Container) -> Result<(), Error> {
        c.cgroup()?.freeze().map_err(|e| c.cgroup_error(e))
    }

    /// Thaws a paused container.
    fn resume(&self, c: &Container) -> Result<(), Error> {
        c.cgroup()?.thaw().map_err(|e| c.cgroup_error(e))
    }

    /// Resource usage, as `events --stats` reports it (the cgroup's).
    fn stats(&self, c: &Container) -> Result<serde_json::Value, Error> {
        c.cgroup()?.stats().map_err(|e| c.cgroup_error(e))
    }

    /// Frees what the container holds elsewhere than its ledger says (a
    /// pod member's guest container and mounts), when `delete` removes it
    /// after its processes are gone.
    fn release(&self, _c: &Container) -> Result<(), Error> {
        Ok(())
    }
}

/// What differs in `create` between the modes, prepared before the state
/// directory is claimed (mode-specific checks and slow work such as
/// building a VM's images happen outside the container's lock).
pub trait Spawner {
    /// The mode this spawner creates, as the state records it before the
    /// spawn fills it in.
    fn mode(&self) -> Mode;

    /// Starts the container's processes in its claimed directory: records
    /// each in the ledger as it appears, fills in the state's pid and mode,
    /// and runs the prestart and createRuntime hooks
    /// ([`crate::container::create::runtime_hooks`]) when the main process
    /// is ready for them.
    fn spawn(self: Box<Self>, new: &mut NewContainer<'_>) -> Result<Spawned, Error>;
}

/// The spawner of `mode` for a checked bundle: the only place `create`
/// chooses between the modes.
pub fn prepare(
    mode: Isolation,
    opts: &CreateOptions,
    bundle: &Bundle,
) -> Result<Box<dyn Spawner>, Error> {
    Ok(match mode {
        Isolation::Container => Box::new(crate::host::prepare(opts, bundle)?),
        // A later container of a VM pod runs in its sandbox's VM.
        Isolation::Vm => match crate::vm::pod::sandbox_of(opts, bundle)? {
            Some(pod) => Box::new(crate::vm::pod::prepare(opts, bundle, pod)?),
            None => Box::new(crate::vm::prepare(opts, bundle)?),
        },
    })
}

impl Mode {
    /// The backend of this mode, holding the mode's own data.
    pub fn backend(&self) -> Box<dyn Backend> {
        match self {
            Mode::Container(h) => Box::new(crate::host::HostBackend(h.clone())),
            Mode::Vm(v) => Box::new(crate::vm::VmBackend((**v).clone())),
            Mode::VmPodMember(m) => Box::new(crate::vm::pod::MemberBackend((**m).clone())),
        }
    }

    /// The isolation mode.
    pub fn isolation(&self) -> Isolation {
        match self {
            Mode::Container(_) => Isolation::Container,
            Mode::Vm(_) | Mode::VmPodMember(_) => Isolation::Vm,
        }
    }

    /// Whether CRIU can checkpoint the container: only host processes
    /// (a VM, or a pod member inside one, needs a VM snapshot instead).
    pub fn checkpoints_with_criu(&self) -> bool {
        self.isolation().checkpoints_with_criu()
    }

    /// The mode of a container known only from its ledger, and its main
    /// process (init, or the VM supervisor).
    pub fn recover(isolation: Isolation, owned: &Owned) -> (Mode, Option<ProcRef>) {
        match isolation {
            Isolation::Container => (
                Mode::Container(HostState::default()),
                owned.last(Role::Init),
            ),
            Isolation::Vm => (
                Mode::Vm(Box::new(crate::vm::recovered_state(owned))),
                owned.last(Role::Supervisor),
            ),
        }
    }
}

/// The mode as `state.json` has always stored it: a mode name beside
/// optional fields of each mode (files written before [`Mode`] existed
/// read the same). Only (de)serialization uses it.
#[derive(Serialize, Deserialize)]
pub struct ModeRecord {
    #[serde(default)]
    isolation: Isolation,
    #[serde(rename = "ownPidNs", default)]
    own_pid_ns: bool,
    #[serde(rename = "initExe", default, skip_serializing_if = "Option::is_none")]
    init_exe: Option<(u64, u64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vm: Option<VmState>,
    /// A container of a VM pod created in its sandbox's VM.
    #[serde(rename = "vmPod", default, skip_serializing_if = "Option::is_none")]
    vm_pod: Option<PodMemberState>,
}

impl From<ModeRecord> for Mode {
    fn from(r: ModeRecord) -> Mode {
        match (r.isolation, r.vm) {
            (Isolation::Vm, _) if r.vm_pod.is_some() => {
                Mode::VmPodMember(Box::new(r.vm_pod.unwrap_or_default()))
            }
            (Isolation::Vm, Some(vm)) => Mode::Vm(Box::new(vm)),
            // A vm record without its VM (never written so) reads as the
            // recovered state of a VM: nothing known to signal.
            (Isolation::Vm, None) => Mode::Vm(Box::default()),
            (Isolation::Container, _) => Mode::Container(HostState {
                own_pid_ns: r.own_pid_ns,
                init_exe: r.init_exe,
            }),
        }
    }
}

impl From<Mode> for ModeRecord {
    fn from(m: Mode) -> ModeRecord {
        match m {
            Mode::Container(h) => ModeRecord {
                isolation: Isolation::Container,
                own_pid_ns: h.own_pid_ns,
                init_exe: h.init_exe,
                vm: None,
                vm_pod: None,
            },
            Mode::Vm(vm) => ModeRecord {
                isolation: Isolation::Vm,
                own_pid_ns: true,
                init_exe: None,
                vm: Some(*vm),
                vm_pod: None,
            },
            Mode::VmPodMember(m) => ModeRecord {
                isolation: Isolation::Vm,
                own_pid_ns: true,
                init_exe: None,
                vm: None,
                vm_pod: Some(*m),
            },
        }
    }
}
