//! `create`, one skeleton for both isolation modes: check the bundle,
//! decide the mode, let the mode prepare ([`crate::isolation::prepare`]),
//! claim the state directory and open the cgroup, arm the cleanup guard,
//! build the [`State`], have the mode spawn the container, then record the
//! state and the pid file. Any failure undoes all of it: the guard
//! releases what the ledger names (processes, netDevices, cgroups, files,
//! taps) and the directory goes.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{Hooks, Spec};
use vessel_cgroups::blockio_priority::BlockIoPolicy;
use vessel_cgroups::{Cgroup, CgroupOptions};

use super::Error;
use crate::hooks::{self, Phase};
use crate::isolation::{Isolation, VmDefaults};
use crate::ledger::{Entry, Ledger, Owned, ProcRef, Role, LEDGER_FILE};
use crate::process::channel::Channel;
use crate::security::rlimits;
use crate::state::{ClaimError, Lock, NewDir, State, Status};
use crate::{rootfs, spec, utils};

/// Options of `vessel create` (and `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// State root (`--root`).
    pub root: PathBuf,
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Where to send the pty master.
    pub console_socket: Option<PathBuf>,
    /// Where to write the init pid.
    pub pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Keep the caller's session keyring.
    pub no_new_keyring: bool,
    /// Extra descriptors (3..3+n) passed to the process.
    pub preserve_fds: u32,
    /// Manage the cgroup through systemd.
    pub systemd_cgroup: bool,
    /// `run` in the foreground: start over the sync channel, no exec fifo.
    pub foreground: bool,
    /// The runtime-wide default isolation mode (see
    /// [`crate::isolation::policy`] for what overrides it).
    pub isolation: Isolation,
    /// Where that default came from (for the recorded reason).
    pub isolation_from: crate::isolation::DefaultFrom,
    /// The isolation policy of the configuration file.
    pub policy: crate::isolation::Policy,
    /// vm-mode defaults from the configuration file.
    pub vm: VmDefaults,
}

/// A created container, as `run` keeps it to start and wait.
#[derive(Debug)]
pub struct Created {
    /// Host pid of init (the VM supervisor in vm mode).
    pub pid: i32,
    /// The state directory.
    pub dir: PathBuf,
    /// The sync channel (foreground container mode) to start it over.
    pub channel: Option<Channel>,
    /// The lock, held until the caller is done.
    pub lock: Lock,
    /// Foreground with a terminal and no console socket: our end of the
    /// socket on which the pty master arrives.
    pub console: Option<UnixStream>,
    /// The recorded state (status created).
    pub state: State,
    /// The bundle's hooks, for `run` to use without parsing config.json again.
    pub hooks: Option<Hooks>,
}

/// A bundle checked as both modes need it, before anything is created.
#[derive(Debug)]
pub struct Bundle {
    /// The OCI configuration, validated.
    pub spec: Spec,
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// Absolute root filesystem.
    pub rootfs: PathBuf,
    /// The block-IO annotations, parsed once.
    pub blockio: Option<BlockIoPolicy>,
    /// Whether the process has a terminal.
    pub terminal: bool,
}

impl Bundle {
    /// The spec's `linux` section (validation made sure there is one).
    pub fn linux(&self) -> &oci_spec::runtime::Linux {
        self.spec.linux().as_ref().expect("validated")
    }
}

/// A container being created, as the mode's spawner gets it: its state
/// directory claimed and locked, its cgroup opened (created as the mode
/// puts processes in it), its state to fill in.
pub struct NewContainer<'a> {
    /// The options of `create`.
    pub opts: &'a CreateOptions,
    /// The checked bundle.
    pub bundle: &'a Bundle,
    /// `<root>/<id>`.
    pub dir: &'a Path,
    /// Its ledger: what the spawner makes is recorded here first.
    pub ledger: &'a mut Ledger,
    /// The container's cgroup.
    pub cgroup: &'a Cgroup,
    /// The lock's descriptor (forked children close their copy).
    pub lock_fd: std::os::fd::RawFd,
    /// The state, status creating: the spawner sets `pid`,
    /// `pid_start_time` and `mode`.
    pub state: State,
}

impl NewContainer<'_> {
    /// The container id.
    pub fn id(&self) -> &str {
        &self.opts.id
    }

    /// Appends to the ledger; a container whose resources cannot be
    /// recorded is not created.
    pub fn record(&mut self, entry: &Entry) -> Result<(), Error> {
        record(self.ledger, &self.opts.id, entry)
    }

    /// Records process `pid` (our child: its /proc entry lasts until
    /// reaped) and returns it with its start time.
    pub fn record_process(&mut self, role: Role, pid: i32) -> Result<ProcRef, Error> {
        let id = &self.opts.id;
        let process = ProcRef::of(pid).ok_or_else(|| Error::Vanished {
            id: id.clone(),
            what: "process",
            pid,
        })?;
        if let Err(e) = record(self.ledger, id, &Entry::Process { role, process }) {
            // Unrecorded, the cleanup guard would not know it.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
            return Err(e);
        }
        Ok(process)
    }
}

/// What the spawner hands back besides the filled-in state.
#[derive(Debug, Default)]
pub struct Spawned {
    /// The sync channel of a foreground container-mode `run`.
    pub channel: Option<Channel>,
    /// Our end of the console socket of a foreground `run` with a terminal.
    pub console: Option<UnixStream>,
}

/// Undoes a half-made container when dropped unless disarmed: everything
/// its ledger names goes, as on `delete --force` (the ledger is complete:
/// each resource was recorded before it was made).
struct Cleanup<'a> {
    dir: &'a Path,
    id: &'a str,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let owned = Ledger::read(self.dir)
            .map(Owned::from_entries)
            .unwrap_or_default();
        // linux.netDevices moved in go back before the init (and with it
        // the namespace that holds them) is killed.
        crate::netdev::return_owned(&owned, None);
        for (_, p) in owned.processes.iter().rev() {
            if p.alive() {
                let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
            }
            // Our children: reaped (no zombie is left); others: ECHILD.
            let _ = waitpid(Pid::from_raw(p.pid), None);
        }
        if let Err(e) = release_owned(self.id, &owned, None) {
            tracing::warn!("{e}");
        }
        let _ = crate::ledger::remove_state_dir(self.dir);
    }
}

/// Releases what a ledger names outside the state directory: its
/// processes and cgroups are killed and removed (except `keep`, the
/// state's cgroup that `delete` handles itself), its files removed and its
/// taps detached. Goes on past failures and returns the first.
pub(crate) fn release_owned(id: &str, owned: &Owned, keep: Option<&Path>) -> Result<(), Error> {
    let mut first = None;
    let mut note = |r: Result<(), Error>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    for (_, p) in &owned.processes {
        if p.alive() {
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
        }
    }
    for (path, systemd) in &owned.cgroups {
        if Some(path.as_path()) == keep || path.as_os_str().is_empty() || path == Path::new("/") {
            continue;
        }
        note((|| {
            let cg = Cgroup::open(&CgroupOptions {
                cgroups_path: Some(path.clone()),
                systemd: *systemd,
                container_id: id.into(),
            })
            .map_err(|e| Error::cgroup(id, e))?;
            for pid in cg.pids().unwrap_or_default() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            cg.destroy().map_err(|e| Error::cgroup(id, e))
        })());
    }
    for f in &owned.files {
        match std::fs::remove_file(f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                note(Err(Error::io(id, "", Some(f), e)))
            }
            _ => {}
        }
    }
    for n in &owned.nets {
        note(vessel_vm::net::detach(n).map_err(|e| Error::vm(id, crate::vm::VmError::Net(e))));
    }
    note(crate::intel_rdt::remove(&owned.intel_rdt).map_err(|e| Error::rdt(id, e)));
    first.map_or(Ok(()), Err)
}

/// Checks the whole bundle as both modes need it; what only one mode needs
/// is checked by its [`crate::isolation::prepare`].
fn check(opts: &CreateOptions) -> Result<Bundle, Error> {
    let id = opts.id.as_str();
    let id = || id.to_string();
    let dir = opts
        .bundle
        .canonicalize()
        .map_err(|x| Error::io(&id(), "bundle", Some(&opts.bundle), x))?;
    let spec = spec::load(&dir).map_err(|source| Error::Spec { id: id(), source })?;
    spec::validate(&spec, true).map_err(|source| Error::Spec { id: id(), source })?;
    let rootfs =
        spec::rootfs_path(&spec, &dir).map_err(|source| Error::Spec { id: id(), source })?;
    rootfs::validate(&spec, &dir).map_err(|source| Error::Rootfs { id: id(), source })?;
    crate::netdev::validate(&spec).map_err(|source| Error::NetDevice { id: id(), source })?;
    let process = spec.process().as_ref().expect("validated");
    if let Some(r) = process.rlimits() {
        rlimits::validate(r).map_err(|source| Error::Rlimit { id: id(), source })?;
    }
    let linux = spec.linux().as_ref().expect("validated");
    if let Some(res) = linux.resources() {
        vessel_cgroups::validate(res).map_err(|source| Error::Cgroup { id: id(), source })?;
    }
    let blockio = vessel_cgroups::blockio_priority::parse_annotations(
        spec.annotations().as_ref().unwrap_or(&Default::default()),
    )
    .map_err(|source| Error::Cgroup { id: id(), source })?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() && !opts.foreground {
        return Err(Error::Usage {
            id: id(),
            msg: "process.terminal is true but no --console-socket was given",
        });
    }
    if !terminal && opts.console_socket.is_some() {
        return Err(Error::Usage {
            id: id(),
            msg: "--console-socket was given but process.terminal is false",
        });
    }
    Ok(Bundle {
        spec,
        dir,
        rootfs,
        blockio,
        terminal,
    })
}

/// Creates container `opts.id`: on success its workload waits for `start`.
pub fn create(opts: &CreateOptions) -> Result<Created, Error> {
    create_with(opts, crate::isolation::prepare)
}

/// [`create`] with another spawner: `restore` uses the same skeleton
/// (checks, state directory, ledger, cleanup guard) with CRIU bringing the
/// processes back. A spawner that sets the status itself (running) keeps it.
pub fn create_with<P>(opts: &CreateOptions, prepare: P) -> Result<Created, Error>
where
    P: FnOnce(
        Isolation,
        &CreateOptions,
        &Bundle,
    ) -> Result<Box<dyn crate::isolation::Spawner>, Error>,
{
    let id = opts.id.as_str();
    super::check_id(id)?;
    tracing::debug!("create {id}: checking the bundle");
    let bundle = check(opts)?;
    let decision = crate::isolation::policy::decide_for(opts, &bundle.spec)?;
    let mode = decision.mode;
    let spawner = prepare(mode, opts, &bundle)?;
    tracing::debug!("create {id}: bundle checked, {mode} mode");

    // Opening the cgroup creates nothing yet.
    let cgroup = Cgroup::open(&CgroupOptions {
        cgroups_path: bundle.linux().cgroups_path().clone(),
        systemd: opts.systemd_cgroup,
        container_id: id.into(),
    })
    .map_err(|x| Error::cgroup(id, x))?;
    let created_at = utils::now_rfc3339();
    let NewDir {
        dir,
        lock,
        mut ledger,
    } = claim_dir(opts, &bundle.dir, &created_at, mode, &cgroup)?;
    let mut cleanup = Cleanup {
        dir: &dir,
        id,
        armed: true,
    };
    let mut new = NewContainer {
        opts,
        bundle: &bundle,
        dir: &dir,
        ledger: &mut ledger,
        cgroup: &cgroup,
        lock_fd: lock.raw_fd(),
        state: State {
            oci_version: bundle.spec.version().clone(),
            id: id.into(),
            pid: 0,
            status: Status::Creating,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: created_at,
            owner: utils::owner_name(),
            annotations: {
                let mut a = bundle.spec.annotations().clone().unwrap_or_default();
                a.insert(
                    crate::isolation::REASON_ANNOTATION.into(),
                    decision.reason.to_string(),
                );
                a
            },
            pid_start_time: 0,
            cgroup_path: cgroup.path().to_path_buf(),
            systemd_cgroup: opts.systemd_cgroup,
            mode: spawner.mode(),
            problem: None,
        },
    };
    let spawned = spawner.spawn(&mut new)?;
    let mut state = new.state;
    tracing::debug!("create {id}: spawned");

    if state.status == Status::Creating {
        state.status = Status::Created;
    }
    state
        .save(&dir)
        .map_err(|x| Error::io(id, "write state", None, x))?;
    if let Some(p) = &opts.pid_file {
        utils::write_atomic(p, state.pid.to_string().as_bytes())
            .map_err(|x| Error::io(id, "--pid-file", Some(p), x))?;
    }
    cleanup.armed = false;
    drop(cleanup);
    Ok(Created {
        pid: state.pid,
        dir: dir.clone(),
        channel: spawned.channel,
        lock,
        console: spawned.console,
        hooks: bundle.spec.hooks().clone(),
        state,
    })
}

/// Runs the prestart and createRuntime hooks with the state as it is now
/// (status creating); returns that state as JSON.
pub fn runtime_hooks(state: &State, hooks: Option<&Hooks>) -> Result<String, Error> {
    let id = state.id.as_str();
    let json =
        serde_json::to_string(&state.oci(Status::Creating)).map_err(|x| Error::json(id, x))?;
    let hook = |source| Error::Hook {
        id: id.into(),
        source,
    };
    hooks::run(hooks, Phase::Prestart, json.as_bytes()).map_err(hook)?;
    hooks::run(hooks, Phase::CreateRuntime, json.as_bytes()).map_err(hook)?;
    Ok(json)
}

/// Claims the state directory of `opts.id`: its ledger begun and the
/// container's cgroup recorded before anything creates it.
fn claim_dir(
    opts: &CreateOptions,
    bundle: &Path,
    created: &str,
    isolation: Isolation,
    cgroup: &Cgroup,
) -> Result<NewDir, Error> {
    let id = opts.id.as_str();
    let begin = Entry::Begin {
        creator: ProcRef::current(),
        bundle: bundle.to_path_buf(),
        created: created.into(),
        isolation,
    };
    let mut new = crate::state::claim(&opts.root, id, &begin).map_err(|e| match e {
        ClaimError::Exists => Error::Exists(id.into()),
        ClaimError::Io { path, source } if path == opts.root => {
            Error::io(id, "--root", Some(&path), source)
        }
        ClaimError::Io { path, source } => Error::io(id, "", Some(&path), source),
    })?;
    let cg = Entry::Cgroup {
        path: cgroup.path().to_path_buf(),
        systemd: opts.systemd_cgroup,
    };
    if let Err(e) = record(&mut new.ledger, id, &cg) {
        let _ = crate::ledger::remove_state_dir(&new.dir);
        return Err(e);
    }
    Ok(new)
}

fn record(ledger: &mut Ledger, id: &str, entry: &Entry) -> Result<(), Error> {
    ledger
        .record(entry)
        .map_err(|x| Error::io(id, "recording in the", Some(Path::new(LEDGER_FILE)), x))
}
