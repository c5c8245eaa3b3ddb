//! Only stdio reaches a container process started by an engine through
//! vessel: `podman run` and `podman exec` (with and without `-t`), and
//! containerd's runc shim (`ctr run`, `ctr task exec`). exec_options.rs
//! covers vessel's own command line.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use vessel_tests::clients::{self, run, Containerd, Run, Scratch, IMAGE};

const LIMIT: Duration = Duration::from_secs(60);
const LIST_FDS: &str = "ls -l /proc/self/fd; echo end-of-list";

/// The descriptors with a target in `ls -l /proc/self/fd` output (ls's own
/// directory descriptor has none by the time it is printed).
fn fds_of(out: &str) -> BTreeSet<u32> {
    out.lines()
        .filter_map(|l| l.split_once(" -> "))
        .filter_map(|(head, _)| head.split_whitespace().last()?.parse().ok())
        .collect()
}

fn stdio_only(what: &str, r: &Run) {
    assert!(r.stdout.contains("end-of-list"), "{what}: {r}");
    assert_eq!(fds_of(&r.stdout), BTreeSet::from([0, 1, 2]), "{what}: {r}");
}

struct Podman {
    bin: PathBuf,
    scratch: Scratch,
    parent: String,
}

impl Podman {
    fn cmd(&self, args: &[&str]) -> Command {
        let s = &self.scratch;
        let mut c = Command::new(&self.bin);
        c.arg("--root")
            .arg(s.join("storage"))
            .arg("--runroot")
            .arg(s.join("run"))
            .arg("--tmpdir")
            .arg(s.join("tmp"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .arg("--runtime")
            .arg(clients::vessel_abs())
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        run(&mut self.cmd(args), LIMIT)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["rmi", "--all", "--force"]);
    }
}

#[test]
fn podman_run_and_exec_pass_only_stdio() {
    let Some(bin) = clients::require_clients(&["podman"]).map(|mut v| v.remove(0)) else {
        return;
    };
    let mut scratch = Scratch::new("pm-fds");
    let parent = format!(
        "vessel-test-{}",
        scratch.path.file_name().unwrap().to_string_lossy()
    );
    scratch.cgroup(&parent);
    scratch.cgroup("libpod_parent");
    let mut p = Podman {
        bin,
        scratch,
        parent,
    };
    let tar = clients::busybox_rootfs_tar(&p.scratch.path);
    p.run(&["import", tar.to_str().unwrap(), IMAGE]).check();
    let cg = format!("--cgroup-parent=/{}", p.parent);
    let base = [
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        cg.as_str(),
    ];
    for tty in [false, true] {
        let mut args = vec!["run", "--rm"];
        if tty {
            args.push("-t");
        }
        args.extend_from_slice(&base);
        args.extend_from_slice(&[IMAGE, "sh", "-c", LIST_FDS]);
        let r = p.run(&args).check();
        stdio_only(&format!("podman run (tty {tty})"), &r);
    }
    let mut args = vec!["run", "-d", "--name", "fds"];
    args.extend_from_slice(&base);
    args.extend_from_slice(&[IMAGE, "sleep", "1000"]);
    let r = p.run(&args).check();
    let id = r.stdout.trim().to_string();
    p.scratch
        .vessel_container(std::path::Path::new(clients::VESSEL_DEFAULT_ROOT), &id);
    for tty in [false, true] {
        let mut args = vec!["exec"];
        if tty {
            args.push("-t");
        }
        args.extend_from_slice(&["fds", "sh", "-c", LIST_FDS]);
        let r = p.run(&args).check();
        stdio_only(&format!("podman exec (tty {tty})"), &r);
    }
    p.run(&["rm", "--force", "--time", "0", "fds"]).check();
}

#[test]
fn containerd_run_and_exec_pass_only_stdio() {
    let Some(bins) = clients::require_clients(&["containerd", "ctr", "containerd-shim-runc-v2"])
    else {
        return;
    };
    const NS: &str = "vessel-fds";
    let mut scratch = Scratch::new("ctr-fds");
    let vroot = scratch.join("runc");
    scratch.vessel_root(vroot.clone());
    scratch.cgroup(NS);
    // Dropped first: tasks, shims and the daemon go before the scratch.
    let ctrd = Containerd::start(&bins[0], &bins[1], &scratch.path);
    let ctr = |args: &[&str]| ctrd.ctr_ns(NS, args, LIMIT);
    let archive = clients::busybox_image_archive(&scratch.path);
    ctr(&["image", "import", archive.to_str().unwrap()]).check();
    let vessel = clients::vessel_abs().to_string_lossy().into_owned();
    let vroot = vroot.to_string_lossy().into_owned();
    let runc = [
        "--runtime",
        "io.containerd.runc.v2",
        "--runc-binary",
        vessel.as_str(),
        "--runc-root",
        vroot.as_str(),
    ];
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(&runc);
    args.extend_from_slice(&[IMAGE, "fds-run", "sh", "-c", LIST_FDS]);
    let r = ctr(&args).check();
    stdio_only("ctr run", &r);
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(&runc);
    args.extend_from_slice(&[IMAGE, "fds-exec", "sleep", "1000"]);
    ctr(&args).check();
    let r = ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "fds-exec",
        "sh",
        "-c",
        LIST_FDS,
    ])
    .check();
    stdio_only("ctr task exec", &r);
    ctrd.remove_everything();
    drop(ctrd);
    drop(scratch);
}
