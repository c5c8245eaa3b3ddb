//! OCI hooks: each runs with the container state on stdin, its own args and
//! env, and is killed when its timeout passes.
//!
//! As under runc, a hook's stdout and stderr are pipes vessel reads (shown
//! when the hook fails, logged at debug level otherwise): a hook writing
//! while vessel's own stdout or stderr is closed is not killed by SIGPIPE,
//! and a hook that leaves a daemon holding them open does not hold vessel.
//! A hook without `env` gets an empty environment (the spec), except a
//! `startContainer` hook, which gets the container process's (runc's
//! behaviour). The state's status is `creating` for prestart, createRuntime
//! and createContainer (they run inside the create operation, which the
//! spec's `created` says has finished; runc passes `creating`), `created`
//! for startContainer, `running` for poststart, `stopped` for poststop.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};

mod output;

/// A hook that failed, named by its phase and index.
#[derive(Debug, thiserror::Error)]
#[error("hooks.{phase}[{index}] ({path}): {failure}")]
pub struct HookError {
    /// prestart, createRuntime, ...
    pub phase: &'static str,
    /// Position in its list.
    pub index: usize,
    /// The hook's path.
    pub path: String,
    /// What went wrong.
    #[source]
    pub failure: HookFailure,
}

/// How one hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookFailure {
    /// It could not be started.
    #[error("cannot run: {0}")]
    Spawn(#[source] std::io::Error),
    /// Its stdio pipes could not be set up.
    #[error("its pipes: {0}")]
    Pipes(#[source] std::io::Error),
    /// It exited unsuccessfully; `output` is what it printed (with its
    /// separator), as the hook's own account of why.
    #[error("exited with {status}{output}")]
    Exit {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed.
        output: String,
    },
    /// It ran past `timeout`.
    #[error("timed out after {0}s")]
    TimedOut(i64),
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
    /// Every phase, in the order of the container's life.
    pub const ALL: [Phase; 6] = [
        Phase::Prestart,
        Phase::CreateRuntime,
        Phase::CreateContainer,
        Phase::StartContainer,
        Phase::Poststart,
        Phase::Poststop,
    ];

    /// The phase's name in config.json's `hooks`.
    pub fn name(self) -> &'static str {
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
    run_with_env(hooks, phase, state_json, None)
}

/// [`run`], with `default_env` for hooks that have no `env` of their own.
pub fn run_with_env(
    hooks: Option<&Hooks>,
    phase: Phase,
    state_json: &[u8],
    default_env: Option<&[String]>,
) -> Result<(), HookError> {
    let Some(hooks) = hooks else { return Ok(()) };
    for (index, hook) in phase.of(hooks).iter().enumerate() {
        run_one(hook, state_json, default_env).map_err(|failure| HookError {
            phase: phase.name(),
            index,
            path: hook.path().display().to_string(),
            failure,
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
            run_one(hook, state_json, None)
                .err()
                .map(|failure| HookError {
                    phase: phase.name(),
                    index,
                    path: hook.path().display().to_string(),
                    failure,
                })
        })
        .collect()
}

fn run_one(
    hook: &Hook,
    state_json: &[u8],
    default_env: Option<&[String]>,
) -> Result<(), HookFailure> {
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((argv0, rest)) = args.split_first() {
            cmd.arg0(argv0).args(rest);
        }
    }
    // The hook's own env, else none (the spec), except where the caller
    // gives a default (startContainer: the process's, as runc does).
    cmd.env_clear();
    for kv in hook.env().as_deref().or(default_env).unwrap_or(&[]) {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs between fork and exec and makes raw system
    // calls only (rt_sigaction, rt_sigprocmask, close_range).
    unsafe {
        cmd.pre_exec(|| {
            // A hook starts as a program started by a shell would: signals
            // at their defaults (SIGPIPE too, as under runc), nothing
            // blocked, and no descriptor of vessel's but its stdio.
            crate::process::exec::reset_signals()?;
            if libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) < 0
            {
                let e = std::io::Error::last_os_error();
                // Kernels before 5.11: descriptors stay as they are.
                if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOSYS)
                {
                    return Err(e);
                }
            }
            Ok(())
        })
    };
    let mut child = cmd.spawn().map_err(HookFailure::Spawn)?;
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let io = match output::Exchange::new(&mut child, state_json) {
        Ok(io) => io,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookFailure::Pipes(e));
        }
    };
    match io.run(&mut child, deadline) {
        Ok((status, out)) if status.success() => {
            if !out.is_empty() {
                tracing::debug!("hook {}: {out}", hook.path().display());
            }
            Ok(())
        }
        Ok((status, output)) => Err(HookFailure::Exit { status, output }),
        Err(output::TimedOut) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(HookFailure::TimedOut(hook.timeout().unwrap_or(0)))
        }
    }
}
