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
use crate::process::channel::{Channel, Msg};
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

fn exit_with(chan: &Channel, r: Result<(), String>) -> ! {
    if let Err(msg) = r {
        let _ = chan.send(&Msg::Error(msg));
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
        ctx.plan
            .join_all()
            .map_err(|e| format!("linux.namespaces: setns: {e}"))?;
        ctx.chan.expect(Msg::Go)?;
        if ctx.plan.new.contains(CloneFlags::CLONE_NEWCGROUP) {
            nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| format!("linux.namespaces: unshare cgroup: {e}"))?;
        }
        Ok(())
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

/// `/proc/self/timens_offsets` opened for writing and the lines to write to
/// it once the time namespace exists, when the spec sets offsets.
fn time_offsets_file(spec: &Spec) -> Result<Option<(fs::File, String)>, String> {
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
        .map_err(|e| format!("linux.timeOffsets: open /proc/self/timens_offsets: {e}"))?;
    Ok(Some((file, text)))
}

/// Returns Ok(true) in the process that goes on as init.
fn stage_inner(ctx: &InitCtx<'_>) -> Result<bool, String> {
    let plan = ctx.plan;
    // Opened with vessel's own credentials, before any user namespace: the
    // kernel checks CAP_SYS_TIME against the opener's credentials, and once
    // in a new user namespace this process may no longer open its own proc
    // files (they stay owned by the host's root).
    let offsets = time_offsets_file(ctx.spec)?;
    plan.join_all()
        .map_err(|e| format!("linux.namespaces: setns: {e}"))?;
    if plan.new.contains(CloneFlags::CLONE_NEWUSER) {
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("linux.namespaces: unshare user: {e}"))?;
        ctx.chan.send(&Msg::UserNs).map_err(|e| e.to_string())?;
    }
    ctx.chan.expect(Msg::Go)?;
    if plan.has(CloneFlags::CLONE_NEWUSER) {
        // Become root of the user namespace (0 must be mapped).
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(|e| format!("linux.gidMappings: setresgid(0) in the user namespace: {e}"))?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(|e| format!("linux.uidMappings: setresuid(0) in the user namespace: {e}"))?;
    }
    plan.unshare_rest()
        .map_err(|e| format!("linux.namespaces: unshare: {e}"))?;
    if let Some((mut file, text)) = offsets {
        // The offsets apply to the new time namespace, which no process has
        // entered yet: init is forked below.
        file.write_all(text.as_bytes())
            .map_err(|e| format!("linux.timeOffsets: writing {text:?}: {e}"))?;
    }
    if !plan.needs_fork() {
        ctx.chan
            .send(&Msg::Pid(std::process::id() as i32))
            .map_err(|e| e.to_string())?;
        return Ok(true);
    }
    // Init must not speak on the shared channel before this stage has sent
    // its pid: it waits for the stage's end of this pipe to close.
    let (gate_r, gate_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: vessel is single-threaded here (the parent forked us from its
    // only thread), so the child may keep running Rust code.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork init: {e}"))? {
        ForkResult::Child => {
            drop(gate_w);
            let mut b = [0u8; 1];
            while let Err(nix::errno::Errno::EINTR) = nix::unistd::read(gate_r.as_raw_fd(), &mut b)
            {
            }
            Ok(true)
        }
        ForkResult::Parent { child } => {
            ctx.chan
                .send(&Msg::Pid(child.as_raw()))
                .map_err(|e| e.to_string())?;
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

fn init_inner(ctx: &InitCtx<'_>) -> Result<(), String> {
    let spec = ctx.spec;
    let process = spec.process().as_ref().ok_or("process: missing")?;
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
    })
    .map_err(|e| e.to_string())?;
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).map_err(|e| format!("hostname {h:?}: {e}"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        // SAFETY: the pointer and length describe `d`'s bytes, valid for the call.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } < 0 {
            return Err(format!(
                "domainname {d:?}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    let mut start_state = Vec::new();
    if ctx.hooks_round_trip {
        ctx.chan.send(&Msg::Hooks).map_err(|e| e.to_string())?;
        let create_state;
        match ctx.chan.recv() {
            Ok(Some(Msg::HooksDone(c, s))) => {
                create_state = c.into_bytes();
                start_state = s.into_bytes();
            }
            Ok(other) => return Err(format!("protocol error: expected HooksDone, got {other:?}")),
            Err(e) => return Err(e.to_string()),
        }
        hooks::run(hooks, Phase::CreateContainer, &create_state).map_err(|e| e.to_string())?;
    }
    rootfs::pivot(ctx.rootfs, ctx.no_pivot).map_err(|e| e.to_string())?;
    if let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
        for (k, v) in sysctl {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            fs::write(&path, v).map_err(|e| format!("linux.sysctl.{k}: {e}"))?;
        }
    }
    if let Some(console) = &ctx.console {
        let (slave, name) =
            terminal::setup_console(console.as_fd(), process.console_size().as_ref())?;
        rootfs::mount_console(Path::new(&name)).map_err(|e| e.to_string())?;
        terminal::make_controlling(&slave).map_err(|e| format!("process.terminal: {e}"))?;
    } else {
        // A session of its own, as with a terminal (and as runc does): a
        // session whose leader lies outside the container's pid namespace
        // cannot be checkpointed by CRIU.
        nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    }
    rootfs::finalize(spec).map_err(|e| e.to_string())?;
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
    ctx.chan.send(&Msg::Ready).map_err(|e| e.to_string())?;
    match &ctx.fifo {
        Some((fifo, status)) => {
            wait_for_start(fifo)?;
            // From here on nobody reads the sync channel: failures go to
            // `start` through the status fifo.
            let report = pexec::Report::Status(status.as_fd());
            let r = after_start(ctx, hooks, &start_state, &prepared, report);
            let msg = r.unwrap_err();
            let _ = nix::unistd::write(status, msg.as_bytes());
            return Err(msg);
        }
        None => ctx.chan.expect(Msg::Start)?,
    }
    let report = pexec::Report::Channel(ctx.chan.as_fd());
    after_start(ctx, hooks, &start_state, &prepared, report).map(|_| ())
}

/// Blocks until `start` writes its byte into the exec fifo.
fn wait_for_start(fifo: &OwnedFd) -> Result<(), String> {
    let mut f = fs::File::from(fifo.try_clone().map_err(|e| e.to_string())?);
    let mut b = [0u8; 1];
    loop {
        match f.read(&mut b) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err("exec fifo closed before start".into()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("exec fifo: {e}")),
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
) -> Result<std::convert::Infallible, String> {
    if ctx.hooks_round_trip {
        // A startContainer hook without `env` gets the process's, as in runc.
        let env = prepared.env();
        hooks::run_with_env(hooks, Phase::StartContainer, start_state, Some(&env))
            .map_err(|e| e.to_string())?;
    }
    pexec::exec(prepared, ctx.preserve_fds, ctx.seccomp, report)
}

/// A fresh session keyring per container, so containers do not share the
/// host's keys (runc's default; `--no-new-keyring` skips it).
fn join_session_keyring(id: &str) -> Result<(), String> {
    let name = std::ffi::CString::new(format!("_ses.{id}")).map_err(|e| e.to_string())?;
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, name) reads the valid C string.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, 1, name.as_ptr()) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        // Kernels without keys, or seccomp'd hosts: nothing to isolate.
        if e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(format!("join session keyring: {e}"));
        }
    }
    Ok(())
}
