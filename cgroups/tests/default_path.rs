//! With no `cgroupsPath`, the container's cgroup nests under the caller's
//! own cgroup in every v1 hierarchy (runc 1.1.5's placement), so a caller
//! under a memory limit cannot give its containers more; on cgroup v2 it
//! goes under the parent of the caller's cgroup, as runc's does.
//!
//! The test process moves itself into a parent cgroup made below its own
//! (so it never leaves a limit it is under) and moves back, removing what
//! it made, when the guard drops (also on panic).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::*;
use serde_json::json;
use vessel_cgroups::{Cgroup, CgroupMode, CgroupOptions, Host, OwnCgroups};

/// The tests move the whole test process between cgroups: one at a time.
static MOVING: Mutex<()> = Mutex::new(());

/// The test process's stay in a parent cgroup made for it in some
/// hierarchies (mount point, cgroup it came from, cgroup it made).
struct Caller {
    moves: Vec<(PathBuf, PathBuf)>,
    made: Vec<PathBuf>,
}

impl Caller {
    /// Makes `<own>/<name>` (and the further path `leaf`, if any) in each
    /// hierarchy of `mounts` (mount point, own cgroup below it) and moves
    /// this process into the deepest one.
    fn enter(mounts: &[(PathBuf, PathBuf)], name: &str, leaf: Option<&str>) -> Self {
        let mut me = Caller {
            moves: Vec::new(),
            made: Vec::new(),
        };
        for (mount, own) in mounts {
            let from = mount.join(own.strip_prefix("/").unwrap_or(own));
            let mut dirs = vec![from.join(name)];
            if let Some(l) = leaf {
                dirs.push(from.join(name).join(l));
            }
            let mut parent = from.clone();
            for d in &dirs {
                fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
                me.made.push(d.clone());
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    if let Ok(v) = fs::read_to_string(parent.join(f)) {
                        fs::write(d.join(f), v.trim()).unwrap();
                    }
                }
                parent = d.clone();
            }
            fs::write(parent.join("cgroup.procs"), std::process::id().to_string())
                .unwrap_or_else(|e| panic!("join {}: {e}", parent.display()));
            me.moves.push((from, parent));
        }
        me
    }

    /// Moves the process back where it came from.
    fn leave(&mut self) {
        for (from, _) in self.moves.drain(..) {
            let _ = fs::write(from.join("cgroup.procs"), std::process::id().to_string());
        }
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        self.leave();
        for d in self.made.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

fn default_opts(id: &str) -> CgroupOptions {
    CgroupOptions {
        cgroups_path: None,
        systemd: false,
        container_id: id.to_string(),
    }
}

/// The cgroup of `pid` in the hierarchy whose /proc/<pid>/cgroup line
/// names `controller` ("" for cgroup2).
fn cgroup_of(pid: i32, controller: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let own = OwnCgroups::parse(&text);
    let p = if controller.is_empty() {
        own.v2
    } else {
        own.v1.get(controller).cloned()
    };
    p.unwrap_or_else(|| panic!("no {controller:?} line in {text}"))
        .display()
        .to_string()
}

#[test]
fn v1_default_path_nests_under_the_callers_cgroup_and_its_memory_limit() {
    let test = "v1_default_path_nests_under_the_callers_cgroup_and_its_memory_limit";
    if !can_run(test) {
        return;
    }
    let host = Host::detect().expect("host");
    if host.mode == CgroupMode::Unified || !host.has_v1("memory") {
        println!(
            "SKIP {test}: this host has no v1 memory hierarchy ({})",
            host.mode
        );
        return;
    }
    let _one = MOVING.lock().unwrap_or_else(|e| e.into_inner());
    let own = OwnCgroups::of_self(&host).expect("own cgroups");
    // One entry per hierarchy (co-mounted controllers share a directory).
    let mut mounts: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (c, m) in &host.v1 {
        let o = own.v1.get(c).cloned().unwrap_or_else(|| "/".into());
        if !mounts.iter().any(|(mm, _)| mm == m) {
            mounts.push((m.clone(), o));
        }
    }
    let parent_name = format!("vessel-test-caller-{}", std::process::id());
    let mut caller = Caller::enter(&mounts, &parent_name, None);
    let mem_parent = caller
        .moves
        .iter()
        .find(|(from, _)| from.starts_with(&host.v1["memory"]))
        .map(|(_, to)| to.clone())
        .unwrap();
    let limit: i64 = 64 << 20;
    fs::write(mem_parent.join("memory.limit_in_bytes"), limit.to_string()).unwrap();

    let id = format!("vessel-test-dflt-{}", std::process::id());
    let cg = Cgroup::open(&default_opts(&id)).expect("open");
    let mut g = Guard::new(cg);
    // Every v1 directory is the caller's own joined with the id.
    for (c, m) in &host.v1 {
        let (_, to) = caller
            .moves
            .iter()
            .find(|(from, _)| from.starts_with(m))
            .unwrap();
        assert_eq!(g.cg.v1_dir(c).unwrap(), to.join(&id), "controller {c}");
    }
    // The container asks for more than its caller may use.
    let r = resources(json!({"memory": {"limit": 512i64 << 20}, "cpu": {"shares": 512}}));
    g.cg.apply(&r, false).expect("apply");
    let pid = g.spawn_sleeper();
    g.cg.add_task(pid).expect("add task");
    let mem_dir = g.cg.v1_dir("memory").unwrap();
    assert_eq!(mem_dir, mem_parent.join(&id));
    assert_eq!(
        read(&mem_dir, "memory.limit_in_bytes"),
        (512i64 << 20).to_string()
    );
    assert_eq!(read(&g.cg.v1_dir("cpu").unwrap(), "cpu.shares"), "512");
    // The kernel's own view: the parent's limit binds the container.
    let stat = read(&mem_dir, "memory.stat");
    let hier: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("hierarchical_memory_limit "))
        .and_then(|v| v.trim().parse().ok())
        .expect("hierarchical_memory_limit in memory.stat");
    assert_eq!(hier, limit, "memory.stat of {}", mem_dir.display());
    let rel_mem = mem_dir.strip_prefix(&host.v1["memory"]).unwrap();
    assert_eq!(
        cgroup_of(pid, "memory"),
        Path::new("/").join(rel_mem).display().to_string()
    );

    // The recorded path finds the same directories from anywhere (delete
    // runs from another cgroup).
    caller.leave();
    let again = Cgroup::open(&CgroupOptions {
        cgroups_path: Some(g.cg.path().to_path_buf()),
        ..default_opts(&id)
    })
    .expect("reopen");
    assert_eq!(
        again.dirs(),
        g.cg.dirs(),
        "recorded as {}",
        g.cg.path().display()
    );
    assert_eq!(again.pids().unwrap(), vec![pid]);
    again.destroy().expect("destroy");
    g.reap();
    assert_nothing_left(&g.cg);
}

#[test]
fn relative_cgroups_path_nests_like_the_default() {
    let test = "relative_cgroups_path_nests_like_the_default";
    if !can_run(test) {
        return;
    }
    let host = Host::detect().expect("host");
    let own = OwnCgroups::of_self(&host).expect("own cgroups");
    let rel = format!("vessel-test-rel-{}/inner", std::process::id());
    let cg = Cgroup::open(&CgroupOptions {
        cgroups_path: Some(PathBuf::from(&rel)),
        systemd: false,
        container_id: "x".into(),
    })
    .expect("open");
    if host.mode == CgroupMode::Unified {
        let parent = own.v2.unwrap();
        let parent = parent.parent().unwrap_or(Path::new("/"));
        assert_eq!(
            cg.v2_dir().unwrap(),
            host.root
                .join(parent.strip_prefix("/").unwrap_or(parent))
                .join(&rel)
        );
    } else {
        for (c, m) in &host.v1 {
            let o = own.v1.get(c).cloned().unwrap_or_else(|| "/".into());
            assert_eq!(
                cg.v1_dir(c).unwrap(),
                m.join(o.strip_prefix("/").unwrap()).join(&rel),
                "controller {c}"
            );
        }
    }
    // An absolute path still starts at every root.
    let abs = Cgroup::open(&CgroupOptions {
        cgroups_path: Some(PathBuf::from("/").join(&rel)),
        systemd: false,
        container_id: "x".into(),
    })
    .expect("open");
    assert_eq!(abs.path(), Path::new("/").join(&rel));
    for (c, m) in &abs.host().v1 {
        assert_eq!(abs.v1_dir(c).unwrap(), m.join(&rel), "controller {c}");
    }
    if let Some(u) = &abs.host().unified {
        assert_eq!(abs.v2_dir().unwrap(), u.join(&rel));
    }
}

#[test]
fn v2_default_path_goes_under_the_parent_of_the_callers_cgroup() {
    let test = "v2_default_path_goes_under_the_parent_of_the_callers_cgroup";
    if !can_run(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    if let Err(e) = nix::mount::mount(
        Some("none"),
        dir.path(),
        Some("cgroup2"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    ) {
        println!("SKIP {test}: cannot mount a cgroup2 hierarchy here: {e}");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _unmount = Unmount(dir.path().to_path_buf());
    let host = Host::unified_at(dir.path());
    let _one = MOVING.lock().unwrap_or_else(|e| e.into_inner());
    let own = OwnCgroups::of_self(&host).expect("own cgroups");
    let own2 = own.v2.clone().expect("a cgroup2 line in /proc/self/cgroup");
    let parent_name = format!("vessel-test-v2caller-{}", std::process::id());
    let _caller = Caller::enter(
        &[(dir.path().to_path_buf(), own2.clone())],
        &parent_name,
        Some("caller"),
    );
    let parent = dir
        .path()
        .join(own2.strip_prefix("/").unwrap())
        .join(&parent_name);
    let memory_limited = fs::read_to_string(parent.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .any(|c| c == "memory");
    if memory_limited {
        fs::write(parent.join("memory.max"), (64u64 << 20).to_string()).unwrap();
    }

    let id = format!("vessel-test-v2dflt-{}", std::process::id());
    let cg = Cgroup::open_on(&default_opts(&id), host.clone()).expect("open");
    let mut g = Guard::new(cg);
    assert_eq!(g.cg.v2_dir().unwrap(), parent.join(&id));
    let pid = g.spawn_sleeper();
    g.cg.add_task(pid).expect("add task");
    assert_eq!(
        cgroup_of(pid, ""),
        Path::new("/")
            .join(own2.strip_prefix("/").unwrap())
            .join(&parent_name)
            .join(&id)
            .display()
            .to_string()
    );
    if memory_limited {
        // memory.max of an ancestor binds every descendant.
        assert_eq!(read(&parent, "memory.max"), (64u64 << 20).to_string());
    } else {
        println!(
            "{test}: the cgroup2 hierarchy here has no memory controller (a hybrid host); \
             checked the placement only"
        );
    }
    g.cg.destroy().expect("destroy");
    g.reap();
    assert_nothing_left(&g.cg);
}
