//! The container side of `create`: the setup stage that enters and creates
//! namespaces, and the init that builds the container and finally execs the
//! user's process. Both run in forked copies of vessel and report to the
//! parent over the sync channel; they never return.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Gid, Uid};
use oci_spec::runtime::Spec;

use crate::hooks::{self, Phase};
use crate::namespaces::Plan;
use crate::process::channel::{self, Channel, ChannelError, Msg};
use crate::process::exec as pexec;
use crate::rootfs::{self, RootfsConfig};
use crate::security::seccomp::CompiledSeccomp;
use crate::terminal;

/// Everything the forked stages need, prepared by the parent.
pub(super) struct InitCtx<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub plan: &'a Plan,
    pub seccomp: Option<&'a CompiledSeccomp>,
    pub chan: Channel,
    /// The exec fifo and the start-status fifo (detached create), or `None`
    /// (foreground run: `Start` arrives on the channel, and the channel's
    /// end-of-file tells the parent the workload was exec'd).
    pub fifo: Option<(OwnedFd, OwnedFd)>,
    pub console: Option<OwnedFd>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// Whether init must stop for the parent's prestart/createRuntime hooks
    /// or needs the state for its own hooks.
    pub hooks_round_trip: bool,
    /// The parent's lock on the state directory: a forked copy of it would
    /// keep the flock held for as long as init waits.
    pub lock_fd: std::os::fd::RawFd,
}

/// A step of the setup stage or of init that failed, naming the field or
/// file. It reaches the parent as text (see [`crate::process::channel`]).
#[derive(Debug, thiserror::Error)]
pub(super) enum InitError {
    /// Joining or creating namespaces (`step`: the system call, and which).
    #[error("linux.namespaces: {step}: {source}")]
    Namespaces {
        /// `setns`, `unshare user`, ...
        step: &'static str,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// Becoming root of the new user namespace.
    #[error("{field}: {call}(0) in the user namespace: {source}")]
    UserNsRoot {
        /// `linux.uidMappings` or `linux.gidMappings`.
        field: &'static str,
        /// `setresuid` or `setresgid`.
        call: &'static str,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// `linux.timeOffsets`: the offsets file could not be opened.
    #[error("linux.timeOffsets: open /proc/self/timens_offsets: {0}")]
    TimeOffsetsOpen(#[source] std::io::Error),
    /// `linux.timeOffsets`: the kernel refused the offsets.
    #[error("linux.timeOffsets: writing {text:?}: {source}")]
    TimeOffsetsWrite {
        /// The lines written.
        text: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The sync channel with the parent.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// pipe(2) or fork(2) for init.
    #[error("{call}: {source}")]
    Fork {
        /// `pipe` or `fork init`.
        call: &'static str,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// setsid(2) for an init without a terminal.
    #[error("setsid: {0}")]
    Setsid(#[source] nix::Error),
    /// The spec has no `process`.
    #[error("process: missing")]
    NoProcess,
    /// The container's session keyring.
    #[error("join session keyring: {0}")]
    Keyring(#[source] std::io::Error),
    /// The root filesystem, a mount or the console's.
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    /// `hostname`.
    #[error("hostname {name:?}: {source}")]
    Hostname {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// `domainname`.
    #[error("domainname {name:?}: {source}")]
    Domainname {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A createContainer or startContainer hook.
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    /// `linux.sysctl.<key>`.
    #[error("linux.sysctl.{key}: {source}")]
    Sysctl {
        /// The key.
        key: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `process.terminal`.
    #[error(transparent)]
    Console(#[from] terminal::ConsoleError),
    /// `linux.personality` or `linux.memoryPolicy`.
    #[error(transparent)]
    Attr(#[from] crate::process::attrs::AttrError),
    /// A field of `process`.
    #[error(transparent)]
    Prepare(#[from] pexec::PrepareError),
    /// The exec fifo closed with no byte from `start`.
    #[error("exec fifo closed before start")]
    FifoClosed,
    /// Reading the exec fifo.
    #[error("exec fifo: {0}")]
    Fifo(#[source] std::io::Error),
}

fn exit_with(chan: &Channel, r: Result<(), InitError>) -> ! {
    if let Err(e) = r {
        // The one place init's error becomes the text on the wire.
        let _ = chan.send(&Msg::Error(e.to_string()));
    }
    // SAFETY: _exit ends this forked process without running the parent's
    // atexit handlers or flushing stdio buffers it inherited.
    unsafe { libc::_exit(1) }
}

/// The setup stage: joins and creates namespaces, then forks init where a
/// pid or time namespace requires it.
pub(super) fn stage(ctx: InitCtx<'_>) -> ! {
    // SAFETY: closes our copy of the lock descriptor; the parent's `Lock`
    // owns its own copy, and this process never drops that value.
    unsafe { libc::close(ctx.lock_fd) };
    let r = stage_inner(&ctx);
    match r {
        Ok(true) => init(ctx),
        Ok(false) => {
            // SAFETY: the setup stage is done; leave without atexit handlers.
            unsafe { libc::_exit(0) }
        }
        Err(e) => exit_with(&ctx.chan, Err(e)),
    }
}

/// Init cloned straight into its namespaces (see `Plan::direct_clone`):
/// joins the namespaces given by path, waits until the parent has put it in
/// its cgroup, creates the cgroup namespace, and goes on as init.
pub(super) fn direct(ctx: InitCtx<'_>) -> ! {
    // SAFETY: closes our copy of the lock descriptor (see `stage`).
    unsafe { libc::close(ctx.lock_fd) };
    let r = (|| {
        ctx.plan.join_all().map_err(ns_error("setns"))?;
        ctx.chan.expect(Msg::Go)?;
        if ctx.plan.new.contains(CloneFlags::CLONE_NEWCGROUP) {
            nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(ns_error("unshare cgroup"))?;
        }
        Ok::<(), InitError>(())
    })();
    match r {
        Ok(()) => init(ctx),
        Err(e) => exit_with(&ctx.chan, Err(e)),
    }
}

/// clone(2) with namespace flags and fork's semantics (the child goes on
/// from here on a copy of our stack).
///
/// # Safety
/// The caller must be single-threaded, as for fork.
pub(super) unsafe fn clone_into(flags: CloneFlags) -> nix::Result<ForkResult> {
    // SAFETY: without CLONE_VM and with a NULL stack, clone behaves like
    // fork: the child gets a private copy of the address space.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags.bits() | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match rc {
        -1 => Err(nix::errno::Errno::last()),
        0 => Ok(ForkResult::Child),
        pid => Ok(ForkResult::Parent {
            child: nix::unistd::Pid::from_raw(pid as i32),
        }),
    }
}

/// The error of namespace step `step`.
fn ns_error(step: &'static str) -> impl Fn(nix::Error) -> InitError {
    move |source| InitError::Namespaces { step, source }
}

/// `/proc/self/timens_offsets` opened for writing and the lines to write to
/// it once the time namespace exists, when the spec sets offsets.
fn time_offsets_file(spec: &Spec) -> Result<Option<(fs::File, String)>, InitError> {
    let Some(offsets) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
        .filter(|o| !o.is_empty())
    else {
        return Ok(None);
    };
    let mut text = String::new();
    for (clock, off) in offsets {
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    let file = fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/timens_offsets")
        .map_err(InitError::TimeOffsetsOpen)?;
    Ok(Some((file, text)))
}

/// Returns Ok(true) in the process that goes on as init.
fn stage_inner(ctx: &InitCtx<'_>) -> Result<bool, InitError> {
    let plan = ctx.plan;
    // Opened with vessel's own credentials, before any user namespace: the
    // kernel checks CAP_SYS_TIME against the opener's credentials, and once
    // in a new user namespace this process may no longer open its own proc
    // files (they stay owned by the host's root).
    let offsets = time_offsets_file(ctx.spec)?;
    plan.join_all().map_err(ns_error("setns"))?;
    if plan.new.contains(CloneFlags::CLONE_NEWUSER) {
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER).map_err(ns_error("unshare user"))?;
        ctx.chan.tell(&Msg::UserNs)?;
    }
    ctx.chan.expect(Msg::Go)?;
    if plan.has(CloneFlags::CLONE_NEWUSER) {
        // Become root of the user namespace (0 must be mapped).
        let root = |field, call| {
            move |source| InitError::UserNsRoot {
                field,
                call,
                source,
            }
        };
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(root("linux.gidMappings", "setresgid"))?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(root("linux.uidMappings", "setresuid"))?;
    }
    plan.unshare_rest().map_err(ns_error("unshare"))?;
    if let Some((mut file, text)) = offsets {
        // The offsets apply to the new time namespace, which no process has
        // entered yet: init is forked below.
        if let Err(source) = file.write_all(text.as_bytes()) {
            return Err(InitError::TimeOffsetsWrite { text, source });
        }
    }
    if !plan.needs_fork() {
        ctx.chan.tell(&Msg::Pid(std::process::id() as i32))?;
        return Ok(true);
    }
    let fork_error = |call| move |source| InitError::Fork { call, source };
    // Init must not speak on the shared channel before this stage has sent
    // its pid: it waits for the stage's end of this pipe to close.
    let (gate_r, gate_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(fork_error("pipe"))?;
    // SAFETY: vessel is single-threaded here (the parent forked us from its
    // only thread), so the child may keep running Rust code.
    match unsafe { nix::unistd::fork() }.map_err(fork_error("fork init"))? {
        ForkResult::Child => {
            drop(gate_w);
            let mut b = [0u8; 1];
            while let Err(nix::errno::Errno::EINTR) = nix::unistd::read(gate_r.as_raw_fd(), &mut b)
            {
            }
            Ok(true)
        }
        ForkResult::Parent { child } => {
            ctx.chan.tell(&Msg::Pid(child.as_raw()))?;
            drop(gate_w);
            Ok(false)
        }
    }
}

/// The container's init: builds the root filesystem and the process's
/// environment, reports Ready, waits for start, and execs.
fn init(ctx: InitCtx<'_>) -> ! {
    let r = init_inner(&ctx);
    exit_with(&ctx.chan, r.map(|_| ()))
}

fn init_inner(ctx: &InitCtx<'_>) -> Result<(), InitError> {
    let spec = ctx.spec;
    let process = spec.process().as_ref().ok_or(InitError::NoProcess)?;
    let hooks = spec.hooks().as_ref();
    let plan = ctx.plan;
    let user_ns = plan.has(CloneFlags::CLONE_NEWUSER);

    if !ctx.no_new_keyring {
        join_session_keyring(ctx.id)?;
    }
    rootfs::prepare(&RootfsConfig {
        spec,
        rootfs: ctx.rootfs,
        bundle: ctx.bundle,
        user_ns,
        cgroup_ns: plan.has(CloneFlags::CLONE_NEWCGROUP),
    })?;
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).map_err(|source| InitError::Hostname {
            name: h.into(),
            source,
        })?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        // SAFETY: the pointer and length describe `d`'s bytes, valid for the call.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } < 0 {
            return Err(InitError::Domainname {
                name: d.into(),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    let mut start_state = Vec::new();
    if ctx.hooks_round_trip {
        ctx.chan.tell(&Msg::Hooks)?;
        let create_state;
        match ctx.chan.recv() {
            Ok(Some(Msg::HooksDone(c, s))) => {
                create_state = c.into_bytes();
                start_state = s.into_bytes();
            }
            Ok(other) => return Err(channel::unexpected(Some("HooksDone"), other).into()),
            Err(e) => return Err(ChannelError::Io(e).into()),
        }
        hooks::run(hooks, Phase::CreateContainer, &create_state)?;
    }
    rootfs::pivot(ctx.rootfs, ctx.no_pivot)?;
    if let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
        for (k, v) in sysctl {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            fs::write(&path, v).map_err(|source| InitError::Sysctl {
                key: k.clone(),
                source,
            })?;
        }
    }
    if let Some(console) = &ctx.console {
        let (slave, name) =
            terminal::setup_console(console.as_fd(), process.console_size().as_ref())?;
        rootfs::mount_console(Path::new(&name))?;
        terminal::make_controlling(&slave).map_err(terminal::ConsoleError::Controlling)?;
    } else {
        // A session of its own, as with a terminal (and as runc does): a
        // session whose leader lies outside the container's pid namespace
        // cannot be checkpointed by CRIU.
        nix::unistd::setsid().map_err(InitError::Setsid)?;
    }
    rootfs::finalize(spec)?;
    if let Some(linux) = spec.linux() {
        // Personality and memory policy; `process.execCPUAffinity` is not for
        // init (the spec), only for `exec`.
        crate::process::attrs::apply_container(linux)?;
    }
    pexec::apply_privileged(process)?;
    // The seccomp filter is loaded last, in `pexec::exec` (the order, and
    // why CAP_SYS_ADMIN may be kept until then, is documented there).
    let nnp = process.no_new_privileges().unwrap_or(false);
    let prepared = pexec::drop_privileges(process, user_ns, ctx.seccomp.is_some() && !nnp)?;
    ctx.chan.tell(&Msg::Ready)?;
    match &ctx.fifo {
        Some((fifo, status)) => {
            wait_for_start(fifo)?;
            // From here on nobody reads the sync channel: failures go to
            // `start` through the status fifo.
            let report = pexec::Report::Status(status.as_fd());
            let r = after_start(ctx, hooks, &start_state, &prepared, report);
            let e = r.unwrap_err();
            let _ = nix::unistd::write(status, e.to_string().as_bytes());
            return Err(e);
        }
        None => ctx.chan.expect(Msg::Start)?,
    }
    let report = pexec::Report::Channel(ctx.chan.as_fd());
    after_start(ctx, hooks, &start_state, &prepared, report).map(|_| ())
}

/// Blocks until `start` writes its byte into the exec fifo.
fn wait_for_start(fifo: &OwnedFd) -> Result<(), InitError> {
    let mut f = fs::File::from(fifo.try_clone().map_err(InitError::Fifo)?);
    let mut b = [0u8; 1];
    loop {
        match f.read(&mut b) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(InitError::FifoClosed),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(InitError::Fifo(e)),
        }
    }
}

/// startContainer hooks, then the workload. Returns only on failure.
fn after_start(
    ctx: &InitCtx<'_>,
    hooks: Option<&oci_spec::runtime::Hooks>,
    start_state: &[u8],
    prepared: &pexec::Prepared,
    report: pexec::Report<'_>,
) -> Result<std::convert::Infallible, InitError> {
    if ctx.hooks_round_trip {
        // A startContainer hook without `env` gets the process's, as in runc.
        let env = prepared.env();
        hooks::run_with_env(hooks, Phase::StartContainer, start_state, Some(&env))?;
    }
    pexec::exec(prepared, ctx.preserve_fds, ctx.seccomp, report)
}

/// A fresh session keyring per container, so containers do not share the
/// host's keys (runc's default; `--no-new-keyring` skips it).
fn join_session_keyring(id: &str) -> Result<(), InitError> {
    // Container ids hold no NUL (`check_id`); refused all the same.
    let name = std::ffi::CString::new(format!("_ses.{id}")).map_err(|e| {
        InitError::Keyring(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    })?;
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, name) reads the valid C string.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, 1, name.as_ptr()) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        // Kernels without keys, or seccomp'd hosts: nothing to isolate.
        if e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(InitError::Keyring(e));
        }
    }
    Ok(())
}
