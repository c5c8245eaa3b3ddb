//! Busybox bundles made at test time from Debian's busybox-static.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Applets linked into every test rootfs.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "ps", "hostname", "id", "sleep", "true", "false", "mount",
    "readlink", "grep", "head", "wc", "env", "pwd", "touch", "mkdir", "stat", "test", "kill", "dd",
    "umask", "ulimit", "nproc", "uname", "wget", "nc", "ip", "ifconfig", "printf", "tr", "sed",
    "awk", "sync", "chmod", "rm", "cp", "ln", "find", "tty", "stty", "whoami", "date", "seq",
    "yes", "cut", "xargs",
];

/// A bundle directory with a busybox rootfs and a config.json.
#[derive(Debug)]
pub struct Bundle {
    /// Keeps the temporary directory alive.
    pub dir: tempfile::TempDir,
    /// The parsed config, written back by [`Bundle::write`].
    pub config: Value,
}

/// Where busybox-static installs its binary.
pub fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Makes a busybox rootfs at `root`.
pub fn make_rootfs(root: &Path) {
    let bb = busybox().expect("busybox-static is not installed (apt-get install busybox-static)");
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "root", "home"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(&bb, root.join("bin/busybox")).unwrap();
    for a in APPLETS {
        let _ = symlink("busybox", root.join("bin").join(a));
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/sh\n",
    )
    .unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

impl Bundle {
    /// A bundle from `vessel spec`, with terminal off and `args` as the process.
    pub fn new(args: &[&str]) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("vessel-test-")
            .tempdir()
            .unwrap();
        make_rootfs(&dir.path().join("rootfs"));
        let out = std::process::Command::new(crate::vessel_bin())
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "vessel spec: {out:?}");
        let mut config: Value =
            serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap();
        config["process"]["terminal"] = Value::Bool(false);
        config["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
        let b = Bundle { dir, config };
        b.write();
        b
    }

    /// The bundle's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The rootfs path.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Writes `config` to config.json.
    pub fn write(&self) {
        fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }
}
