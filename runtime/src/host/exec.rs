//! `exec` in container mode: a new process inside the container. A setup stage
//! joins the container's cgroup and all its namespaces at once through a
//! pidfd, then forks the process, which goes through the same preparation
//! as the container's init.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use crate::container::{Container, Error, ExecOptions, ExecPlan, SubCgroupError};
use crate::namespaces::PROC_NS;
use crate::process::channel::{Channel, ChannelError, Msg};
use crate::process::exec as pexec;
use crate::process::wait::{become_subreaper, forward_and_wait};
use crate::security::seccomp::{self, CompiledSeccomp};
use crate::{spec, terminal, utils};
use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};

/// Moves `pid`, already in the container's cgroup, into the sub-cgroups
/// `subs` (see [`parse_sub_cgroups`]). Each must exist, as in runc.
fn join_sub_cgroups(
    cgroup: &vessel_cgroups::Cgroup,
    subs: &BTreeMap<String, PathBuf>,
    pid: i32,
) -> Result<(), SubCgroupError> {
    let all = subs.get("");
    let mut targets: Vec<(String, PathBuf)> = Vec::new();
    let v1 = cgroup.v1_paths();
    if v1.is_empty() {
        if let Some(c) = subs.keys().find(|c| !c.is_empty()) {
            return Err(SubCgroupError::NeedsV1 {
                controller: c.clone(),
            });
        }
    }
    for c in subs.keys().filter(|c| !c.is_empty()) {
        if !v1.contains_key(c) {
            return Err(SubCgroupError::NotMounted {
                controller: c.clone(),
            });
        }
    }
    for (ctrl, dir) in &v1 {
        if let Some(sub) = subs.get(ctrl).or(all) {
            targets.push((ctrl.clone(), dir.join(sub)));
        }
    }
    if let (Some(sub), Some(dir)) = (all, cgroup.v2_dir()) {
        targets.push(("cgroup2".into(), dir.join(sub)));
    }
    for (ctrl, dir) in targets {
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(|source| SubCgroupError::Join {
            dir: dir.clone(),
            controller: ctrl.clone(),
            source,
        })?;
    }
    Ok(())
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Which of the container's namespaces differ from ours (those to join).
fn namespaces_of(pid: i32) -> CloneFlags {
    let mut flags = CloneFlags::empty();
    for (name, f) in PROC_NS {
        let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{name}"));
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"));
        if let (Ok(t), Ok(o)) = (theirs, ours) {
            if t.ino() != o.ino() || t.dev() != o.dev() {
                flags |= CloneFlags::from_bits_retain(f);
            }
        }
    }
    flags
}

/// Runs `opts.process` in container `c` (created, running or paused);
/// returns its exit code, or 0 when detached.
pub(super) fn exec(c: Container, opts: &ExecOptions, plan: ExecPlan) -> Result<i32, Error> {
    let id = opts.id.as_str();
    let ExecPlan {
        affinity,
        sub_cgroups,
    } = plan;
    let container_spec = spec::load(&c.state.bundle).map_err(|e| Error::spec(id, e))?;
    let seccomp_error = |source| Error::Seccomp {
        id: id.into(),
        source,
    };
    let seccomp: Option<CompiledSeccomp> = match container_spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
    {
        Some(s) => {
            let mut compiled = seccomp::compile(s).map_err(seccomp_error)?;
            // Before the fork: the process inherits the connection.
            compiled.connect_listener().map_err(seccomp_error)?;
            Some(compiled)
        }
        None => None,
    };
    // Personality and memory policy are the container's, set on every process.
    let container_linux = container_spec.linux().clone().unwrap_or_default();
    // For the seccomp listener's message (the container is dropped below).
    let listener_state = serde_json::to_value(c.state.oci(crate::state::Status::Running))
        .map_err(|e| Error::json(id, e))?;
    let container_ioprio =
        vessel_cgroups::blockio_priority::parse_annotations(&c.state.annotations)
            .map_err(|e| Error::cgroup(id, e))?
            .and_then(|p| p.ioprio());
    let init_pid = c.state.pid;
    let pidfd = pidfd_open(init_pid).map_err(|e| Error::io(id, "pidfd_open of init", None, e))?;
    let join = namespaces_of(init_pid);
    let cgroup = c.cgroup()?;
    // Do not hold the container's lock while the process runs.
    drop(c);

    let terminal = opts.process.terminal().unwrap_or(false);
    let console: Option<OwnedFd> = match (&opts.console_socket, terminal) {
        (Some(p), true) => Some(
            UnixStream::connect(p)
                .map_err(|e| Error::io(id, "--console-socket", Some(p), e))?
                .into(),
        ),
        (None, true) => {
            return Err(Error::Usage {
                id: id.into(),
                msg: "process.terminal is true but no --console-socket was given",
            })
        }
        (Some(_), false) => {
            return Err(Error::Usage {
                id: id.into(),
                msg: "--console-socket was given but the process has no terminal",
            })
        }
        (None, false) => None,
    };

    let (parent, child) = Channel::pair().map_err(|e| Error::io(id, "socketpair", None, e))?;
    become_subreaper().map_err(|e| Error::io(id, "subreaper", None, e))?;
    // SAFETY: vessel is single-threaded here, so the child may run Rust code.
    let stage =
        match unsafe { nix::unistd::fork() }.map_err(|e| Error::io(id, "fork", None, e.into()))? {
            ForkResult::Child => {
                drop(parent);
                exec_stage(
                    &child,
                    (&pidfd, init_pid),
                    join,
                    opts,
                    console,
                    Setup {
                        seccomp: seccomp.as_ref(),
                        container_ioprio,
                        linux: &container_linux,
                        affinity: &affinity,
                    },
                )
            }
            ForkResult::Parent { child } => child,
        };
    drop(child);
    drop(console);
    if !opts.detach {
        // Signals that arrive from now on are for the process, not for us.
        crate::process::wait::block_forwarded()
            .map_err(|e| Error::io(id, "block signals", None, e))?;
    }
    let fail = |e: Error| {
        let _ = nix::sys::signal::kill(stage, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(stage, None);
        e
    };
    if let Some(mask) = &affinity.initial {
        // Before the cgroup: the stage and the process it forks do their
        // work on these CPUs until the final affinity (or the reset) applies.
        crate::process::attrs::set_affinity(stage.as_raw(), mask).map_err(|e| {
            fail(Error::io(
                id,
                "process.execCPUAffinity.initial: sched_setaffinity",
                None,
                e,
            ))
        })?;
    }
    if let Err(e) = cgroup.add_task(stage.as_raw()) {
        return Err(fail(Error::cgroup(id, e)));
    }
    if !sub_cgroups.is_empty() {
        join_sub_cgroups(&cgroup, &sub_cgroups, stage.as_raw()).map_err(|source| {
            fail(Error::SubCgroup {
                id: id.into(),
                source,
            })
        })?;
    }
    if let Some(rdt) = container_linux.intel_rdt() {
        // Where the init is (runc does the same for exec'd processes).
        crate::intel_rdt::request(rdt, id)
            .and_then(|req| crate::intel_rdt::Resctrl::mounted()?.join(&req, id, stage.as_raw()))
            .map_err(|e| fail(Error::rdt(id, e)))?;
    }
    parent
        .send(&Msg::Go)
        .map_err(|e| fail(Error::io(id, "exec", None, e)))?;
    let pid = parent.expect_pid().map_err(|m| fail(Error::setup(id, m)))?;
    if let Some(s) = &seccomp {
        // The seccomp listener's message: this process, the container's state.
        s.send_state(pid, &listener_state)
            .map_err(|e| fail(seccomp_error(e)))?;
    }
    let _ = waitpid(stage, None);
    // The process's end of the channel closes on a successful execve.
    match parent.expect_close() {
        Ok(()) => {}
        Err(ChannelError::Io(e)) => return Err(Error::io(id, "exec", None, e)),
        Err(e) => {
            if let ChannelError::Reported(_) = e {
                let _ = waitpid(Pid::from_raw(pid), None);
            }
            return Err(Error::setup(id, e));
        }
    }
    if let Some(p) = &opts.pid_file {
        utils::write_atomic(p, pid.to_string().as_bytes())
            .map_err(|e| Error::io(id, "--pid-file", Some(p), e))?;
    }
    if opts.detach {
        return Ok(0);
    }
    forward_and_wait(pid).map_err(|e| Error::io(id, "wait", None, e))
}

/// A step of the exec'd process's setup that failed, naming the field or
/// step. It reaches the parent as text (see [`crate::process::channel`]).
#[derive(Debug, thiserror::Error)]
enum StageError {
    /// The sync channel with the parent.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// setns(2) through init's pidfd.
    #[error("join the container's namespaces: {0}")]
    Join(#[source] nix::Error),
    /// chroot(2) to init's root, with no mount namespace to join.
    #[error("enter the container's root ({root}): {source}")]
    Root {
        /// `/proc/<init>/root`.
        root: String,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// fork(2) of the process.
    #[error("fork: {0}")]
    Fork(#[source] nix::Error),
    /// The container's IO priority (its annotation).
    #[error("annotation io.vessel.blockio.priority: {0}")]
    IoPriority(#[source] std::io::Error),
    /// `process.terminal`.
    #[error(transparent)]
    Console(#[from] terminal::ConsoleError),
    /// `linux.personality` or `linux.memoryPolicy`.
    #[error(transparent)]
    Attr(#[from] crate::process::attrs::AttrError),
    /// A field of `process`.
    #[error(transparent)]
    Prepare(#[from] pexec::PrepareError),
}

/// What the exec'd process gets besides its `process` object.
struct Setup<'a> {
    seccomp: Option<&'a CompiledSeccomp>,
    /// The container-level IO priority (annotation), if any.
    container_ioprio: Option<u16>,
    /// The container's `linux` section (personality, memory policy).
    linux: &'a oci_spec::runtime::Linux,
    affinity: &'a spec::affinity::ExecAffinity,
}

fn exec_stage(
    chan: &Channel,
    init: (&OwnedFd, i32),
    join: CloneFlags,
    opts: &ExecOptions,
    console: Option<OwnedFd>,
    setup: Setup<'_>,
) -> ! {
    let (pidfd, init_pid) = init;
    let r = (|| -> Result<bool, StageError> {
        chan.expect(Msg::Go)?;
        nix::sched::setns(pidfd.as_fd(), join).map_err(StageError::Join)?;
        if !join.contains(CloneFlags::CLONE_NEWNS) {
            // No mount namespace of its own: the container's root is only
            // its init's chroot, which the process must share too.
            let root = format!("/proc/{init_pid}/root");
            nix::unistd::chroot(root.as_str())
                .and_then(|()| nix::unistd::chdir("/"))
                .map_err(|source| StageError::Root {
                    root: root.clone(),
                    source,
                })?;
        }
        // SAFETY: single-threaded; the child goes on running Rust code.
        match unsafe { nix::unistd::fork() }.map_err(StageError::Fork)? {
            ForkResult::Child => Ok(true),
            ForkResult::Parent { child } => {
                chan.tell(&Msg::Pid(child.as_raw()))?;
                Ok(false)
            }
        }
    })();
    match r {
        Ok(false) => {
            // SAFETY: the stage is done; leave without the parent's atexit handlers.
            unsafe { libc::_exit(0) }
        }
        Ok(true) => {
            let e = setup
                .container_ioprio
                .map_or(Ok(()), |v| pexec::set_ioprio(v as i32))
                .map_err(StageError::IoPriority)
                .and_then(|_| run_process(chan, opts, join, console, &setup))
                .unwrap_err();
            // Where the stage's error becomes the text on the wire.
            let _ = chan.send(&Msg::Error(e.to_string()));
        }
        Err(e) => {
            let _ = chan.send(&Msg::Error(e.to_string()));
        }
    }
    // SAFETY: as above: a forked helper exits without running atexit handlers.
    unsafe { libc::_exit(1) }
}

/// Prepares and execs the process; returns only on a failure before the
/// last steps (those report on `chan` themselves, see `pexec::exec`).
fn run_process(
    chan: &Channel,
    opts: &ExecOptions,
    join: CloneFlags,
    console: Option<OwnedFd>,
    setup: &Setup<'_>,
) -> Result<std::convert::Infallible, StageError> {
    let p = &opts.process;
    let seccomp = setup.seccomp;
    if let Some(console) = console {
        let (slave, _) = terminal::setup_console(console.as_fd(), p.console_size().as_ref())?;
        terminal::make_controlling(&slave).map_err(terminal::ConsoleError::Controlling)?;
    }
    pexec::apply_privileged(p)?;
    crate::process::attrs::apply_container(setup.linux)?;
    // The filter is loaded last (see `pexec`'s documentation for the order).
    let nnp = p.no_new_privileges().unwrap_or(false);
    let user_ns = join.contains(CloneFlags::CLONE_NEWUSER);
    let affinity = match (&setup.affinity.last, setup.affinity.is_empty()) {
        (Some(mask), _) => pexec::Affinity::Final(mask.clone()),
        (None, true) => pexec::Affinity::Reset,
        // Only `initial`: the process keeps it.
        (None, false) => pexec::Affinity::Keep,
    };
    let prepared =
        pexec::drop_privileges(p, user_ns, seccomp.is_some() && !nnp)?.with_affinity(affinity);
    let report = pexec::Report::Channel(chan.as_fd());
    pexec::exec(&prepared, opts.preserve_fds, seccomp, report)
}
