//! The guest side: when the static vessel binary is PID 1 of a VM, it is
//! the agent, and this runner makes the agent's processes real containers
//! by running vessel's own container code in the guest. The host's
//! adapted config.json becomes a bundle in the guest; creating the
//! container, exec and ps run in helper processes ([`super::guest_helper`])
//! that report typed results, and the library's `start` and `kill`, which
//! fork nothing, run in the agent's own process. Namespaces, mounts, users,
//! env, cwd, rlimits, capabilities and seccomp apply inside the VM exactly
//! as on a host.

use std::fs::{self, File};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use oci_spec::runtime::Process;
use vessel_vm::agent::guest::{mount_rootfs, GuestOptions, ProcessRunner, Spawned};
use vessel_vm::agent::{GuestFileKind, RunProcess};
use vessel_vm::{Error, Result};

use super::guest_helper::{self, HelperReply, HelperRequest};
use super::guest_spec::GUEST_ROOTFS;

mod members;

/// State root of the guest's vessel.
const GUEST_STATE: &str = "/run/vessel/state";
/// Where bundles are written in the guest.
const GUEST_BUNDLES: &str = "/run/vessel/bundles";

/// Whether this process is one of the guest's own roles, which the CLI
/// hands to [`run_agent`] before parsing arguments: PID 1 of a vessel guest
/// (the kernel runs the initramfs's `/init`), or a helper the agent started
/// ([`guest_helper::HELPER_ARGV0`]).
pub fn is_guest_init() -> bool {
    is_pid1_init() || guest_helper::is_helper()
}

fn is_pid1_init() -> bool {
    std::process::id() == 1 && std::env::args_os().next().is_some_and(|a| a == "/init")
}

/// Whether this process runs in a vessel microVM: the guest init, or a
/// vessel command it started (pid 1 runs this very executable, which on a
/// host it never does).
pub fn in_guest() -> bool {
    is_pid1_init()
        || crate::state::exe_of(1).is_some_and(|e| Some(e) == crate::state::exe_of_self())
}

/// Runs the guest role [`is_guest_init`] found: the agent with the
/// container runner, or a helper; never returns.
pub fn run_agent() -> ! {
    if !is_pid1_init() {
        guest_helper::helper_main();
    }
    vessel_vm::agent::guest::run_with(GuestOptions {
        runner: Arc::new(ContainerRunner::default()),
        agent_name: format!("vessel {} (container runner)", env!("CARGO_PKG_VERSION")),
        ..GuestOptions::default()
    })
}

/// Runs each process as (part of) a container made by the guest's vessel.
#[derive(Debug, Default)]
pub struct ContainerRunner {
    /// Container id and bundle, once prepared.
    container: Mutex<Option<(String, PathBuf)>>,
    execs: AtomicU32,
    /// The pod's later containers (see `members`): bundle by id.
    members: Mutex<std::collections::HashMap<String, PathBuf>>,
}

fn agent_err(msg: impl std::fmt::Display) -> Error {
    Error::Agent(msg.to_string())
}

impl ContainerRunner {
    fn container(&self) -> Result<(String, PathBuf)> {
        self.container
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| agent_err("no container has been created in this guest"))
    }

    /// Runs a create or exec helper whose stdio the new process inherits;
    /// returns the process's pid and our ends of its stdio.
    fn spawn_with(
        &self,
        bundle: &Path,
        request: impl FnOnce(Option<PathBuf>) -> HelperRequest,
        terminal: bool,
    ) -> Result<Spawned> {
        let n = self.execs.fetch_add(1, Ordering::SeqCst);
        let console = bundle.join(format!("console-{n}.sock"));
        let listener = if terminal {
            let _ = fs::remove_file(&console);
            Some(UnixListener::bind(&console).map_err(|e| Error::io("console socket", e))?)
        } else {
            None
        };
        let request = request(terminal.then(|| console.clone()));
        let (stdin_r, stdin_w) = pipe()?;
        let (stdout_r, stdout_w) = pipe()?;
        let (stderr_r, stderr_w) = pipe()?;
        let reply = guest_helper::run(&request, |cmd| {
            if terminal {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
            } else {
                cmd.stdin(Stdio::from(stdin_r))
                    .stdout(Stdio::from(stdout_w))
                    .stderr(Stdio::from(stderr_w));
            }
        })
        .map_err(agent_err)?;
        let HelperReply::Started { pid } = reply else {
            return Err(agent_err(format!("unexpected helper reply {reply:?}")));
        };
        if let Some(listener) = listener {
            let master = accept_master(&listener, Duration::from_secs(10))?;
            let _ = fs::remove_file(&console);
            let file = File::from(master);
            let clone = |f: &File| f.try_clone().map_err(|e| Error::io("dup pty master", e));
            return Ok(Spawned {
                pid,
                stdin: Some(clone(&file)?),
                stdout: Some(clone(&file)?),
                stderr: None,
                terminal: Some(file),
            });
        }
        Ok(Spawned {
            pid,
            stdin: Some(File::from(stdin_w)),
            stdout: Some(File::from(stdout_r)),
            stderr: Some(File::from(stderr_r)),
            terminal: None,
        })
    }
}

impl ProcessRunner for ContainerRunner {
    fn prepare(&self, request: &RunProcess) -> Result<()> {
        let config = request
            .config
            .as_ref()
            .ok_or_else(|| agent_err("the container runner needs an OCI config"))?;
        let id = request
            .container_id
            .clone()
            .ok_or_else(|| agent_err("the container runner needs a container id"))?;
        let rootfs = request
            .rootfs
            .as_ref()
            .ok_or_else(|| agent_err("the container runner needs a root filesystem"))?;
        mount_rootfs(rootfs, Path::new(GUEST_ROOTFS), Duration::from_secs(20))?;
        if let Some(net) = &request.network {
            // Loopback comes up even without interfaces.
            vessel_vm::net::configure(net)?;
        }
        for f in &request.files {
            let path = Path::new(&f.path);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| Error::io(f.path.clone(), e))?;
            }
            match &f.kind {
                GuestFileKind::Dir => {
                    fs::create_dir_all(path).map_err(|e| Error::io(f.path.clone(), e))?
                }
                GuestFileKind::File { base64 } => {
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(base64)
                        .map_err(|e| agent_err(format!("{}: {e}", f.path)))?;
                    fs::write(path, data).map_err(|e| Error::io(f.path.clone(), e))?
                }
                GuestFileKind::Symlink { target } => std::os::unix::fs::symlink(target, path)
                    .map_err(|e| Error::io(f.path.clone(), e))?,
            }
            if !matches!(f.kind, GuestFileKind::Symlink { .. }) {
                fs::set_permissions(path, fs::Permissions::from_mode(f.mode))
                    .map_err(|e| Error::io(f.path.clone(), e))?;
            }
        }
        let bundle = Path::new(GUEST_BUNDLES).join(&id);
        fs::create_dir_all(&bundle).map_err(|e| Error::io(bundle.display().to_string(), e))?;
        let json = serde_json::to_vec(config).map_err(Error::BadMessage)?;
        fs::write(bundle.join("config.json"), json)
            .map_err(|e| Error::io("writing config.json", e))?;
        *self.container.lock().unwrap_or_else(|p| p.into_inner()) = Some((id, bundle));
        Ok(())
    }

    fn spawn(&self, process: &Process) -> Result<Spawned> {
        let (id, bundle) = self.container()?;
        let b = bundle.clone();
        self.spawn_with(
            &bundle,
            |console_socket| HelperRequest::Create {
                root: GUEST_STATE.into(),
                id,
                bundle: b,
                console_socket,
            },
            process.terminal().unwrap_or(false),
        )
    }

    fn start(&self) -> Result<()> {
        // In this process: starting forks nothing (the guest config has no
        // poststart hooks), and a vessel exec under emulation costs a
        // third of a second.
        let (id, _) = self.container()?;
        crate::container::start(Path::new(GUEST_STATE), &id).map_err(agent_err)
    }

    fn exec(&self, process: &Process) -> Result<Spawned> {
        let (id, bundle) = self.container()?;
        let n = self.execs.fetch_add(1, Ordering::SeqCst);
        let pid_file = bundle.join(format!("exec-{n}.pid"));
        self.spawn_with(
            &bundle,
            |console_socket| HelperRequest::Exec {
                root: GUEST_STATE.into(),
                id,
                process: Box::new(process.clone()),
                console_socket,
                pid_file,
            },
            process.terminal().unwrap_or(false),
        )
    }

    fn signal_all(&self, signal: i32) -> Result<()> {
        let (id, _) = self.container()?;
        let sig = nix::sys::signal::Signal::try_from(signal)
            .map_err(|_| agent_err(format!("invalid signal number {signal}")))?;
        crate::container::kill(Path::new(GUEST_STATE), &id, Some(sig), true).map_err(agent_err)
    }

    fn create_member(
        &self,
        request: &RunProcess,
        sandbox: &str,
        join: &[String],
    ) -> Result<Spawned> {
        self.create_member_in(request, sandbox, join)
    }

    fn start_in(&self, container: &str) -> Result<()> {
        self.start_member(container)
    }

    fn exec_in(&self, container: &str, process: &Process) -> Result<Spawned> {
        self.exec_member(container, process)
    }

    fn signal_all_in(&self, container: &str, signal: i32) -> Result<()> {
        self.signal_member(container, signal)
    }

    fn ps_in(&self, container: &str, format: &str) -> Result<String> {
        self.ps_member(container, format)
    }

    fn delete_member(&self, container: &str) -> Result<()> {
        self.delete_member_in(container)
    }

    fn ps(&self, format: &str) -> Result<String> {
        let (id, _) = self.container()?;
        helper_ps(id, format)
    }
}

/// Lists the processes of guest container `id` through a ps helper.
fn helper_ps(id: String, format: &str) -> Result<String> {
    let request = HelperRequest::Ps {
        root: GUEST_STATE.into(),
        id,
        format: format.to_string(),
    };
    let reply = guest_helper::run(&request, |cmd| {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    })
    .map_err(agent_err)?;
    match reply {
        HelperReply::Ps { output } => Ok(output),
        other => Err(agent_err(format!("unexpected helper reply {other:?}"))),
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e.into()))
}

fn accept_master(listener: &UnixListener, timeout: Duration) -> Result<OwnedFd> {
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("console socket", e))?;
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                return crate::terminal::recv_fd(conn.as_fd())
                    .map_err(|e| Error::io("receiving the pty master", e))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(Error::io("console socket", e)),
        }
    }
}
