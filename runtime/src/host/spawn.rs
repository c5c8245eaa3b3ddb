//! The container-mode part of `create`: checks only this mode needs
//! (seccomp compiled to BPF, the namespace plan), then the fork of the
//! setup stage, driven through the sync protocol while the parent puts it
//! in the cgroup, writes its id maps and runs the runtime-namespace hooks.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode as FileMode;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};
use vessel_cgroups::Cgroup;

use super::init::{self, InitCtx};
use crate::container::create::{runtime_hooks, Bundle, NewContainer, Spawned};
use crate::container::{CreateOptions, Error};
use crate::hooks::Phase;
use crate::isolation::Spawner;
use crate::ledger::{Entry, Role};
use crate::namespaces::Plan;
use crate::process::channel::{Channel, ChannelError, Msg};
use crate::process::wait::become_subreaper;
use crate::security::seccomp;
use crate::state::{HostState, Mode, Status, EXEC_FIFO, START_STATUS_FIFO};

/// What container mode prepared before the state directory is claimed.
pub struct HostSpawner {
    plan: Plan,
    seccomp: Option<seccomp::CompiledSeccomp>,
    /// The console socket (`--console-socket`), or the container's end of
    /// ours (foreground `run` with a terminal).
    console: Option<OwnedFd>,
    /// Our end of that pair.
    own_console: Option<UnixStream>,
}

/// Checks what only container mode needs and connects the console socket.
pub fn prepare(opts: &CreateOptions, b: &Bundle) -> Result<HostSpawner, Error> {
    let id = opts.id.as_str();
    let seccomp_error = |source| Error::Seccomp {
        id: id.into(),
        source,
    };
    let seccomp = match b.linux().seccomp() {
        Some(s) => {
            let mut compiled = seccomp::compile(s).map_err(seccomp_error)?;
            // Before the fork: the container process inherits the connection.
            compiled.connect_listener().map_err(seccomp_error)?;
            Some(compiled)
        }
        None => None,
    };
    let plan = Plan::from_spec(&b.spec).map_err(|x| Error::spec(id, x))?;
    // `run` in the foreground with a terminal and no console socket: vessel
    // receives the pty master itself and relays it.
    let mut own_console = None;
    let console: Option<OwnedFd> = match &opts.console_socket {
        Some(p) => Some(
            UnixStream::connect(p)
                .map_err(|x| Error::io(id, "--console-socket", Some(p), x))?
                .into(),
        ),
        None if b.terminal => {
            let (ours, theirs) =
                UnixStream::pair().map_err(|x| Error::io(id, "console socketpair", None, x))?;
            own_console = Some(ours);
            Some(theirs.into())
        }
        None => None,
    };
    Ok(HostSpawner {
        plan,
        seccomp,
        console,
        own_console,
    })
}

impl Spawner for HostSpawner {
    fn mode(&self) -> Mode {
        Mode::Container(HostState {
            own_pid_ns: self.plan.has(CloneFlags::CLONE_NEWPID),
            init_exe: None,
        })
    }

    fn spawn(self: Box<Self>, new: &mut NewContainer<'_>) -> Result<Spawned, Error> {
        let id = new.opts.id.clone();
        // Dropped after the cleanup guard has run, on failure: until then
        // init waits on its end (and its network namespace, holding moved
        // netDevices, still exists), so the devices go back first.
        let (parent, child) = Channel::pair().map_err(|x| Error::io(&id, "socketpair", None, x))?;
        let r = self.spawn_with(new, &parent, child);
        if r.is_err() {
            crate::netdev::return_recorded(new.dir, None);
        }
        let own_console = r?;
        Ok(Spawned {
            channel: new.opts.foreground.then_some(parent),
            console: own_console,
        })
    }
}

impl HostSpawner {
    fn spawn_with(
        self,
        new: &mut NewContainer<'_>,
        parent: &Channel,
        child: Channel,
    ) -> Result<Option<UnixStream>, Error> {
        let id = new.opts.id.clone();
        let id = id.as_str();
        let opts = new.opts;
        let b = new.bundle;
        let linux = b.linux();
        let cgroup = new.cgroup;
        let fifo = if opts.foreground {
            None
        } else {
            Some((
                make_fifo(new.dir, EXEC_FIFO, id)?,
                make_fifo(new.dir, START_STATUS_FIFO, id)?,
            ))
        };
        let hooks = b.spec.hooks().as_ref();
        let has = |p: Phase| hooks.is_some_and(|h| !p.of(h).is_empty());
        let runtime_hooks_needed = has(Phase::Prestart) || has(Phase::CreateRuntime);
        let hooks_round_trip =
            runtime_hooks_needed || has(Phase::CreateContainer) || has(Phase::StartContainer);
        let mut host = HostState {
            own_pid_ns: self.plan.has(CloneFlags::CLONE_NEWPID),
            init_exe: None,
        };

        crate::rootfs::prepare_idmaps(&b.spec, &b.dir).map_err(|source| Error::Rootfs {
            id: id.into(),
            source,
        })?;
        become_subreaper().map_err(|x| Error::io(id, "subreaper", None, x))?;
        // A single clone straight into the new namespaces where the plan
        // allows it; otherwise a setup stage that joins and unshares, then
        // forks init.
        let direct = self.plan.direct_clone();
        // SAFETY: vessel is single-threaded (no runtime threads are started
        // before create), so the child may run arbitrary code.
        let forked = unsafe {
            if direct {
                init::clone_into(self.plan.direct_clone_flags())
            } else {
                nix::unistd::fork()
            }
        };
        let stage_pid = match forked.map_err(|x| Error::io(id, "clone", None, x.into()))? {
            ForkResult::Child => {
                // The parent's end, borrowed here: closed in the child so
                // that the parent's death reads as end-of-file.
                // SAFETY: the child never returns to the code that owns it.
                unsafe { libc::close(parent.as_fd().as_raw_fd()) };
                let ctx = InitCtx {
                    id,
                    spec: &b.spec,
                    rootfs: &b.rootfs,
                    bundle: &b.dir,
                    plan: &self.plan,
                    seccomp: self.seccomp.as_ref(),
                    chan: child,
                    fifo,
                    console: self.console,
                    no_pivot: opts.no_pivot,
                    no_new_keyring: opts.no_new_keyring,
                    preserve_fds: opts.preserve_fds,
                    hooks_round_trip,
                    lock_fd: new.lock_fd,
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
        drop(self.console);
        // Cloned straight into its namespaces, the stage is init itself.
        let role = if direct { Role::Init } else { Role::Stage };
        let mut init_ref = new.record_process(role, stage_pid)?;

        let fail = |e| Error::setup(id, e);
        let cgroup_error = |x| Error::cgroup(id, x);
        if self.plan.new.contains(CloneFlags::CLONE_NEWUSER) {
            parent.expect(Msg::UserNs).map_err(fail)?;
            write_id_maps(id, stage_pid, linux)?;
        }
        cgroup.add_task(stage_pid).map_err(cgroup_error)?;
        if let Some(rdt) = linux.intel_rdt() {
            // The stage forks init: both belong to the group from here on.
            let rdt_error = |e| Error::rdt(id, e);
            let req = crate::intel_rdt::request(rdt, id).map_err(rdt_error)?;
            let resctrl = crate::intel_rdt::Resctrl::mounted().map_err(rdt_error)?;
            resctrl
                .apply(&req, id, stage_pid, |m| {
                    new.ledger.record(&Entry::IntelRdt {
                        path: m.path.clone(),
                        shared: m.shared,
                    })
                })
                .map_err(rdt_error)?;
        }
        if let Some(res) = linux.resources() {
            let oom = res
                .memory()
                .as_ref()
                .and_then(|m| m.disable_oom_killer())
                .unwrap_or(false);
            cgroup.apply(res, oom).map_err(cgroup_error)?;
        }
        if let Some(policy) = &b.blockio {
            // The container-level IO priority: set on the setup stage before
            // it forks init, so every process of the container inherits it.
            let enforced = cgroup.apply_blockio_policy(policy).map_err(cgroup_error)?;
            new.state.annotations.insert(
                vessel_cgroups::blockio_priority::ENFORCED_ANNOTATION.into(),
                enforced.summary(),
            );
            if let Some(prio) = enforced.ioprio {
                crate::process::exec::set_ioprio_of(stage_pid, prio as i32).map_err(|x| {
                    Error::io(
                        id,
                        "annotation io.vessel.blockio.priority: ioprio_set",
                        None,
                        x,
                    )
                })?;
            }
        }
        tracing::debug!("create {id}: cgroup set up");
        if let Err(x) = parent.tell(&Msg::Go) {
            return Err(setup_failure(id, parent, cgroup, x));
        }
        let pid = if direct {
            stage_pid
        } else {
            parent
                .expect_pid()
                .map_err(|m| setup_failure(id, parent, cgroup, m))?
        };
        if pid != stage_pid {
            init_ref = new.record_process(Role::Init, pid)?;
            let _ = waitpid(Pid::from_raw(stage_pid), None);
        }
        new.state.pid = pid;
        // Read once, when the ledger recorded it (init is our child: its
        // pid stays its own until we reap it).
        new.state.pid_start_time = init_ref.start;
        if let Some(s) = &self.seccomp {
            // The seccomp listener's message needs the pid, unknown to init.
            let st = serde_json::to_value(new.state.oci(Status::Creating))
                .map_err(|x| Error::json(id, x))?;
            s.send_state(pid, &st).map_err(|source| Error::Seccomp {
                id: id.into(),
                source,
            })?;
        }
        crate::netdev::move_in(&b.spec, pid, |host, name| {
            let entry = Entry::NetDevice {
                host: host.into(),
                name: name.into(),
            };
            new.ledger.record(&entry)
        })
        .map_err(|source| Error::NetDevice {
            id: id.into(),
            source,
        })?;
        // Still vessel's image: `state` compares it later to tell whether
        // init has exec'd the workload.
        host.init_exe = crate::state::exe_of(pid);
        new.state.mode = Mode::Container(host);

        if hooks_round_trip {
            parent.expect(Msg::Hooks).map_err(fail)?;
            let json = runtime_hooks(&new.state, hooks)?;
            let started = serde_json::to_string(&new.state.oci(Status::Created))
                .map_err(|x| Error::json(id, x))?;
            parent
                .send(&Msg::HooksDone(json, started))
                .map_err(|x| Error::io(id, "create", None, x))?;
        }
        parent
            .expect(Msg::Ready)
            .map_err(|m| setup_failure(id, parent, cgroup, m))?;
        tracing::debug!("create {id}: init ready");
        Ok(self.own_console)
    }
}

/// Makes a fifo in the state directory and opens it read-write (so init's
/// reads block for data instead of seeing end-of-file, and its writes never
/// block on open).
fn make_fifo(dir: &Path, name: &str, id: &str) -> Result<OwnedFd, Error> {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, FileMode::from_bits_truncate(0o600))
        .map_err(|x| Error::io(id, "", Some(&path), x.into()))?;
    let fd = nix::fcntl::open(&path, OFlag::O_RDWR | OFlag::O_CLOEXEC, FileMode::empty())
        .map_err(|x| Error::io(id, "", Some(&path), x.into()))?;
    // SAFETY: `open` returned a fresh descriptor that we now own.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Turns a setup failure into the most useful error: the child's own
/// report if it sent one, else what killed it (the OOM killer, typically,
/// when the memory limit is too small for the setup itself).
fn setup_failure(id: &str, chan: &Channel, cgroup: &Cgroup, e: ChannelError) -> Error {
    if let Ok(Some(Msg::Error(report))) = chan.try_recv() {
        return Error::setup(id, ChannelError::Reported(report));
    }
    if cgroup.oom_kills().unwrap_or(0) > 0 {
        return Error::OomDuringSetup { id: id.into() };
    }
    Error::setup(id, e)
}

fn write_id_maps(id: &str, pid: i32, linux: &oci_spec::runtime::Linux) -> Result<(), Error> {
    let fmt = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|x| format!("{} {} {}\n", x.container_id(), x.host_id(), x.size()))
            .collect::<String>()
    };
    fs::write(format!("/proc/{pid}/uid_map"), fmt(linux.uid_mappings()))
        .map_err(|e| Error::io(id, "linux.uidMappings: write uid_map", None, e))?;
    fs::write(format!("/proc/{pid}/gid_map"), fmt(linux.gid_mappings()))
        .map_err(|e| Error::io(id, "linux.gidMappings: write gid_map", None, e))?;
    Ok(())
}
