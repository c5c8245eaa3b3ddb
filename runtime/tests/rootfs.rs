//! Root filesystem setup on the real kernel.
//!
//! Each test forks a child that unshares a mount namespace (and, where
//! needed, user, pid, ipc and cgroup namespaces), builds a rootfs in a
//! tempdir, runs `prepare`/`pivot`/`finalize` and checks the result from
//! inside. The child reports "OK" or what went wrong through a pipe. The
//! mounts die with the child's namespace, so the host is left as it was.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult, Uid};
use oci_spec::runtime::Spec;
use serde_json::{json, Value};
use vessel::rootfs::{
    finalize, mount_console, pivot, prepare, validate, RootfsConfig, RootfsError,
};

type Check = Result<(), String>;

fn is_root() -> bool {
    if Uid::effective().is_root() {
        return true;
    }
    eprintln!("skipped: rootfs tests need root (mount namespaces, mknod)");
    false
}

/// Run `f` in a forked child inside new namespaces; returns its verdict.
/// With CLONE_NEWUSER the child maps uid/gid 0 to itself; with
/// CLONE_NEWPID it forks again so `f` runs as pid 1 of the new namespace.
fn in_child(ns: CloneFlags, f: impl FnOnce() -> Check) -> Check {
    let (r, w) = pipe().expect("pipe");
    // SAFETY: the child only runs this test's code and leaves with _exit.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(r);
            let verdict =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child_main(ns, f)))
                    .unwrap_or_else(|_| Err("child panicked".into()));
            report(&w, verdict)
        }
        ForkResult::Parent { child } => {
            drop(w);
            let mut msg = String::new();
            fs::File::from(r)
                .read_to_string(&mut msg)
                .expect("read verdict");
            let status = waitpid(child, None).expect("waitpid");
            match (status, msg.as_str()) {
                (WaitStatus::Exited(_, 0), "OK") => Ok(()),
                (_, "") => Err(format!("child ended with {status:?} and no verdict")),
                _ => Err(msg),
            }
        }
    }
}

fn report(w: &OwnedFd, verdict: Check) -> ! {
    let msg = match &verdict {
        Ok(()) => "OK".to_string(),
        Err(e) => e.clone(),
    };
    let _ = fs::File::from(w.try_clone().expect("dup")).write_all(msg.as_bytes());
    // SAFETY: _exit ends the forked child without running the parent's
    // atexit handlers or destructors twice.
    unsafe { libc::_exit(i32::from(verdict.is_err())) }
}

fn child_main(ns: CloneFlags, f: impl FnOnce() -> Check) -> Check {
    unshare(ns | CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare: {e}"))?;
    if ns.contains(CloneFlags::CLONE_NEWUSER) {
        fs::write("/proc/self/setgroups", "deny").map_err(|e| format!("setgroups: {e}"))?;
        fs::write("/proc/self/uid_map", "0 0 1").map_err(|e| format!("uid_map: {e}"))?;
        fs::write("/proc/self/gid_map", "0 0 1").map_err(|e| format!("gid_map: {e}"))?;
    }
    if !ns.contains(CloneFlags::CLONE_NEWPID) {
        return f();
    }
    // SAFETY: single-threaded child; the grandchild leaves with _exit.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|_| Err("grandchild panicked".into()));
            if let Err(e) = &verdict {
                eprintln!("{e}");
            }
            // The grandchild's verdict goes back as its exit code, its
            // message to stderr.
            // SAFETY: see above.
            unsafe { libc::_exit(i32::from(verdict.is_err())) }
        }
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            other => Err(format!(
                "pid-namespace child ended with {other:?} (its error is on stderr)"
            )),
        },
    }
}

/// Run `f` like [`in_child`], but from a mount namespace that plays a
/// systemd host whose `/` is shared: a fresh namespace, first cut from the
/// real host (rprivate) so nothing can reach it, then made rshared, so the
/// container's namespace starts with every mount a peer of this one.
/// Afterwards this namespace's mountinfo must be unchanged: nothing the
/// container did propagated outward.
fn in_shared_host(ns: CloneFlags, f: impl FnOnce() -> Check) -> Check {
    in_child(CloneFlags::empty(), || {
        let none = None::<&str>;
        for (flags, what) in [
            (MsFlags::MS_PRIVATE | MsFlags::MS_REC, "rprivate"),
            (MsFlags::MS_SHARED | MsFlags::MS_REC, "rshared"),
        ] {
            mount(none, "/", none, flags, none).map_err(|e| format!("make / {what}: {e}"))?;
        }
        let read = || fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string());
        let before = read()?;
        let root = mountinfo();
        let root = mount_at(&root, "/")?;
        ensure(
            root.optional.contains("shared:"),
            format!("the simulated host's / is not shared: {root:?}"),
        )?;
        let verdict = in_child(ns, f);
        let after = read()?;
        let added: Vec<&str> = after.lines().filter(|l| !before.contains(l)).collect();
        // A mount whose directory another test deleted meanwhile is
        // detached in every namespace by the kernel: only a mount point
        // that still exists counts as removed by the container.
        let removed: Vec<&str> = before
            .lines()
            .filter(|l| !after.contains(l))
            .filter(|l| {
                l.split(' ')
                    .nth(4)
                    .is_some_and(|p| Path::new(&p.replace("\\040", " ")).exists())
            })
            .collect();
        let leak = if added.is_empty() && removed.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the host's mount table changed: added {added:#?}, removed {removed:#?}"
            ))
        };
        match (verdict, leak) {
            (Err(v), Err(l)) => Err(format!("{v}; and {l}")),
            (v, l) => v.and(l),
        }
    })
}

/// One line of /proc/self/mountinfo.
#[derive(Debug)]
struct MountInfo {
    point: String,
    opts: String,
    optional: String,
    fstype: String,
    super_opts: String,
}

fn mountinfo() -> Vec<MountInfo> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            Some(MountInfo {
                point: pre[4].to_string(),
                opts: pre[5].to_string(),
                optional: pre[6..].join(" "),
                fstype: post[0].to_string(),
                super_opts: post.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// The topmost mount at `point`.
fn mount_at<'m>(mi: &'m [MountInfo], point: &str) -> Result<&'m MountInfo, String> {
    mi.iter()
        .rev()
        .find(|m| m.point == point)
        .ok_or_else(|| format!("no mount at {point}"))
}

fn has_opt(list: &str, opt: &str) -> bool {
    list.split(',').any(|o| o == opt)
}

fn expect_mount(
    mi: &[MountInfo],
    point: &str,
    fstype: &str,
    opts: &[&str],
    super_opts: &[&str],
) -> Check {
    let m = mount_at(mi, point)?;
    if m.fstype != fstype {
        return Err(format!("{point}: type {} instead of {fstype}", m.fstype));
    }
    for o in opts {
        if !has_opt(&m.opts, o) {
            return Err(format!("{point}: option {o} missing in {}", m.opts));
        }
    }
    for o in super_opts {
        if !has_opt(&m.super_opts, o) {
            return Err(format!(
                "{point}: fs option {o} missing in {}",
                m.super_opts
            ));
        }
    }
    Ok(())
}

fn ensure(cond: bool, what: impl Into<String>) -> Check {
    if cond {
        Ok(())
    } else {
        Err(what.into())
    }
}

/// A bundle in a tempdir: `rootfs/` with a few directories and a marker.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new() -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("vessel-rootfs-")
            .tempdir()
            .expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        for d in ["proc", "sys", "dev", "etc", "tmp", "bin"] {
            fs::create_dir_all(rootfs.join(d)).expect("mkdir");
        }
        fs::write(rootfs.join("etc/marker"), "inside").expect("marker");
        if Path::new("/bin/busybox").exists() {
            fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
        }
        Bundle { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
}

/// A spec with `v`'s fields and, unless `v` lists namespaces, a mount
/// namespace (these tests run the rootfs code in a child that made one).
fn spec(v: Value) -> Spec {
    let mut base = json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"}});
    for (k, val) in v.as_object().expect("object") {
        base[k] = val.clone();
    }
    if base["linux"].get("namespaces").is_none() {
        if !base["linux"].is_object() {
            base["linux"] = json!({});
        }
        base["linux"]["namespaces"] = json!([{"type": "mount"}]);
    }
    serde_json::from_value(base).expect("spec")
}

fn config<'a>(
    spec: &'a Spec,
    b: &'a Path,
    rootfs: &'a Path,
    user_ns: bool,
    cgroup_ns: bool,
) -> RootfsConfig<'a> {
    RootfsConfig {
        spec,
        rootfs,
        bundle: b,
        user_ns,
        cgroup_ns,
    }
}

fn e2s(e: RootfsError) -> String {
    e.to_string()
}

fn standard_mounts() -> Value {
    json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
    ])
}

#[test]
fn full_spec_after_pivot() {
    if !is_root() {
        return;
    }
    let b = Bundle::new();
    let data = b.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("file"), "shared").unwrap();
    fs::write(b.path().join("hostname"), "box\n").unwrap();
    let mut mounts = standard_mounts();
    let extra = json!([
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        {"destination": "/data", "type": "bind", "source": data,
         "options": ["rbind", "rprivate", "ro", "nosuid"]},
        {"destination": "/etc/hostname", "type": "bind", "source": "hostname",
         "options": ["bind"]},
        {"destination": "run/app", "type": "tmpfs", "source": "tmpfs",
         "options": ["noexec", "mode=700"]},
    ]);
    mounts
        .as_array_mut()
        .unwrap()
        .extend(extra.as_array().unwrap().iter().cloned());
    let s = spec(json!({
        "root": {"path": "rootfs", "readonly": true},
        "mounts": mounts,
        "linux": {
            "devices": [{"path": "/dev/custom", "type": "c", "major": 1, "minor": 3,
                         "fileMode": 0o600, "uid": 1000, "gid": 1001}],
            "maskedPaths": ["/proc/kcore", "/proc/timer_list", "/proc/acpi", "/sys/firmware", "/proc/does-not-exist"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/nothing"],
        }
    }));
    validate(&s, b.path()).expect("validate");
    let rootfs = b.rootfs();
    let r = in_child(CloneFlags::empty(), || {
        prepare(&config(&s, b.path(), &rootfs, false, false)).map_err(e2s)?;
        pivot(&rootfs, false).map_err(e2s)?;
        // A terminal from the container's devpts, bound to /dev/console.
        let pty = nix::pty::posix_openpt(nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY)
            .map_err(|e| format!("posix_openpt: {e}"))?;
        nix::pty::grantpt(&pty).map_err(|e| e.to_string())?;
        nix::pty::unlockpt(&pty).map_err(|e| e.to_string())?;
        let slave = nix::pty::ptsname_r(&pty).map_err(|e| e.to_string())?;
        mount_console(Path::new(&slave)).map_err(e2s)?;
        finalize(&s).map_err(e2s)?;
        ensure(
            fs::read_to_string("/etc/marker").ok().as_deref() == Some("inside"),
            "not in the rootfs",
        )?;
        let mi = mountinfo();
        expect_mount(&mi, "/dev/console", "devpts", &[], &["ptmxmode=666"])?;
        expect_mount(&mi, "/", "ext4", &["ro"], &[])?;
        expect_mount(&mi, "/proc", "proc", &["rw"], &[])?;
        expect_mount(
            &mi,
            "/dev",
            "tmpfs",
            &["nosuid"],
            &["size=65536k", "mode=755"],
        )?;
        ensure(
            !has_opt(&mount_at(&mi, "/dev")?.opts, "relatime"),
            "/dev: strictatime not applied",
        )?;
        expect_mount(
            &mi,
            "/dev/pts",
            "devpts",
            &["nosuid", "noexec"],
            &["gid=5", "mode=620", "ptmxmode=666"],
        )?;
        expect_mount(
            &mi,
            "/dev/shm",
            "tmpfs",
            &["nosuid", "nodev", "noexec"],
            &["size=65536k"],
        )?;
        expect_mount(
            &mi,
            "/dev/mqueue",
            "mqueue",
            &["nosuid", "nodev", "noexec"],
            &[],
        )?;
        expect_mount(
            &mi,
            "/sys",
            "sysfs",
            &["ro", "nosuid", "nodev", "noexec"],
            &[],
        )?;
        expect_mount(
            &mi,
            "/sys/fs/cgroup",
            "tmpfs",
            &["ro", "nosuid"],
            &["mode=755"],
        )?;
        expect_mount(
            &mi,
            "/sys/fs/cgroup/memory",
            "cgroup",
            &["ro", "nosuid"],
            &["memory"],
        )?;
        expect_mount(
            &mi,
            "/sys/fs/cgroup/systemd",
            "cgroup",
            &["ro"],
            &["name=systemd"],
        )?;
        expect_mount(&mi, "/data", "ext4", &["ro", "nosuid"], &[])?;
        ensure(
            !mount_at(&mi, "/data")?.optional.contains("shared"),
            "/data: rprivate not applied",
        )?;
        expect_mount(&mi, "/etc/hostname", "ext4", &["rw"], &[])?;
        expect_mount(&mi, "/run/app", "tmpfs", &["noexec"], &["mode=700"])?;
        expect_mount(&mi, "/proc/sys", "proc", &["ro"], &[])?;
        expect_mount(&mi, "/proc/irq", "proc", &["ro"], &[])?;
        let tl = fs::metadata("/proc/timer_list").map_err(|e| format!("/proc/timer_list: {e}"))?;
        ensure(
            tl.file_type().is_char_device(),
            "/proc/timer_list not masked by /dev/null",
        )?;
        ensure(
            fs::read_to_string("/proc/timer_list")
                .map(|s| s.is_empty())
                .unwrap_or(false),
            "/proc/timer_list readable",
        )?;
        expect_mount(&mi, "/sys/firmware", "tmpfs", &["ro"], &[])?;
        expect_mount(&mi, "/proc/acpi", "tmpfs", &["ro"], &[])?;
        ensure(
            fs::read_to_string("/data/file").ok().as_deref() == Some("shared"),
            "/data content",
        )?;
        ensure(fs::write("/data/new", "x").is_err(), "/data is writable")?;
        ensure(fs::write("/etc/new", "x").is_err(), "root is writable")?;
        ensure(
            fs::read_to_string("/etc/hostname").ok().as_deref() == Some("box\n"),
            "file bind",
        )?;
        ensure(
            fs::write("/dev/shm/ok", "x").is_ok(),
            "/dev/shm not writable",
        )?;
        // Default devices, the custom one, the links.
        for (p, rdev) in [
            ("/dev/null", (1, 3)),
            ("/dev/zero", (1, 5)),
            ("/dev/full", (1, 7)),
            ("/dev/random", (1, 8)),
            ("/dev/urandom", (1, 9)),
            ("/dev/tty", (5, 0)),
        ] {
            let md = fs::metadata(p).map_err(|e| format!("{p}: {e}"))?;
            ensure(
                md.file_type().is_char_device(),
                format!("{p} not a char device"),
            )?;
            let dev = md.rdev();
            ensure(
                (libc::major(dev), libc::minor(dev)) == rdev,
                format!("{p}: wrong numbers"),
            )?;
            ensure(
                md.permissions().mode() & 0o777 == 0o666,
                format!("{p}: mode"),
            )?;
        }
        let md = fs::metadata("/dev/custom").map_err(|e| format!("/dev/custom: {e}"))?;
        ensure(
            md.permissions().mode() & 0o7777 == 0o600,
            "/dev/custom mode",
        )?;
        ensure((md.uid(), md.gid()) == (1000, 1001), "/dev/custom owner")?;
        for (l, t) in [
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
            ("/dev/ptmx", "pts/ptmx"),
        ] {
            let got = fs::read_link(l).map_err(|e| format!("{l}: {e}"))?;
            ensure(got == Path::new(t), format!("{l} -> {}", got.display()))?;
        }
        fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .map_err(|e| format!("open /dev/null: {e}"))?;
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/ptmx")
            .map_err(|e| format!("open /dev/ptmx: {e}"))?;
        ensure(
            !Path::new("/proc/self/fd/0").exists() || fs::metadata("/dev/stdin").is_ok(),
            "stdin link",
        )
    });
    r.unwrap();
}

/// From a host whose `/` is shared, with every rootfsPropagation: the
/// container's `/` ends up as asked and the host's mount table is
/// untouched, for pivot_root and --no-pivot, including by a mount made in
/// the container after setup.
#[test]
fn no_propagation_to_a_shared_host() {
    if !is_root() {
        return;
    }
    let b = Bundle::new();
    let rootfs = b.rootfs();
    for no_pivot in [false, true] {
        for prop in [
            "rshared",
            "shared",
            "private",
            "rprivate",
            "slave",
            "rslave",
            "unbindable",
            "runbindable",
        ] {
            let s = spec(json!({
                "mounts": [
                    {"destination": "/proc", "type": "proc", "source": "proc"},
                    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
                ],
                "linux": {"rootfsPropagation": prop},
            }));
            let r = in_shared_host(CloneFlags::empty(), || {
                prepare(&config(&s, b.path(), &rootfs, false, false)).map_err(e2s)?;
                pivot(&rootfs, no_pivot).map_err(e2s)?;
                finalize(&s).map_err(e2s)?;
                ensure(
                    fs::read_to_string("/etc/marker").ok().as_deref() == Some("inside"),
                    "not in the rootfs",
                )?;
                let mi = mountinfo();
                let root = mount_at(&mi, "/")?;
                let shared = root.optional.contains("shared:");
                let unbindable = root.optional.contains("unbindable");
                ensure(
                    shared == prop.ends_with("shared"),
                    format!("/ shared is {shared}: {root:?}"),
                )?;
                ensure(
                    unbindable == prop.ends_with("unbindable"),
                    format!("/ unbindable is {unbindable}: {root:?}"),
                )?;
                if prop.ends_with("private") {
                    ensure(
                        !root.optional.contains("master:"),
                        format!("/ not private: {root:?}"),
                    )?;
                }
                let none = None::<&str>;
                fs::create_dir("/tmp/bound").map_err(|e| e.to_string())?;
                let bind = mount(Some("/"), "/tmp/bound", none, MsFlags::MS_BIND, none);
                if unbindable {
                    ensure(
                        bind == Err(Errno::EINVAL),
                        format!("bind of an unbindable /: {bind:?}"),
                    )?;
                } else {
                    bind.map_err(|e| format!("bind of /: {e}"))?;
                }
                // A mount made later in a shared / must still stay inside.
                mount(Some("tmpfs"), "/etc", Some("tmpfs"), MsFlags::empty(), none)
                    .map_err(|e| format!("mount after setup: {e}"))
            });
            if let Err(e) = r {
                panic!("rootfsPropagation {prop}, no_pivot {no_pivot}: {e}");
            }
        }
    }
}

#[test]
fn no_pivot_and_cgroup_namespace() {
    if !is_root() {
        return;
    }
    let b = Bundle::new();
    let s = spec(json!({
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755", "ro"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]},
        ],
        "linux": {"rootfsPropagation": "rshared"},
    }));
    let rootfs = b.rootfs();
    let r = in_shared_host(CloneFlags::CLONE_NEWCGROUP, || {
        prepare(&config(&s, b.path(), &rootfs, false, true)).map_err(e2s)?;
        pivot(&rootfs, true).map_err(e2s)?;
        finalize(&s).map_err(e2s)?;
        ensure(
            fs::read_to_string("/etc/marker").ok().as_deref() == Some("inside"),
            "not in the rootfs",
        )?;
        let mi = mountinfo();
        let root = mount_at(&mi, "/")?;
        ensure(
            root.optional.contains("shared:"),
            format!("/ not shared: {root:?}"),
        )?;
        // /dev was mounted rw to make devices, then made read-only.
        expect_mount(&mi, "/dev", "tmpfs", &["ro", "nosuid"], &[])?;
        ensure(fs::metadata("/dev/null").is_ok(), "/dev/null missing")?;
        expect_mount(&mi, "/sys/fs/cgroup/cpu", "cgroup", &["ro"], &["cpu"])?;
        expect_mount(&mi, "/sys/fs/cgroup/memory", "cgroup", &["ro"], &["memory"])?;
        let cg = fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        ensure(
            cg.lines().all(|l| l.ends_with(":/")),
            format!("cgroup namespace root: {cg}"),
        )
    });
    r.unwrap();
}

#[test]
fn user_namespace_binds_devices_and_falls_back_for_sysfs() {
    if !is_root() {
        return;
    }
    let b = Bundle::new();
    let s = spec(json!({
        "root": {"path": "rootfs", "readonly": true},
        "mounts": standard_mounts(),
        "linux": {"maskedPaths": ["/proc/kcore", "/sys/firmware"], "readonlyPaths": ["/proc/sys"]},
    }));
    let rootfs = b.rootfs();
    let ns = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC;
    let r = in_child(ns, || {
        prepare(&config(&s, b.path(), &rootfs, true, false)).map_err(e2s)?;
        pivot(&rootfs, false).map_err(e2s)?;
        finalize(&s).map_err(e2s)?;
        let mi = mountinfo();
        // No netns: sysfs came from an rbind of the host's, still read-only.
        expect_mount(
            &mi,
            "/sys",
            "sysfs",
            &["ro", "nosuid", "nodev", "noexec"],
            &[],
        )?;
        // ... recursively: the host's submounts came in read-only as well.
        expect_mount(&mi, "/sys/fs/cgroup", "tmpfs", &["ro"], &[])?;
        expect_mount(&mi, "/sys/fs/cgroup/memory", "cgroup", &["ro"], &[])?;
        expect_mount(&mi, "/dev/null", "devtmpfs", &[], &[])?;
        ensure(
            fs::metadata("/dev/null")
                .map(|m| m.file_type().is_char_device())
                .unwrap_or(false),
            "/dev/null",
        )?;
        fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .map_err(|e| format!("open /dev/null: {e}"))?;
        // gid=5 is unmapped: devpts was retried without it.
        expect_mount(&mi, "/dev/pts", "devpts", &["nosuid"], &["ptmxmode=666"])?;
        expect_mount(&mi, "/dev/mqueue", "mqueue", &[], &[])?;
        expect_mount(&mi, "/", "ext4", &["ro"], &[])?;
        expect_mount(&mi, "/proc/sys", "proc", &["ro"], &[])?;
        ensure(std::process::id() == 1, "not pid 1")
    });
    r.unwrap();
}

/// Mount points outside `rootfs` in the current namespace.
fn outside(rootfs: &Path) -> Vec<String> {
    let prefix = rootfs.to_str().unwrap();
    mountinfo()
        .into_iter()
        .map(|m| m.point)
        .filter(|p| !p.starts_with(prefix))
        .collect()
}

#[test]
fn symlinks_in_the_image_never_reach_the_host() {
    if !is_root() {
        return;
    }
    let b = Bundle::new();
    let rootfs = b.rootfs();
    let victim = b.path().join("victim");
    fs::create_dir(&victim).unwrap();
    fs::write(victim.join("keep"), "host").unwrap();
    let victim_name = format!("vessel-victim-{}", std::process::id());
    let host_tmp_victim = Path::new("/tmp").join(&victim_name);
    fs::remove_dir(rootfs.join("proc")).unwrap();
    std::os::unix::fs::symlink(&victim, rootfs.join("proc")).unwrap();
    std::os::unix::fs::symlink("../../../../../../..", rootfs.join("up")).unwrap();
    std::os::unix::fs::symlink("/", rootfs.join("hostroot")).unwrap();
    std::os::unix::fs::symlink(&victim, rootfs.join("abs")).unwrap();
    let cases = [
        // (destination, type): each must fail or land inside the rootfs.
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/up", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/up/tmp/".to_string() + &victim_name, "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/hostroot/tmp/".to_string() + &victim_name, "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/abs/sub", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/abs", "type": "bind", "source": b.path().join("victim"), "options": ["bind"]}),
        json!({"destination": "/../../../../tmp/".to_string() + &victim_name, "type": "tmpfs", "source": "tmpfs"}),
    ];
    for case in cases {
        let s = spec(json!({"mounts": [case.clone()]}));
        let r = in_child(CloneFlags::empty(), || {
            let before = outside(&rootfs);
            let res = prepare(&config(&s, b.path(), &rootfs, false, false));
            let after = outside(&rootfs);
            // prepare sets / to rslave; the set of mount points is what counts.
            ensure(
                before == after,
                format!("{case}: mount outside the rootfs: {after:?} vs {before:?} ({res:?})"),
            )?;
            if let Err(e) = &res {
                ensure(
                    e.to_string().starts_with("mounts[0] (destination"),
                    format!("error names no field: {e}"),
                )?;
            }
            // A mount that succeeded went into the rootfs, on top of its bind.
            let prefix = rootfs.to_str().unwrap_or_default();
            let inside = mountinfo()
                .iter()
                .filter(|m| m.point.starts_with(prefix))
                .count();
            ensure(
                res.is_err() || inside >= 2,
                format!("{case}: no mount inside the rootfs"),
            )
        });
        r.unwrap();
        assert!(
            !host_tmp_victim.exists(),
            "{case}: created {}",
            host_tmp_victim.display()
        );
        let names: Vec<_> = fs::read_dir(&victim)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("keep")],
            "{case}: victim dir changed"
        );
    }
}

#[test]
fn runtime_errors_name_the_mount() {
    if !is_root() {
        return;
    }
    let b = Bundle::new();
    let s = spec(json!({"mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/bad", "type": "tmpfs", "source": "tmpfs", "options": ["size=lots"]},
    ]}));
    let rootfs = b.rootfs();
    let r = in_child(CloneFlags::empty(), || {
        let e = prepare(&config(&s, b.path(), &rootfs, false, false))
            .expect_err("bad tmpfs size accepted");
        ensure(
            e.to_string() == "mounts[1] (destination /bad): mount tmpfs: Invalid argument",
            format!("message: {e}"),
        )
    });
    r.unwrap();
}

#[test]
fn validate_names_the_field() {
    let b = Bundle::new();
    let ok = spec(json!({"mounts": standard_mounts()}));
    validate(&ok, b.path()).expect("standard mounts");
    let cases = [
        (json!({"root": {"path": "missing"}}), "root.path: stat "),
        (
            json!({"mounts": [{"destination": "/proc", "type": "proc"},
            {"destination": "/x", "type": "bind", "source": "/does/not/exist", "options": ["rbind"]}]}),
            "mounts[1] (destination /x): bind source /does/not/exist: No such file or directory",
        ),
        (
            json!({"mounts": [{"destination": "/x", "source": "tmpfs"}]}),
            "mounts[0] (destination /x): type missing",
        ),
        (
            json!({"mounts": [{"destination": "/x", "type": "none", "source": "/"}]}),
            "mounts[0] (destination /x): type missing",
        ),
        (
            json!({"mounts": [{"destination": "/x", "type": "nosuchfs"}]}),
            "mounts[0] (destination /x): unknown filesystem type",
        ),
        (
            json!({"mounts": [{"destination": "/x", "type": "tmpfs", "options": ["idmap"]}]}),
            "mounts[0] (destination /x): idmap/ridmap only apply to bind mounts",
        ),
        (
            json!({"mounts": [{"destination": "/proc/sys", "type": "tmpfs"}]}),
            "mounts[0] (destination /proc/sys): only a proc",
        ),
        (
            json!({"mounts": [{"destination": "/proc", "type": "tmpfs"}]}),
            "mounts[0] (destination /proc): only a proc",
        ),
        (
            json!({"linux": {"devices": [{"path": "/etc/evil", "type": "c", "major": 1, "minor": 3}]}}),
            "linux.devices[0] (/etc/evil): device path",
        ),
        (
            json!({"linux": {"rootfsPropagation": "sideways"}}),
            "linux.rootfsPropagation: unknown",
        ),
    ];
    for (v, want) in cases {
        let e = validate(&spec(v.clone()), b.path())
            .expect_err(&v.to_string())
            .to_string();
        assert!(e.starts_with(want), "{v}: got {e:?}, want {want:?}");
    }
}

#[test]
fn relative_paths_and_shared_root_with_pivot() {
    if !is_root() {
        return;
    }
    let b = Bundle::new();
    fs::create_dir(b.path().join("vol")).unwrap();
    fs::write(b.path().join("vol/f"), "v").unwrap();
    let s = spec(json!({"mounts": [
        {"destination": "proc", "type": "proc", "source": "proc"},
        {"destination": "mnt/vol", "type": "none", "source": "vol", "options": ["rbind", "ro"]},
    ], "linux": {"rootfsPropagation": "rshared"}}));
    validate(&s, b.path()).expect("validate");
    let rootfs = b.rootfs();
    let r = in_shared_host(CloneFlags::empty(), || {
        prepare(&config(&s, b.path(), &rootfs, false, false)).map_err(e2s)?;
        pivot(&rootfs, false).map_err(e2s)?;
        finalize(&s).map_err(e2s)?;
        ensure(
            fs::read_to_string("/mnt/vol/f").ok().as_deref() == Some("v"),
            "bind content",
        )?;
        ensure(fs::write("/mnt/vol/g", "x").is_err(), "ro bind writable")?;
        let mi = mountinfo();
        // pivot_root worked under rshared, and / is shared again after it.
        let root = mount_at(&mi, "/")?;
        ensure(
            root.optional.contains("shared:"),
            format!("/ not shared: {root:?}"),
        )?;
        expect_mount(&mi, "/mnt/vol", "ext4", &["ro"], &[])
    });
    r.unwrap();
}

#[test]
fn tmpcopyup_and_recursive_read_only() {
    if !is_root() {
        return;
    }
    let b = Bundle::new();
    let rootfs = b.rootfs();
    let app = rootfs.join("var/lib/app");
    fs::create_dir_all(app.join("sub")).unwrap();
    fs::write(app.join("conf"), "kept").unwrap();
    fs::set_permissions(app.join("sub"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("/etc/marker", app.join("link")).unwrap();
    let vol = b.path().join("vol");
    fs::create_dir_all(vol.join("inner")).unwrap();
    let s = spec(json!({"mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/var/lib/app", "type": "tmpfs", "source": "tmpfs",
         "options": ["tmpcopyup", "nosuid", "mode=755"]},
        {"destination": "/vol", "type": "bind", "source": vol, "options": ["rbind", "rro", "rprivate"]},
    ]}));
    validate(&s, b.path()).expect("validate");
    let r = in_child(CloneFlags::empty(), || {
        // A submount in the bind source: rro must reach it too.
        nix::mount::mount(
            Some("tmpfs"),
            &vol.join("inner"),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| format!("submount: {e}"))?;
        prepare(&config(&s, b.path(), &rootfs, false, false)).map_err(e2s)?;
        pivot(&rootfs, false).map_err(e2s)?;
        finalize(&s).map_err(e2s)?;
        let mi = mountinfo();
        expect_mount(&mi, "/var/lib/app", "tmpfs", &["nosuid"], &[])?;
        ensure(
            fs::read_to_string("/var/lib/app/conf").ok().as_deref() == Some("kept"),
            "tmpcopyup lost conf",
        )?;
        let sub = fs::metadata("/var/lib/app/sub").map_err(|e| format!("sub: {e}"))?;
        ensure(sub.permissions().mode() & 0o7777 == 0o700, "sub mode")?;
        ensure(
            fs::read_link("/var/lib/app/link").ok() == Some(PathBuf::from("/etc/marker")),
            "symlink not copied",
        )?;
        expect_mount(&mi, "/vol", "ext4", &["ro"], &[])?;
        expect_mount(&mi, "/vol/inner", "tmpfs", &["ro"], &[])?;
        ensure(fs::write("/vol/inner/x", "x").is_err(), "submount writable")
    });
    r.unwrap();
    // The image's directory itself was never touched.
    assert_eq!(fs::read_to_string(app.join("conf")).unwrap(), "kept");
}

#[test]
fn image_dev_entries_are_replaced_not_followed() {
    if !is_root() {
        return;
    }
    for user_ns in [false, true] {
        let b = Bundle::new();
        let rootfs = b.rootfs();
        // An image whose /dev (no tmpfs over it) has hostile entries.
        std::os::unix::fs::symlink("../etc/marker", rootfs.join("dev/null")).unwrap();
        std::os::unix::fs::symlink("/etc/marker", rootfs.join("dev/zero")).unwrap();
        fs::write(rootfs.join("dev/full"), "plain file").unwrap();
        let s = spec(json!({"mounts": []}));
        let ns = if user_ns {
            CloneFlags::CLONE_NEWUSER
        } else {
            CloneFlags::empty()
        };
        let r = in_child(ns, || {
            prepare(&config(&s, b.path(), &rootfs, user_ns, false)).map_err(e2s)?;
            for d in ["null", "zero", "full"] {
                let md =
                    fs::symlink_metadata(rootfs.join("dev").join(d)).map_err(|e| e.to_string())?;
                ensure(
                    md.file_type().is_char_device() || (user_ns && md.file_type().is_file()),
                    format!("/dev/{d} is {:?}", md.file_type()),
                )?;
                let md = fs::metadata(rootfs.join("dev").join(d)).map_err(|e| e.to_string())?;
                ensure(
                    md.file_type().is_char_device(),
                    format!("/dev/{d} is no device"),
                )?;
            }
            let marker = rootfs.join("etc/marker");
            ensure(
                fs::read_to_string(&marker).ok().as_deref() == Some("inside"),
                "etc/marker was covered",
            )?;
            let point = marker.to_str().unwrap_or_default();
            ensure(
                mountinfo().iter().all(|m| m.point != point),
                "mount on etc/marker",
            )
        });
        r.unwrap_or_else(|e| panic!("user_ns={user_ns}: {e}"));
    }
}

#[test]
fn refuses_the_host_mount_namespace() {
    if !is_root() {
        return;
    }
    // Only where the initial mount namespace is recognisable by its fixed
    // inode (Linux 6.16+) and this test runs in it: elsewhere prepare could
    // not tell and would really bind the rootfs in this namespace.
    let own = fs::metadata("/proc/self/ns/mnt")
        .map(|m| m.ino())
        .unwrap_or(0);
    if own != 0xEFFF_FFF8 {
        eprintln!("skipped: not in a recognisable initial mount namespace");
        return;
    }
    let b = Bundle::new();
    let s = spec(json!({"mounts": []}));
    let rootfs = b.rootfs();
    let e = prepare(&config(&s, b.path(), &rootfs, false, false))
        .expect_err("ran in the host mount namespace");
    assert!(e.to_string().starts_with("linux.namespaces:"), "{e}");
}
