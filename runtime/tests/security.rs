//! Real-kernel tests of `vessel::security`: every test forks a child that
//! installs filters, changes capabilities or limits, and reports through a
//! pipe; the parent checks the report and how the child ended.
//!
//! They need root (capabilities, installing seccomp without no_new_privs)
//! and skip with a printed reason without it.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult};
use oci_spec::runtime::{LinuxCapabilities, LinuxSeccomp, PosixRlimit};
use vessel::security::{capabilities, rlimits, seccomp, set_no_new_privs};

/// What a child wrote and how it ended.
struct Outcome {
    status: WaitStatus,
    report: String,
}

impl Outcome {
    fn exited(&self, code: i32) -> bool {
        matches!(self.status, WaitStatus::Exited(_, c) if c == code)
    }

    fn killed_by(&self, sig: Signal) -> bool {
        matches!(self.status, WaitStatus::Signaled(_, s, _) if s == sig)
    }
}

/// The child's end of the report pipe. Writes go straight to write(2) so
/// that a report made under a strict filter needs nothing but `write`.
struct Reporter(i32);

impl Reporter {
    fn say(&self, line: &str) {
        let mut buf = line.as_bytes().to_vec();
        buf.push(b'\n');
        // SAFETY: writes from a live buffer to the pipe's open write end.
        unsafe { libc::write(self.0, buf.as_ptr().cast(), buf.len()) };
    }
}

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP: needs root (capabilities, seccomp without no_new_privs)");
    false
}

/// Forks; the child runs `child` and exits with its return value (101 if it
/// panics, so a failed assertion there never unwinds into the test harness).
fn in_child(child: impl FnOnce(&Reporter) -> i32) -> Outcome {
    let (rd, wr) = pipe().expect("pipe");
    // SAFETY: the child only runs `child` and then _exit()s; it never returns
    // into the test harness, whose other threads do not exist in it.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(rd);
            let reporter = Reporter(wr.as_raw_fd());
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(&reporter)))
                .unwrap_or(101);
            // SAFETY: ends the forked child without running the parent's
            // atexit handlers or destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut report = String::new();
            let mut file = std::fs::File::from(rd);
            file.read_to_string(&mut report).expect("read report");
            let status = waitpid(child, None).expect("waitpid");
            Outcome { status, report }
        }
    }
}

fn profile(json: &str) -> LinuxSeccomp {
    serde_json::from_str(json).expect("profile JSON")
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `name=ok` on success, `name=<errno>` on failure.
fn result(name: &str, rc: i64) -> String {
    if rc < 0 {
        format!("{name}={}", errno())
    } else {
        format!("{name}=ok")
    }
}

fn install(reporter: &Reporter, compiled: &seccomp::CompiledSeccomp) -> bool {
    match compiled.apply() {
        Ok(()) => true,
        Err(e) => {
            reporter.say(&format!("apply failed: {e}"));
            false
        }
    }
}

#[test]
fn errno_rules_return_their_errno() {
    if !is_root() {
        return;
    }
    let compiled = seccomp::compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getcwd"],"action":"SCMP_ACT_ERRNO","errnoRet":95},
            {"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
    ))
    .unwrap();
    let out = in_child(|r| {
        if !install(r, &compiled) {
            return 1;
        }
        let mut buf = [0u8; 256];
        // SAFETY: getcwd writes at most buf.len() bytes into buf.
        let cwd = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
        r.say(&result("getcwd", if cwd.is_null() { -1 } else { 0 }));
        // SAFETY: a NUL-terminated path literal.
        let rc = unsafe { libc::mkdir(c"/vessel-test-never-created".as_ptr(), 0o755) };
        r.say(&result("mkdir", rc.into()));
        // SAFETY: getpid has no preconditions.
        r.say(&result("getpid", unsafe {
            libc::syscall(libc::SYS_getpid)
        }));
        0
    });
    assert!(out.exited(0), "{:?} {}", out.status, out.report);
    assert_eq!(out.report, "getcwd=95\nmkdir=1\ngetpid=ok\n");
    assert!(!std::path::Path::new("/vessel-test-never-created").exists());
}

fn killed_on_getppid(action: &str) {
    let compiled = seccomp::compile(&profile(&format!(
        r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {{"names":["getppid"],"action":"{action}"}}]}}"#
    )))
    .unwrap();
    let out = in_child(|r| {
        if !install(r, &compiled) {
            return 1;
        }
        r.say("installed");
        // SAFETY: getppid has no preconditions.
        unsafe { libc::getppid() };
        r.say("survived");
        0
    });
    assert!(
        out.killed_by(Signal::SIGSYS),
        "{action}: {:?} {}",
        out.status,
        out.report
    );
    assert_eq!(out.report, "installed\n", "{action}");
}

#[test]
fn kill_process_kill_thread_and_kill_end_the_child() {
    if !is_root() {
        return;
    }
    for action in [
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL",
    ] {
        killed_on_getppid(action);
    }
}

extern "C" fn exit_42(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(42) }
}

#[test]
fn trap_delivers_a_catchable_sigsys() {
    if !is_root() {
        return;
    }
    let compiled = seccomp::compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getppid"],"action":"SCMP_ACT_TRAP"}]}"#,
    ))
    .unwrap();
    let out = in_child(|r| {
        // SAFETY: installs an async-signal-safe handler for SIGSYS.
        unsafe { libc::signal(libc::SIGSYS, exit_42 as *const () as usize) };
        if !install(r, &compiled) {
            return 1;
        }
        // SAFETY: getppid has no preconditions.
        unsafe { libc::getppid() };
        r.say("not trapped");
        0
    });
    // A KILL verdict could not be caught; the handler's exit code proves TRAP.
    assert!(out.exited(42), "{:?} {}", out.status, out.report);
}

#[test]
fn allow_list_with_argument_conditions_and_default_errno() {
    if !is_root() {
        return;
    }
    let compiled = seccomp::compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
            "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
            "syscalls":[
            {"names":["write","exit_group","exit","brk","mmap","munmap","mremap","futex",
                      "rt_sigprocmask","rt_sigreturn","sigaltstack","getpid","madvise"],
             "action":"SCMP_ACT_ALLOW"},
            {"names":["personality"],"action":"SCMP_ACT_ALLOW",
             "args":[{"index":0,"value":4294967295,"op":"SCMP_CMP_EQ"}]},
            {"names":["kill"],"action":"SCMP_ACT_ALLOW",
             "args":[{"index":1,"value":0,"op":"SCMP_CMP_EQ"}]},
            {"names":["kill"],"action":"SCMP_ACT_ERRNO","errnoRet":13,
             "args":[{"index":1,"value":255,"valueTwo":18,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
    ))
    .unwrap();
    // The default filter denies seccomp(2), so it must be installed last.
    assert_eq!(compiled.filter_count(), 2, "{compiled:?}");
    let out = in_child(|r| {
        if !install(r, &compiled) {
            return 1;
        }
        // SAFETY: personality, getppid, getpid and kill take plain integers.
        unsafe {
            r.say(&result(
                "personality(query)",
                libc::personality(0xffff_ffff).into(),
            ));
            r.say(&result("personality(0)", libc::personality(0).into()));
            r.say(&result("getppid", libc::syscall(libc::SYS_getppid)));
            let me = libc::getpid();
            r.say(&result("kill(0)", libc::kill(me, 0).into()));
            r.say(&result(
                "kill(SIGCONT)",
                libc::kill(me, libc::SIGCONT).into(),
            ));
            // 0x112 & 0xff == 18: the mask applies before the comparison.
            r.say(&result("kill(0x112)", libc::kill(me, 0x112).into()));
            r.say(&result(
                "kill(SIGUSR1)",
                libc::kill(me, libc::SIGUSR1).into(),
            ));
        }
        0
    });
    assert!(out.exited(0), "{:?} {}", out.status, out.report);
    assert_eq!(
        out.report,
        "personality(query)=ok\npersonality(0)=38\ngetppid=38\nkill(0)=ok\n\
         kill(SIGCONT)=13\nkill(0x112)=13\nkill(SIGUSR1)=38\n"
    );
}

#[test]
fn overlapping_rules_take_the_most_restrictive_verdict() {
    if !is_root() {
        return;
    }
    let compiled = seccomp::compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getppid"],"action":"SCMP_ACT_ERRNO","errnoRet":1},
            {"names":["getppid"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
            {"names":["getppid"],"action":"SCMP_ACT_LOG"},
            {"names":["kill"],"action":"SCMP_ACT_ERRNO"},
            {"names":["kill"],"action":"SCMP_ACT_KILL_PROCESS",
             "args":[{"index":1,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
    ))
    .unwrap();
    let out = in_child(|r| {
        if !install(r, &compiled) {
            return 1;
        }
        // SAFETY: getppid, getpid and kill take plain integers.
        unsafe {
            r.say(&result("getppid", libc::syscall(libc::SYS_getppid)));
            let me = libc::getpid();
            r.say(&result(
                "kill(SIGCONT)",
                libc::kill(me, libc::SIGCONT).into(),
            ));
            libc::kill(me, 0);
        }
        r.say("survived");
        0
    });
    // Two ERRNO verdicts: the larger errno wins (documented in seccomp.rs).
    assert!(
        out.killed_by(Signal::SIGSYS),
        "{:?} {}",
        out.status,
        out.report
    );
    assert_eq!(out.report, "getppid=38\nkill(SIGCONT)=1\n");
}

#[test]
fn log_lets_the_call_run_and_flags_are_accepted() {
    if !is_root() {
        return;
    }
    let compiled = seccomp::compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW","SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls":[{"names":["getppid"],"action":"SCMP_ACT_LOG"},
                        {"names":["getcwd"],"action":"SCMP_ACT_ERRNO"}]}"#,
    ))
    .unwrap();
    assert_eq!(compiled.flags(), 0b111);
    let parent = std::process::id();
    let out = in_child(|r| {
        if !install(r, &compiled) {
            return 1;
        }
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() };
        r.say(&format!("getppid={ppid}"));
        0
    });
    assert!(out.exited(0), "{:?} {}", out.status, out.report);
    assert_eq!(out.report, format!("getppid={parent}\n"));
}

#[test]
fn x32_syscalls_are_killed() {
    if !is_root() {
        return;
    }
    let compiled = seccomp::compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getcwd"],"action":"SCMP_ACT_ERRNO"}]}"#,
    ))
    .unwrap();
    let out = in_child(|r| {
        if !install(r, &compiled) {
            return 1;
        }
        r.say("installed");
        // x32 getpid: the native number with __X32_SYSCALL_BIT.
        // SAFETY: getpid takes no arguments.
        unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) };
        r.say("survived");
        0
    });
    assert!(
        out.killed_by(Signal::SIGSYS),
        "{:?} {}",
        out.status,
        out.report
    );
    assert_eq!(out.report, "installed\n");
}

/// getpid through the i386 ABI (int 0x80, eax = 20).
fn i386_getpid() -> i64 {
    let ret: i64;
    // SAFETY: i386 getpid takes no arguments and touches no memory; the
    // kernel's int 0x80 path clobbers r8-r11 in 64-bit processes.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("rax") 20i64 => ret,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            options(nostack)
        );
    }
    ret
}

#[test]
fn i386_syscalls_are_killed() {
    if !is_root() {
        return;
    }
    let control = in_child(|r| {
        r.say(&i386_getpid().to_string());
        0
    });
    let pid_ok = control.report.trim().parse::<i64>().is_ok_and(|p| p > 0);
    if !control.exited(0) || !pid_ok {
        eprintln!(
            "SKIP: the kernel does not run i386 syscalls ({:?})",
            control.status
        );
        return;
    }
    let compiled = seccomp::compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
            "syscalls":[{"names":["getcwd"],"action":"SCMP_ACT_ERRNO"}]}"#,
    ))
    .unwrap();
    let out = in_child(|r| {
        if !install(r, &compiled) {
            return 1;
        }
        r.say("installed");
        i386_getpid();
        r.say("survived");
        0
    });
    assert!(
        out.killed_by(Signal::SIGSYS),
        "{:?} {}",
        out.status,
        out.report
    );
    assert_eq!(out.report, "installed\n");
}

#[test]
fn install_needs_no_new_privs_or_cap_sys_admin() {
    if !is_root() {
        return;
    }
    let compiled = seccomp::compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getcwd"],"action":"SCMP_ACT_ERRNO"}]}"#,
    ))
    .unwrap();
    // SAFETY: PR_GET_NO_NEW_PRIVS takes no pointers.
    if unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) } == 1 {
        eprintln!("SKIP: the test runs with no_new_privs already set");
        return;
    }
    let out = in_child(|r| {
        caps::drop(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_ADMIN,
        )
        .unwrap();
        match compiled.apply() {
            Ok(()) => r.say("applied without privilege"),
            Err(e) => r.say(&e.to_string()),
        }
        set_no_new_privs().unwrap();
        match compiled.apply() {
            Ok(()) => r.say("applied with no_new_privs"),
            Err(e) => r.say(&e.to_string()),
        }
        0
    });
    assert!(out.exited(0), "{:?} {}", out.status, out.report);
    assert_eq!(
        out.report,
        "linux.seccomp: installing filter 1 of 1 (SCMP_ACT_ERRNO(1)) with flags 0x0: \
         Permission denied (os error 13) (set no_new_privs first, or install while holding \
         CAP_SYS_ADMIN)\napplied with no_new_privs\n"
    );
}

/// podman's default profile is in Docker's format; translate it as an engine
/// does for x86_64 with podman's default capabilities.
fn podman_profile() -> Option<LinuxSeccomp> {
    const PATH: &str = "/usr/share/containers/seccomp.json";
    let text = match std::fs::read_to_string(PATH) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIP: {PATH}: {e} (apt-get install containers-common)");
            return None;
        }
    };
    let docker: serde_json::Value = serde_json::from_str(&text).unwrap();
    const CAPS: &[&str] = &[
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_CHROOT",
    ];
    let list = |v: &serde_json::Value, key: &str| -> Vec<String> {
        v.get(key)
            .and_then(|x| x.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut syscalls = Vec::new();
    for entry in docker["syscalls"].as_array().unwrap() {
        let inc = &entry["includes"];
        let exc = &entry["excludes"];
        let arches = list(inc, "arches");
        if !arches.is_empty() && !arches.iter().any(|a| a == "amd64") {
            continue;
        }
        if list(inc, "caps")
            .iter()
            .any(|c| !CAPS.contains(&c.as_str()))
        {
            continue;
        }
        if list(exc, "caps").iter().any(|c| CAPS.contains(&c.as_str())) {
            continue;
        }
        if list(exc, "arches").iter().any(|a| a == "amd64") {
            continue;
        }
        let mut rule = serde_json::Map::new();
        for key in ["names", "action", "args", "errnoRet"] {
            if let Some(v) = entry.get(key) {
                rule.insert(key.into(), v.clone());
            }
        }
        syscalls.push(serde_json::Value::Object(rule));
    }
    let oci = serde_json::json!({
        "defaultAction": docker["defaultAction"],
        "defaultErrnoRet": docker["defaultErrnoRet"],
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    });
    Some(serde_json::from_value(oci).unwrap())
}

#[test]
fn podman_default_profile_compiles_and_confines() {
    if !is_root() {
        return;
    }
    let Some(p) = podman_profile() else { return };
    let names: usize = p.syscalls().iter().flatten().map(|s| s.names().len()).sum();

    let mut times = Vec::new();
    let mut compiled = None;
    for _ in 0..200 {
        let start = Instant::now();
        compiled = Some(seccomp::compile(&p).unwrap());
        times.push(start.elapsed());
    }
    let compiled = compiled.unwrap();
    let first = times[0];
    times.sort();
    println!(
        "podman profile: {} rules, {names} names, {} skipped as foreign, {} filters, \
         {} BPF instructions; compile first {first:?}, median {:?}, min {:?}",
        p.syscalls().as_ref().map_or(0, |s| s.len()),
        compiled.skipped_syscalls().len(),
        compiled.filter_count(),
        compiled.instruction_count(),
        times[times.len() / 2],
        times[0],
    );

    let out = in_child(|r| {
        set_no_new_privs().unwrap();
        if !install(r, &compiled) {
            return 1;
        }
        // SAFETY: plain-integer syscalls; acct(NULL) only turns accounting off.
        unsafe {
            r.say(&result("getpid", libc::syscall(libc::SYS_getpid)));
            r.say(&result(
                "personality(query)",
                libc::personality(0xffff_ffff).into(),
            ));
            r.say(&result(
                "personality(0x1234)",
                libc::personality(0x1234).into(),
            ));
            r.say(&result(
                "kexec_load",
                libc::syscall(libc::SYS_kexec_load, 0, 0, 0, 0),
            ));
            r.say(&result("acct", libc::acct(std::ptr::null()).into()));
        }
        // A real program runs under the profile.
        let status = std::process::Command::new("/bin/true").status();
        r.say(&format!("true={:?}", status.map(|s| s.code())));
        0
    });
    assert!(out.exited(0), "{:?} {}", out.status, out.report);
    // Profiles differ between versions: kexec_load and acct are denied by a
    // rule or by the default; an unlisted personality gets the default errno.
    let default_errno = p.default_errno_ret().unwrap_or(1);
    let lines: Vec<&str> = out.report.lines().collect();
    assert_eq!(lines[0], "getpid=ok", "{}", out.report);
    assert_eq!(lines[1], "personality(query)=ok", "{}", out.report);
    assert_eq!(
        lines[2],
        format!("personality(0x1234)={default_errno}"),
        "{}",
        out.report
    );
    assert!(lines[3].starts_with("kexec_load=") && lines[3] != "kexec_load=ok");
    assert!(lines[4].starts_with("acct=") && lines[4] != "acct=ok");
    assert_eq!(lines[5], "true=Ok(Some(0))", "{}", out.report);
}

fn caps_json(json: &str) -> LinuxCapabilities {
    serde_json::from_str(json).unwrap()
}

/// The Cap* lines of /proc/self/status as (name, mask).
fn status_caps(status: &str) -> Vec<(String, u64)> {
    status
        .lines()
        .filter(|l| l.starts_with("Cap"))
        .map(|l| {
            let (name, mask) = l.split_once(':').unwrap();
            (
                name.to_string(),
                u64::from_str_radix(mask.trim(), 16).unwrap(),
            )
        })
        .collect()
}

fn mask(bits: &[caps::Capability]) -> u64 {
    bits.iter().map(|c| c.bitmask()).sum()
}

#[test]
fn capabilities_after_setuid_are_exactly_the_spec() {
    use caps::Capability as C;
    if !is_root() {
        return;
    }
    let spec = caps_json(
        r#"{"bounding":["CAP_CHOWN","CAP_KILL","CAP_SETGID","CAP_SETUID","CAP_NET_BIND_SERVICE"],
            "permitted":["CAP_CHOWN","CAP_KILL","CAP_NET_BIND_SERVICE"],
            "effective":["CAP_KILL","CAP_NET_BIND_SERVICE"],
            "inheritable":["CAP_KILL","CAP_NET_BIND_SERVICE"],
            "ambient":["CAP_NET_BIND_SERVICE"]}"#,
    );
    let out = in_child(|r| {
        // A capability in pI before the drop must not survive it.
        caps::raise(None, caps::CapSet::Inheritable, C::CAP_NET_RAW).unwrap();
        capabilities::drop_bounding(&spec).unwrap();
        capabilities::set_keep_caps(true).unwrap();
        nix::unistd::setgid(1000.into()).unwrap();
        nix::unistd::setuid(1000.into()).unwrap();
        capabilities::apply(&spec).unwrap();
        r.say(&std::fs::read_to_string("/proc/self/status").unwrap());
        r.say("--- after execve");
        // uid 1000 keeps only its ambient set across execve.
        let out = std::process::Command::new("/bin/cat")
            .arg("/proc/self/status")
            .output()
            .unwrap();
        r.say(&String::from_utf8_lossy(&out.stdout));
        0
    });
    assert!(out.exited(0), "{:?} {}", out.status, out.report);
    let (before, after) = out.report.split_once("--- after execve").unwrap();
    let bounding = mask(&[
        C::CAP_CHOWN,
        C::CAP_KILL,
        C::CAP_SETGID,
        C::CAP_SETUID,
        C::CAP_NET_BIND_SERVICE,
    ]);
    let expect = |eff: u64, prm: u64, inh: u64, amb: u64| {
        vec![
            ("CapInh".to_string(), inh),
            ("CapPrm".to_string(), prm),
            ("CapEff".to_string(), eff),
            ("CapBnd".to_string(), bounding),
            ("CapAmb".to_string(), amb),
        ]
    };
    let kill_bind = mask(&[C::CAP_KILL, C::CAP_NET_BIND_SERVICE]);
    let bind = mask(&[C::CAP_NET_BIND_SERVICE]);
    assert_eq!(
        status_caps(before),
        expect(
            kill_bind,
            mask(&[C::CAP_CHOWN, C::CAP_KILL, C::CAP_NET_BIND_SERVICE]),
            kill_bind,
            bind
        ),
        "{before}"
    );
    assert!(
        before.contains("\nUid:\t1000\t1000\t1000\t1000\n"),
        "{before}"
    );
    assert_eq!(
        status_caps(after),
        expect(bind, bind, kill_bind, bind),
        "{after}"
    );
}

#[test]
fn dropped_capabilities_cannot_come_back_through_inheritable() {
    use caps::Capability as C;
    if !is_root() {
        return;
    }
    let bounding_only = caps_json(r#"{"bounding":["CAP_KILL","CAP_SETPCAP"]}"#);
    let wants_net_raw = caps_json(
        r#"{"bounding":["CAP_KILL","CAP_SETPCAP"],"permitted":["CAP_KILL","CAP_SETPCAP"],
            "effective":["CAP_KILL","CAP_SETPCAP"],"inheritable":["CAP_NET_RAW"]}"#,
    );
    let out = in_child(|r| {
        caps::raise(None, caps::CapSet::Inheritable, C::CAP_NET_RAW).unwrap();
        capabilities::drop_bounding(&bounding_only).unwrap();
        r.say(&format!(
            "inheritable has NET_RAW: {}",
            caps::has_cap(None, caps::CapSet::Inheritable, C::CAP_NET_RAW).unwrap()
        ));
        // Still root with every permitted capability, CAP_SETPCAP included,
        // yet the kernel refuses: NET_RAW is out of both X and pI.
        match capabilities::apply(&wants_net_raw) {
            Ok(()) => r.say("NET_RAW regained"),
            Err(e) => r.say(&e.to_string()),
        }
        0
    });
    assert!(out.exited(0), "{:?} {}", out.status, out.report);
    let lines: Vec<&str> = out.report.lines().collect();
    assert_eq!(lines[0], "inheritable has NET_RAW: false");
    assert!(
        lines[1].starts_with("process.capabilities.inheritable: setting CAP_NET_RAW:"),
        "{}",
        out.report
    );
}

#[test]
fn without_keepcaps_setuid_empties_permitted() {
    if !is_root() {
        return;
    }
    let spec = caps_json(r#"{"bounding":["CAP_KILL"],"permitted":["CAP_KILL"]}"#);
    let out = in_child(|r| {
        capabilities::drop_bounding(&spec).unwrap();
        capabilities::set_keep_caps(false).unwrap();
        nix::unistd::setuid(1000.into()).unwrap();
        match capabilities::apply(&spec) {
            Ok(()) => r.say("applied"),
            Err(e) => r.say(&e.to_string()),
        }
        0
    });
    assert!(out.exited(0), "{:?} {}", out.status, out.report);
    assert!(
        out.report
            .starts_with("process.capabilities.permitted: setting CAP_KILL:"),
        "{}",
        out.report
    );
}

fn rlimits_json(json: &str) -> Vec<PosixRlimit> {
    serde_json::from_str(json).unwrap()
}

#[test]
fn rlimits_are_set_and_failures_are_named() {
    if !is_root() {
        return;
    }
    let lower = rlimits_json(
        r#"[{"type":"RLIMIT_NOFILE","soft":512,"hard":1024},
            {"type":"RLIMIT_CORE","soft":0,"hard":0}]"#,
    );
    let raise = rlimits_json(r#"[{"type":"RLIMIT_NOFILE","soft":1024,"hard":1048576}]"#);
    let has_sys_resource = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap();
    let out = in_child(|r| {
        rlimits::apply(&lower).unwrap();
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE);
        let core = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE);
        r.say(&format!("{nofile:?} {core:?}"));
        match rlimits::apply(&raise) {
            Ok(()) => r.say("raised"),
            Err(e) => r.say(&e.to_string()),
        }
        0
    });
    assert!(out.exited(0), "{:?} {}", out.status, out.report);
    let lines: Vec<&str> = out.report.lines().collect();
    assert_eq!(lines[0], "Ok((512, 1024)) Ok((0, 0))");
    if has_sys_resource {
        assert_eq!(lines[1], "raised");
    } else {
        // The hard limit was lowered to 1024 just before.
        assert_eq!(
            lines[1],
            "process.rlimits[0]: setting RLIMIT_NOFILE to soft 1024 hard 1048576 \
             (current soft 512 hard 1024): EPERM: Operation not permitted \
             (raising a hard limit needs CAP_SYS_RESOURCE)"
        );
    }
}

#[test]
fn no_new_privs_shows_in_proc_status() {
    let out = in_child(|r| {
        set_no_new_privs().unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("NoNewPrivs:"))
            .unwrap_or("missing");
        r.say(line);
        0
    });
    assert!(out.exited(0), "{:?} {}", out.status, out.report);
    assert_eq!(out.report, "NoNewPrivs:\t1\n");
}

#[test]
fn sys_admin_kept_for_a_filter_without_nnp_then_dropped_with_one_capset() {
    use caps::Capability as C;
    if !is_root() {
        return;
    }
    let spec =
        caps_json(r#"{"bounding":["CAP_KILL"],"permitted":["CAP_KILL"],"effective":["CAP_KILL"]}"#);
    // Default deny, but capset and write (the report) allowed, as a profile
    // must when noNewPrivileges is false.
    let compiled = seccomp::compile(&profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["capset","write","exit_group"],"action":"SCMP_ACT_ALLOW"}]}"#,
    ))
    .unwrap();
    let out = in_child(|r| {
        capabilities::drop_bounding(&spec).unwrap();
        capabilities::set_keep_caps(true).unwrap();
        nix::unistd::setuid(1000.into()).unwrap();
        let later = capabilities::apply_keeping(&spec, C::CAP_SYS_ADMIN)
            .unwrap()
            .expect("CAP_SYS_ADMIN is not in the spec: sets to restore");
        let held = capabilities::RawCaps::read().unwrap();
        r.say(&format!("held {:x} {:x}", held.effective, held.permitted));
        // No no_new_privs: only CAP_SYS_ADMIN lets this filter in.
        if !install(r, &compiled) {
            return 1;
        }
        // Under the filter: one capset, then a read-back that the filter
        // denies (capget is not allowed), which shows the filter is on.
        r.say(&result("capset", later.set().map_or(-1, |_| 0)));
        r.say(&format!(
            "capget denied: {}",
            capabilities::RawCaps::read().is_err()
        ));
        0
    });
    assert!(out.exited(0), "{:?} {}", out.status, out.report);
    let sys_admin = C::CAP_SYS_ADMIN.bitmask();
    let kill = C::CAP_KILL.bitmask();
    let want_held = format!("held {:x} {:x}", kill | sys_admin, kill | sys_admin);
    assert_eq!(
        out.report.lines().collect::<Vec<_>>(),
        [want_held.as_str(), "capset=ok", "capget denied: true"],
        "{}",
        out.report
    );
}

#[test]
fn sys_admin_already_in_the_spec_needs_no_capset_later() {
    use caps::Capability as C;
    if !is_root() {
        return;
    }
    let spec = caps_json(
        r#"{"bounding":["CAP_SYS_ADMIN"],"permitted":["CAP_SYS_ADMIN"],"effective":["CAP_SYS_ADMIN"]}"#,
    );
    let out = in_child(|r| {
        capabilities::drop_bounding(&spec).unwrap();
        let later = capabilities::apply_keeping(&spec, C::CAP_SYS_ADMIN).unwrap();
        r.say(&format!("later: {later:?}"));
        0
    });
    assert!(out.exited(0), "{:?} {}", out.status, out.report);
    assert_eq!(out.report.trim(), "later: None");
}
