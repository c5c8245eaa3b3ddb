//! `vessel run` with no `linux.cgroupsPath`, from a process in a
//! sub-cgroup, puts the container where runc 1.1.5 does: under the
//! caller's cgroup in each v1 hierarchy (under its parent on pure cgroup
//! v2), so a memory limit on the caller binds the container. `delete`, run
//! from the test's own cgroup, finds and removes it.

use std::fs;
use std::path::{Path, PathBuf};

use vessel_tests::harness::{ok, output_via_files, Ctr};
use vessel_tests::{leaks, require_root};

const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
];

/// One hierarchy: its mount point and this process's cgroup in it.
struct Hierarchy {
    mount: PathBuf,
    own: PathBuf,
    /// Controllers of a v1 hierarchy (empty for cgroup2).
    controllers: Vec<String>,
}

/// The v1 hierarchies vessel joins (not named ones such as name=systemd),
/// or the cgroup2 one on a pure v2 host.
fn hierarchies() -> Vec<Hierarchy> {
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount = PathBuf::from(left.split_whitespace().nth(4).unwrap());
        let mut r = right.split_whitespace();
        let fstype = r.next().unwrap_or("");
        let opts = r.nth(1).unwrap_or("");
        if !mount.starts_with("/sys/fs/cgroup") {
            continue;
        }
        let v2_root = fstype == "cgroup2" && mount == Path::new("/sys/fs/cgroup");
        let controllers: Vec<String> = opts
            .split(',')
            .filter(|o| fstype == "cgroup" && V1_CONTROLLERS.contains(o))
            .map(str::to_string)
            .collect();
        if !v2_root && controllers.is_empty() {
            continue;
        }
        let path = own.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
            let hit = if v2_root {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| controllers.iter().any(|m| m == c))
            };
            hit.then(|| PathBuf::from(path))
        });
        out.push(Hierarchy {
            mount,
            own: path.unwrap_or_else(|| "/".into()),
            controllers,
        });
    }
    out
}

/// Sub-cgroups made for the caller; removed (deepest first) when dropped.
struct Made(Vec<PathBuf>);

impl Drop for Made {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

fn mkdir_cgroup(d: &Path, made: &mut Made) {
    fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    made.0.push(d.to_path_buf());
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if let Ok(v) = fs::read_to_string(d.parent().unwrap().join(f)) {
            fs::write(d.join(f), v.trim()).unwrap();
        }
    }
}

#[test]
fn run_without_cgroups_path_lands_under_the_callers_cgroup_and_its_limit() {
    require_root!();
    let hs = hierarchies();
    assert!(!hs.is_empty(), "no cgroup hierarchy under /sys/fs/cgroup");
    let v2 = hs.iter().all(|h| h.controllers.is_empty());
    let c = Ctr::new("placed", &["sleep", "1000"]);
    let parent_name = format!("vt-caller-{}", std::process::id());
    let mut made = Made(Vec::new());
    // Where vessel runs from, and where its container must land.
    let mut joins = Vec::new();
    let mut expect = Vec::new();
    for h in &hs {
        let own_dir = h.mount.join(h.own.strip_prefix("/").unwrap());
        let parent = own_dir.join(&parent_name);
        mkdir_cgroup(&parent, &mut made);
        if v2 {
            // runc (and vessel) go under the parent of the caller's cgroup.
            mkdir_cgroup(&parent.join("caller"), &mut made);
            joins.push(parent.join("caller/cgroup.procs"));
        } else {
            joins.push(parent.join("cgroup.procs"));
        }
        expect.push((h, parent.join(&c.id)));
    }
    let limit: u64 = 48 << 20;
    let mem_parent = expect
        .iter()
        .find(|(h, _)| v2 || h.controllers.iter().any(|c| c == "memory"))
        .map(|(_, d)| d.parent().unwrap().to_path_buf());
    let limit_file = if v2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    let limited = match &mem_parent {
        Some(p) if p.join(limit_file).exists() => {
            fs::write(p.join(limit_file), limit.to_string()).unwrap();
            true
        }
        _ => {
            println!("no memory controller here: checking the placement only");
            false
        }
    };

    // vessel runs from the sub-cgroups; this test process stays where it is.
    let bundle = c.bundle.path().to_str().unwrap().to_string();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(r#"v=$1; shift; for f in "$@"; do echo $$ > "$f" || exit 97; done; exec "$v" --root "$ROOT" run -d --bundle "$BUNDLE" "$ID""#)
        .arg("sh")
        .arg(&c.bin)
        .args(&joins)
        .env("ROOT", c.root())
        .env("BUNDLE", &bundle)
        .env("ID", &c.id)
        .stdin(std::process::Stdio::null());
    ok(&output_via_files(&mut cmd));
    let pid = c.pid();
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for (h, want) in &expect {
        let rel = Path::new("/").join(want.strip_prefix(&h.mount).unwrap());
        let line = text
            .lines()
            .find(|l| {
                let mut p = l.splitn(3, ':');
                let ctrls = p.nth(1).unwrap_or("-");
                if h.controllers.is_empty() {
                    ctrls.is_empty()
                } else {
                    ctrls
                        .split(',')
                        .any(|c| h.controllers.iter().any(|m| m == c))
                }
            })
            .unwrap_or_else(|| panic!("no line for {} in {text}", h.mount.display()));
        assert!(
            line.ends_with(&format!(":{}", rel.display())),
            "{}: container in {line}, want {}",
            h.mount.display(),
            rel.display()
        );
        assert!(want.is_dir(), "{}", want.display());
    }
    if limited {
        // The kernel's view of the container's cgroup: the caller's limit
        // binds it although the container set none.
        let mem = expect
            .iter()
            .find(|(h, _)| v2 || h.controllers.iter().any(|c| c == "memory"))
            .unwrap()
            .1
            .clone();
        if v2 {
            let max = fs::read_to_string(mem.parent().unwrap().join("memory.max")).unwrap();
            assert_eq!(max.trim(), limit.to_string());
        } else {
            let stat = fs::read_to_string(mem.join("memory.stat")).unwrap();
            let hier = stat
                .lines()
                .find_map(|l| l.strip_prefix("hierarchical_memory_limit "))
                .unwrap();
            assert_eq!(hier.trim(), limit.to_string(), "{}", mem.display());
        }
    }
    // The leak counter sees the nested directories (so it can fail).
    let seen = leaks::cgroup_dirs(&c.id);
    for (_, want) in &expect {
        assert!(
            seen.contains(&want.display().to_string()),
            "leaks::cgroup_dirs missed {}: {seen:?}",
            want.display()
        );
    }
    // delete from this test's own cgroup finds it.
    ok(&c.v(&["delete", "--force", &c.id]));
    for (_, want) in &expect {
        assert!(!want.exists(), "{} left after delete", want.display());
    }
    assert!(leaks::cgroup_dirs(&c.id).is_empty());
    assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
}
