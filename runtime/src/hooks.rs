//! OCI hooks: each runs with the container state on stdin, its own args and
//! env, and is killed when its timeout passes.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};

/// A hook that failed, named by its phase and index.
#[derive(Debug, thiserror::Error)]
#[error("hooks.{phase}[{index}] ({path}): {msg}")]
pub struct HookError {
    /// prestart, createRuntime, ...
    pub phase: &'static str,
    /// Position in its list.
    pub index: usize,
    /// The hook's path.
    pub path: String,
    /// What went wrong.
    pub msg: String,
}

/// The lifecycle points at which hooks run.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    /// Deprecated, runs with createRuntime.
    Prestart,
    /// In the runtime namespace after the namespaces exist.
    CreateRuntime,
    /// In the container namespace before pivot_root.
    CreateContainer,
    /// In the container before the user process.
    StartContainer,
    /// In the runtime namespace after start.
    Poststart,
    /// After the container is deleted.
    Poststop,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Prestart => "prestart",
            Phase::CreateRuntime => "createRuntime",
            Phase::CreateContainer => "createContainer",
            Phase::StartContainer => "startContainer",
            Phase::Poststart => "poststart",
            Phase::Poststop => "poststop",
        }
    }

    /// The hooks of this phase in `hooks`.
    pub fn of(self, hooks: &Hooks) -> &[Hook] {
        let list = match self {
            #[allow(deprecated)]
            Phase::Prestart => hooks.prestart(),
            Phase::CreateRuntime => hooks.create_runtime(),
            Phase::CreateContainer => hooks.create_container(),
            Phase::StartContainer => hooks.start_container(),
            Phase::Poststart => hooks.poststart(),
            Phase::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or(&[])
    }
}

/// Runs the hooks of `phase` in order, stopping at the first failure.
pub fn run(hooks: Option<&Hooks>, phase: Phase, state_json: &[u8]) -> Result<(), HookError> {
    let Some(hooks) = hooks else { return Ok(()) };
    for (index, hook) in phase.of(hooks).iter().enumerate() {
        run_one(hook, state_json).map_err(|msg| HookError {
            phase: phase.name(),
            index,
            path: hook.path().display().to_string(),
            msg,
        })?;
    }
    Ok(())
}

/// Runs every hook of `phase`, going on after failures; returns them all.
pub fn run_all(hooks: Option<&Hooks>, phase: Phase, state_json: &[u8]) -> Vec<HookError> {
    let Some(hooks) = hooks else {
        return Vec::new();
    };
    phase
        .of(hooks)
        .iter()
        .enumerate()
        .filter_map(|(index, hook)| {
            run_one(hook, state_json).err().map(|msg| HookError {
                phase: phase.name(),
                index,
                path: hook.path().display().to_string(),
                msg,
            })
        })
        .collect()
}

fn run_one(hook: &Hook, state_json: &[u8]) -> Result<(), String> {
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((argv0, rest)) = args.split_first() {
            cmd.arg0(argv0).args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().as_deref().unwrap_or(&[]) {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its stdin: EPIPE is not a failure.
        let _ = stdin.write_all(state_json);
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut nap = Duration::from_micros(200);
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(format!("exited with {status}")),
            None => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s", hook.timeout().unwrap_or(0)));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}
