//! The guest agent's helper processes: creating the container, exec and
//! ps run in a fresh single-threaded process (this binary, started with
//! [`HELPER_ARGV0`] and its request), which calls the container library and
//! writes a typed reply or error on its report pipe
//! ([`vessel_vm::agent::helpers::REPORT_FD`]). Why not in the agent's own
//! process: see `docs/ARCHITECTURE.md` (the agent is multi-threaded and
//! reaps every child; `create` and `exec` fork and run Rust code in the
//! child, and `ps` waits for its own child).

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::wait::WaitStatus;
use oci_spec::runtime::Process;
use serde::{Deserialize, Serialize};
use vessel_vm::agent::helpers::{run_reporting, write_report};

/// `argv[0]` of a helper: how a process of this binary knows it is one.
pub const HELPER_ARGV0: &str = "vessel-guest-helper";

/// What the agent asks a helper to do (its only argument, as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HelperRequest {
    /// Create the container of `bundle`; its init waits to be started.
    Create {
        /// State root.
        root: PathBuf,
        /// Container id.
        id: String,
        /// Its bundle.
        bundle: PathBuf,
        /// Where to send the pty master, with `process.terminal`.
        console_socket: Option<PathBuf>,
    },
    /// Start another process in the running container, detached.
    Exec {
        /// State root.
        root: PathBuf,
        /// Container id.
        id: String,
        /// The process.
        process: Box<Process>,
        /// Where to send the pty master, with `process.terminal`.
        console_socket: Option<PathBuf>,
        /// Where the library writes the process's pid.
        pid_file: PathBuf,
    },
    /// List the container's processes.
    Ps {
        /// State root.
        root: PathBuf,
        /// Container id.
        id: String,
        /// `table` or `json`.
        format: String,
    },
}

impl HelperRequest {
    fn command(&self) -> HelperCommand {
        match self {
            HelperRequest::Create { .. } => HelperCommand::Create,
            HelperRequest::Exec { .. } => HelperCommand::Exec,
            HelperRequest::Ps { .. } => HelperCommand::Ps,
        }
    }
}

/// Which request a helper served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HelperCommand {
    /// [`HelperRequest::Create`].
    Create,
    /// [`HelperRequest::Exec`].
    Exec,
    /// [`HelperRequest::Ps`].
    Ps,
}

impl std::fmt::Display for HelperCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HelperCommand::Create => "create",
            HelperCommand::Exec => "exec",
            HelperCommand::Ps => "ps",
        })
    }
}

/// What a helper reports on success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HelperReply {
    /// The container's init (or the exec'd process) runs as `pid`.
    Started {
        /// Its pid in the guest.
        pid: i32,
    },
    /// What ps printed.
    Ps {
        /// The listing.
        output: String,
    },
}

/// A helper's report: its reply, or the library's error.
#[derive(Debug, Serialize, Deserialize)]
enum Report {
    Ok(HelperReply),
    Err(HelperError),
}

/// Why a helper request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HelperError {
    /// The library refused or failed; `chain` is its message and those of
    /// its sources, outermost first (it names the container and field).
    #[error("{}", .chain.join(": "))]
    Failed {
        /// The request.
        command: HelperCommand,
        /// The error and its sources.
        chain: Vec<String>,
    },
    /// The request could not be encoded or read.
    #[error("a guest helper's request: {msg}")]
    BadRequest {
        /// Why.
        msg: String,
    },
    /// The helper could not be started or waited for.
    #[error("starting the guest's vessel {command}: {msg}")]
    Spawn {
        /// The request.
        command: HelperCommand,
        /// Why.
        msg: String,
    },
    /// The helper was killed before it reported (the guest's OOM killer
    /// sends SIGKILL).
    #[error("the guest's vessel {command} was killed by signal {signal} before it reported")]
    Killed {
        /// The request.
        command: HelperCommand,
        /// The signal.
        signal: i32,
    },
    /// The helper exited without a readable report.
    #[error("the guest's vessel {command} exited with status {code} without a report{}",
        .detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    NoReport {
        /// The request.
        command: HelperCommand,
        /// Its exit status.
        code: i32,
        /// Why the report, if any, could not be read.
        detail: Option<String>,
    },
}

/// Runs `request` in a helper process and returns its reply; `configure`
/// sets the helper's stdio (which the container's processes inherit).
pub fn run(
    request: &HelperRequest,
    configure: impl FnOnce(&mut Command),
) -> Result<HelperReply, HelperError> {
    let command = request.command();
    let arg = serde_json::to_string(request)
        .map_err(|e| HelperError::BadRequest { msg: e.to_string() })?;
    let mut cmd = Command::new("/proc/self/exe");
    std::os::unix::process::CommandExt::arg0(&mut cmd, HELPER_ARGV0);
    cmd.arg(arg);
    configure(&mut cmd);
    let (status, report) = run_reporting(&mut cmd).map_err(|e| HelperError::Spawn {
        command,
        msg: e.to_string(),
    })?;
    // The child's pipe ends live in `cmd` until it is dropped.
    drop(cmd);
    let code = vessel_vm::agent::helpers::exit_code(status);
    let report = match (report, status) {
        (Some(r), _) => r,
        (None, WaitStatus::Signaled(_, sig, _)) => {
            return Err(HelperError::Killed {
                command,
                signal: sig as i32,
            })
        }
        (None, _) => {
            return Err(HelperError::NoReport {
                command,
                code,
                detail: None,
            })
        }
    };
    match serde_json::from_slice::<Report>(&report) {
        Ok(Report::Ok(reply)) => Ok(reply),
        Ok(Report::Err(e)) => Err(e),
        Err(e) => Err(HelperError::NoReport {
            command,
            code,
            detail: Some(format!("unreadable report: {e}")),
        }),
    }
}

/// Whether this process is a helper the guest agent started. `argv[0]`
/// alone decides: a helper may run from a sealed copy of the binary
/// (`reexec`), whose inode is not PID 1's.
pub fn is_helper() -> bool {
    std::env::args_os()
        .next()
        .is_some_and(|a| a == HELPER_ARGV0)
}

/// The helper's main: serves its one request, reports, exits (0 on
/// success, 1 on an error it reported).
pub fn helper_main() -> ! {
    let arg = std::env::args().nth(1).unwrap_or_default();
    let report = match serde_json::from_str::<HelperRequest>(&arg) {
        Ok(request) => {
            let command = request.command();
            match serve(request) {
                Ok(reply) => Report::Ok(reply),
                Err(e) => Report::Err(HelperError::Failed {
                    command,
                    chain: chain(&*e),
                }),
            }
        }
        Err(e) => Report::Err(HelperError::BadRequest { msg: e.to_string() }),
    };
    let code = i32::from(matches!(report, Report::Err(_)));
    let written = serde_json::to_vec(&report)
        .map_err(std::io::Error::other)
        .and_then(|bytes| write_report(&bytes));
    if let Err(e) = written {
        eprintln!("vessel: guest helper: writing the report: {e}");
        std::process::exit(2);
    }
    std::process::exit(code)
}

/// The message of `e` and of each of its sources.
fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        // Messages that already embed their source would repeat it.
        if !out.last().is_some_and(|l| l.ends_with(&text)) {
            out.push(text);
        }
        cur = s.source();
    }
    out
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn serve(request: HelperRequest) -> Result<HelperReply, BoxError> {
    if matches!(
        request,
        HelperRequest::Create { .. } | HelperRequest::Exec { .. }
    ) {
        // As the CLI does for commands that put a vessel process in a
        // container (CVE-2019-5736): run from a protected copy. This may
        // re-execute the helper, with the report descriptor still open.
        crate::reexec::ensure_protected()?;
    }
    // Processes this helper forks must not keep the report pipe open.
    // SAFETY: fcntl on a descriptor number changes only its flags.
    unsafe {
        libc::fcntl(
            vessel_vm::agent::helpers::REPORT_FD,
            libc::F_SETFD,
            libc::FD_CLOEXEC,
        )
    };
    match request {
        HelperRequest::Create {
            root,
            id,
            bundle,
            console_socket,
        } => {
            let created = crate::container::create(&crate::container::CreateOptions {
                root,
                id,
                bundle,
                console_socket,
                pid_file: None,
                no_pivot: false,
                no_new_keyring: false,
                preserve_fds: 0,
                systemd_cgroup: false,
                foreground: false,
                isolation: crate::isolation::Isolation::Container,
                vm: super::VmDefaults::default(),
                ..Default::default()
            })?;
            Ok(HelperReply::Started { pid: created.pid })
        }
        HelperRequest::Exec {
            root,
            id,
            process,
            console_socket,
            pid_file,
        } => {
            crate::spec::check_user_ids(&process)?;
            crate::container::exec(crate::container::ExecOptions {
                root,
                id,
                process: *process,
                console_socket,
                pid_file: Some(pid_file.clone()),
                detach: true,
                preserve_fds: 0,
                sub_cgroups: Vec::new(),
                ignore_paused: false,
            })?;
            let pid = read_pid(&pid_file)?;
            let _ = std::fs::remove_file(&pid_file);
            Ok(HelperReply::Started { pid })
        }
        HelperRequest::Ps { root, id, format } => Ok(HelperReply::Ps {
            output: crate::container::ps(&root, &id, &format, &[])?,
        }),
    }
}

fn read_pid(path: &Path) -> Result<i32, BoxError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("the exec'd process's pid file {}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|_| format!("no pid in {}", path.display()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_lists_sources_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(chain(&e), ["outer", "inner"]);
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Embeds(#[source] std::io::Error);
        let e = Embeds(std::io::Error::other("inner"));
        assert_eq!(chain(&e), ["outer: inner"]);
    }

    #[test]
    fn reports_round_trip_and_read_as_before() {
        let e = HelperError::Failed {
            command: HelperCommand::Create,
            chain: vec!["container \"c\"".into(), "process.cwd: not absolute".into()],
        };
        assert_eq!(e.to_string(), "container \"c\": process.cwd: not absolute");
        let bytes = serde_json::to_vec(&Report::Err(e.clone())).unwrap();
        match serde_json::from_slice::<Report>(&bytes).unwrap() {
            Report::Err(back) => assert_eq!(back, e),
            other => panic!("{other:?}"),
        }
        let killed = HelperError::Killed {
            command: HelperCommand::Exec,
            signal: 9,
        };
        assert!(killed.to_string().contains("exec was killed by signal 9"));
    }
}
