//! start, kill, delete, pause and resume: small state transitions on an
//! existing container.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;

use super::{err, Container, Error};
use crate::hooks::{self, Phase};
use crate::state::{Status, EXEC_FIFO, START_STATUS_FIFO};
use crate::{spec, utils};

fn wrong(c: &Container, status: Status, msg: &str) -> Error {
    Error::WrongState {
        id: c.id().into(),
        status,
        msg: msg.into(),
    }
}

/// Starts a created container: releases its init through the exec fifo,
/// then runs the poststart hooks.
pub fn start(root: &Path, id: &str) -> Result<(), Error> {
    let mut c = Container::load(root, id)?;
    let status = c.status();
    if status != Status::Created {
        return Err(wrong(
            &c,
            status,
            "cannot start a container that is not created",
        ));
    }
    if c.state.vm.is_some() {
        crate::vm::lifecycle::start(&c)?;
        c.state.status = Status::Running;
        c.save()?;
        return run_hooks_from_bundle(&c, Phase::Poststart, Status::Running);
    }
    let fifo = c.dir.join(EXEC_FIFO);
    let status_fifo = c.dir.join(START_STATUS_FIFO);
    // Opened before releasing init, so its verdict cannot be missed.
    let status_file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&status_fifo)
        .map_err(|e| err(id, format!("start: {}: {e}", status_fifo.display())))?;
    // Non-blocking: if init is gone there is no reader and open fails (ENXIO)
    // instead of hanging.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&fifo)
        .map_err(|e| err(id, format!("start: init is not waiting ({e})")))?;
    f.write_all(&[0])
        .map_err(|e| err(id, format!("start: {e}")))?;
    drop(f);
    let verdict = wait_for_exec(status_file).map_err(|e| err(id, format!("start: {e}")));
    let _ = fs::remove_file(&fifo);
    let _ = fs::remove_file(&status_fifo);
    if let Some(msg) = verdict? {
        return Err(err(id, msg));
    }
    c.state.status = Status::Running;
    c.save()?;
    run_hooks_from_bundle(&c, Phase::Poststart, Status::Running)
}

/// Waits until init has exec'd the workload (end-of-file on the status
/// fifo: init's descriptor closed on exec) or failed (its message).
fn wait_for_exec(f: fs::File) -> std::io::Result<Option<String>> {
    use std::io::Read;
    use std::os::fd::AsFd;
    let mut f = f;
    let mut msg = Vec::new();
    loop {
        let mut fds = [nix::poll::PollFd::new(
            f.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let mut buf = [0u8; 4096];
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => msg.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok((!msg.is_empty()).then(|| String::from_utf8_lossy(&msg).into_owned()))
}

fn run_hooks_from_bundle(c: &Container, phase: Phase, status: Status) -> Result<(), Error> {
    // Hooks are read from the bundle's config.json as it is now, like runc.
    let Ok(spec) = spec::load(&c.state.bundle) else {
        return Ok(());
    };
    if spec.hooks().as_ref().is_none_or(|h| phase.of(h).is_empty()) {
        return Ok(());
    }
    let state = c.state_json(status);
    if let Phase::Poststop = phase {
        // The spec: a failing poststop hook is a warning, the others still run.
        for e in hooks::run_all(spec.hooks().as_ref(), phase, &state) {
            tracing::warn!("container {:?}: {e}", c.id());
        }
        return Ok(());
    }
    hooks::run(spec.hooks().as_ref(), phase, &state).map_err(|e| err(c.id(), e))
}

/// Parses a signal given as a name (`KILL`, `SIGKILL`) or a number. `0`
/// is `None`: no signal, only the check that the process exists (kill(2)).
pub fn parse_signal(s: &str) -> Result<Option<Signal>, String> {
    if let Ok(n) = s.parse::<i32>() {
        if n == 0 {
            return Ok(None);
        }
        return Signal::try_from(n)
            .map(Some)
            .map_err(|_| format!("unknown signal {s:?}"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map(Some)
        .map_err(|_| format!("unknown signal {s:?}"))
}

/// Sends `sig` to the container's init, or to every process in its cgroup.
/// With no signal (`kill ID 0`), only checks that the container runs.
pub fn kill(root: &Path, id: &str, sig: Option<Signal>, all: bool) -> Result<(), Error> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if status == Status::Stopped && (!all || sig.is_none()) {
        return Err(wrong(&c, status, "container not running"));
    }
    let Some(sig) = sig else {
        // The status above already found the process alive (a recycled pid
        // does not count), as kill(2) with signal 0 would.
        return Ok(());
    };
    if c.state.vm.is_some() {
        if status == Status::Stopped {
            // Only `--all` gets here: the guest's processes ended with the
            // VM and its supervisor is gone. runc's `kill --all` of a
            // stopped container succeeds, and containerd retries any other
            // answer for ever (a VM pod's StopPodSandbox never returned).
            return Ok(());
        }
        return crate::vm::lifecycle::signal(&c, sig, all);
    }
    if all {
        return kill_all(&c, sig);
    }
    send_signal(Pid::from_raw(c.state.pid), sig).map_err(|e| err(id, format!("kill: {e}")))
}

/// Sends `sig` to every process in the container's cgroup (thawing a paused
/// container so the signal is delivered).
pub fn kill_all(c: &Container, sig: Signal) -> Result<(), Error> {
    let cg = c.cgroup()?;
    let frozen = cg.is_frozen().unwrap_or(false);
    for pid in cg.pids().map_err(|e| err(c.id(), e))? {
        let _ = send_signal(Pid::from_raw(pid), sig);
    }
    if frozen {
        cg.thaw().map_err(|e| err(c.id(), e))?;
    }
    Ok(())
}

/// Deletes a container: it must be stopped (or created, or `force`), then
/// everything it owns goes (what its state and its ledger name: processes,
/// cgroup, VM resources), the poststop hooks run, and its directory goes,
/// ledger last. A container whose `create` was killed, or whose state is
/// unreadable, is deleted from its ledger alone.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), Error> {
    let c = Container::load(root, id).inspect_err(|e| {
        if matches!(e, Error::NotFound(_)) {
            // A create killed before it claimed the id left only a
            // half-made directory under another name.
            crate::state::sweep_unclaimed(root);
        }
    })?;
    let status = c.status();
    // Read once: what the ledger names is released below.
    let owned = crate::ledger::Ledger::read(&c.dir)
        .map(crate::ledger::Owned::from_entries)
        .map_err(|e| err(id, format!("{}: {e}", c.dir.display())))?;
    if force || matches!(status, Status::Stopped | Status::Created | Status::Creating) {
        // linux.netDevices go back while the init's namespace still exists
        // (a refused delete below touches nothing).
        return_net_devices(&c, &owned);
    }
    match status {
        Status::Stopped => {}
        Status::Created | Status::Creating => stop_all(&c)?,
        _ if force => stop_all(&c)?,
        _ => {
            return Err(wrong(
                &c,
                status,
                "cannot delete a running container without --force",
            ))
        }
    }
    if owned.begin.is_none() {
        // A state directory without a ledger (made before vessel kept
        // one): its VM's scratch image and taps are known from the state.
        crate::vm::lifecycle::release(&c);
    }
    if let Some(cg) = c.recorded_cgroup()? {
        // Processes outside a private pid namespace survive their init.
        if !c.state.own_pid_ns && !cg.pids().unwrap_or_default().is_empty() {
            stop_all(&c)?;
        }
        cg.destroy().map_err(|e| err(id, e))?;
        tracing::debug!("delete {id}: cgroup removed");
    }
    reclaim(&c, &owned)?;
    let hooks_result = if c.state.problem.is_none() {
        run_hooks_from_bundle(&c, Phase::Poststop, Status::Stopped)
    } else {
        Ok(())
    };
    crate::ledger::remove_state_dir(&c.dir)
        .map_err(|e| err(id, format!("{}: {e}", c.dir.display())))?;
    if let Err(e) = hooks_result {
        // runc reports a failing poststop hook as a warning only.
        tracing::warn!("{e}");
    }
    Ok(())
}

/// Moves the container's `linux.netDevices` back to the host (see
/// [`crate::netdev::move_back`]).
fn return_net_devices(c: &Container, owned: &crate::ledger::Owned) {
    let init = crate::ledger::ProcRef::of(c.state.pid)
        .filter(|p| p.start == c.state.pid_start_time && c.state.pid > 0);
    crate::netdev::return_owned(owned, init);
}

/// Removes what the ledger names beyond the state's cgroup: a setup stage,
/// cgroups and files of a create killed half-way, a VM's scratch image and
/// taps.
fn reclaim(c: &Container, owned: &crate::ledger::Owned) -> Result<(), Error> {
    for (_, p) in &owned.processes {
        if p.alive() {
            let _ = send_signal(Pid::from_raw(p.pid), Signal::SIGKILL);
        }
    }
    for (path, systemd) in &owned.cgroups {
        if *path == c.state.cgroup_path {
            continue;
        }
        let cg = vessel_cgroups::Cgroup::open(&vessel_cgroups::CgroupOptions {
            cgroups_path: Some(path.clone()),
            systemd: *systemd,
            container_id: c.id().into(),
        })
        .map_err(|e| err(c.id(), e))?;
        for pid in cg.pids().unwrap_or_default() {
            let _ = send_signal(Pid::from_raw(pid), Signal::SIGKILL);
        }
        cg.destroy().map_err(|e| err(c.id(), e))?;
    }
    for f in &owned.files {
        match fs::remove_file(f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(err(c.id(), format!("{}: {e}", f.display())))
            }
            _ => {}
        }
    }
    for n in &owned.nets {
        vessel_vm::net::detach(n).map_err(|e| err(c.id(), e))?;
    }
    crate::intel_rdt::remove(&owned.intel_rdt).map_err(|e| err(c.id(), e))?;
    Ok(())
}

/// SIGKILLs everything in the container and waits until it is gone.
fn stop_all(c: &Container) -> Result<(), Error> {
    if c.state.vm.is_some() {
        return crate::vm::lifecycle::stop(c);
    }
    // Checked first: never signal a recycled pid (or pid 0, our group).
    if utils::process_alive(c.state.pid, c.state.pid_start_time) {
        let _ = send_signal(Pid::from_raw(c.state.pid), Signal::SIGKILL);
    }
    let cg = c.recorded_cgroup()?;
    if cg.is_some() {
        kill_all(c, Signal::SIGKILL)?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut nap = Duration::from_micros(100);
    loop {
        let init_gone = !utils::process_alive(c.state.pid, c.state.pid_start_time);
        let left: Vec<i32> = cg
            .as_ref()
            .and_then(|cg| cg.pids().ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| utils::proc_start_time(*p).is_some_and(|(_, zombie)| !zombie))
            .collect();
        if init_gone && left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(err(
                c.id(),
                format!("processes {left:?} did not die after SIGKILL"),
            ));
        }
        for p in &left {
            let _ = send_signal(Pid::from_raw(*p), Signal::SIGKILL);
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

/// Freezes a running container.
pub fn pause(root: &Path, id: &str) -> Result<(), Error> {
    let mut c = Container::load(root, id)?;
    let status = c.status();
    if status != Status::Running {
        return Err(wrong(
            &c,
            status,
            "cannot pause a container that is not running",
        ));
    }
    c.cgroup()?.freeze().map_err(|e| err(id, e))?;
    c.state.status = Status::Paused;
    c.save()
}

/// Thaws a paused container.
pub fn resume(root: &Path, id: &str) -> Result<(), Error> {
    let mut c = Container::load(root, id)?;
    let status = c.status();
    if status != Status::Paused {
        return Err(wrong(
            &c,
            status,
            "cannot resume a container that is not paused",
        ));
    }
    c.cgroup()?.thaw().map_err(|e| err(id, e))?;
    c.state.status = Status::Running;
    c.save()
}
