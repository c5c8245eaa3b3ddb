//! start, kill, ps and teardown of a vm-mode container, through its
//! supervisor.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::control::{self, Request};
use crate::container::{err, Container, Error};
use crate::utils;

/// Has the guest start the created workload.
pub fn start(c: &Container) -> Result<(), Error> {
    control::request(&c.dir, &Request::Start, Some(Duration::from_secs(120)))
        .map(|_| ())
        .map_err(|e| err(c.id(), format!("start: {e}")))
}

/// Signals the workload, or with `all` every process of the container.
pub fn signal(c: &Container, sig: Signal, all: bool) -> Result<(), Error> {
    control::request(
        &c.dir,
        &Request::Signal {
            signal: sig as i32,
            all,
        },
        Some(Duration::from_secs(30)),
    )
    .map(|_| ())
    .map_err(|e| err(c.id(), format!("kill: {e}")))
}

/// What `vessel ps` prints in the guest.
pub fn ps(c: &Container, format: &str) -> Result<String, Error> {
    let (reply, _) = control::request(
        &c.dir,
        &Request::Ps {
            format: format.into(),
        },
        Some(Duration::from_secs(60)),
    )
    .map_err(|e| err(c.id(), format!("ps: {e}")))?;
    Ok(reply.output.unwrap_or_default())
}

/// Kills the supervisor and the VMM and waits until both are gone.
pub fn stop(c: &Container) -> Result<(), Error> {
    // The VMM only while it is the process recorded (never a recycled pid).
    let vmm = c
        .state
        .vm
        .as_ref()
        .map(|v| (v.vmm_pid, v.vmm_start_time))
        .filter(|&(pid, start)| start != 0 && utils::process_alive(pid, start));
    if utils::process_alive(c.state.pid, c.state.pid_start_time) {
        let _ = kill(Pid::from_raw(c.state.pid), Signal::SIGKILL);
    }
    let cg = c.recorded_cgroup()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sup_gone = !utils::process_alive(c.state.pid, c.state.pid_start_time);
        let vmm_gone = vmm.is_none_or(|(pid, start)| !utils::process_alive(pid, start));
        // The VMM is in the container's cgroup (and dies with the
        // supervisor); whatever is left there is killed.
        let left: Vec<i32> = cg
            .as_ref()
            .and_then(|cg| cg.pids().ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| utils::proc_start_time(*p).is_some_and(|(_, zombie)| !zombie))
            .collect();
        if sup_gone && vmm_gone && left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(err(
                c.id(),
                format!("the VM's processes {left:?} did not die after SIGKILL"),
            ));
        }
        for p in &left {
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        if let Some((pid, _)) = vmm.filter(|&(p, s)| utils::process_alive(p, s)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(cg) = cg.as_ref().filter(|cg| cg.is_frozen().unwrap_or(false)) {
            let _ = cg.thaw();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Removes what a vm-mode container has outside its state directory.
pub fn release(c: &Container) {
    if let Some(vm) = &c.state.vm {
        if !vm.scratch.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&vm.scratch);
        }
        if let Some(net) = &vm.net {
            if let Err(e) = vessel_vm::net::detach(net) {
                tracing::warn!("container {:?}: {e}", c.id());
            }
        }
    }
}
