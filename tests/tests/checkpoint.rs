//! Checkpoint and restore through CRIU (container mode), with runc's flags.
//!
//! Parts that need CRIU to dump and restore a process run only where
//! `criu check` passes; elsewhere they print the exact `criu check` error
//! and skip that part. The checks of bad input and of CRIU's failures
//! (clear errors naming the container and CRIU's log, nothing left behind)
//! run everywhere.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use vessel_tests::harness::{fails, ok, wait_for, Ctr};
use vessel_tests::{leaks, require_root};

/// A shell loop that writes an increasing count to /tmp/count every 50 ms.
const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done";

/// The CRIU under test: `$VESSEL_TEST_CRIU` (a build newer than the
/// distribution's, passed to vessel as `--criu`), else `criu` on PATH.
fn criu_bin() -> Option<String> {
    std::env::var("VESSEL_TEST_CRIU").ok()
}

/// `Err` with CRIU's own error lines when `criu check` fails here.
fn criu_check() -> Result<(), String> {
    let out = Command::new(criu_bin().unwrap_or_else(|| "criu".into()))
        .arg("check")
        .output()
        .map_err(|e| format!("cannot run criu: {e} (apt-get install criu)"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let errs: Vec<&str> = text.lines().filter(|l| l.contains("Error")).collect();
    Err(errs.join("; "))
}

/// Whether CRIU works here; prints which `criu check` item fails if not.
fn criu_works(what: &str) -> bool {
    match criu_check() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("SKIP {what}: `criu check` fails on this kernel/sandbox: {why}");
            false
        }
    }
}

/// A container using the CRIU under test.
fn ctr(tag: &str, args: &[&str]) -> Ctr {
    let mut c = Ctr::new(tag, args);
    if let Some(criu) = criu_bin() {
        c.global = vec!["--criu".into(), criu];
    }
    c
}

/// The counter's last value, read inside the container: /tmp is a tmpfs
/// of the container, whose content CRIU saves and restores with it (a
/// file of the rootfs that changes after a `--leave-running` dump would
/// not match the image).
fn count(c: &Ctr) -> u64 {
    count_of(c, &c.id)
}

fn count_of(c: &Ctr, id: &str) -> u64 {
    let out = c.v(&["exec", id, "cat", "/tmp/count"]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A running counter container whose arguments name its id (so a leaked
/// process is found by the leak check).
fn counter(tag: &str, mutate: impl FnOnce(&mut Ctr)) -> Ctr {
    let mut c = ctr(tag, &["sleep", "1"]);
    let id = c.id.clone();
    c.config()["process"]["args"] = json!(["sh", "-c", COUNTER, id]);
    c.config()["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]
    }));
    mutate(&mut c);
    c.write();
    c.create();
    c.start();
    assert!(wait_for(5, || count(&c) > 2), "the counter does not count");
    c
}

/// Whether `pid` exists and is not a zombie.
fn runs(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn image_arg(dir: &Path) -> String {
    format!("--image-path={}", dir.display())
}

/// Deletes `id` (forced) and asserts nothing of it is left.
fn gone(c: &Ctr, id: &str) {
    ok(&c.v(&["delete", "--force", id]));
    let left = leaks::settle(c.root(), id, Some(c.bundle.path()));
    assert_eq!(left, Vec::<String>::new(), "{id} left things behind");
}

/// Asserts the counter of `c` advances past `from` within a few seconds.
fn counts_on(c: &Ctr, from: u64) {
    counts_on_as(c, &c.id, from)
}

/// The same for container `id` (a restore under a new id).
fn counts_on_as(c: &Ctr, id: &str, from: u64) {
    assert!(
        wait_for(5, || count_of(c, id) > from + 2),
        "the counter of {id} stopped at {} (was {from})",
        count_of(c, id)
    );
}

#[test]
fn counter_keeps_counting_across_checkpoint_and_restore() {
    require_root!();
    if !criu_works("counter across checkpoint and restore") {
        return;
    }
    let c = counter("cr-count", |_| {});
    let img = tempfile::tempdir().unwrap();
    let old_pid = c.pid();
    let before = count(&c);
    ok(&c.v(&["checkpoint", &image_arg(img.path()), &c.id]));
    assert_eq!(c.status(), "stopped");
    assert!(
        wait_for(3, || !runs(old_pid)),
        "init {old_pid} still runs after the checkpoint"
    );
    assert!(img.path().join("inventory.img").exists());
    std::thread::sleep(Duration::from_millis(300));

    let b = c.bundle.path().to_str().unwrap().to_string();
    ok(&c.v(&[
        "restore",
        "-d",
        "--bundle",
        &b,
        &image_arg(img.path()),
        &c.id,
    ]));
    assert_eq!(c.status(), "running");
    assert_ne!(c.pid(), old_pid, "state names the restored init");
    // It goes on from where it was, not from zero.
    let resumed = count(&c);
    assert!(resumed >= before, "restored at {resumed}, was {before}");
    counts_on(&c, resumed);
    gone(&c, &c.id);
}

#[test]
fn leave_running_and_restore_into_a_new_id() {
    require_root!();
    if !criu_works("--leave-running, restore into a new id") {
        return;
    }
    let c = counter("cr-leave", |_| {});
    let img = tempfile::tempdir().unwrap();
    ok(&c.v(&[
        "checkpoint",
        "--leave-running",
        &image_arg(img.path()),
        &c.id,
    ]));
    assert_eq!(c.status(), "running");
    counts_on(&c, count(&c));
    // The original goes; its image comes back under another id.
    let at = count(&c);
    gone(&c, &c.id);
    let new_id = format!("{}-restored", c.id);
    let b = c.bundle.path().to_str().unwrap().to_string();
    let pid_file = img.path().join("restored.pid");
    ok(&c.v(&[
        "restore",
        "--detach",
        "--bundle",
        &b,
        "--pid-file",
        pid_file.to_str().unwrap(),
        &image_arg(img.path()),
        &new_id,
    ]));
    let st: serde_json::Value = serde_json::from_str(&ok(&c.v(&["state", &new_id]))).unwrap();
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(
        fs::read_to_string(&pid_file).unwrap().trim(),
        st["pid"].to_string()
    );
    // Restored from the dump: the count resumes from below the original's
    // last value (it ran on after the dump), not from zero.
    let resumed = count_of(&c, &new_id);
    assert!(
        resumed > 0 && resumed <= at + 1,
        "restored at {resumed}, original reached {at}"
    );
    counts_on_as(&c, &new_id, resumed);
    gone(&c, &new_id);
}

#[test]
fn checkpoint_of_a_container_with_a_bind_mount() {
    require_root!();
    if !criu_works("checkpoint with a bind mount") {
        return;
    }
    let shared = tempfile::tempdir().unwrap();
    let src = shared.path().to_str().unwrap().to_string();
    let c = counter("cr-bind", |c| {
        c.config()["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": src, "options": ["rbind"]
        }));
        let id = c.id.clone();
        // Empty files only: a file open at the dump keeps its size on the
        // host, so the image still matches it at restore.
        let script = COUNTER.replace(
            "echo $i > /tmp/count;",
            "echo $i > /tmp/count; touch /data/n$i;",
        );
        c.config()["process"]["args"] = json!(["sh", "-c", script, id]);
    });
    let img = tempfile::tempdir().unwrap();
    let at = count(&c);
    ok(&c.v(&["checkpoint", &image_arg(img.path()), &c.id]));
    let b = c.bundle.path().to_str().unwrap().to_string();
    ok(&c.v(&[
        "restore",
        "-d",
        "--bundle",
        &b,
        &image_arg(img.path()),
        &c.id,
    ]));
    counts_on(&c, at);
    // The restored process writes through the bind mount to the host dir.
    let later = count(&c) + 2;
    let host = shared.path().join(format!("n{later}"));
    assert!(
        wait_for(5, || host.exists()),
        "{} never appeared on the host",
        host.display()
    );
    gone(&c, &c.id);
}

/// Restores `c`'s bundle as `id` from `img`; asserts it fails naming the
/// container and every needle, and leaves nothing behind.
fn restore_refused(c: &Ctr, id: &str, img: &Path, needles: &[&str]) -> String {
    let b = c.bundle.path().to_str().unwrap().to_string();
    let err = fails(&c.v(&["restore", "-d", "--bundle", &b, &image_arg(img), id]));
    assert!(err.contains(id), "error does not name the container: {err}");
    for n in needles {
        assert!(err.contains(n), "error does not mention {n:?}: {err}");
    }
    let left = leaks::settle(c.root(), id, Some(c.bundle.path()));
    assert_eq!(left, Vec::<String>::new(), "after: {err}");
    assert!(leaks::state_entries(c.root()).is_empty());
    err
}

#[test]
fn restore_from_a_missing_or_empty_image_fails_cleanly() {
    require_root!();
    let c = ctr("cr-noimg", &["sleep", "1000"]);
    let img = tempfile::tempdir().unwrap();
    let missing = img.path().join("nope");
    restore_refused(&c, &c.id, &missing, &["image path", "nope"]);
    // An empty directory is not a checkpoint either.
    restore_refused(&c, &c.id, img.path(), &["inventory.img"]);
}

#[test]
fn restore_of_a_corrupt_image_names_criu_log_and_leaves_nothing() {
    require_root!();
    let c = ctr("cr-corrupt", &["sleep", "1000"]);
    let img = tempfile::tempdir().unwrap();
    fs::write(img.path().join("inventory.img"), b"not a criu image at all").unwrap();
    // This goes all the way to criu: the container's cgroup is made and
    // criu run, then everything is undone.
    let err = restore_refused(
        &c,
        &c.id,
        img.path(),
        &["criu restore failed", "restore.log"],
    );
    assert!(img.path().join("restore.log").exists(), "{err}");
}

#[test]
fn checkpoint_refuses_what_it_cannot_do() {
    require_root!();
    let c = ctr("cr-refuse", &["sleep", "1000"]);
    let img = tempfile::tempdir().unwrap();
    // Nothing to checkpoint yet.
    let err = fails(&c.v(&["checkpoint", &image_arg(img.path()), &c.id]));
    assert!(
        err.contains("does not exist") && err.contains(&c.id),
        "{err}"
    );
    c.create();
    let err = fails(&c.v(&["checkpoint", &image_arg(img.path()), &c.id]));
    assert!(err.contains("running or paused"), "{err}");
    c.start();
    let err = fails(&c.v(&["checkpoint", "--lazy-pages", &image_arg(img.path()), &c.id]));
    assert!(err.contains("--lazy-pages") && err.contains(&c.id), "{err}");
    let err = fails(&c.v(&[
        "checkpoint",
        "--empty-ns",
        "pid",
        &image_arg(img.path()),
        &c.id,
    ]));
    assert!(
        err.contains("--empty-ns") && err.contains("network namespace") && err.contains("pid"),
        "{err}"
    );
    assert_eq!(
        c.status(),
        "running",
        "a refused checkpoint changed nothing"
    );
    gone(&c, &c.id);
}

#[test]
fn a_failed_dump_names_criu_log_and_keeps_the_container() {
    require_root!();
    let c = counter("cr-dumpfail", |_| {});
    let img = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    // Where CRIU works, a dump is made to fail by a parent image that does
    // not exist; where it does not, any dump fails.
    let parent = "--parent-path=../no-such-parent";
    let out = c.v(&[
        "checkpoint",
        parent,
        &image_arg(img.path()),
        &format!("--work-path={}", work.path().display()),
        &c.id,
    ]);
    if out.status.success() {
        // CRIU accepted a missing parent (it then dumps all memory): the
        // container is stopped as after any checkpoint.
        assert_eq!(c.status(), "stopped");
        gone(&c, &c.id);
        return;
    }
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let log = work.path().join("dump.log");
    assert!(err.contains(&c.id), "{err}");
    assert!(err.contains("criu dump failed"), "{err}");
    assert!(err.contains(log.to_str().unwrap()), "{err}");
    assert!(log.exists(), "no CRIU log at {}", log.display());
    // The failed dump left the container as it was.
    assert_eq!(c.status(), "running");
    counts_on(&c, count(&c));
    gone(&c, &c.id);
}

#[test]
fn pre_dump_chain_then_restore() {
    require_root!();
    if !criu_works("pre-dump chain") {
        return;
    }
    if let Err(why) = Command::new(criu_bin().unwrap_or_else(|| "criu".into()))
        .args(["check", "--feature", "mem_dirty_track"])
        .output()
        .map_err(|e| e.to_string())
        .and_then(|o| {
            if o.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&o.stderr)
                    .trim()
                    .replace('\n', "; "))
            }
        })
    {
        eprintln!("SKIP pre-dump chain: `criu check --feature mem_dirty_track` fails: {why}");
        return;
    }
    let c = counter("cr-pre", |_| {});
    let base = tempfile::tempdir().unwrap();
    let pre = base.path().join("pre");
    let full = base.path().join("full");
    ok(&c.v(&["checkpoint", "--pre-dump", &image_arg(&pre), &c.id]));
    // A pre-dump leaves the container running.
    assert_eq!(c.status(), "running");
    counts_on(&c, count(&c));
    ok(&c.v(&[
        "checkpoint",
        "--parent-path=../pre",
        &image_arg(&full),
        &c.id,
    ]));
    assert_eq!(c.status(), "stopped");
    // The final dump refers to its parent instead of copying every page.
    let parent = fs::read_link(full.join("parent")).expect("no parent link in the image");
    assert_eq!(parent, Path::new("../pre"));
    let b = c.bundle.path().to_str().unwrap().to_string();
    ok(&c.v(&["restore", "-d", "--bundle", &b, &image_arg(&full), &c.id]));
    let resumed = count(&c);
    assert!(resumed > 0, "restored counter reads {resumed}");
    counts_on(&c, resumed);
    gone(&c, &c.id);
}

#[test]
fn restore_of_a_vm_bundle_is_refused_and_leaves_nothing() {
    require_root!();
    let mut c = ctr("cr-vmrestore", &["sleep", "1000"]);
    c.config()["annotations"] = json!({"io.vessel.isolation": "vm"});
    c.write();
    let img = tempfile::tempdir().unwrap();
    // An image that passes vessel's own check: the mode is refused before
    // CRIU or a VM is started.
    fs::write(img.path().join("inventory.img"), b"x").unwrap();
    restore_refused(
        &c,
        &c.id,
        img.path(),
        &["not supported yet for VM containers"],
    );
}

#[test]
fn checkpoint_of_a_vm_container_is_refused() {
    require_root!();
    if !vessel_tests::vm::vm_available() {
        return;
    }
    let c = vessel_tests::vm::VmCtr::new("cr-vm", &["sleep", "1000"]);
    ok(&c.create_with(&[]));
    c.start();
    let img = tempfile::tempdir().unwrap();
    let err = fails(&c.v(&["checkpoint", &image_arg(img.path()), &c.id]));
    assert!(
        err.contains(&c.id) && err.contains("not supported yet for VM containers (issue 22)"),
        "{err}"
    );
    // Refused before anything: no image written, the VM still runs.
    assert_eq!(fs::read_dir(img.path()).unwrap().count(), 0);
    assert_eq!(c.status(), "running");
    ok(&c.v(&["delete", "--force", &c.id]));
}

#[test]
fn checkpoint_of_a_paused_container_then_restore() {
    require_root!();
    if !criu_works("checkpoint of a paused container") {
        return;
    }
    let c = counter("cr-paused", |_| {});
    let at = count(&c);
    ok(&c.v(&["pause", &c.id]));
    let img = tempfile::tempdir().unwrap();
    ok(&c.v(&[
        "checkpoint",
        "--leave-running",
        &image_arg(img.path()),
        &c.id,
    ]));
    // CRIU leaves the freezer as it found it.
    assert_eq!(c.status(), "paused");
    ok(&c.v(&["resume", &c.id]));
    counts_on(&c, at);
    gone(&c, &c.id);
    let b = c.bundle.path().to_str().unwrap().to_string();
    // The image of a frozen tree records the freezer; vessel's cgroup is
    // the restored one's, so CRIU is told to leave cgroups alone.
    ok(&c.v(&[
        "restore",
        "-d",
        "--manage-cgroups-mode=ignore",
        "--bundle",
        &b,
        &image_arg(img.path()),
        &c.id,
    ]));
    assert_eq!(c.status(), "running");
    let resumed = count(&c);
    counts_on(&c, resumed);
    gone(&c, &c.id);
}
