//! A container under test: its own `--root`, a unique id, a busybox bundle,
//! and a guard that force-deletes it whatever the test's outcome.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bundle::Bundle;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A container id unique to this test process and call: `vt-<tag>-<pid>-<n>`.
pub fn unique_id(tag: &str) -> String {
    format!(
        "vt-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// The output's stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The output's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the command succeeded, printing its output otherwise.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "command failed ({:?})\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Asserts the command failed and returns its stderr.
#[track_caller]
pub fn fails(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "command unexpectedly succeeded\nstdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}

/// Polls `f` every 50 ms until it returns true or `secs` seconds pass.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A container with its own state root and bundle; deleted (`delete
/// --force`) when dropped.
pub struct Ctr {
    /// The `--root` directory.
    pub root: tempfile::TempDir,
    /// The container id.
    pub id: String,
    /// The bundle (config and rootfs).
    pub bundle: Bundle,
    /// The runtime binary used (defaults to [`crate::vessel_bin`]).
    pub bin: PathBuf,
    /// Global flags put before every command (e.g. `--config`).
    pub global: Vec<String>,
}

impl Ctr {
    /// A container whose process runs `args`, not yet created.
    pub fn new(tag: &str, args: &[&str]) -> Ctr {
        Ctr {
            root: tempfile::Builder::new()
                .prefix("vessel-root-")
                .tempdir()
                .unwrap(),
            id: unique_id(tag),
            bundle: Bundle::new(args),
            bin: crate::vessel_bin(),
            global: Vec::new(),
        }
    }

    /// The config, to edit before [`Ctr::write`].
    pub fn config(&mut self) -> &mut Value {
        &mut self.bundle.config
    }

    /// Writes the config back to the bundle.
    pub fn write(&self) {
        self.bundle.write();
    }

    /// The state root path.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A vessel command with `--root` set.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path());
        c.args(&self.global);
        c.stdin(Stdio::null());
        c
    }

    /// Runs vessel with `--root` and `args`. Output goes through files, not
    /// pipes: a created container's init (and a detached process) keeps
    /// vessel's stdout and stderr open, so a pipe would never see its end.
    pub fn v(&self, args: &[&str]) -> Output {
        let mut c = self.cmd();
        c.args(args);
        output_via_files(&mut c)
    }

    /// `create --bundle <bundle> <id>` plus `extra` flags.
    pub fn create_with(&self, extra: &[&str]) -> Output {
        let b = self.bundle.path().to_str().unwrap().to_string();
        let mut args = vec!["create", "--bundle", &b];
        args.extend_from_slice(extra);
        args.push(&self.id);
        self.v(&args)
    }

    /// Creates the container, asserting success.
    #[track_caller]
    pub fn create(&self) {
        ok(&self.create_with(&[]));
    }

    /// Starts the container, asserting success.
    #[track_caller]
    pub fn start(&self) {
        ok(&self.v(&["start", &self.id]));
    }

    /// `run --bundle <bundle> <id>` in the foreground.
    pub fn run(&self) -> Output {
        let b = self.bundle.path().to_str().unwrap().to_string();
        self.v(&["run", "--bundle", &b, &self.id])
    }

    /// The OCI state as JSON, asserting `state` succeeds.
    #[track_caller]
    pub fn state(&self) -> Value {
        let o = self.v(&["state", &self.id]);
        serde_json::from_str(&ok(&o)).expect("state JSON")
    }

    /// The state's status string.
    #[track_caller]
    pub fn status(&self) -> String {
        self.state()["status"].as_str().unwrap_or("").to_string()
    }

    /// The init pid from the state.
    #[track_caller]
    pub fn pid(&self) -> i32 {
        self.state()["pid"].as_i64().expect("pid") as i32
    }

    /// `exec <id> args...`.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut a = vec!["exec", self.id.as_str()];
        a.extend_from_slice(args);
        self.v(&a)
    }

    /// `exec` with options before the id and a command after it.
    pub fn exec_opts(&self, opts: &[&str], args: &[&str]) -> Output {
        let mut a = vec!["exec"];
        a.extend_from_slice(opts);
        a.push(self.id.as_str());
        a.extend_from_slice(args);
        self.v(&a)
    }

    /// Waits until `status` is `want` (up to 10 s).
    pub fn wait_status(&self, want: &str) -> bool {
        wait_for(10, || {
            let o = self.v(&["state", &self.id]);
            serde_json::from_slice::<Value>(&o.stdout)
                .map(|v| v["status"] == want)
                .unwrap_or(false)
        })
    }

    /// What this container left behind (see [`crate::leaks::settle`]).
    pub fn leftovers(&self) -> Vec<String> {
        crate::leaks::settle(self.root.path(), &self.id, Some(self.bundle.path()))
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = self.v(&["delete", "--force", &self.id]);
        // Hygiene for the host when the runtime failed to clean up (the
        // tests assert on leftovers before this runs): empty cgroups go.
        if !self.id.is_empty() && !self.id.contains('/') {
            for d in crate::leaks::cgroup_dirs(&self.id) {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

/// Reads the first line of a cgroup v1 file `/sys/fs/cgroup/<ctrl>/.../<rel>/<file>`.
/// A container without `cgroupsPath` nests under the caller's cgroup: the
/// directory ending with `rel` is found wherever it is.
pub fn cgroup_value(ctrl: &str, rel: &str, file: &str) -> Option<String> {
    let p = crate::leaks::v1_cgroup_dir(ctrl, rel)?.join(file);
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Runs `cmd` to completion with stdout and stderr sent to temporary files
/// (see [`Ctr::v`]) and returns what it wrote.
pub fn output_via_files(cmd: &mut Command) -> Output {
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    let status = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .status()
        .expect("run vessel");
    let read = |f: &mut std::fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Output {
        status,
        stdout: read(&mut out),
        stderr: read(&mut err),
    }
}
