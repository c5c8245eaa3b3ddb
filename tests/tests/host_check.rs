//! The suite's before/after host check (`host-check`, run by `make test`)
//! must see every kind of leak: this test leaks one of each on purpose,
//! checks that `compare` fails naming each, removes them (also when it
//! fails, by guards) and checks that `compare` no longer names them.
//!
//! It asserts only on what it leaked itself: other users of a shared
//! development machine may change the host at the same time.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use vessel_tests::{named_netns, require_root};

fn host_check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host-check"))
        .args(args)
        .output()
        .expect("run host-check")
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn mount_points() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let point = pre.split(' ').nth(4)?.to_string();
            let fstype = post.split(' ').next()?.to_string();
            Some((point, fstype))
        })
        .collect()
}

/// A cgroup directory in the first cgroup hierarchy of the host.
struct CgroupDir(PathBuf);

impl CgroupDir {
    fn new(name: &str) -> Self {
        let root = mount_points()
            .into_iter()
            .find(|(_, t)| t == "cgroup" || t == "cgroup2")
            .map(|(p, _)| PathBuf::from(p))
            .expect("a cgroup hierarchy");
        let dir = root.join(name);
        std::fs::create_dir(&dir).expect("mkdir cgroup");
        Self(dir)
    }
}

impl Drop for CgroupDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A tmpfs mounted on a temporary directory of the host's own mount
/// namespace: the one kind of leak that must be made on the host to be
/// seen there. Lazily unmounted when dropped.
struct HostMount(tempfile::TempDir);

impl HostMount {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
            Some("size=1m"),
        )
        .expect("mount tmpfs");
        Self(dir)
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = umount2(self.0.path(), MntFlags::MNT_DETACH);
    }
}

/// A veth pair in the host's network namespace (the kind of link
/// containers get; this kernel has no dummy driver). Deleting one end
/// deletes both.
struct VethPair(String, String);

impl VethPair {
    fn new(name: &str) -> Self {
        let peer = format!("{name}p");
        run(
            "ip",
            &["link", "add", name, "type", "veth", "peer", "name", &peer],
        );
        Self(name.to_string(), peer)
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// A process in a network namespace of its own; killed by pid and reaped.
struct Sleeper(Child);

impl Sleeper {
    fn new() -> Self {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare");
        Self(child)
    }

    /// The inode of its network namespace, once unshare has made it.
    fn net_inode(&self, host_inode: &str) -> String {
        let link = format!("/proc/{}/ns/net", self.0.id());
        for _ in 0..100 {
            let t = std::fs::read_link(&link).expect("ns link");
            let t = t.to_string_lossy().into_owned();
            if t != host_inode {
                return t;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("unshare --net did not make a network namespace");
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loop device on a temporary file; detached when dropped.
struct LoopDevice {
    dev: String,
    _file: tempfile::NamedTempFile,
}

impl LoopDevice {
    fn new() -> Self {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        file.as_file().set_len(1 << 20).expect("size");
        let dev = run("losetup", &["-f", "--show", &file.path().to_string_lossy()]);
        Self { dev, _file: file }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// A named network namespace (`ip netns add`); `named_netns::del` also
/// undoes the /run/netns mount `ip` makes, or this test would leak it.
struct NamedNetns {
    name: String,
}

impl NamedNetns {
    fn new(name: &str) -> Self {
        named_netns::add(name);
        Self {
            name: name.to_string(),
        }
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        named_netns::del(&self.name);
    }
}

#[test]
fn compare_lists_every_kind_of_leak_and_forgets_them_once_removed() {
    require_root!();
    let tmp = tempfile::tempdir().expect("tempdir");
    let snap = tmp.path().join("before.json");
    let snap = snap.to_str().unwrap();
    let saved = host_check(&["save", snap]);
    assert!(saved.status.success(), "{saved:?}");

    let tag = format!("vhc{}", std::process::id() % 1_000_000);
    let host_net = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let cgroup = CgroupDir::new(&format!("vessel-hostcheck-{}", std::process::id()));
    let mnt = HostMount::new();
    let link = VethPair::new(&tag);
    let sleeper = Sleeper::new();
    let netns = sleeper.net_inode(&host_net);
    let lo = LoopDevice::new();
    let named = NamedNetns::new(&tag);

    let expected = [
        format!("cgroup added: {}", cgroup.0.display()),
        format!("mount added: {} type tmpfs", mnt.0.path().display()),
        format!("link added: {}", link.0),
        format!("link added: {}", link.1),
        format!("process left running: pid {} ", sleeper.0.id()),
        format!(
            "network namespace added: {netns} held by {}",
            sleeper.0.id()
        ),
        format!("loop device added: {} ", lo.dev),
        format!("netns added: {} ", named.name),
    ];
    let leaked = host_check(&["compare", snap, "--settle", "0"]);
    let report = String::from_utf8_lossy(&leaked.stdout).into_owned();
    println!("{report}");
    assert_eq!(leaked.status.code(), Some(1), "compare must fail: {report}");
    for e in &expected {
        assert!(
            report.contains(e),
            "the report does not list {e:?}:\n{report}"
        );
    }

    drop((named, lo, sleeper, link, mnt, cgroup));
    let after = host_check(&["compare", snap, "--settle", "5"]);
    let report = String::from_utf8_lossy(&after.stdout).into_owned();
    println!("{report}");
    assert_ne!(after.status.code(), Some(2), "{after:?}");
    for e in &expected {
        assert!(
            !report.contains(e),
            "still listed after cleanup: {e:?}:\n{report}"
        );
    }
}

#[test]
fn compare_without_a_snapshot_names_the_file() {
    let out = host_check(&["compare", "/nonexistent/host-check.json"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/host-check.json"), "{err}");
    let out = host_check(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}
