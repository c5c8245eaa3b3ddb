//! The Task service containerd calls (shim v2 over ttrpc) and the shim's
//! `start` and `delete` actions.
//!
//! One shim serves every container of one group: a container alone, or
//! all containers of a Kubernetes pod (grouped by the CRI's sandbox id
//! annotation, as the runc shim does).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use containerd_shim::api::Empty;
use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, ExecProcessRequest, KillRequest, PauseRequest, PidsRequest,
    PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest, StartResponse,
    StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest, WaitRequest,
    WaitResponse,
};
use containerd_shim::monitor::{monitor_subscribe, Subject, Subscription, Topic};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::oci::Options as RuncOptions;
use containerd_shim::protos::ttrpc;
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, ExitSignal, Flags, StartOpts, TtrpcContext};

use crate::cli::{ExecArgs, Vessel};
use crate::console::{self, ConsoleSocket};
use crate::error::ShimError;
use crate::events::Publisher;
use crate::io::{ProcessIo, StdioSpec};
use crate::options::ShimOptions;
use crate::process::{Process, Status};
use crate::{metrics, oom};

type TtrpcResult<T> = ttrpc::Result<T>;

/// The annotation by which the CRI groups a pod's containers.
const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

/// How long vessel gets to send a terminal after create or exec returned.
const CONSOLE_WAIT: Duration = Duration::from_secs(10);

/// How long Shutdown waits for a Start or Kill in flight to be answered.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);

/// The exit status recorded for an exec whose `vessel exec` failed (no
/// process ran; containerd reports the start's error, not this status).
const EXEC_NEVER_RAN: u32 = 255;

fn now() -> Timestamp {
    containerd_shim::util::timestamp().unwrap_or_default()
}

/// The exit of `pid` among the notifications `sub` collected, if any:
/// exits the shim saw while a process was being started, before the
/// process was in the table.
fn missed_exit(sub: &Subscription, pid: u32) -> Option<i32> {
    sub.rx.try_iter().find_map(|e| match e.subject {
        Subject::Pid(p) if p == pid as i32 => Some(e.exit_code),
        _ => None,
    })
}

fn read_pid(path: &Path) -> Result<u32, ShimError> {
    let s = std::fs::read_to_string(path).map_err(|e| ShimError::io(path, e))?;
    s.trim().parse().map_err(|_| {
        ShimError::io(
            path,
            std::io::Error::other(format!("not a pid: {:?}", s.trim())),
        )
    })
}

/// One container the shim runs.
#[derive(Debug)]
struct Container {
    bundle: PathBuf,
    vessel: Vessel,
    init: Process,
    execs: HashMap<String, Process>,
    rootfs: Option<PathBuf>,
}

impl Container {
    fn process(&self, exec_id: &str) -> Option<&Process> {
        if exec_id.is_empty() {
            Some(&self.init)
        } else {
            self.execs.get(exec_id)
        }
    }

    fn process_mut(&mut self, exec_id: &str) -> Option<&mut Process> {
        if exec_id.is_empty() {
            Some(&mut self.init)
        } else {
            self.execs.get_mut(exec_id)
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    containers: HashMap<String, Container>,
}

/// The state shared by the Task service's handlers and the exit watcher.
struct Shared {
    table: Mutex<Table>,
    /// Signalled on every recorded exit (for `Wait`).
    exited: Condvar,
    publisher: Publisher,
    namespace: String,
    exit: Arc<ExitSignal>,
    /// Start and Kill requests being served, and its change signal.
    in_flight: Mutex<usize>,
    idle: Condvar,
}

/// Counts a Start or Kill in flight until dropped. A VM's `vessel kill`
/// returns after the VM is gone, so containerd may already have seen the
/// exit, deleted the task and sent Shutdown: the shim must not exit
/// before answering the Kill (containerd's StopPodSandbox failed with
/// "ttrpc: closed").
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn new(s: &'a Shared) -> InFlight<'a> {
        *s.in_flight.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        InFlight(s)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut n = self.0.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        self.0.idle.notify_all();
    }
}

impl Shared {
    /// Waits (at most `limit`) until no Start or Kill is being served.
    fn wait_idle(&self, limit: Duration) {
        let n = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.idle.wait_timeout_while(n, limit, |n| *n > 0);
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the exit of `pid` if it is one of the shim's processes and
    /// publishes TaskExit.
    fn on_exit(&self, pid: u32, code: i32) {
        if pid == 0 {
            return;
        }
        let mut ev = None;
        {
            let mut t = self.lock();
            for (cid, c) in t.containers.iter_mut() {
                let p = std::iter::once(&mut c.init)
                    .chain(c.execs.values_mut())
                    .find(|p| p.pid == pid && p.exit.is_none());
                if let Some(p) = p {
                    let at = now();
                    p.set_exit(code as u32, at.clone());
                    ev = Some(TaskExit {
                        container_id: cid.clone(),
                        id: if p.exec_id.is_empty() {
                            cid.clone()
                        } else {
                            p.exec_id.clone()
                        },
                        pid,
                        exit_status: code as u32,
                        exited_at: MessageField::some(at),
                        ..Default::default()
                    });
                    break;
                }
            }
        }
        if let Some(ev) = ev {
            self.exited.notify_all();
            self.publisher.publish(ev);
        }
    }

    fn container<'a>(t: &'a mut Table, id: &str) -> Result<&'a mut Container, ShimError> {
        t.containers
            .get_mut(id)
            .ok_or_else(|| ShimError::NotFound(format!("container {id:?}")))
    }
}

/// The Task service.
#[derive(Clone)]
pub struct Service {
    shared: Arc<Shared>,
}

impl Service {
    fn new(namespace: String, publisher: Publisher, exit: Arc<ExitSignal>) -> Service {
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::default()),
            exited: Condvar::new(),
            in_flight: Mutex::new(0),
            idle: Condvar::new(),
            publisher,
            namespace,
            exit,
        });
        match monitor_subscribe(Topic::Pid) {
            Ok(sub) => {
                let s = shared.clone();
                std::thread::spawn(move || {
                    for e in sub.rx.iter() {
                        if let Subject::Pid(pid) = e.subject {
                            s.on_exit(pid as u32, e.exit_code);
                        }
                    }
                });
            }
            Err(e) => log::error!("subscribe to process exits: {e}"),
        }
        Service { shared }
    }

    fn do_create(&self, req: &CreateTaskRequest) -> Result<u32, ShimError> {
        let id = req.id.as_str();
        if id.is_empty() || id.contains('/') {
            return Err(ShimError::InvalidArgument(format!(
                "container id {id:?}: must be non-empty, without '/'"
            )));
        }
        if !req.checkpoint.is_empty() {
            return Err(ShimError::Unimplemented(format!(
                "container {id}: restore from checkpoint {:?}: vessel does not checkpoint or restore",
                req.checkpoint
            )));
        }
        if self.shared.lock().containers.contains_key(id) {
            return Err(ShimError::AlreadyExists(format!("container {id:?}")));
        }
        let bundle = PathBuf::from(&req.bundle);
        let opts = ShimOptions::from_any(req.options.as_ref())?;
        opts.save(&bundle)?;
        let vessel = Vessel {
            binary: opts.binary(),
            root: opts.root_for(&self.shared.namespace),
            config: opts.config_file(&bundle)?,
            systemd_cgroup: opts.systemd_cgroup,
            log: bundle.join("log.json"),
        };
        let stdio = StdioSpec {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let rootfs = mount_rootfs(&bundle, &req.rootfs)?;
        let result = self.create_init(id, &bundle, &vessel, &stdio);
        let (init, sub) = match result {
            Ok(v) => v,
            Err(e) => {
                // Bad input leaves nothing behind: no vessel state, no mount.
                let _ = vessel.delete(id, true);
                if let Some(r) = &rootfs {
                    unmount(r);
                }
                return Err(e);
            }
        };
        let pid = init.pid;
        let mut t = self.shared.lock();
        t.containers.insert(
            id.to_string(),
            Container {
                bundle: bundle.clone(),
                vessel,
                init,
                execs: HashMap::new(),
                rootfs,
            },
        );
        drop(t);
        if let Some(code) = missed_exit(&sub, pid) {
            self.shared.on_exit(pid, code);
        }
        self.watch_oom(id, pid);
        self.shared.publisher.publish(TaskCreate {
            container_id: id.to_string(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(TaskIO {
                stdin: stdio.stdin.clone(),
                stdout: stdio.stdout.clone(),
                stderr: stdio.stderr.clone(),
                terminal: stdio.terminal,
                ..Default::default()
            }),
            pid,
            ..Default::default()
        });
        Ok(pid)
    }

    /// `vessel create` with the process's stdio; returns the init and the
    /// exit subscription that spans its creation.
    fn create_init(
        &self,
        id: &str,
        bundle: &Path,
        vessel: &Vessel,
        stdio: &StdioSpec,
    ) -> Result<(Process, Subscription), ShimError> {
        let pid_file = bundle.join("init.pid");
        let sub = monitor_subscribe(Topic::Pid)
            .map_err(|e| ShimError::FailedPrecondition(format!("subscribe to exits: {e}")))?;
        let mut p = Process::new("", stdio.clone());
        if stdio.terminal {
            let mut io = ProcessIo::for_terminal(stdio)?;
            let sock = ConsoleSocket::new()?;
            vessel.create(id, bundle, &pid_file, Some(sock.path()), Default::default())?;
            let master = sock.receive(CONSOLE_WAIT)?;
            io.attach(&master)?;
            p.console = Some(master);
            p.io = Some(io);
        } else {
            let (child, io) = ProcessIo::open(stdio, id, &self.shared.namespace)?;
            vessel.create(id, bundle, &pid_file, None, child)?;
            p.io = Some(io);
        }
        p.pid = read_pid(&pid_file)?;
        Ok((p, sub))
    }

    fn watch_oom(&self, id: &str, pid: u32) {
        let Some((dir, v2)) = oom::memory_cgroup_of(pid) else {
            return;
        };
        let s = self.shared.clone();
        let cid = id.to_string();
        if let Err(e) = oom::watch(dir.clone(), v2, move || {
            s.publisher.publish(TaskOOM {
                container_id: cid.clone(),
                ..Default::default()
            })
        }) {
            log::warn!(
                "container {id}: OOM events unavailable ({}): {e}",
                dir.display()
            );
        }
    }

    fn do_start(&self, id: &str, exec_id: &str) -> Result<u32, ShimError> {
        if exec_id.is_empty() {
            let vessel = {
                let mut t = self.shared.lock();
                let c = Shared::container(&mut t, id)?;
                if c.init.status != Status::Created {
                    return Err(ShimError::FailedPrecondition(format!(
                        "container {id}: cannot start a {:?} container",
                        c.init.status
                    )));
                }
                c.vessel.clone()
            };
            vessel.start(id)?;
            let pid = {
                let mut t = self.shared.lock();
                let c = Shared::container(&mut t, id)?;
                if c.init.status == Status::Created {
                    c.init.status = Status::Running;
                }
                c.init.pid
            };
            self.shared.publisher.publish(TaskStart {
                container_id: id.to_string(),
                pid,
                ..Default::default()
            });
            return Ok(pid);
        }
        self.start_exec(id, exec_id)
    }

    fn start_exec(&self, id: &str, exec_id: &str) -> Result<u32, ShimError> {
        let (vessel, bundle, stdio, spec) = {
            let mut t = self.shared.lock();
            let c = Shared::container(&mut t, id)?;
            if c.init.exit.is_some() {
                return Err(ShimError::FailedPrecondition(format!(
                    "container {id} has exited: cannot start exec {exec_id:?}"
                )));
            }
            let p = c
                .execs
                .get(exec_id)
                .ok_or_else(|| ShimError::NotFound(format!("exec {exec_id:?} in {id}")))?;
            if p.status != Status::Created {
                return Err(ShimError::FailedPrecondition(format!(
                    "exec {exec_id:?} in {id} was already started"
                )));
            }
            (
                c.vessel.clone(),
                c.bundle.clone(),
                p.stdio.clone(),
                p.spec.clone(),
            )
        };
        let spec_file = bundle.join(format!("exec-{exec_id}.json"));
        let pid_file = bundle.join(format!("exec-{exec_id}.pid"));
        std::fs::write(&spec_file, &spec).map_err(|e| ShimError::io(&spec_file, e))?;
        let sub = monitor_subscribe(Topic::Pid)
            .map_err(|e| ShimError::FailedPrecondition(format!("subscribe to exits: {e}")))?;
        let run =
            || -> Result<(u32, Option<ProcessIo>, Option<std::os::fd::OwnedFd>), ShimError> {
                if stdio.terminal {
                    let mut io = ProcessIo::for_terminal(&stdio)?;
                    let sock = ConsoleSocket::new()?;
                    let a = ExecArgs {
                        process: &spec_file,
                        pid_file: &pid_file,
                        console_socket: Some(sock.path()),
                    };
                    vessel.exec(id, &a, Default::default())?;
                    let master = sock.receive(CONSOLE_WAIT)?;
                    io.attach(&master)?;
                    Ok((read_pid(&pid_file)?, Some(io), Some(master)))
                } else {
                    let (child, io) = ProcessIo::open(&stdio, id, &self.shared.namespace)?;
                    let a = ExecArgs {
                        process: &spec_file,
                        pid_file: &pid_file,
                        console_socket: None,
                    };
                    vessel.exec(id, &a, child)?;
                    Ok((read_pid(&pid_file)?, Some(io), None))
                }
            };
        let result = run();
        let _ = std::fs::remove_file(&spec_file);
        let _ = std::fs::remove_file(&pid_file);
        let (pid, io, console) = match result {
            Ok(r) => r,
            Err(e) => {
                self.exec_never_ran(id, exec_id);
                return Err(e);
            }
        };
        {
            let mut t = self.shared.lock();
            let c = Shared::container(&mut t, id)?;
            let p = c
                .execs
                .get_mut(exec_id)
                .ok_or_else(|| ShimError::NotFound(format!("exec {exec_id:?} in {id}")))?;
            p.pid = pid;
            p.io = io;
            p.console = console;
            p.status = Status::Running;
        }
        self.shared.publisher.publish(TaskExecStarted {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            pid,
            ..Default::default()
        });
        if let Some(code) = missed_exit(&sub, pid) {
            self.shared.on_exit(pid, code);
        }
        Ok(pid)
    }

    /// Marks an exec whose `vessel exec` failed as exited and wakes its
    /// waiters. containerd waits on an exec before starting it and, when
    /// the start fails, kills and waits again before deleting it: without
    /// an exit that second wait lasts until its one-minute deadline (an
    /// `ExecSync` of a missing binary took 60 s whatever its timeout).
    /// No TaskExit is published: the process never existed.
    fn exec_never_ran(&self, id: &str, exec_id: &str) {
        {
            let mut t = self.shared.lock();
            let Ok(c) = Shared::container(&mut t, id) else {
                return;
            };
            if let Some(p) = c.execs.get_mut(exec_id) {
                p.set_exit(EXEC_NEVER_RAN, now());
            }
        }
        self.shared.exited.notify_all();
    }

    fn do_delete(&self, id: &str, exec_id: &str) -> Result<DeleteResponse, ShimError> {
        if !exec_id.is_empty() {
            let mut t = self.shared.lock();
            let c = Shared::container(&mut t, id)?;
            let p = c
                .execs
                .get(exec_id)
                .ok_or_else(|| ShimError::NotFound(format!("exec {exec_id:?} in {id}")))?;
            if p.status == Status::Running {
                return Err(ShimError::FailedPrecondition(format!(
                    "exec {exec_id:?} in {id} is still running"
                )));
            }
            let p = c.execs.remove(exec_id).expect("checked above");
            let exit = p.exit.clone();
            return Ok(DeleteResponse {
                pid: p.pid,
                exit_status: exit.as_ref().map_or(0, |e| e.status),
                exited_at: exit.map(|e| e.at).into(),
                ..Default::default()
            });
        }
        let (vessel, status) = {
            let mut t = self.shared.lock();
            let c = Shared::container(&mut t, id)?;
            (c.vessel.clone(), c.init.status)
        };
        if matches!(status, Status::Running | Status::Paused) {
            return Err(ShimError::FailedPrecondition(format!(
                "container {id} is still running: kill it first"
            )));
        }
        if let Err(e) = vessel.delete(id, true) {
            // Already gone from vessel's root (a shim `delete` ran) is fine.
            if vessel.state(id).is_ok() {
                return Err(e);
            }
        }
        let c = {
            let mut t = self.shared.lock();
            t.containers
                .remove(id)
                .ok_or_else(|| ShimError::NotFound(format!("container {id:?}")))?
        };
        if let Some(r) = &c.rootfs {
            unmount(r);
        }
        let _ = std::fs::remove_file(c.bundle.join("init.pid"));
        let exit = c.init.exit.clone();
        let resp = DeleteResponse {
            pid: c.init.pid,
            exit_status: exit.as_ref().map_or(0, |e| e.status),
            exited_at: exit.clone().map(|e| e.at).into(),
            ..Default::default()
        };
        self.shared.exited.notify_all();
        self.shared.publisher.publish(TaskDelete {
            container_id: id.to_string(),
            pid: c.init.pid,
            exit_status: resp.exit_status,
            exited_at: exit.map(|e| e.at).into(),
            id: id.to_string(),
            ..Default::default()
        });
        Ok(resp)
    }

    fn do_kill(&self, req: &KillRequest) -> Result<(), ShimError> {
        let (vessel, pid, exited) = {
            let mut t = self.shared.lock();
            let c = Shared::container(&mut t, &req.id)?;
            let p = c.process(&req.exec_id).ok_or_else(|| {
                ShimError::NotFound(format!("exec {:?} in {}", req.exec_id, req.id))
            })?;
            (c.vessel.clone(), p.pid, p.exit.is_some())
        };
        if req.exec_id.is_empty() {
            if exited && !req.all {
                return Err(ShimError::NotFound(format!(
                    "container {}: process already finished",
                    req.id
                )));
            }
            return vessel.kill(&req.id, req.signal, req.all);
        }
        if exited || pid == 0 {
            return Err(ShimError::NotFound(format!(
                "exec {:?} in {}: process already finished",
                req.exec_id, req.id
            )));
        }
        let sig = nix::sys::signal::Signal::try_from(req.signal as i32)
            .map_err(|_| ShimError::InvalidArgument(format!("signal {}", req.signal)))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
            .map_err(|e| ShimError::io(Path::new(&format!("/proc/{pid}")), std::io::Error::from(e)))
    }

    fn do_exec(&self, req: &ExecProcessRequest) -> Result<(), ShimError> {
        let exec_id = req.exec_id.as_str();
        if exec_id.is_empty() || exec_id.contains('/') {
            return Err(ShimError::InvalidArgument(format!(
                "exec id {exec_id:?}: must be non-empty, without '/'"
            )));
        }
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ShimError::InvalidArgument(format!(
                    "exec {exec_id:?} in {}: no process spec",
                    req.id
                ))
            })?;
        {
            let mut t = self.shared.lock();
            let c = Shared::container(&mut t, &req.id)?;
            if c.execs.contains_key(exec_id) {
                return Err(ShimError::AlreadyExists(format!(
                    "exec {exec_id:?} in {}",
                    req.id
                )));
            }
            let mut p = Process::new(
                exec_id,
                StdioSpec {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                },
            );
            p.spec = spec;
            c.execs.insert(exec_id.to_string(), p);
        }
        self.shared.publisher.publish(TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        });
        Ok(())
    }

    fn do_wait(&self, id: &str, exec_id: &str) -> Result<WaitResponse, ShimError> {
        let mut t = self.shared.lock();
        loop {
            let c = Shared::container(&mut t, id)?;
            let p = c
                .process(exec_id)
                .ok_or_else(|| ShimError::NotFound(format!("exec {exec_id:?} in {id}")))?;
            if let Some(e) = &p.exit {
                return Ok(WaitResponse {
                    exit_status: e.status,
                    exited_at: MessageField::some(e.at.clone()),
                    ..Default::default()
                });
            }
            t = self
                .shared
                .exited
                .wait(t)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn do_state(&self, id: &str, exec_id: &str) -> Result<StateResponse, ShimError> {
        let mut t = self.shared.lock();
        let c = Shared::container(&mut t, id)?;
        let bundle = c.bundle.to_string_lossy().into_owned();
        let p = c
            .process(exec_id)
            .ok_or_else(|| ShimError::NotFound(format!("exec {exec_id:?} in {id}")))?;
        Ok(StateResponse {
            id: if exec_id.is_empty() { id } else { exec_id }.to_string(),
            bundle,
            pid: p.pid,
            status: p.status.to_task().into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status: p.exit.as_ref().map_or(0, |e| e.status),
            exited_at: p.exit.as_ref().map(|e| e.at.clone()).into(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        })
    }

    fn vessel_of(&self, id: &str) -> Result<Vessel, ShimError> {
        let mut t = self.shared.lock();
        Ok(Shared::container(&mut t, id)?.vessel.clone())
    }

    fn set_init_status(&self, id: &str, status: Status) {
        let mut t = self.shared.lock();
        if let Ok(c) = Shared::container(&mut t, id) {
            if c.init.exit.is_none() {
                c.init.status = status;
            }
        }
    }

    fn do_update(&self, req: &UpdateTaskRequest) -> Result<(), ShimError> {
        let (vessel, bundle) = {
            let mut t = self.shared.lock();
            let c = Shared::container(&mut t, &req.id)?;
            (c.vessel.clone(), c.bundle.clone())
        };
        let res = req
            .resources
            .as_ref()
            .map(|a| a.value.clone())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ShimError::InvalidArgument(format!("update of {}: no resources", req.id))
            })?;
        let file = bundle.join("update-resources.json");
        std::fs::write(&file, res).map_err(|e| ShimError::io(&file, e))?;
        let r = vessel.update(&req.id, &file);
        let _ = std::fs::remove_file(&file);
        r
    }
}

fn mount_rootfs(
    bundle: &Path,
    mounts: &[containerd_shim::protos::api::Mount],
) -> Result<Option<PathBuf>, ShimError> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target).map_err(|e| ShimError::io(&target, e))?;
    for m in mounts {
        let ty = (!m.type_.is_empty()).then_some(m.type_.as_str());
        let src = (!m.source.is_empty()).then_some(m.source.as_str());
        if let Err(e) = containerd_shim::mount::mount_rootfs(ty, src, &m.options, &target) {
            unmount(&target);
            return Err(ShimError::io(
                &target,
                std::io::Error::other(format!("mount {:?} from {:?}: {e}", m.type_, m.source)),
            ));
        }
    }
    Ok(Some(target))
}

/// Removes the socket of a shim that died without removing it (killed):
/// the one named in `<bundle>/address`, when nothing listens on it any
/// more. A shim still serving other containers of its pod keeps it.
fn remove_dead_socket(bundle: &Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let Some(path) = address.trim().strip_prefix("unix://") else {
        return;
    };
    let path = Path::new(path);
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

fn unmount(target: &Path) {
    for _ in 0..8 {
        if nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}

fn ok<T>(r: Result<T, ShimError>) -> TtrpcResult<T> {
    r.map_err(|e| {
        log::warn!("{e}");
        e.into()
    })
}

impl containerd_shim::Task for Service {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        let pid = ok(self.do_create(&req))?;
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let _busy = InFlight::new(&self.shared);
        let pid = ok(self.do_start(&req.id, &req.exec_id))?;
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        ok(self.do_state(&req.id, &req.exec_id))
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        ok(self.do_delete(&req.id, &req.exec_id))
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let vessel = ok(self.vessel_of(&req.id))?;
        let pids = ok(vessel.ps(&req.id))?;
        Ok(PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        let vessel = ok(self.vessel_of(&req.id))?;
        ok(vessel.pause(&req.id))?;
        self.set_init_status(&req.id, Status::Paused);
        self.shared.publisher.publish(TaskPaused {
            container_id: req.id.clone(),
            ..Default::default()
        });
        Ok(Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        let vessel = ok(self.vessel_of(&req.id))?;
        ok(vessel.resume(&req.id))?;
        self.set_init_status(&req.id, Status::Running);
        self.shared.publisher.publish(TaskResumed {
            container_id: req.id.clone(),
            ..Default::default()
        });
        Ok(Empty::new())
    }

    fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        req: containerd_shim::api::CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        ok(Err(ShimError::Unimplemented(format!(
            "checkpoint of container {}: vessel does not checkpoint containers (no CRIU support)",
            req.id
        ))))
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        let _busy = InFlight::new(&self.shared);
        ok(self.do_kill(&req))?;
        Ok(Empty::new())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        ok(self.do_exec(&req))?;
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        let mut t = self.shared.lock();
        let c = ok(Shared::container(&mut t, &req.id))?;
        let p = ok(c
            .process(&req.exec_id)
            .ok_or_else(|| ShimError::NotFound(format!("exec {:?} in {}", req.exec_id, req.id))))?;
        let m = ok(p.console.as_ref().ok_or_else(|| {
            ShimError::FailedPrecondition(format!(
                "process {:?} of {} has no terminal",
                req.exec_id, req.id
            ))
        }))?;
        ok(console::resize(m, req.width, req.height))?;
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        let mut t = self.shared.lock();
        let c = ok(Shared::container(&mut t, &req.id))?;
        let p = ok(c
            .process_mut(&req.exec_id)
            .ok_or_else(|| ShimError::NotFound(format!("exec {:?} in {}", req.exec_id, req.id))))?;
        if req.stdin {
            if let Some(io) = p.io.as_mut() {
                io.close_stdin();
            }
        }
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        ok(self.do_update(&req))?;
        Ok(Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        ok(self.do_wait(&req.id, &req.exec_id))
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let vessel = ok(self.vessel_of(&req.id))?;
        let data = ok(vessel.stats(&req.id))?;
        let m = metrics::from_vessel_stats(&data);
        let value = ok(m
            .write_to_bytes()
            .map_err(|e| ShimError::InvalidArgument(format!("metrics of {}: {e}", req.id))))?;
        Ok(StatsResponse {
            stats: MessageField::some(Any {
                type_url: metrics::METRICS_TYPE_URL.to_string(),
                value,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let mut t = self.shared.lock();
        let task_pid = t.containers.get_mut(&req.id).map_or(0, |c| c.init.pid);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: format!("vessel-shim {}", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        if !self.shared.lock().containers.is_empty() {
            return Ok(Empty::new());
        }
        // Answer a Kill or Start still running first (see InFlight).
        self.shared.wait_idle(SHUTDOWN_WAIT);
        if self.shared.lock().containers.is_empty() {
            self.shared.exit.signal();
        }
        Ok(Empty::new())
    }
}

/// The shim binary's side of containerd's shim protocol: the `start` and
/// `delete` actions and the creation of the Task service.
pub struct VesselShim {
    namespace: String,
    id: String,
    bundle: String,
    exit: Arc<ExitSignal>,
}

impl VesselShim {
    /// The options containerd wrote to `start`'s stdin (containerd 1.6
    /// sends the runtime options there), if any.
    fn start_options() -> Option<Any> {
        use std::io::IsTerminal;
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            return None;
        }
        let mut data = Vec::new();
        stdin.lock().take(1 << 20).read_to_end(&mut data).ok()?;
        Any::parse_from_bytes(&data)
            .ok()
            .filter(|a| !a.type_url.is_empty())
    }

    /// Containers of one pod share a shim: the group is the CRI's sandbox
    /// id when the bundle's config.json has one.
    fn grouping(&self) -> String {
        // Only a regular file, and a bounded read: the bundle is the
        // caller's, and config.json could be a link to /dev/zero.
        let spec = std::fs::File::open("config.json")
            .ok()
            .filter(|f| f.metadata().is_ok_and(|m| m.is_file()))
            .and_then(|f| {
                let mut d = Vec::new();
                std::io::Read::read_to_end(&mut std::io::Read::take(f, 16 << 20), &mut d).ok()?;
                serde_json::from_slice::<serde_json::Value>(&d).ok()
            });
        spec.as_ref()
            .and_then(|s| s["annotations"][SANDBOX_ID_ANNOTATION].as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| self.id.clone())
    }
}

impl containerd_shim::Shim for VesselShim {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        VesselShim {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            bundle: args.bundle.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let options = Self::start_options();
        let grouping = self.grouping();
        let (pid, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        containerd_shim::util::write_address(&address)?;
        if let Some(a) = options.filter(|a| a.type_url.ends_with("containerd.runc.v1.Options")) {
            if let Ok(o) = RuncOptions::parse_from_bytes(&a.value) {
                if !o.shim_cgroup.is_empty() {
                    containerd_shim::cgroup::add_task_to_cgroup(&o.shim_cgroup, pid)?;
                }
            }
        }
        containerd_shim::cgroup::adjust_oom_score(pid)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = if self.bundle.is_empty() {
            std::env::current_dir().map_err(|e| containerd_shim::Error::Other(e.to_string()))?
        } else {
            PathBuf::from(&self.bundle)
        };
        let opts =
            ShimOptions::load(&bundle).map_err(|e| containerd_shim::Error::Other(e.to_string()))?;
        let vessel = Vessel {
            binary: opts.binary(),
            root: opts.root_for(&self.namespace),
            config: opts.config_file(&bundle).ok().flatten(),
            systemd_cgroup: opts.systemd_cgroup,
            log: bundle.join("log.json"),
        };
        let pid = read_pid(&bundle.join("init.pid")).unwrap_or(0);
        if let Err(e) = vessel.delete(&self.id, true) {
            if vessel.state(&self.id).is_ok() {
                return Err(containerd_shim::Error::Other(e.to_string()));
            }
        }
        unmount(&bundle.join("rootfs"));
        remove_dead_socket(&bundle);
        Ok(DeleteResponse {
            pid,
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: MessageField::some(now()),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        Service::new(
            self.namespace.clone(),
            Publisher::new(address, self.namespace.clone(), publisher),
            self.exit.clone(),
        )
    }
}
