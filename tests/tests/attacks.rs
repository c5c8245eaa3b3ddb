//! Attacks a container may attempt on the runtime: overwriting the host's
//! vessel binary through /proc/<pid>/exe (CVE-2019-5736), escaping through
//! a leaked host directory fd as cwd (CVE-2024-21626), leaked descriptors,
//! and rootfs symlinks that redirect mounts onto the host.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use serde_json::json;
use vessel_tests::harness::{ok, stdout, wait_for, Ctr};
use vessel_tests::leaks;
use vessel_tests::require_root;

/// A private copy of the vessel binary, used as the runtime under attack.
fn vessel_copy(dir: &Path) -> PathBuf {
    let p = dir.join("vessel-under-attack");
    fs::copy(vessel_tests::vessel_bin(), &p).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn cve_2019_5736_host_binary_cannot_be_overwritten() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let bin = vessel_copy(tmp.path());
    let original = fs::read(&bin).unwrap();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();

    let mut c = Ctr::new("cve5736", &["sleep", "1000"]);
    c.bin = bin.clone();
    c.config()["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]
    }));
    c.write();
    c.create();

    // While created, init is vessel itself: it must not run from the binary
    // as the host's (writable) mount shows it.
    let pid = c.pid();
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_ne!(exe, bin, "init runs the host binary");
    // Either a sealed memfd, or a read-only (detached) mount of the binary.
    let ro = nix::sys::statvfs::statvfs(format!("/proc/{pid}/exe").as_str())
        .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false);
    assert!(
        ro || exe.to_string_lossy().contains("memfd"),
        "init exe is {exe:?}, on a writable mount"
    );

    // The attacker opens init's exe while init is still vessel, waits until
    // init has exec'd the workload (so the file is no longer busy), then
    // tries to write through the descriptor it kept.
    let attack = "exec 3</proc/1/exe || { echo no-open > /out/result; exit 0; }; \
                  n=0; while [ \"$(cat /proc/1/comm)\" != sleep ] && [ $n -lt 200 ]; do \
                    sleep 0.05; n=$((n+1)); done; sleep 0.2; \
                  r=refused; \
                  printf PWNED 2>/dev/null >> /proc/self/fd/3 && r=appended; \
                  echo PWNED 2>/dev/null > /proc/self/fd/3 && r=truncated; \
                  dd if=/dev/zero of=/proc/self/fd/3 bs=1 count=16 conv=notrunc 2>/dev/null && r=dd; \
                  echo PWNED 2>/dev/null > /proc/1/exe && r=exe; \
                  echo $r > /out/result";
    ok(&c.exec_opts(&["--detach"], &["sh", "-c", attack]));
    c.start();
    let result = out.join("result");
    assert!(wait_for(20, || result.exists()), "attacker never reported");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let r = fs::read_to_string(&result).unwrap();
    // The attacker could open init's exe for reading (as in the CVE), and
    // every way of writing through it was refused.
    assert_eq!(r.trim(), "refused", "attack result");
    assert!(
        fs::read(&bin).unwrap() == original,
        "the host's vessel binary was modified"
    );
}

#[test]
fn cve_2019_5736_exec_helper_is_not_the_host_binary() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let bin = vessel_copy(tmp.path());
    let original = fs::read(&bin).unwrap();
    let mut c = Ctr::new("cve5736x", &["sleep", "1000"]);
    c.bin = bin.clone();
    c.write();
    c.create();
    c.start();
    // A process in the container lists every other process's exe and tries
    // to open each for writing while a `vessel exec` is in flight.
    let mut child = c
        .cmd()
        .args(["exec", &c.id, "sh", "-c", "sleep 1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let cpid = c.pid();
    wait_for(3, || {
        // vessel starts from the host binary and re-executes itself before
        // it joins the container: only processes in the container's mount
        // or pid namespace are reachable from it.
        for (pid, _) in leaks::processes_mentioning(&c.id) {
            let inside = ["mnt", "pid"].iter().any(|n| {
                let a = fs::read_link(format!("/proc/{pid}/ns/{n}"));
                let b = fs::read_link(format!("/proc/{cpid}/ns/{n}"));
                a.is_ok() && a.ok() == b.ok()
            });
            if let (true, Ok(exe)) = (inside, fs::read_link(format!("/proc/{pid}/exe"))) {
                seen.push(exe);
            }
        }
        child.try_wait().unwrap().is_some()
    });
    let _ = child.wait();
    let out = ok(&c.exec(&[
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do [ $p = /proc/$$ ] && continue; \
         echo x 2>/dev/null >> $p/exe && echo wrote-$p; done; echo end",
    ]));
    assert_eq!(out, "end\n", "{out}");
    assert!(
        !seen.iter().any(|e| e == &bin),
        "a vessel process ran from the host binary: {seen:?}"
    );
    assert!(fs::read(&bin).unwrap() == original);
}

/// Runs `script` with process.cwd = `cwd`; returns None when create/run
/// refused (acceptable), else the output.
fn run_with_cwd(tag: &str, cwd: &str, script: &str) -> Option<String> {
    let mut c = Ctr::new(tag, &["sh", "-c", script]);
    c.config()["process"]["cwd"] = json!(cwd);
    c.write();
    let o = c.run();
    if o.status.success() {
        Some(stdout(&o))
    } else {
        assert_eq!(c.leftovers().len(), 0);
        None
    }
}

#[test]
fn cve_2024_21626_cwd_through_proc_self_fd() {
    require_root!();
    // A host marker the container must never see.
    let marker = format!("vessel-host-marker-{}", std::process::id());
    let hostdir = tempfile::tempdir().unwrap();
    fs::write(hostdir.path().join(&marker), "x").unwrap();
    let script =
        "pwd; ls -a; ls -a ..; ls -a ../..; cat /proc/self/cwd/../../../etc/hostname 2>/dev/null; \
                  readlink /proc/self/cwd";
    for n in 3..10 {
        let cwd = format!("/proc/self/fd/{n}");
        if let Some(out) = run_with_cwd("cve21626", &cwd, script) {
            assert!(
                !out.contains(&marker),
                "fd {n}: host directory visible: {out}"
            );
            // The host's rootfs has /work, /root/.cargo...: the container's
            // does not. Its only entries are the busybox rootfs.
            assert!(
                !out.contains("work\n") && !out.contains(".cargo"),
                "fd {n}: {out}"
            );
            let cwdlink = out.lines().last().unwrap_or("");
            assert!(
                !cwdlink.starts_with("/tmp/vessel") && !cwdlink.contains("vessel-root"),
                "fd {n}: cwd on the host: {out}"
            );
        }
    }
    // exec --cwd /proc/self/fd/N.
    let c = Ctr::new("cve21626x", &["sleep", "1000"]);
    c.create();
    c.start();
    for n in 3..10 {
        let cwd = format!("/proc/self/fd/{n}");
        let o = c.exec_opts(&["--cwd", &cwd], &["sh", "-c", script]);
        if o.status.success() {
            let out = stdout(&o);
            assert!(
                !out.contains("work\n") && !out.contains(".cargo"),
                "exec fd {n}: {out}"
            );
            assert!(!out.contains("vessel-root"), "exec fd {n}: {out}");
        }
    }
}

#[test]
fn container_process_gets_only_stdio_fds() {
    require_root!();
    // run, create/start and exec: only 0, 1, 2 (plus ls's own directory fd).
    let script = "ls /proc/self/fd | sort -n | tr '\\n' ' '";
    let c = Ctr::new(
        "fds",
        &["sh", "-c", &format!("{script} > /dev/stderr; true")],
    );
    let o = c.run();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    // `ls` opens the directory as fd 3: the shell itself holds 0-2 only.
    assert_eq!(err.trim(), "0 1 2 3", "run: {err}");

    let c = Ctr::new("fds2", &["sleep", "1000"]);
    c.create();
    c.start();
    let pid = c.pid();
    let mut fds: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    assert_eq!(fds, ["0", "1", "2"], "init of a started container");
    let out = ok(&c.exec(&["sh", "-c", script]));
    assert_eq!(out.trim(), "0 1 2 3", "exec: {out}");
}

/// Runs `vessel --root <root> <args>` with `file` open as fd 3.
fn with_fd3(c: &Ctr, file: &fs::File, args: &[&str]) -> std::process::Output {
    use std::os::fd::AsRawFd;
    let raw = file.as_raw_fd();
    let mut cmd = c.cmd();
    cmd.args(args);
    // SAFETY: dup2 is async-signal-safe; it runs in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            if raw == 3 {
                // dup2(3, 3) would keep FD_CLOEXEC: clear it instead.
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    vessel_tests::harness::output_via_files(&mut cmd)
}

#[test]
fn preserve_fds_passes_exactly_those() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("shared");
    fs::write(&p, "secret-through-fd3\n").unwrap();
    let f = fs::File::open(&p).unwrap();
    let script = "cat /proc/self/fd/3; ls /proc/self/fd | sort -n | tr '\\n' ' '";
    let c = Ctr::new("pfd", &["sh", "-c", script]);
    let b = c.bundle.path().to_str().unwrap().to_string();
    let o = with_fd3(
        &c,
        &f,
        &["run", "--preserve-fds", "1", "--bundle", &b, &c.id],
    );
    let out = ok(&o);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "secret-through-fd3");
    // 0-3 passed, 4 is ls's directory.
    assert_eq!(l[1].trim(), "0 1 2 3 4", "{out}");
    let _ = c.v(&["delete", "-f", &c.id]);

    // Without --preserve-fds, fd 3 of the caller does not reach the container.
    let c = Ctr::new("pfd0", &["sh", "-c", script]);
    let b = c.bundle.path().to_str().unwrap().to_string();
    let o = with_fd3(&c, &f, &["run", "--bundle", &b, &c.id]);
    let out = stdout(&o);
    assert!(!out.contains("secret-through-fd3"), "{out}");

    // exec --preserve-fds 1.
    let c = Ctr::new("pfdx", &["sleep", "1000"]);
    c.create();
    c.start();
    let o = with_fd3(
        &c,
        &f,
        &["exec", "--preserve-fds", "1", &c.id, "sh", "-c", script],
    );
    let out = ok(&o);
    assert!(out.starts_with("secret-through-fd3\n"), "{out}");
    let o = with_fd3(&c, &f, &["exec", &c.id, "sh", "-c", script]);
    assert!(!stdout(&o).contains("secret-through-fd3"));
}

#[test]
fn rootfs_symlinks_do_not_redirect_mounts_to_the_host() {
    require_root!();
    let victim = tempfile::tempdir().unwrap();
    let v = victim.path().to_str().unwrap().to_string();
    fs::write(victim.path().join("keep"), "host file\n").unwrap();
    let before = leaks::mounts_mentioning(&v);

    // 1. A mount destination that is a symlink to a host path.
    let mut c = Ctr::new("symlink1", &["sh", "-c", "ls /evil; echo done"]);
    std::os::unix::fs::symlink(&v, c.bundle.rootfs().join("evil")).unwrap();
    c.config()["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/evil", "type": "tmpfs", "source": "tmpfs"
    }));
    c.write();
    let _ = c.run();
    // 2. A parent of a destination that is a symlink (…/evil2/sub).
    let mut c2 = Ctr::new("symlink2", &["sh", "-c", "echo done"]);
    std::os::unix::fs::symlink(&v, c2.bundle.rootfs().join("evil2")).unwrap();
    c2.config()["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/evil2/sub", "type": "tmpfs", "source": "tmpfs"
    }));
    c2.write();
    let _ = c2.run();
    // 3. /proc itself a symlink to the host directory.
    let c3 = Ctr::new("symlink3", &["sh", "-c", "echo done"]);
    fs::remove_dir(c3.bundle.rootfs().join("proc")).unwrap();
    std::os::unix::fs::symlink(&v, c3.bundle.rootfs().join("proc")).unwrap();
    let _ = c3.run();
    // 4. An absolute symlink ../../../ escaping via relative components.
    let mut c4 = Ctr::new("symlink4", &["sh", "-c", "echo done"]);
    let rel = format!("../../../../../../../..{v}");
    std::os::unix::fs::symlink(&rel, c4.bundle.rootfs().join("evil4")).unwrap();
    c4.config()["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/evil4", "type": "tmpfs", "source": "tmpfs"
    }));
    c4.write();
    let _ = c4.run();

    // Nothing got mounted on the host directory, nothing was created in it.
    assert_eq!(leaks::mounts_mentioning(&v), before);
    let mut names: Vec<String> = fs::read_dir(victim.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["keep"], "files appeared in the host directory");
    for c in [&c, &c2, &c3, &c4] {
        let _ = c.v(&["delete", "-f", &c.id]);
    }
}
