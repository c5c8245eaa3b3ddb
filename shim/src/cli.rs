//! Runs the `vessel` command line, as containerd's runc shim runs runc.
//!
//! The shim is a child subreaper and containerd-shim's reaper thread waits
//! for every child (`waitpid(-1)`), so a command is never waited for with
//! `std::process::Child::wait`: the caller subscribes to the reaper's exit
//! notifications before spawning and takes the exit status from there.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use containerd_shim::monitor::{monitor_subscribe, wait_pid, Topic};
use serde_json::Value;

use crate::error::ShimError;

/// The descriptors a container process gets as stdin, stdout and stderr
/// (`None`: /dev/null).
#[derive(Debug, Default)]
pub struct ChildStdio {
    /// Standard input.
    pub stdin: Option<OwnedFd>,
    /// Standard output.
    pub stdout: Option<OwnedFd>,
    /// Standard error.
    pub stderr: Option<OwnedFd>,
}

fn stdio(fd: Option<OwnedFd>) -> Stdio {
    fd.map(Stdio::from).unwrap_or_else(Stdio::null)
}

/// One vessel installation as the shim drives it: the binary and its
/// global flags.
#[derive(Debug, Clone)]
pub struct Vessel {
    /// The vessel binary.
    pub binary: PathBuf,
    /// `--root` (already including the namespace).
    pub root: PathBuf,
    /// `--config`, if an option named one.
    pub config: Option<PathBuf>,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// `--log` (JSON lines; the last error is what a failure reports).
    pub log: PathBuf,
}

/// What `vessel exec` needs besides the container id.
#[derive(Debug)]
pub struct ExecArgs<'a> {
    /// The OCI process JSON file.
    pub process: &'a Path,
    /// Where vessel writes the process's pid.
    pub pid_file: &'a Path,
    /// The console socket, for a terminal.
    pub console_socket: Option<&'a Path>,
}

impl Vessel {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .args(["--log-format", "json"]);
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        if self.systemd_cgroup {
            c.arg("--systemd-cgroup");
        }
        c
    }

    /// The message of the last error line vessel wrote to its log after
    /// `offset`, if any.
    fn last_logged_error(&self, offset: u64) -> Option<String> {
        let data = std::fs::read(&self.log).ok()?;
        let tail = data.get(offset as usize..)?;
        String::from_utf8_lossy(tail)
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["level"] == "error" || v["level"] == "fatal")
            .find_map(|v| v["msg"].as_str().map(str::to_string))
    }

    /// Runs `vessel <args>` (about container `id`) with `io` as its stdio; when `capture` is true
    /// its stdout is returned instead of going to `io.stdout`.
    fn run(
        &self,
        id: &str,
        args: &[&str],
        io: ChildStdio,
        capture: bool,
    ) -> Result<Vec<u8>, ShimError> {
        let what = format!("{} {id}", args.first().copied().unwrap_or_default());
        let offset = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = self.command();
        cmd.args(args).stdin(stdio(io.stdin));
        if capture {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        } else {
            cmd.stdout(stdio(io.stdout)).stderr(stdio(io.stderr));
        }
        // Subscribe first: the reaper may see the exit before spawn returns.
        let sub = monitor_subscribe(Topic::Pid).map_err(|e| ShimError::Vessel {
            cmd: what.clone(),
            msg: format!("subscribe to exits: {e}"),
        })?;
        let mut child = cmd.spawn().map_err(|e| ShimError::Vessel {
            cmd: what.clone(),
            msg: format!("run {}: {e}", self.binary.display()),
        })?;
        // Our copies of the container's descriptors go now, or the reader
        // of a stdout fifo would never see end-of-file.
        drop(cmd);
        let err_reader = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = e.read_to_end(&mut v);
                v
            })
        });
        let mut out = Vec::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_end(&mut out);
        }
        let code = wait_pid(child.id() as i32, sub);
        let stderr = err_reader
            .and_then(|t| t.join().ok())
            .map(|v| String::from_utf8_lossy(&v).trim().to_string())
            .unwrap_or_default();
        if code != 0 {
            let msg = self
                .last_logged_error(offset)
                .or_else(|| (!stderr.is_empty()).then_some(stderr))
                .unwrap_or_else(|| format!("exit status {code}"));
            return Err(ShimError::Vessel { cmd: what, msg });
        }
        Ok(out)
    }

    /// `vessel create --bundle B --pid-file P [--console-socket S] <id>`.
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        io: ChildStdio,
    ) -> Result<(), ShimError> {
        let b = bundle.to_string_lossy();
        let p = pid_file.to_string_lossy();
        let mut args = vec!["create", "--bundle", &b, "--pid-file", &p];
        let s;
        if let Some(sock) = console_socket {
            s = sock.to_string_lossy();
            args.extend(["--console-socket", &s]);
        }
        args.push(id);
        self.run(id, &args, io, false).map(drop)
    }

    /// `vessel start <id>`.
    pub fn start(&self, id: &str) -> Result<(), ShimError> {
        self.run(id, &["start", id], ChildStdio::default(), true)
            .map(drop)
    }

    /// `vessel exec --detach --process F --pid-file P [--console-socket S] <id>`.
    pub fn exec(&self, id: &str, a: &ExecArgs<'_>, io: ChildStdio) -> Result<(), ShimError> {
        let f = a.process.to_string_lossy();
        let p = a.pid_file.to_string_lossy();
        let mut args = vec!["exec", "--detach", "--process", &f, "--pid-file", &p];
        let s;
        if let Some(sock) = a.console_socket {
            s = sock.to_string_lossy();
            args.extend(["--console-socket", &s]);
        }
        args.push(id);
        self.run(id, &args, io, false).map(drop)
    }

    /// `vessel kill [--all] <id> <signal>`.
    pub fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), ShimError> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, &sig]);
        self.run(id, &args, ChildStdio::default(), true).map(drop)
    }

    /// `vessel delete [--force] <id>`.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), ShimError> {
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        self.run(id, &args, ChildStdio::default(), true).map(drop)
    }

    /// `vessel state <id>`, parsed.
    pub fn state(&self, id: &str) -> Result<Value, ShimError> {
        let out = self.run(id, &["state", id], ChildStdio::default(), true)?;
        parse_json("state", id, &out)
    }

    /// `vessel ps --format json <id>`: the container's pids.
    pub fn ps(&self, id: &str) -> Result<Vec<u32>, ShimError> {
        let out = self.run(
            id,
            &["ps", "--format", "json", id],
            ChildStdio::default(),
            true,
        )?;
        serde_json::from_slice::<Vec<u32>>(&out).map_err(|e| ShimError::Vessel {
            cmd: format!("ps {id}"),
            msg: format!("unexpected output ({e}): {}", String::from_utf8_lossy(&out)),
        })
    }

    /// `vessel pause <id>`.
    pub fn pause(&self, id: &str) -> Result<(), ShimError> {
        self.run(id, &["pause", id], ChildStdio::default(), true)
            .map(drop)
    }

    /// `vessel resume <id>`.
    pub fn resume(&self, id: &str) -> Result<(), ShimError> {
        self.run(id, &["resume", id], ChildStdio::default(), true)
            .map(drop)
    }

    /// `vessel update --resources <file> <id>`.
    pub fn update(&self, id: &str, resources: &Path) -> Result<(), ShimError> {
        let r = resources.to_string_lossy();
        self.run(
            id,
            &["update", "--resources", &r, id],
            ChildStdio::default(),
            true,
        )
        .map(drop)
    }

    /// `vessel events --stats <id>`: the `data` object (runc's shape).
    pub fn stats(&self, id: &str) -> Result<Value, ShimError> {
        let out = self.run(id, &["events", "--stats", id], ChildStdio::default(), true)?;
        let v = parse_json("events --stats", id, &out)?;
        Ok(v.get("data").cloned().unwrap_or(Value::Null))
    }
}

fn parse_json(cmd: &str, id: &str, out: &[u8]) -> Result<Value, ShimError> {
    serde_json::from_slice(out).map_err(|e| ShimError::Vessel {
        cmd: format!("{cmd} {id}"),
        msg: format!("unexpected output ({e}): {}", String::from_utf8_lossy(out)),
    })
}
