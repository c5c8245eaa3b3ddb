//! start, kill, delete, pause, resume, ps, update and stats of an
//! existing container: the state transitions both modes share, with the
//! mode's part asked of its backend.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;

use super::{Container, Error};
use crate::hooks::{self, Phase};
use crate::state::Status;
use crate::{spec, utils};

pub(crate) fn wrong(c: &Container, status: Status, msg: &'static str) -> Error {
    Error::WrongState {
        id: c.id().into(),
        status,
        msg,
    }
}

/// A signal given neither as a known name nor as a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal {0:?}")]
pub struct UnknownSignal(pub String);

/// Starts a created container (through its backend), then runs the
/// poststart hooks.
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
    c.backend().start(&c, None)?;
    c.state.status = Status::Running;
    c.save()?;
    run_hooks_from_bundle(&c, Phase::Poststart, Status::Running)
}

pub(crate) fn run_hooks_from_bundle(
    c: &Container,
    phase: Phase,
    status: Status,
) -> Result<(), Error> {
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
    hooks::run(spec.hooks().as_ref(), phase, &state).map_err(|source| Error::Hook {
        id: c.id().into(),
        source,
    })
}

/// Parses a signal given as a name (`KILL`, `SIGKILL`) or a number. `0`
/// is `None`: no signal, only the check that the process exists (kill(2)).
pub fn parse_signal(s: &str) -> Result<Option<Signal>, UnknownSignal> {
    if let Ok(n) = s.parse::<i32>() {
        if n == 0 {
            return Ok(None);
        }
        return Signal::try_from(n)
            .map(Some)
            .map_err(|_| UnknownSignal(s.into()));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map(Some)
        .map_err(|_| UnknownSignal(s.into()))
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
    c.backend().signal(&c, sig, all)
}

/// Sends `sig` to every process in the container's cgroup (thawing a paused
/// container so the signal is delivered).
pub fn kill_all(c: &Container, sig: Signal) -> Result<(), Error> {
    let cg = c.cgroup()?;
    let frozen = cg.is_frozen().unwrap_or(false);
    for pid in cg.pids().map_err(|e| c.cgroup_error(e))? {
        let _ = send_signal(Pid::from_raw(pid), sig);
    }
    if frozen {
        cg.thaw().map_err(|e| c.cgroup_error(e))?;
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
        .map_err(|e| Error::io(id, "", Some(&c.dir), e))?;
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
        // one): what it holds outside is known from the state alone.
        c.backend().release_unledgered(&c);
    }
    if let Some(cg) = c.recorded_cgroup()? {
        // Processes outside a private pid namespace survive their init.
        if !c.backend().own_pid_ns() && !cg.pids().unwrap_or_default().is_empty() {
            stop_all(&c)?;
        }
        cg.destroy().map_err(|e| c.cgroup_error(e))?;
        tracing::debug!("delete {id}: cgroup removed");
    }
    // A pod member's guest container goes before its slot is freed.
    c.backend().release(&c)?;
    reclaim(&c, &owned)?;
    let hooks_result = if c.state.problem.is_none() {
        run_hooks_from_bundle(&c, Phase::Poststop, Status::Stopped)
    } else {
        Ok(())
    };
    crate::ledger::remove_state_dir(&c.dir).map_err(|e| Error::io(id, "", Some(&c.dir), e))?;
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
    super::create::release_owned(c.id(), owned, Some(&c.state.cgroup_path))
}

/// SIGKILLs everything in the container and waits until it is gone.
fn stop_all(c: &Container) -> Result<(), Error> {
    c.backend().stop(c)
}

/// SIGKILLs the main process and everything in the container's cgroup,
/// and the processes `also` (start time known), then waits until all are
/// gone: how both modes stop.
pub fn stop_processes(c: &Container, also: Option<(i32, u64)>) -> Result<(), Error> {
    let main = (c.state.pid, c.state.pid_start_time);
    // Checked first: never signal a recycled pid (or pid 0, our group).
    let alive = |(pid, start): (i32, u64)| start != 0 && utils::process_alive(pid, start);
    for p in [Some(main), also]
        .into_iter()
        .flatten()
        .filter(|p| alive(*p))
    {
        let _ = send_signal(Pid::from_raw(p.0), Signal::SIGKILL);
    }
    let cg = c.recorded_cgroup()?;
    if cg.is_some() {
        kill_all(c, Signal::SIGKILL)?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut nap = Duration::from_micros(100);
    loop {
        let gone = [Some(main), also].into_iter().flatten().all(|p| !alive(p));
        let left: Vec<i32> = cg
            .as_ref()
            .and_then(|cg| cg.pids().ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| utils::proc_start_time(*p).is_some_and(|(_, zombie)| !zombie))
            .collect();
        if gone && left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Undying {
                id: c.id().into(),
                pids: left,
            });
        }
        for p in left.iter().copied().chain(
            [Some(main), also]
                .into_iter()
                .flatten()
                .filter(|p| alive(*p))
                .map(|p| p.0),
        ) {
            let _ = send_signal(Pid::from_raw(p), Signal::SIGKILL);
        }
        if let Some(cg) = cg.as_ref().filter(|cg| cg.is_frozen().unwrap_or(false)) {
            let _ = cg.thaw();
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
    c.backend().pause(&c)?;
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
    c.backend().resume(&c)?;
    c.state.status = Status::Running;
    c.save()
}

/// What `ps` prints for the container: `format` is `table` or `json`,
/// `args` are ps(1)'s options (container mode).
pub fn ps(root: &Path, id: &str, format: &str, args: &[String]) -> Result<String, Error> {
    let c = Container::load(root, id)?;
    c.backend().ps(c, format, args)
}

/// Applies new resource limits to a running container.
pub fn update(root: &Path, id: &str, res: &oci_spec::runtime::LinuxResources) -> Result<(), Error> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if status == Status::Stopped {
        return Err(wrong(&c, status, "cannot update its resources"));
    }
    c.backend().check_update(&c, res)?;
    c.cgroup()?.apply(res, false).map_err(|e| c.cgroup_error(e))
}

/// Resource usage of a container that runs; `None` once it has stopped.
pub fn stats(root: &Path, id: &str) -> Result<Option<serde_json::Value>, Error> {
    let c = Container::load(root, id)?;
    if c.status() == Status::Stopped {
        return Ok(None);
    }
    c.backend().stats(&c).map(Some)
}
