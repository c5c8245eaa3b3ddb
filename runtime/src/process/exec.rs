//! What every container process (init or `exec`) goes through before
//! `execve`: priorities and limits while still privileged, then the switch to
//! the configured user and capabilities, cwd, seccomp, and the exec itself.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{IOPriorityClass, Process};

use crate::security::{self, capabilities, rlimits, seccomp::CompiledSeccomp};

/// The `ioprio_set` value for a class and level.
pub fn ioprio_value(class: IOPriorityClass, level: i64) -> i32 {
    let class = match class {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    (class << 13) | (level as i32 & 0x7)
}

/// Sets the IO priority of the calling process.
pub fn set_ioprio(value: i32) -> std::io::Result<()> {
    set_ioprio_of(0, value)
}

/// Sets the IO priority of process `pid` (0: the caller); children forked
/// afterwards inherit it.
pub fn set_ioprio_of(pid: i32, value: i32) -> std::io::Result<()> {
    // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, pid, value) takes integers only.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, pid, value) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Settings that need the setup's privileges: OOM score, IO priority,
/// rlimits. Runs before `Ready`, so failures reach `create`.
pub fn apply_privileged(p: &Process) -> Result<(), String> {
    if let Some(score) = p.oom_score_adj() {
        fs::write("/proc/self/oom_score_adj", score.to_string())
            .map_err(|e| format!("process.oomScoreAdj {score}: {e}"))?;
    }
    if let Some(io) = p.io_priority() {
        set_ioprio(ioprio_value(io.class(), io.priority()))
            .map_err(|e| format!("process.ioPriority: ioprio_set: {e}"))?;
    }
    if let Some(r) = p.rlimits() {
        rlimits::apply(r).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A process ready to be executed: everything resolved and allocated, so
/// that the steps after `start` are a handful of syscalls.
#[derive(Debug)]
pub struct Prepared {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

/// Switches to the process's user and capabilities, umask and cwd, and
/// resolves the program. Runs in the container, after pivot_root.
pub fn drop_privileges(p: &Process, user_ns: bool) -> Result<Prepared, String> {
    let user = p.user();
    let caps = p.capabilities().as_ref();
    if let Some(c) = caps {
        capabilities::drop_bounding(c).map_err(|e| e.to_string())?;
    }
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        apparmor_exec(profile)?;
    }
    if p.no_new_privileges().unwrap_or(false) {
        security::set_no_new_privs().map_err(|e| format!("process.noNewPrivileges: {e}"))?;
    }
    capabilities::set_keep_caps(true).map_err(|e| e.to_string())?;
    let gids: Vec<Gid> = user
        .additional_gids()
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // In a user namespace whose setgroups is denied, only an empty list
    // would be accepted; then there is nothing to set.
    let setgroups_allowed = !user_ns
        || fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() == "allow");
    if setgroups_allowed {
        nix::unistd::setgroups(&gids)
            .map_err(|e| format!("process.user.additionalGids {gids:?}: setgroups: {e}"))?;
    } else if !gids.is_empty() {
        return Err(
            "process.user.additionalGids: setgroups is denied in this user namespace".into(),
        );
    }
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid)
        .map_err(|e| format!("process.user.gid {}: {e}", user.gid()))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid)
        .map_err(|e| format!("process.user.uid {}: {e}", user.uid()))?;
    capabilities::set_keep_caps(false).map_err(|e| e.to_string())?;
    // Without a capabilities object the sets are left as they are (runc).
    if let Some(c) = caps {
        capabilities::apply(c).map_err(|e| e.to_string())?;
    }
    let mask = user.umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    enter_cwd(p.cwd())?;
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(user.uid())));
    }
    let args = p.args().as_deref().unwrap_or(&[]);
    let path = lookup(&args[0], &env)?;
    let cs =
        |s: &[u8], what: &str| CString::new(s).map_err(|_| format!("{what}: contains a NUL byte"));
    Ok(Prepared {
        path: cs(path.as_os_str().as_bytes(), "process.args[0]")?,
        argv: args
            .iter()
            .map(|a| cs(a.as_bytes(), "process.args"))
            .collect::<Result<_, _>>()?,
        envp: env
            .iter()
            .map(|e| cs(e.as_bytes(), "process.env"))
            .collect::<Result<_, _>>()?,
    })
}

/// chdir into `cwd` and make sure it lies inside the container's root: a cwd
/// reached through a leaked host descriptor (/proc/self/fd/N) shows up as
/// "(unreachable)" (CVE-2024-21626).
fn enter_cwd(cwd: &Path) -> Result<(), String> {
    nix::unistd::chdir(cwd).map_err(|e| format!("process.cwd {}: {e}", cwd.display()))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        Ok(p) => Err(format!(
            "process.cwd {}: resolves outside the container ({})",
            cwd.display(),
            p.display()
        )),
        Err(e) => Err(format!(
            "process.cwd {}: resolves outside the container ({e})",
            cwd.display()
        )),
    }
}

/// HOME for `uid` from the container's /etc/passwd, `/` if absent.
fn home_of(uid: u32) -> String {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
        })
        .next()
        .unwrap_or_else(|| "/".into())
}

/// Resolves the program like Go's `exec.LookPath`, as runc does before
/// `create` returns: a missing or non-executable program fails `create`,
/// worded as runc words it, since podman and docker map "executable file
/// not found" / "no such file or directory" to exit code 127 and
/// "permission denied" to 126.
fn lookup(prog: &str, env: &[String]) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| match fs::metadata(p) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err("permission denied".to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("stat {}: no such file or directory", p.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err("permission denied".to_string())
        }
        Err(e) => Err(format!("stat {}: {e}", p.display())),
    };
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return match executable(&p) {
            Ok(()) => Ok(p),
            Err(e) => Err(format!("process.args[0]: exec: {prog:?}: {e}")),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(prog);
        if executable(&cand).is_ok() {
            return Ok(cand);
        }
    }
    Err(format!(
        "process.args[0]: exec: {prog:?}: executable file not found in $PATH"
    ))
}

fn apparmor_exec(profile: &str) -> Result<(), String> {
    let enabled = fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    if !enabled {
        return Err(format!(
            "process.apparmorProfile {profile:?}: AppArmor is not enabled on this host"
        ));
    }
    let data = format!("exec {profile}");
    fs::write("/proc/self/attr/apparmor/exec", &data)
        .or_else(|_| fs::write("/proc/self/attr/exec", &data))
        .map_err(|e| format!("process.apparmorProfile {profile:?}: {e}"))
}

/// The last steps: descriptors beyond stdio and the preserved ones become
/// close-on-exec, seccomp is installed, and the program replaces us.
/// Returns only on failure.
pub fn exec(prep: &Prepared, preserve_fds: u32, seccomp: Option<&CompiledSeccomp>) -> String {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only flags descriptors.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 + preserve_fds,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc < 0 {
        return format!("close_range: {}", std::io::Error::last_os_error());
    }
    if let Some(s) = seccomp {
        if let Err(e) = s.apply() {
            return format!("linux.seccomp: {e}");
        }
    }
    // Ignored signals and the signal mask survive execve: vessel ignores
    // SIGPIPE (Rust's default), and whoever started vessel may have ignored
    // others (nohup ignores SIGHUP, and a shell then cannot even trap it) or
    // blocked some. The workload starts as a fresh init would: every
    // disposition the default, nothing blocked.
    // The raw system call: glibc refuses the real-time signals it reserves
    // (32, 33), which can be inherited ignored as well.
    let default_action = [0u64; 4]; // handler SIG_DFL, no flags, restorer, mask
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: rt_sigaction reads a kernel sigaction (handler, flags,
            // restorer, 8-byte mask) from a valid, zeroed array: SIG_DFL
            // installs no handler; the old action is not asked for.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default_action.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                )
            };
        }
    }
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    let err = nix::unistd::execve(&prep.path, &prep.argv, &prep.envp).unwrap_err();
    // Worded like Go's errors (lowercase), which engines match to pick 126/127.
    format!(
        "process.args[0]: exec: {:?}: {}",
        prep.path.to_string_lossy(),
        err.desc().to_lowercase()
    )
}

/// Sets the personality domain (LINUX or LINUX32) of the init.
pub fn set_personality(p: &oci_spec::runtime::LinuxPersonality) -> Result<(), String> {
    use oci_spec::runtime::LinuxPersonalityDomain as D;
    if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err("linux.personality.flags: no flags are supported".into());
    }
    let persona = match p.domain() {
        D::PerLinux => 0,
        D::PerLinux32 => 0x0008,
    };
    // SAFETY: personality takes an integer and changes only this process.
    if unsafe { libc::personality(persona) } < 0 {
        return Err(format!(
            "linux.personality: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
