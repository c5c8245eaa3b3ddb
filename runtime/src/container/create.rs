//! The parent side of `create`: validate everything, make the state
//! directory and cgroup, fork the setup stage, drive it through the sync
//! protocol, run the runtime-namespace hooks, and record the state. Any
//! failure undoes all of it: no directory, cgroup or process is left.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::Spec;
use vessel_cgroups::{Cgroup, CgroupOptions};

use super::init::{self, InitCtx};
use super::{err, Error};
use crate::hooks::{self, Phase};
use crate::ledger::{Entry, Ledger, ProcRef, Role, LEDGER_FILE};
use crate::namespaces::Plan;
use crate::process::channel::{Channel, Msg};
use crate::process::wait::become_subreaper;
use crate::security::{rlimits, seccomp};
use crate::state::{ClaimError, Lock, NewDir, State, Status, EXEC_FIFO, START_STATUS_FIFO};
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
    /// The runtime-wide isolation mode (the annotation overrides it).
    pub isolation: crate::vm::Isolation,
    /// vm-mode defaults from the configuration file.
    pub vm: crate::vm::VmDefaults,
}

/// A created container, as `run` keeps it to start and wait.
#[derive(Debug)]
pub struct Created {
    /// Host pid of init.
    pub pid: i32,
    /// The state directory.
    pub dir: PathBuf,
    /// The sync channel (foreground only) to send `Start` on.
    pub channel: Option<Channel>,
    /// The lock, held until the caller is done.
    pub lock: Lock,
    /// Foreground with a terminal and no console socket: our end of the
    /// socket on which init sends the pty master.
    pub console: Option<UnixStream>,
    /// The recorded state (status created).
    pub state: State,
    /// The bundle's hooks, for `run` to use without parsing config.json again.
    pub hooks: Option<oci_spec::runtime::Hooks>,
}

/// Undoes a half-made container when dropped unless disarmed.
struct Cleanup<'a> {
    dir: &'a Path,
    cgroup: Option<&'a Cgroup>,
    pids: Vec<i32>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // linux.netDevices moved in go back before the init (and with it
        // the namespace that holds them) is killed.
        crate::netdev::return_recorded(self.dir, None);
        for &pid in self.pids.iter().rev() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        crate::intel_rdt::remove_recorded(self.dir);
        if let Some(cg) = self.cgroup {
            let _ = cg.destroy();
        }
        let _ = crate::ledger::remove_state_dir(self.dir);
    }
}

/// Checks the whole bundle before anything is created.
struct Checked {
    spec: Spec,
    bundle: PathBuf,
    rootfs: PathBuf,
    plan: Plan,
    seccomp: Option<seccomp::CompiledSeccomp>,
    blockio: Option<vessel_cgroups::blockio_priority::BlockIoPolicy>,
}

fn check(opts: &CreateOptions) -> Result<Checked, Error> {
    let id = opts.id.as_str();
    let e = |m: String| err(id, m);
    let bundle = opts
        .bundle
        .canonicalize()
        .map_err(|x| e(format!("bundle {}: {x}", opts.bundle.display())))?;
    let spec = spec::load(&bundle).map_err(|x| e(x.to_string()))?;
    spec::validate(&spec, true).map_err(|x| e(x.to_string()))?;
    let rootfs = spec::rootfs_path(&spec, &bundle).map_err(|x| e(x.to_string()))?;
    rootfs::validate(&spec, &bundle).map_err(|x| e(x.to_string()))?;
    crate::netdev::validate(&spec).map_err(e)?;
    let process = spec.process().as_ref().expect("validated");
    if let Some(r) = process.rlimits() {
        rlimits::validate(r).map_err(|x| e(x.to_string()))?;
    }
    let linux = spec.linux().as_ref().expect("validated");
    if let Some(res) = linux.resources() {
        vessel_cgroups::validate(res).map_err(|x| e(x.to_string()))?;
    }
    let seccomp = match linux.seccomp() {
        Some(s) => {
            let mut compiled = seccomp::compile(s).map_err(|x| e(x.to_string()))?;
            // Before the fork: the container process inherits the connection.
            compiled.connect_listener().map_err(|x| e(x.to_string()))?;
            Some(compiled)
        }
        None => None,
    };
    let blockio = vessel_cgroups::blockio_priority::parse_annotations(
        spec.annotations().as_ref().unwrap_or(&Default::default()),
    )
    .map_err(|x| e(x.to_string()))?;
    let plan = Plan::from_spec(&spec).map_err(|x| e(x.to_string()))?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() && !opts.foreground {
        return Err(e(
            "process.terminal is true but no --console-socket was given".into(),
        ));
    }
    if !terminal && opts.console_socket.is_some() {
        return Err(e(
            "--console-socket was given but process.terminal is false".into(),
        ));
    }
    Ok(Checked {
        spec,
        bundle,
        rootfs,
        plan,
        seccomp,
        blockio,
    })
}

/// Creates container `opts.id`: on success its init waits for `start`.
pub fn create(opts: &CreateOptions) -> Result<Created, Error> {
    let id = opts.id.as_str();
    utils::validate_id(id).map_err(|m| err(id, m))?;
    tracing::debug!("create {id}: checking the bundle");
    let c = check(opts)?;
    tracing::debug!("create {id}: bundle checked");
    let mode = crate::vm::config::decide(c.spec.annotations().as_ref(), opts.isolation)
        .map_err(|m| err(id, m))?;
    if mode == crate::vm::Isolation::Vm {
        return crate::vm::create::create(opts, &c.spec, &c.bundle, &c.rootfs);
    }
    let terminal = c
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    // `run` in the foreground with a terminal and no console socket: vessel
    // receives the pty master itself and relays it.
    let mut own_console = None;
    let console: Option<OwnedFd> = match &opts.console_socket {
        Some(p) => Some(
            UnixStream::connect(p)
                .map_err(|x| err(id, format!("--console-socket {}: {x}", p.display())))?
                .into(),
        ),
        None if terminal => {
            let (ours, theirs) =
                UnixStream::pair().map_err(|x| err(id, format!("console socketpair: {x}")))?;
            own_console = Some(ours);
            Some(theirs.into())
        }
        None => None,
    };

    // Opening the cgroup creates nothing yet; it must outlive `cleanup`.
    let linux = c.spec.linux().as_ref().expect("validated");
    let cg_opts = CgroupOptions {
        cgroups_path: linux.cgroups_path().clone(),
        systemd: opts.systemd_cgroup,
        container_id: id.into(),
    };
    let cgroup = Cgroup::open(&cg_opts).map_err(|x| err(id, x))?;
    tracing::debug!("create {id}: cgroup opened");
    let created_at = utils::now_rfc3339();
    let NewDir {
        dir,
        lock,
        mut ledger,
    } = claim_dir(opts, &c.bundle, &created_at, "container", &cgroup)?;
    // Made before `cleanup`, so dropped after it: on failure init still
    // waits on its end (and its network namespace, holding moved
    // netDevices, still exists) while `cleanup` undoes the rest.
    let (parent, child) = match Channel::pair() {
        Ok(p) => p,
        Err(x) => {
            let _ = crate::ledger::remove_state_dir(&dir);
            return Err(err(id, format!("socketpair: {x}")));
        }
    };
    let mut cleanup = Cleanup {
        dir: &dir,
        cgroup: Some(&cgroup),
        pids: Vec::new(),
        armed: true,
    };

    let fifo = if opts.foreground {
        None
    } else {
        Some((
            make_fifo(&dir, EXEC_FIFO, id)?,
            make_fifo(&dir, START_STATUS_FIFO, id)?,
        ))
    };

    let hooks = c.spec.hooks().as_ref();
    let has = |p: Phase| hooks.is_some_and(|h| !p.of(h).is_empty());
    let runtime_hooks = has(Phase::Prestart) || has(Phase::CreateRuntime);
    let hooks_round_trip =
        runtime_hooks || has(Phase::CreateContainer) || has(Phase::StartContainer);

    let mut state = State {
        oci_version: c.spec.version().clone(),
        id: id.into(),
        pid: 0,
        status: Status::Creating,
        bundle: c.bundle.clone(),
        rootfs: c.rootfs.clone(),
        created: created_at,
        owner: utils::owner_name(),
        annotations: c.spec.annotations().clone().unwrap_or_default(),
        pid_start_time: 0,
        cgroup_path: cgroup.path().to_path_buf(),
        systemd_cgroup: opts.systemd_cgroup,
        isolation: "container".into(),
        own_pid_ns: c.plan.has(CloneFlags::CLONE_NEWPID),
        vm: None,
        init_exe: None,
        problem: None,
    };

    rootfs::prepare_idmaps(&c.spec, &c.bundle).map_err(|x| err(id, x.to_string()))?;
    become_subreaper().map_err(|x| err(id, format!("subreaper: {x}")))?;
    // A single clone straight into the new namespaces where the plan allows
    // it; otherwise a setup stage that joins and unshares, then forks init.
    let direct = c.plan.direct_clone();
    // SAFETY: vessel is single-threaded (no runtime threads are started
    // before create), so the child may run arbitrary code.
    let forked = unsafe {
        if direct {
            init::clone_into(c.plan.direct_clone_flags())
        } else {
            nix::unistd::fork()
        }
    };
    let stage_pid = match forked.map_err(|x| err(id, format!("clone: {x}")))? {
        ForkResult::Child => {
            drop(parent);
            let ctx = InitCtx {
                id,
                spec: &c.spec,
                rootfs: &c.rootfs,
                bundle: &c.bundle,
                plan: &c.plan,
                seccomp: c.seccomp.as_ref(),
                chan: child,
                fifo,
                console,
                no_pivot: opts.no_pivot,
                no_new_keyring: opts.no_new_keyring,
                preserve_fds: opts.preserve_fds,
                hooks_round_trip,
                lock_fd: lock.raw_fd(),
            };
            if direct {
                init::direct(ctx)
            } else {
                init::stage(ctx)
            }
        }
        ForkResult::Parent { child: pid } => pid.as_raw(),
    };
    drop(child);
    drop(fifo);
    drop(console);
    cleanup.pids.push(stage_pid);
    // Cloned straight into its namespaces, the stage is init itself.
    let role = if direct { Role::Init } else { Role::Stage };
    let mut init_ref = record_process(&mut ledger, id, role, stage_pid)?;

    let fail = |m: String| err(id, m);
    if c.plan.new.contains(CloneFlags::CLONE_NEWUSER) {
        parent.expect(Msg::UserNs).map_err(fail)?;
        write_id_maps(stage_pid, linux).map_err(fail)?;
    }
    cgroup.add_task(stage_pid).map_err(|x| err(id, x))?;
    if let Some(rdt) = linux.intel_rdt() {
        // The stage forks init: both belong to the group from here on.
        let req = crate::intel_rdt::request(rdt, id).map_err(|x| err(id, x))?;
        crate::intel_rdt::Resctrl::mounted()
            .and_then(|r| {
                r.apply(&req, id, stage_pid, |m| {
                    let entry = Entry::IntelRdt {
                        path: m.path.clone(),
                        shared: m.shared,
                    };
                    record(&mut ledger, id, &entry).map_err(|x| x.to_string())
                })
            })
            .map_err(|x| err(id, x))?;
    }
    if let Some(res) = linux.resources() {
        let oom = linux
            .resources()
            .as_ref()
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.disable_oom_killer())
            .unwrap_or(false);
        cgroup.apply(res, oom).map_err(|x| err(id, x))?;
    }
    if let Some(policy) = &c.blockio {
        // The container-level IO priority: set on the setup stage before it
        // forks init, so every process of the container inherits it.
        let enforced = cgroup
            .apply_blockio_policy(policy)
            .map_err(|x| err(id, x))?;
        state.annotations.insert(
            vessel_cgroups::blockio_priority::ENFORCED_ANNOTATION.into(),
            enforced.summary(),
        );
        if let Some(prio) = enforced.ioprio {
            crate::process::exec::set_ioprio_of(stage_pid, prio as i32).map_err(|x| {
                err(
                    id,
                    format!("annotation io.vessel.blockio.priority: ioprio_set: {x}"),
                )
            })?;
        }
    }
    tracing::debug!("create {id}: cgroup set up");
    if let Err(x) = parent.send(&Msg::Go) {
        return Err(setup_failure(id, &parent, &cgroup, x.to_string()));
    }
    let pid = if direct {
        stage_pid
    } else {
        parent
            .expect_pid()
            .map_err(|m| setup_failure(id, &parent, &cgroup, m))?
    };
    if pid != stage_pid {
        cleanup.pids.push(pid);
        init_ref = record_process(&mut ledger, id, Role::Init, pid)?;
        let _ = waitpid(Pid::from_raw(stage_pid), None);
    }
    state.pid = pid;
    if let Some(s) = &c.seccomp {
        // The seccomp listener's message needs the pid, unknown to init.
        let st = serde_json::to_value(state.oci(Status::Creating)).map_err(|x| err(id, x))?;
        s.send_state(pid, &st).map_err(|x| err(id, x.to_string()))?;
    }
    crate::netdev::move_in(&c.spec, pid, |host, name| {
        let entry = Entry::NetDevice {
            host: host.into(),
            name: name.into(),
        };
        record(&mut ledger, id, &entry).map_err(|x| x.to_string())
    })
    .map_err(|m| err(id, m))?;
    // Read once, when the ledger recorded it (init is our child: its pid
    // stays its own until we reap it).
    state.pid_start_time = init_ref.start;
    // Still vessel's image: `state` compares it later to tell whether init
    // has exec'd the workload.
    state.init_exe = crate::state::exe_of(pid);

    if hooks_round_trip {
        parent.expect(Msg::Hooks).map_err(fail)?;
        let json = serde_json::to_string(&state.oci(Status::Creating)).map_err(|x| err(id, x))?;
        hooks::run(hooks, Phase::Prestart, json.as_bytes()).map_err(|x| err(id, x))?;
        hooks::run(hooks, Phase::CreateRuntime, json.as_bytes()).map_err(|x| err(id, x))?;
        let started = serde_json::to_string(&state.oci(Status::Created)).map_err(|x| err(id, x))?;
        parent
            .send(&Msg::HooksDone(json, started))
            .map_err(|x| err(id, x))?;
    }
    parent
        .expect(Msg::Ready)
        .map_err(|m| setup_failure(id, &parent, &cgroup, m))?;
    tracing::debug!("create {id}: init ready");

    state.status = Status::Created;
    state
        .save(&dir)
        .map_err(|x| err(id, format!("write state: {x}")))?;
    if let Some(p) = &opts.pid_file {
        utils::write_atomic(p, pid.to_string().as_bytes())
            .map_err(|x| err(id, format!("--pid-file {}: {x}", p.display())))?;
    }
    cleanup.armed = false;
    drop(cleanup);
    Ok(Created {
        pid,
        dir: dir.clone(),
        channel: opts.foreground.then_some(parent),
        lock,
        console: own_console,
        hooks: c.spec.hooks().clone(),
        state,
    })
}

/// Claims the state directory of `opts.id`: its ledger begun and the
/// container's cgroup recorded before anything creates it.
pub(crate) fn claim_dir(
    opts: &CreateOptions,
    bundle: &Path,
    created: &str,
    isolation: &str,
    cgroup: &Cgroup,
) -> Result<NewDir, Error> {
    let id = opts.id.as_str();
    let begin = Entry::Begin {
        creator: ProcRef::current(),
        bundle: bundle.to_path_buf(),
        created: created.into(),
        isolation: isolation.into(),
    };
    let mut new = crate::state::claim(&opts.root, id, &begin).map_err(|e| match e {
        ClaimError::Exists => Error::Exists(id.into()),
        ClaimError::Io(m) => err(id, m),
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

/// Appends to the ledger; a container whose resources cannot be recorded
/// is not created.
pub(crate) fn record(ledger: &mut Ledger, id: &str, entry: &Entry) -> Result<(), Error> {
    ledger
        .record(entry)
        .map_err(|x| err(id, format!("recording in the {LEDGER_FILE}: {x}")))
}

/// Records process `pid` (our child: its /proc entry lasts until reaped)
/// and returns it with its start time.
pub(crate) fn record_process(
    ledger: &mut Ledger,
    id: &str,
    role: Role,
    pid: i32,
) -> Result<ProcRef, Error> {
    let process = ProcRef::of(pid).ok_or_else(|| err(id, format!("process {pid} vanished")))?;
    record(ledger, id, &Entry::Process { role, process })?;
    Ok(process)
}

/// Makes a fifo in the state directory and opens it read-write (so init's
/// reads block for data instead of seeing end-of-file, and its writes never
/// block on open).
fn make_fifo(dir: &Path, name: &str, id: &str) -> Result<OwnedFd, Error> {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600))
        .map_err(|x| err(id, format!("{}: {x}", path.display())))?;
    let fd = nix::fcntl::open(&path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|x| err(id, format!("{}: {x}", path.display())))?;
    // SAFETY: `open` returned a fresh descriptor that we now own.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Turns a setup failure into the most useful message: the child's own
/// error if it sent one, else what killed it (the OOM killer, typically,
/// when the memory limit is too small for the setup itself).
fn setup_failure(id: &str, chan: &Channel, cgroup: &Cgroup, msg: String) -> Error {
    if let Ok(Some(Msg::Error(e))) = chan.try_recv() {
        return err(id, e);
    }
    if cgroup.oom_kills().unwrap_or(0) > 0 {
        return err(
            id,
            "the container's init was killed by the OOM killer during setup: \
             linux.resources.memory.limit is too low",
        );
    }
    err(id, msg)
}

fn write_id_maps(pid: i32, linux: &oci_spec::runtime::Linux) -> Result<(), String> {
    let fmt = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|x| format!("{} {} {}\n", x.container_id(), x.host_id(), x.size()))
            .collect::<String>()
    };
    fs::write(format!("/proc/{pid}/uid_map"), fmt(linux.uid_mappings()))
        .map_err(|e| format!("linux.uidMappings: write uid_map: {e}"))?;
    fs::write(format!("/proc/{pid}/gid_map"), fmt(linux.gid_mappings()))
        .map_err(|e| format!("linux.gidMappings: write gid_map: {e}"))?;
    Ok(())
}
