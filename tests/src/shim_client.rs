//! A private containerd (Debian's 1.6) that runs vessel through vessel's
//! own shim, `containerd-shim-vessel-v2`, and can be restarted while its
//! shims and containers run.
//!
//! containerd finds `io.containerd.vessel.v2` as `containerd-shim-vessel-v2`
//! on its `$PATH`: the test puts a hard link (or copy) of the shim under
//! test in a `bin/` of its scratch directory, beside a link to the vessel
//! under test, so the shim runs exactly that vessel.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::clients::{self, Daemon, Run};

/// The runtime name `ctr run --runtime` takes for vessel's shim.
pub const RUNTIME: &str = "io.containerd.vessel.v2";

/// The shim's binary name.
pub const SHIM_NAME: &str = "containerd-shim-vessel-v2";

/// vessel's state root under the shim when no option sets one; the
/// namespace is appended.
pub const SHIM_VESSEL_ROOT: &str = "/run/containerd/vessel";

/// The shim binary under test: `$SHIM_BIN`, else the workspace's debug
/// build beside the vessel under test.
pub fn shim_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SHIM_BIN") {
        return PathBuf::from(p);
    }
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/containerd-shim-vessel-v2");
    assert!(
        p.exists(),
        "{} not found: build it first (cargo build --workspace) or set SHIM_BIN",
        p.display()
    );
    fs::canonicalize(&p).unwrap_or(p)
}

/// Puts the shim under test and `vessel` in `dir` (created): a hard link
/// where possible, else a copy, so that the shim's "vessel beside me"
/// rule finds that vessel.
pub fn install_shim(dir: &Path, vessel: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    for (src, name) in [(shim_bin(), SHIM_NAME), (vessel.to_path_buf(), "vessel")] {
        let dst = dir.join(name);
        let _ = fs::remove_file(&dst);
        if fs::hard_link(&src, &dst).is_err() {
            fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        }
    }
    dir.join(SHIM_NAME)
}

/// A private containerd whose `$PATH` starts with the shim's directory.
#[derive(Debug)]
pub struct ShimContainerd {
    /// Its gRPC socket (`ctr -a`).
    pub sock: PathBuf,
    /// Its `--state` (tasks' bundles live below it).
    pub state: PathBuf,
    /// Its log files, one per start (debug level: every event it
    /// forwards is logged).
    pub logs: Vec<PathBuf>,
    /// The `ctr` binary.
    pub ctr: PathBuf,
    containerd: PathBuf,
    config: PathBuf,
    bin_dir: PathBuf,
    daemon: Option<Daemon>,
}

impl ShimContainerd {
    /// Starts containerd in `dir` with the shim under test, and the vessel
    /// under test beside it, on its `$PATH`.
    pub fn start(containerd: &Path, ctr: &Path, dir: &Path) -> ShimContainerd {
        Self::start_with_vessel(containerd, ctr, dir, &clients::vessel_abs())
    }

    /// Like [`ShimContainerd::start`], with the shim running `vessel`.
    pub fn start_with_vessel(
        containerd: &Path,
        ctr: &Path,
        dir: &Path,
        vessel: &Path,
    ) -> ShimContainerd {
        let bin_dir = dir.join("bin");
        install_shim(&bin_dir, vessel);
        let (_root, state, sock, config) = clients::write_containerd_config(dir);
        let mut c = ShimContainerd {
            sock,
            state,
            logs: Vec::new(),
            ctr: ctr.to_path_buf(),
            containerd: containerd.to_path_buf(),
            config,
            bin_dir,
            daemon: None,
        };
        c.launch();
        c
    }

    fn launch(&mut self) {
        let path = format!(
            "{}:{}",
            self.bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(&self.containerd);
        cmd.arg("--config").arg(&self.config).env("PATH", path);
        let _ = fs::remove_file(&self.sock);
        let log = self
            .config
            .with_file_name(format!("containerd-{}.log", self.logs.len()));
        let mut d = Daemon::start("containerd", cmd, &log);
        self.logs.push(log);
        d.wait_ready(&self.sock, Duration::from_secs(20));
        self.daemon = Some(d);
        let ok = clients::wait_until(Duration::from_secs(10), || {
            self.ctr("default", &["version"], Duration::from_secs(5))
                .ok()
        });
        assert!(ok, "containerd does not answer:\n{}", self.log_text());
    }

    /// Stops containerd (SIGTERM, by pid) and starts it again with the
    /// same configuration; shims and containers keep running meanwhile.
    pub fn restart(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(10));
        }
        self.launch();
    }

    /// The whole log of this containerd, across restarts.
    pub fn log_text(&self) -> String {
        self.logs
            .iter()
            .map(|l| fs::read_to_string(l).unwrap_or_default())
            .collect()
    }

    /// `ctr -a <sock> -n <ns> <args>`.
    pub fn ctr(&self, ns: &str, args: &[&str], limit: Duration) -> Run {
        let mut c = Command::new(&self.ctr);
        c.arg("-a").arg(&self.sock).args(["-n", ns]).args(args);
        clients::run(&mut c, limit)
    }

    /// The command line for `ctr` (quoted for `sh -c`), for clients that
    /// need a terminal of their own (`script`).
    pub fn ctr_cmdline(&self, ns: &str, args: &[&str]) -> String {
        let mut v = vec![
            self.ctr.to_string_lossy().into_owned(),
            "-a".into(),
            self.sock.to_string_lossy().into_owned(),
            "-n".into(),
            ns.into(),
        ];
        v.extend(args.iter().map(|a| a.to_string()));
        clients::shell_join(&v)
    }

    /// Pids of the shims this containerd started (only shims get its
    /// address as `-address`).
    pub fn shim_pids(&self) -> Vec<i32> {
        clients::processes_mentioning(&format!("-address {}", self.sock.display()))
    }

    /// The shim serving container `id` in `ns`.
    pub fn shim_pid_of(&self, ns: &str, id: &str) -> Option<i32> {
        let needle = format!("-namespace {ns} -id {id} ");
        self.shim_pids().into_iter().find(|p| {
            fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(&needle)
                })
                .unwrap_or(false)
        })
    }

    /// Kills and deletes every task and container in every namespace.
    pub fn remove_everything(&self) {
        let limit = Duration::from_secs(15);
        let nss = self.ctr("default", &["namespaces", "ls", "-q"], limit);
        for ns in nss.stdout.lines().map(str::trim).filter(|s| !s.is_empty()) {
            let tasks = self.ctr(ns, &["task", "ls", "-q"], limit);
            for t in tasks
                .stdout
                .lines()
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let _ = self.ctr(ns, &["task", "kill", "-a", "-s", "SIGKILL", t], limit);
                let _ = self.ctr(ns, &["task", "delete", "-f", t], limit);
            }
            let cs = self.ctr(ns, &["containers", "ls", "-q"], limit);
            for c in cs.stdout.lines().map(str::trim).filter(|s| !s.is_empty()) {
                let _ = self.ctr(ns, &["containers", "rm", c], limit);
            }
        }
    }
}

impl Drop for ShimContainerd {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            self.remove_everything();
        }
        let shims = self.shim_pids();
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(10));
        }
        // Shims outlive containerd by design: end the ones it started.
        for p in shims {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        clients::kill_processes_mentioning(&format!("-address {}", self.sock.display()));
    }
}
