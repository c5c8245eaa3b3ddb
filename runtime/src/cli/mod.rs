//! Argument parsing and dispatch.

mod bench;
mod checkpoint;
mod create;
mod delete;
mod events;
mod exec;
mod explain;
mod features;
mod kill;
mod list;
mod pause;
mod ps;
mod restore;
mod run;
mod spec;
mod start;
mod state;
mod update;
mod vm_exec;
mod vm_member;
mod vm_supervise;
mod vmm;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vessel::logging;

/// vessel: an OCI runtime with container and microVM isolation.
#[derive(Parser, Debug)]
#[command(name = "vessel", version, about, long_about = None)]
pub struct Cli {
    /// Directory holding container state.
    #[arg(long, global = true, default_value = "/run/vessel")]
    pub root: PathBuf,
    /// Log file (default: stderr for debug output only).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    pub log_format: String,
    /// Debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Manage cgroups through systemd.
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility: rootless mode is decided from the spec.
    #[arg(long, hide = true)]
    pub rootless: Option<String>,
    /// Default isolation mode: container or vm (the annotation
    /// io.vessel.isolation in config.json wins).
    #[arg(long, global = true)]
    pub isolation: Option<vessel::isolation::Isolation>,
    /// Runtime configuration file (TOML; default /etc/vessel/config.toml).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The CRIU program for checkpoint and restore (default: `criu` on PATH).
    #[arg(long, global = true)]
    pub criu: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a container from a bundle; its process waits for `start`.
    Create(create::Args),
    /// Start a created container.
    Start(start::Args),
    /// Print a container's OCI state as JSON.
    State(state::Args),
    /// Send a signal to a container's init (or all its processes).
    Kill(kill::Args),
    /// Delete a container and its resources.
    Delete(delete::Args),
    /// Create, start and wait for a container.
    Run(run::Args),
    /// List containers.
    #[command(alias = "ls")]
    List(list::Args),
    /// List a container's processes.
    Ps(ps::Args),
    /// Run a new process in a container.
    Exec(exec::Args),
    /// Freeze a container's processes.
    Pause(pause::Args),
    /// Thaw a paused container.
    Resume(pause::Args),
    /// Show a container's resource statistics.
    Events(events::Args),
    /// Change a running container's resources.
    Update(update::Args),
    /// Checkpoint a running container with CRIU (container mode).
    Checkpoint(checkpoint::Args),
    /// Restore a container from a CRIU checkpoint (container mode).
    Restore(restore::Args),
    /// Print what this runtime supports, as JSON.
    Features,
    /// Say which isolation mode a container (id) got, or a bundle would
    /// get, and which input or policy rule chose it.
    Explain(explain::Args),
    /// Write a default config.json into a bundle.
    Spec(spec::Args),
    /// Run a benchmark suite (lifecycle, io-isolation).
    Bench(bench::Args),
    /// (internal) The supervisor of a vm-mode container.
    #[command(name = "vm-supervise", hide = true)]
    VmSupervise(vm_supervise::Args),
    /// (internal) The relay of a detached exec in a vm-mode container.
    #[command(name = "vm-exec", hide = true)]
    VmExec(vm_exec::Args),
    /// (internal) The host-side relay of a container of a VM pod.
    #[command(name = "vm-member", hide = true)]
    VmMember(vm_member::Args),
    /// (internal) vessel's own microVM monitor (the kvm engine).
    #[command(hide = true)]
    Vmm(vmm::Args),
}

/// Parses, runs, and turns an error into runc's exit status 1.
pub fn main() -> ExitCode {
    // PID 1 of a vessel microVM: the guest agent.
    vessel::isolation::entry::guest_agent_if_pid1();
    let cli = Cli::parse();
    // Before the logger is installed (or when it cannot be), errors still
    // take the log line's shape on stderr.
    let early = |msg: &str| {
        let format = cli.log_format.parse().unwrap_or(logging::Format::Text);
        logging::report_error(None, format, false, msg);
        ExitCode::from(1)
    };
    if matches!(
        cli.command,
        Command::State(_)
            | Command::List(_)
            | Command::Ps(_)
            | Command::Events(_)
            | Command::Features
            | Command::Explain(_)
    ) {
        // Commands that only print die quietly on a closed pipe (`vessel ps
        // | head`), like every Unix filter. The others keep Rust's ignored
        // SIGPIPE so a hook that does not read its stdin cannot kill them.
        // SAFETY: setting a signal disposition to SIG_DFL installs no handler.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if matches!(
        cli.command,
        Command::Create(_) | Command::Run(_) | Command::Exec(_)
    ) {
        // Commands that put a vessel process inside a container run from a
        // read-only mount of the binary (or a sealed copy), so the container
        // cannot write the host binary through /proc/<pid>/exe (CVE-2019-5736).
        if let Err(e) = vessel::reexec::ensure_protected() {
            return early(&format!("cannot re-execute from a protected copy: {e}"));
        }
    }
    let format = match cli.log_format.parse::<logging::Format>() {
        Ok(f) => f,
        Err(e) => return early(&e.to_string()),
    };
    if let Err(e) = logging::init(cli.log.as_deref(), format, cli.debug) {
        return early(&e.to_string());
    }
    let result = match &cli.command {
        Command::Create(a) => create::run(&cli, a),
        Command::Start(a) => start::run(&cli, a),
        Command::State(a) => state::run(&cli, a),
        Command::Kill(a) => kill::run(&cli, a),
        Command::Delete(a) => delete::run(&cli, a),
        Command::Run(a) => run::run(&cli, a),
        Command::List(a) => list::run(&cli, a),
        Command::Ps(a) => ps::run(&cli, a),
        Command::Exec(a) => exec::run(&cli, a),
        Command::Pause(a) => pause::pause(&cli, a),
        Command::Resume(a) => pause::resume(&cli, a),
        Command::Events(a) => events::run(&cli, a),
        Command::Update(a) => update::run(&cli, a),
        Command::Checkpoint(a) => checkpoint::run(&cli, a),
        Command::Restore(a) => restore::run(&cli, a),
        Command::Features => features::run(&cli),
        Command::Explain(a) => explain::run(&cli, a),
        Command::Spec(a) => spec::run(a),
        Command::Bench(a) => bench::run(a),
        Command::VmSupervise(a) => vm_supervise::run(a),
        Command::VmExec(a) => vm_exec::run(a),
        Command::VmMember(a) => vm_member::run(a),
        Command::Vmm(a) => vmm::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            logging::report_error(cli.log.as_deref(), format, cli.debug, &format!("{e:#}"));
            ExitCode::from(1)
        }
    }
}
