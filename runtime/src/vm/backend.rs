//! [`VmBackend`]: start, signal, ps, exec and teardown of a vm-mode
//! container, through its supervisor's control socket.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use oci_spec::runtime::LinuxResources;

use super::control::{self, Request};
use super::VmError;
use crate::container::{stop_processes, Container, Error, ExecOptions, ExecPlan};
use crate::isolation::Backend;
use crate::ledger::{Owned, ProcRef, Role};
use crate::process::channel::Channel;
use crate::state::{Status, VmState};
use crate::utils;

/// The [`Backend`] of vm mode, with what the state records of the VM.
#[derive(Debug, Clone)]
pub struct VmBackend(pub VmState);

/// What a ledger tells of a VM whose `state.json` is missing.
pub fn recovered_state(owned: &Owned) -> VmState {
    let vmm = owned
        .last(Role::Vmm)
        .unwrap_or(ProcRef { pid: 0, start: 0 });
    VmState {
        vmm_pid: vmm.pid,
        vmm_start_time: vmm.start,
        scratch: owned.files.first().cloned().unwrap_or_default(),
        net: owned.nets.last().cloned(),
        ..VmState::default()
    }
}

impl Backend for VmBackend {
    fn live_status(&self, recorded: Status, _dir: &Path, _pid: i32) -> Status {
        // No exec fifo: the supervisor waits for `start` itself.
        match recorded {
            Status::Creating => Status::Created,
            s => s,
        }
    }

    fn own_pid_ns(&self) -> bool {
        // Everything runs in the VM, which dies with the supervisor.
        true
    }

    fn start(&self, c: &Container, _sync: Option<&Channel>) -> Result<(), Error> {
        control::request(&c.dir, &Request::Start, Some(Duration::from_secs(120)))
            .map(|_| ())
            .map_err(|msg| request_error(c.id(), "start", msg))
    }

    fn signal(&self, c: &Container, sig: Signal, all: bool) -> Result<(), Error> {
        if c.status() == Status::Stopped {
            // Only `--all` gets here: the guest's processes ended with the
            // VM and its supervisor is gone. runc's `kill --all` of a
            // stopped container succeeds, and containerd retries any other
            // answer for ever (a VM pod's StopPodSandbox never returned).
            return Ok(());
        }
        control::request(
            &c.dir,
            &Request::Signal {
                signal: sig as i32,
                all,
            },
            Some(Duration::from_secs(30)),
        )
        .map(|_| ())
        .map_err(|msg| request_error(c.id(), "kill", msg))
    }

    fn stop(&self, c: &Container) -> Result<(), Error> {
        // The VMM is in the container's cgroup and dies with the
        // supervisor; signalled only while it is the process recorded.
        let vmm = (self.0.vmm_pid, self.0.vmm_start_time);
        stop_processes(c, Some(vmm))
    }

    fn release_unledgered(&self, c: &Container) {
        if !self.0.scratch.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0.scratch);
        }
        if let Some(net) = &self.0.net {
            if let Err(e) = vessel_vm::net::detach(net) {
                tracing::warn!("container {:?}: {e}", c.id());
            }
        }
    }

    fn ps(&self, c: Container, format: &str, _args: &[String]) -> Result<String, Error> {
        // The processes live in the guest: its vessel lists them.
        let (reply, _) = control::request(
            &c.dir,
            &Request::Ps {
                format: format.into(),
            },
            Some(Duration::from_secs(60)),
        )
        .map_err(|msg| request_error(c.id(), "ps", msg))?;
        Ok(reply.output.unwrap_or_default())
    }

    fn exec(&self, c: Container, opts: &ExecOptions, _plan: ExecPlan) -> Result<i32, Error> {
        let id = opts.id.as_str();
        let dir = c.dir.clone();
        // Do not hold the container's lock while the process runs.
        drop(c);
        if opts.preserve_fds > 0 {
            return Err(Error::vm(id, VmError::PreserveFds));
        }
        if opts.detach {
            let pid =
                super::exec::spawn_detached(&dir, &opts.process, opts.console_socket.as_deref())
                    .map_err(|e| Error::vm(id, VmError::Exec { cause: e }))?;
            if let Some(p) = &opts.pid_file {
                utils::write_atomic(p, pid.to_string().as_bytes())
                    .map_err(|e| Error::io(id, "--pid-file", Some(p), e))?;
            }
            return Ok(0);
        }
        if let Some(p) = &opts.pid_file {
            // The relay (us) stands for the process on the host.
            utils::write_atomic(p, std::process::id().to_string().as_bytes())
                .map_err(|e| Error::io(id, "--pid-file", Some(p), e))?;
        }
        let ended = super::exec::relay(&dir, &opts.process, opts.console_socket.as_deref(), None)
            .map_err(|e| Error::vm(id, VmError::Exec { cause: e }))?;
        Ok(ended.code)
    }

    fn check_update(&self, c: &Container, res: &LinuxResources) -> Result<(), Error> {
        if res.pids().is_some() || res.devices().is_some() {
            // They apply in the guest, fixed at create; on the host they
            // would bind the VMM's threads and devices instead.
            return Err(Error::GuestOnlyUpdate { id: c.id().into() });
        }
        Ok(())
    }
}

fn request_error(id: &str, what: &'static str, cause: control::ControlError) -> Error {
    Error::vm(id, VmError::Request { what, cause })
}
