//! The supervisor of a vm-mode container: the host process that `state`
//! reports as the container's pid. `vessel create` starts it (as `vessel
//! vm-supervise <dir>`); it boots the VM, keeps the one connection to the
//! guest agent for the container's whole life, relays the workload's stdio
//! (its own stdio, inherited from `create`, or a pty sent over the console
//! socket), forwards the signals it receives to the workload, serves the
//! control socket, and exits with the workload's status once the guest
//! powered off, like a container's init. The VMM is its child and dies
//! with it (PR_SET_PDEATHSIG), so a SIGKILLed supervisor leaves no VM.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use vessel_cgroups::{Cgroup, CgroupOptions};
use vessel_vm::agent::host::AgentClient;
use vessel_vm::agent::{Frame, Message, RunProcess, Stream};
use vessel_vm::engine::{VmConfig, VmHandle};

use super::control::{self, Reply, Request};
use super::READY_FD;
use crate::terminal;

/// Everything `create` hands to the supervisor (`<dir>/vm.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Launch {
    /// Container id.
    pub id: String,
    /// The VM to boot.
    pub vm: VmConfig,
    /// The engine that boots it.
    pub engine: super::resolve::EngineChoice,
    /// The container's first process, id 1.
    pub run: RunProcess,
    /// Where to send the host side of the workload's terminal.
    pub console_socket: Option<PathBuf>,
    /// The host cgroup the VMM joins.
    pub cgroup_path: PathBuf,
    /// Whether that cgroup is managed through systemd.
    pub systemd_cgroup: bool,
    /// Its resources.
    pub resources: Option<LinuxResources>,
    /// The container's IO priority (`io.vessel.blockio.priority`, parsed
    /// by `create`, which applied the rest of the block-IO policy to the
    /// cgroup): the VMM's, since every guest IO is one of its requests.
    pub ioprio: Option<u16>,
    /// The network namespace the VMM runs in.
    pub netns: Option<PathBuf>,
    /// How long the guest may take to greet.
    pub boot_timeout: Duration,
}

/// File name of the launch description in the state directory.
pub const LAUNCH_FILE: &str = "vm.json";

/// Signals relayed to the workload (SIGWINCH only resizes its terminal).
const RELAYED: [Signal; 10] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGABRT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGTERM,
    Signal::SIGCONT,
    Signal::SIGWINCH,
];

/// Why the supervisor could not set up the VM, or a request to the guest
/// failed. Set-up errors reach `create` as text over the report pipe.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// Reading the launch description.
    #[error("{}: {source}", .path.display())]
    LaunchFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Parsing the launch description.
    #[error("{LAUNCH_FILE}: {0}")]
    LaunchJson(#[source] serde_json::Error),
    /// Opening the container's network namespace.
    #[error("network namespace {}: {source}", .path.display())]
    Netns {
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Joining it.
    #[error("joining network namespace {}: {source}", .path.display())]
    JoinNetns {
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// Opening or applying the container's cgroup.
    #[error(transparent)]
    Cgroup(#[from] vessel_cgroups::CgroupError),
    /// Moving the VMM into the cgroup.
    #[error("moving the VMM into its cgroup: {0}")]
    MoveVmm(#[source] vessel_cgroups::CgroupError),
    /// Setting the IO priority the VMM inherits.
    #[error("annotation io.vessel.blockio.priority: {0}")]
    Ioprio(#[source] std::io::Error),
    /// Booting the VM, or talking to its agent.
    #[error(transparent)]
    Vm(#[from] vessel_vm::Error),
    /// No agent connection.
    #[error("connecting to the guest agent: {0}")]
    Connect(#[source] vessel_vm::Error),
    /// The agent did not greet.
    #[error("the guest agent did not greet: {0}")]
    Hello(#[source] vessel_vm::Error),
    /// The connection failed while the guest created the container.
    #[error("waiting for the guest to create the container: {0}")]
    CreateWait(#[source] vessel_vm::Error),
    /// The guest refused a request: its message.
    #[error("{0}")]
    Guest(String),
    /// A request that has no meaning for a container of a pod.
    #[error("not a request about a container of the pod: {0}")]
    NotForMember(String),
    /// The guest did not answer in time.
    #[error("no answer from the guest within {secs}s")]
    NoAnswer {
        /// The wait, in seconds.
        secs: u64,
    },
    /// Setting up the host side of the workload's terminal.
    #[error("{what}: {source}")]
    Terminal {
        /// The step, naming the field or socket.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Binding the control socket.
    #[error("{}: {source}", .path.display())]
    ControlSocket {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The VM failed during set-up; the VMM's log and the guest console's
    /// tail say more, and an OOM kill of the VMM is named first.
    #[error("{}\nVMM log: {vmm_log}\nguest console: {console}",
        match .oom { Some(oom) => format!("{oom} ({cause})"), None => cause.to_string() })]
    VmFailed {
        /// What failed.
        #[source]
        cause: Box<SupervisorError>,
        /// How the OOM killer took the VMM, if it did.
        oom: Option<String>,
        /// The VMM log's tail.
        vmm_log: String,
        /// The guest console's tail.
        console: String,
    },
}

/// Runs the supervisor of the container in `dir`; never returns.
pub fn run(dir: &Path) -> ! {
    // SAFETY: READY_FD was set up by `create` for us alone; we own it now.
    let mut ready = unsafe { File::from_raw_fd(READY_FD) };
    // Not inherited by the VMM, or `create` would wait for it to close.
    let _ = nix::fcntl::fcntl(
        READY_FD,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let mut mask = SigSet::empty();
    for s in RELAYED {
        mask.add(s);
    }
    // Blocked before any thread starts, so every thread inherits the mask
    // and the signal thread alone receives them.
    let _ = mask.thread_block();
    match setup(dir) {
        Ok(sup) => {
            if writeln!(ready, "ok {}", sup.vmm_pid).is_err() {
                // `create` is gone (killed while the VM booted): nobody
                // will start or reach this VM. Its VMM dies with us; the
                // ledger lets `delete --force` remove the rest.
                std::process::exit(1)
            }
            drop(ready);
            let status = sup.serve(mask);
            super::exit_like(status.code, status.signal)
        }
        Err(e) => {
            let _ = write!(ready, "{e}");
            std::process::exit(1)
        }
    }
}

/// How the workload ended.
#[derive(Debug, Clone, Copy)]
struct ExitStatus {
    code: i32,
    signal: Option<i32>,
}

struct Supervisor {
    id: String,
    dir: PathBuf,
    vm: Mutex<VmHandle>,
    vmm_pid: i32,
    agent: AgentClient,
    send_lock: Mutex<()>,
    /// Waiters for the answer to a request, by id.
    pending: Mutex<HashMap<u32, mpsc::Sender<Message>>>,
    /// exec clients, by process id.
    routes: Mutex<HashMap<u32, Route>>,
    next_id: AtomicU32,
    exited: AtomicBool,
    /// The host side of the workload's terminal.
    tty: Option<OwnedFd>,
    /// The pod's other containers in this VM: the agent's id of each one's
    /// init, by container id.
    members: Mutex<HashMap<String, u32>>,
}

/// Where frames of an exec'd process go: buffered until its client got
/// the reply line.
struct Route {
    conn: Option<UnixStream>,
    buffered: Vec<Frame>,
}

fn setup(dir: &Path) -> Result<Arc<Supervisor>, SupervisorError> {
    let path = dir.join(LAUNCH_FILE);
    let text =
        std::fs::read(&path).map_err(|source| SupervisorError::LaunchFile { path, source })?;
    let mut launch: Launch = serde_json::from_slice(&text).map_err(SupervisorError::LaunchJson)?;
    let id = launch.id.clone();
    if let Some(ns) = &launch.netns {
        // The VMM must open its taps inside the container's network
        // namespace; joined by this (still single) thread, inherited by QEMU.
        let f = File::open(ns).map_err(|source| SupervisorError::Netns {
            path: ns.clone(),
            source,
        })?;
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|source| {
            SupervisorError::JoinNetns {
                path: ns.clone(),
                source,
            }
        })?;
    }
    let cgroup = Cgroup::open(&CgroupOptions {
        cgroups_path: Some(launch.cgroup_path.clone()),
        systemd: launch.systemd_cgroup,
        container_id: id.clone(),
    })?;
    if let Some(prio) = launch.ioprio {
        // Set on us before the VMM starts, so it inherits it.
        crate::process::exec::set_ioprio(prio as i32).map_err(SupervisorError::Ioprio)?;
    }
    let engine = launch.engine.engine();
    launch.vm.die_with_parent = true;
    let mut vm = engine.boot(&launch.vm)?;
    let vmm_pid = vm.pid();
    // A VMM the OOM killer took during boot shows only as a lost agent or
    // a closed connection: say what happened and what limit would do.
    let fail = |vm: &mut VmHandle, cause: SupervisorError| {
        let oom = oom_killed(vm, &cgroup, &launch);
        let vmm_log = vm.vmm_log_tail();
        let _ = vm.kill();
        SupervisorError::VmFailed {
            cause: Box::new(cause),
            oom,
            vmm_log,
            console: console_tail(launch.vm.console_log.as_deref()),
        }
    };
    if let Err(e) = cgroup.add_task(vmm_pid) {
        return Err(fail(&mut vm, SupervisorError::MoveVmm(e)));
    }
    if let Some(res) = &launch.resources {
        let oom = res
            .memory()
            .as_ref()
            .and_then(|m| m.disable_oom_killer())
            .unwrap_or(false);
        if let Err(e) = cgroup.apply(res, oom) {
            return Err(fail(&mut vm, e.into()));
        }
    }
    let agent = match vm.connect_agent(launch.boot_timeout) {
        Ok(a) => a,
        Err(e) => return Err(fail(&mut vm, SupervisorError::Connect(e))),
    };
    let hello = match agent.wait_hello(launch.boot_timeout) {
        Ok(h) => h,
        Err(e) => return Err(fail(&mut vm, SupervisorError::Hello(e))),
    };
    // Where the time goes, for `vessel bench vm-startup` and for users.
    tracing::info!(
        "container {id:?}: guest agent ready {:.0} ms after the VMM started (guest uptime {:?} ms at init, {:?} ms when ready)",
        vm.started().elapsed().as_secs_f64() * 1000.0,
        hello.init_ms,
        hello.ready_ms
    );
    if let Err(e) = agent.run_process(launch.run.clone()) {
        return Err(fail(&mut vm, e.into()));
    }
    // The guest creates the container: wait for its pid or its error.
    let _ = agent.set_timeout(Some(launch.boot_timeout));
    let created = loop {
        match agent.recv() {
            Ok(Frame::Control(Message::Started { id: 1, .. })) => break Ok(()),
            Ok(Frame::Control(Message::Error { message, .. })) => {
                break Err(SupervisorError::Guest(message))
            }
            Ok(_) => continue,
            Err(e) => break Err(SupervisorError::CreateWait(e)),
        }
    };
    let _ = agent.set_timeout(None);
    if let Err(e) = created {
        if oom_killed(&mut vm, &cgroup, &launch).is_some() {
            return Err(fail(&mut vm, e));
        }
        // The guest's own error says what is wrong with the bundle.
        let _ = vm.kill();
        return Err(e);
    }
    tracing::info!(
        "container {id:?}: created in the guest {:.0} ms after the VMM started",
        vm.started().elapsed().as_secs_f64() * 1000.0
    );
    let tty = match &launch.console_socket {
        Some(path) => match host_terminal(path) {
            Ok(t) => Some(t),
            Err(e) => return Err(fail(&mut vm, e)),
        },
        None => None,
    };
    let sup = Arc::new(Supervisor {
        id,
        dir: dir.to_path_buf(),
        vm: Mutex::new(vm),
        vmm_pid,
        agent,
        send_lock: Mutex::new(()),
        pending: Mutex::new(HashMap::new()),
        routes: Mutex::new(HashMap::new()),
        next_id: AtomicU32::new(2),
        exited: AtomicBool::new(false),
        tty,
        members: Mutex::new(HashMap::new()),
    });
    let sock = control::socket_path(dir);
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).map_err(|source| SupervisorError::ControlSocket {
        path: sock.clone(),
        source,
    })?;
    let s = Arc::clone(&sup);
    thread::spawn(move || s.accept(listener));
    Ok(sup)
}

/// How the VMM died, if the OOM killer of its cgroup killed it: `None`
/// while it runs, or when it died otherwise.
fn oom_killed(vm: &mut VmHandle, cgroup: &Cgroup, launch: &Launch) -> Option<String> {
    let kills = cgroup.oom_kills().unwrap_or(0);
    if kills == 0 {
        return None;
    }
    let pid = vm.pid();
    // The agent's connection closes while the VMM is still exiting: give
    // the kernel a moment to finish the kill.
    let deadline = Instant::now() + Duration::from_secs(2);
    let signal = loop {
        // Peek at the exit status without reaping (VmHandle reaps it later).
        match nix::sys::wait::waitid(
            nix::sys::wait::Id::Pid(nix::unistd::Pid::from_raw(pid)),
            nix::sys::wait::WaitPidFlag::WEXITED
                | nix::sys::wait::WaitPidFlag::WNOHANG
                | nix::sys::wait::WaitPidFlag::WNOWAIT,
        ) {
            Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => break Some(sig),
            Ok(nix::sys::wait::WaitStatus::StillAlive) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20));
            }
            // Still running, or exited with a status of its own.
            Ok(_) => return None,
            // Already reaped (connect_agent polls it): the cached status is
            // an exit code unless a signal ended it.
            Err(_) if vm.is_running() => return None,
            Err(_) => match vm.wait() {
                Ok(None) => break None,
                _ => return None,
            },
        }
    };
    let limit = launch
        .resources
        .as_ref()
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|l| *l > 0);
    let how = match signal {
        Some(sig) => format!(
            "the OOM killer ({}; its cgroup counts {kills} OOM kill(s))",
            sig.as_str()
        ),
        None => format!("the OOM killer (its cgroup counts {kills} OOM kill(s))"),
    };
    let guest = launch.vm.memory_mib;
    let minimum = super::guest_spec::min_memory_limit_mib(guest);
    let fix = match limit {
        Some(l) => format!(
            "linux.resources.memory.limit {} MiB ({l} bytes) is too low for a {guest} MiB guest; \
             the minimum is {minimum} MiB ({guest} MiB of guest memory plus {} MiB for the VMM)",
            l >> 20,
            super::guest_spec::VMM_OVERHEAD_MIB
        ),
        None => format!(
            "a memory limit on the container's cgroup or above it is too low for a {guest} MiB \
             guest, which needs {minimum} MiB"
        ),
    };
    Some(format!(
        "the VMM ({}, pid {pid}) was killed during boot by {how}: {fix}",
        launch.engine.name()
    ))
}

fn console_tail(log: Option<&Path>) -> String {
    let text = log
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// Opens the host side of the workload's terminal: a pty whose master goes
/// to the console socket; we keep the slave, raw, and relay it.
pub(crate) fn host_terminal(socket: &Path) -> Result<OwnedFd, SupervisorError> {
    let terminal_error = |what: String| move |source| SupervisorError::Terminal { what, source };
    let (master, slave, name) =
        terminal::open_pty().map_err(terminal_error("process.terminal: open pty".into()))?;
    let conn = UnixStream::connect(socket).map_err(terminal_error(format!(
        "--console-socket {}",
        socket.display()
    )))?;
    terminal::send_fd(conn.as_fd(), &name, master.as_fd())
        .map_err(terminal_error("--console-socket: send pty".into()))?;
    if let Ok(mut t) = nix::sys::termios::tcgetattr(slave.as_fd()) {
        nix::sys::termios::cfmakeraw(&mut t);
        let _ = nix::sys::termios::tcsetattr(slave.as_fd(), nix::sys::termios::SetArg::TCSANOW, &t);
    }
    Ok(slave)
}

impl Supervisor {
    fn send(&self, frame: &Frame) -> Result<(), SupervisorError> {
        let _g = self.send_lock.lock().unwrap_or_else(|p| p.into_inner());
        Ok(self.agent.send(frame)?)
    }

    /// Sends `msg` and waits for the answer about `id`.
    fn ask(&self, id: u32, msg: Message, timeout: Duration) -> Result<Message, SupervisorError> {
        let (tx, rx) = mpsc::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        self.send(&Frame::Control(msg))?;
        let answer = rx.recv_timeout(timeout);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        match answer {
            Ok(Message::Error { message, .. }) => Err(SupervisorError::Guest(message)),
            Ok(m) => Ok(m),
            Err(_) => Err(SupervisorError::NoAnswer {
                secs: timeout.as_secs(),
            }),
        }
    }

    /// Relays until the workload exits, then powers the guest off.
    fn serve(self: &Arc<Self>, mask: SigSet) -> ExitStatus {
        let s = Arc::clone(self);
        thread::spawn(move || s.relay_signals(mask));
        let s = Arc::clone(self);
        thread::spawn(move || s.pump_stdin());
        if self.tty.is_some() {
            let s = Arc::clone(self);
            thread::spawn(move || s.follow_window_size());
        }
        let status = self.read_agent();
        self.exited.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(control::socket_path(&self.dir));
        self.power_off();
        status
    }

    fn power_off(&self) {
        let _ = self.send(&Frame::Control(Message::Shutdown));
        let mut vm = self.vm.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = Instant::now() + Duration::from_secs(10);
        while vm.is_running() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = vm.kill();
    }

    /// The agent's frames: the workload's output, answers, exec output.
    fn read_agent(&self) -> ExitStatus {
        let mut out = dup_file(1);
        let mut err = dup_file(2);
        loop {
            let frame = match self.agent.recv() {
                Ok(f) => f,
                Err(e) => {
                    let vmm = self.vm.lock().map(|v| v.vmm_log_tail()).unwrap_or_default();
                    tracing::error!(
                        "container {:?}: the guest agent is gone: {e}; VMM: {vmm}",
                        self.id
                    );
                    if let Some(f) = err.as_mut() {
                        let _ = writeln!(
                            f,
                            "vessel: container {:?}: the VM stopped before its workload exited \
                             ({e}); VMM log: {vmm}",
                            self.id
                        );
                    }
                    return ExitStatus {
                        code: 255,
                        signal: None,
                    };
                }
            };
            match frame {
                Frame::Data {
                    id: 1,
                    stream,
                    data,
                } if !data.is_empty() => {
                    let sink = match (&self.tty, stream) {
                        (Some(t), _) => {
                            let _ = nix::unistd::write(t, &data);
                            continue;
                        }
                        (None, Stream::Stderr) => &mut err,
                        (None, _) => &mut out,
                    };
                    if let Some(f) = sink.as_mut() {
                        let _ = f.write_all(&data);
                    }
                }
                Frame::Data { id: 1, .. } => {}
                Frame::Control(Message::Exit {
                    id: 1,
                    code,
                    signal,
                }) => {
                    return ExitStatus { code, signal };
                }
                Frame::Data { id, .. } => self.route(id, frame, false),
                Frame::Control(Message::Exit { id, .. }) => self.route(id, frame, true),
                Frame::Control(ref m @ Message::Ack { id })
                | Frame::Control(ref m @ Message::PsOutput { id, .. })
                | Frame::Control(ref m @ Message::Started { id, .. }) => {
                    self.answer(id, m.clone());
                }
                Frame::Control(Message::Error {
                    id: Some(id),
                    ref message,
                }) => {
                    if !self.answer(
                        id,
                        Message::Error {
                            id: Some(id),
                            message: message.clone(),
                        },
                    ) {
                        self.route(id, frame.clone(), true);
                        tracing::warn!("container {:?}: guest: {message}", self.id);
                    }
                }
                Frame::Control(Message::Error { id: None, message }) => {
                    tracing::warn!("container {:?}: guest: {message}", self.id);
                }
                Frame::Control(_) => {}
            }
        }
    }

    fn answer(&self, id: u32, msg: Message) -> bool {
        match self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            Some(tx) => tx.send(msg).is_ok(),
            None => false,
        }
    }

    /// Hands a frame of an exec'd process to its client.
    fn route(&self, id: u32, frame: Frame, last: bool) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(route) = routes.get_mut(&id) else {
            return;
        };
        match &route.conn {
            Some(conn) => {
                let _ = frame.write_to(&mut &*conn);
            }
            None => route.buffered.push(frame),
        }
        if last && route.conn.is_some() {
            if let Some(r) = routes.remove(&id) {
                if let Some(c) = r.conn {
                    let _ = c.shutdown(std::net::Shutdown::Write);
                }
            }
        }
    }

    fn relay_signals(&self, mask: SigSet) {
        loop {
            let Ok(sig) = mask.wait() else { continue };
            if self.exited.load(Ordering::SeqCst) {
                return;
            }
            if sig == Signal::SIGWINCH {
                continue;
            }
            let _ = self.send(&Frame::Control(Message::Signal {
                id: 1,
                signal: sig as i32,
                all: false,
            }));
        }
    }

    /// Our stdin (or terminal) to the workload's.
    fn pump_stdin(&self) {
        let input = match &self.tty {
            Some(t) => t.try_clone().ok().map(File::from),
            None => dup_file(0),
        };
        let Some(mut input) = input else {
            let _ = self.agent_stdin(&[]);
            return;
        };
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match std::io::Read::read(&mut input, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if self.agent_stdin(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = self.agent_stdin(&[]);
    }

    fn agent_stdin(&self, data: &[u8]) -> Result<(), SupervisorError> {
        let _g = self.send_lock.lock().unwrap_or_else(|p| p.into_inner());
        Ok(self.agent.write_stdin(1, data)?)
    }

    /// Keeps the guest terminal's size equal to ours.
    fn follow_window_size(&self) {
        let Some(tty) = &self.tty else { return };
        let mut last = None;
        while !self.exited.load(Ordering::SeqCst) {
            if let Some(size) = window_size(tty.as_raw_fd()) {
                if last != Some(size) && size.0 > 0 {
                    last = Some(size);
                    let _ = self.send(&Frame::Control(Message::ResizeTerminal {
                        id: 1,
                        rows: size.0,
                        cols: size.1,
                    }));
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn accept(self: Arc<Self>, listener: UnixListener) {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let s = Arc::clone(&self);
            thread::spawn(move || s.serve_client(conn));
        }
    }

    fn serve_client(&self, conn: UnixStream) {
        let Some(req) = control::read_request(&conn) else {
            return;
        };
        if self.exited.load(Ordering::SeqCst) {
            let _ = control::write_reply(&conn, &Reply::error("the workload has exited"));
            return;
        }
        let reply = match req {
            Request::Start => self
                .ask(1, Message::StartProcess { id: 1 }, Duration::from_secs(60))
                .map(|_| Reply::default()),
            Request::Signal { signal, all } => self
                .send(&Frame::Control(Message::Signal { id: 1, signal, all }))
                .map(|_| Reply::default()),
            Request::Ps { format } => {
                let id = self.next_id.fetch_add(1, Ordering::SeqCst);
                self.ask(id, Message::Ps { id, format }, Duration::from_secs(30))
                    .map(|m| Reply {
                        output: match m {
                            Message::PsOutput { output, .. } => Some(output),
                            _ => None,
                        },
                        ..Reply::default()
                    })
            }
            Request::Exec { process } => return self.exec(conn, *process),
            Request::CreateMember { run, sandbox, join } => {
                return self.create_member(conn, *run, sandbox, join)
            }
            Request::Member { container, request } => {
                return self.member(conn, &container, *request)
            }
            Request::DeleteMember { container } => {
                let id = self.next_id.fetch_add(1, Ordering::SeqCst);
                let r = self
                    .ask(
                        id,
                        Message::DeleteMember {
                            id,
                            container: container.clone(),
                        },
                        Duration::from_secs(60),
                    )
                    .map(|_| Reply::default());
                self.members
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&container);
                r
            }
        };
        let _ = control::write_reply(&conn, &reply.unwrap_or_else(Reply::error));
    }

    fn exec(&self, conn: UnixStream, process: oci_spec::runtime::Process) {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        self.routed(
            conn,
            id,
            Message::Exec {
                id,
                process: Box::new(process),
            },
        )
    }

    /// A request about the pod's member `container`, from its relay.
    fn member(&self, conn: UnixStream, container: &str, request: Request) {
        let known = self
            .members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(container)
            .copied();
        let Some(init) = known else {
            let msg = format!("no container {container:?} in this pod's VM");
            let _ = control::write_reply(&conn, &Reply::error(msg));
            return;
        };
        let inside = |message: Message| Message::InContainer {
            container: container.into(),
            message: Box::new(message),
        };
        let next = || self.next_id.fetch_add(1, Ordering::SeqCst);
        let reply = match request {
            Request::Start => {
                let id = next();
                self.ask(
                    id,
                    inside(Message::StartProcess { id }),
                    Duration::from_secs(60),
                )
                .map(|_| Reply::default())
            }
            Request::Signal { signal, all: false } => self
                .send(&Frame::Control(Message::Signal {
                    id: init,
                    signal,
                    all: false,
                }))
                .map(|_| Reply::default()),
            Request::Signal { signal, all: true } => {
                let id = next();
                self.ask(
                    id,
                    inside(Message::Signal {
                        id,
                        signal,
                        all: true,
                    }),
                    Duration::from_secs(30),
                )
                .map(|_| Reply::default())
            }
            Request::Ps { format } => {
                let id = next();
                self.ask(
                    id,
                    inside(Message::Ps { id, format }),
                    Duration::from_secs(30),
                )
                .map(|m| Reply {
                    output: match m {
                        Message::PsOutput { output, .. } => Some(output),
                        _ => None,
                    },
                    ..Reply::default()
                })
            }
            Request::Exec { process } => {
                let id = next();
                return self.routed(conn, id, inside(Message::Exec { id, process }));
            }
            other => Err(SupervisorError::NotForMember(format!("{other:?}"))),
        };
        let _ = control::write_reply(&conn, &reply.unwrap_or_else(Reply::error));
    }

    /// Creates a container of the pod in the guest; its relay's
    /// connection then carries its frames, as an exec's.
    fn create_member(
        &self,
        conn: UnixStream,
        mut run: vessel_vm::agent::RunProcess,
        sandbox: String,
        join: Vec<String>,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        run.id = id;
        let Some(container) = run.container_id.clone() else {
            let _ = control::write_reply(&conn, &Reply::error("a pod member needs a container id"));
            return;
        };
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(container, id);
        self.routed(
            conn,
            id,
            Message::CreateMember {
                run: Box::new(run),
                sandbox,
                join,
            },
        )
    }

    /// Sends `msg`, which starts process `id` in the guest, and once it
    /// started hands `conn` its frames (and the client's stdin, resizes and
    /// signals to it).
    fn routed(&self, conn: UnixStream, id: u32, msg: Message) {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                Route {
                    conn: None,
                    buffered: Vec::new(),
                },
            );
        let started = self.ask(id, msg, Duration::from_secs(60));
        let pid = match started {
            Ok(Message::Started { pid, .. }) => pid,
            Ok(m) => {
                self.drop_route(id);
                let _ = control::write_reply(&conn, &Reply::error(format!("unexpected {m:?}")));
                return;
            }
            Err(e) => {
                self.drop_route(id);
                let _ = control::write_reply(&conn, &Reply::error(e));
                return;
            }
        };
        {
            let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
            let reply = Reply {
                id: Some(id),
                pid: Some(pid),
                ..Reply::default()
            };
            if control::write_reply(&conn, &reply).is_err() {
                routes.remove(&id);
                return;
            }
            let Some(route) = routes.get_mut(&id) else {
                return;
            };
            let mut done = false;
            for f in route.buffered.drain(..) {
                done |= matches!(
                    f,
                    Frame::Control(Message::Exit { .. }) | Frame::Control(Message::Error { .. })
                );
                let _ = f.write_to(&mut &conn);
            }
            if done {
                routes.remove(&id);
                return;
            }
            route.conn = conn.try_clone().ok();
        }
        // The client's stdin, resizes and signals, for this process only.
        let mut reader = conn;
        loop {
            match Frame::read_from(&mut reader) {
                Ok(Frame::Data {
                    id: fid,
                    stream: Stream::Stdin,
                    data,
                }) if fid == id => {
                    let _g = self.send_lock.lock().unwrap_or_else(|p| p.into_inner());
                    if self.agent.write_stdin(id, &data).is_err() {
                        return;
                    }
                }
                Ok(Frame::Control(m @ Message::ResizeTerminal { id: fid, .. }))
                | Ok(Frame::Control(
                    m @ Message::Signal {
                        id: fid,
                        all: false,
                        ..
                    },
                )) if fid == id => {
                    let _ = self.send(&Frame::Control(m));
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    fn drop_route(&self, id: u32) {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

/// A duplicate of one of our standard descriptors, if it is open.
fn dup_file(fd: i32) -> Option<File> {
    // SAFETY: fd 0-2 are borrowed only for the duration of the dup.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned().ok().map(File::from)
}

/// (rows, cols) of a terminal.
pub fn window_size(fd: i32) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the pointer, which is valid.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some((ws.ws_row, ws.ws_col))
}
