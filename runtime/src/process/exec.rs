//! What every container process (init or `exec`) goes through before
//! `execve`: priorities and limits while still privileged, then the switch to
//! the configured user and capabilities, cwd, seccomp, and the exec itself.
//!
//! The seccomp filter comes last, because the container's profile decides
//! which system calls work after it, and a default-deny profile allows
//! little beyond what the workload itself calls. The order is:
//!
//! 1. [`apply_privileged`]: oom score, scheduler, IO priority, rlimits.
//! 2. [`drop_privileges`]: bounding set, AppArmor, no_new_privs, groups,
//!    gid and uid, capabilities, umask, cwd (with its escape check), HOME,
//!    and the program's path. All allocation happens here.
//! 3. (init) `Ready`, the wait for `start`, the startContainer hooks.
//! 4. [`exec`]: descriptors beyond stdio and `--preserve-fds` become
//!    close-on-exec, signal dispositions and the mask are reset, the final
//!    CPU affinity of an `exec`'d process is set, then the filter is loaded,
//!    then `execve`.
//!
//! With `noNewPrivileges` true the filter is installed under no_new_privs
//! and nothing but `execve` follows it. With it false, the kernel only lets
//! a task holding CAP_SYS_ADMIN install a filter, which the container's
//! capabilities usually lack. runc therefore loads the filter early, before
//! it switches user and capabilities, so its profile must also allow
//! setgroups, setuid, capset, chdir and more. vessel instead finishes step 2
//! with CAP_SYS_ADMIN still in the effective and permitted sets, loads the
//! filter in step 4 and then drops CAP_SYS_ADMIN with a single capset(2)
//! (none when the spec keeps it): with noNewPrivileges false a profile must
//! allow `capset` besides `execve`, a subset of what runc needs.
//!
//! A failure after the filter (capset or execve) is reported with one
//! write(2) of bytes composed before it, to a descriptor that is already
//! open: every workload that prints anything needs write.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{IOPriorityClass, Process};

use crate::process::attrs;
use crate::process::channel::Msg;
use crate::security::capabilities::{self, RawCaps};
use crate::security::{self, rlimits, seccomp::CompiledSeccomp};
use crate::spec::cpulist::IdMask;

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

/// A step of preparing a container process that failed, naming the
/// field of `process` it applies.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// `process.oomScoreAdj`.
    #[error("process.oomScoreAdj {score}: {source}")]
    OomScoreAdj {
        /// The score asked for.
        score: i32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `process.scheduler` is not valid (checked at create; `exec`'s
    /// process is checked here), or a spec field read here.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// `process.scheduler` was refused by the kernel.
    #[error(transparent)]
    Attr(#[from] attrs::AttrError),
    /// `process.ioPriority`.
    #[error("process.ioPriority: ioprio_set: {0}")]
    IoPriority(#[source] std::io::Error),
    /// `process.rlimits`.
    #[error(transparent)]
    Rlimit(#[from] rlimits::RlimitError),
    /// `process.capabilities` (or the keep-caps switch around setuid).
    #[error(transparent)]
    Capabilities(#[from] capabilities::CapError),
    /// `process.apparmorProfile`.
    #[error("process.apparmorProfile {profile:?}: {source}")]
    AppArmor {
        /// The profile.
        profile: String,
        /// Why.
        #[source]
        source: AppArmorError,
    },
    /// `process.noNewPrivileges`.
    #[error("process.noNewPrivileges: {0}")]
    NoNewPrivs(#[source] std::io::Error),
    /// `process.user.additionalGids`: setgroups(2) failed.
    #[error("process.user.additionalGids {gids:?}: setgroups: {source}")]
    Groups {
        /// The groups.
        gids: Vec<Gid>,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// `process.user.additionalGids` where the user namespace denies setgroups.
    #[error("process.user.additionalGids: setgroups is denied in this user namespace")]
    GroupsDenied,
    /// `process.user.gid`.
    #[error("process.user.gid {gid}: {source}")]
    Gid {
        /// The gid.
        gid: u32,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// `process.user.uid`.
    #[error("process.user.uid {uid}: {source}")]
    Uid {
        /// The uid.
        uid: u32,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// `process.cwd` cannot be entered.
    #[error("process.cwd {}: {source}", cwd.display())]
    Cwd {
        /// The directory.
        cwd: PathBuf,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// `process.cwd` lies outside the container's root (CVE-2024-21626).
    #[error("process.cwd {}: resolves outside the container ({resolved})", cwd.display())]
    CwdOutside {
        /// The directory.
        cwd: PathBuf,
        /// What getcwd(2) said instead of an absolute path.
        resolved: String,
    },
    /// `process.args[0]` is not an executable program. Worded as runc
    /// words it: engines map these words to exit codes 126 and 127.
    #[error("process.args[0]: exec: {prog:?}: {why}")]
    Program {
        /// The program as given.
        prog: String,
        /// Why.
        #[source]
        why: LookupError,
    },
    /// An argument, variable or path holds a NUL byte.
    #[error("{field}: contains a NUL byte")]
    Nul {
        /// `process.args`, `process.env` or `process.args[0]`.
        field: &'static str,
    },
}

/// Why AppArmor could not be asked for a profile.
#[derive(Debug, thiserror::Error)]
pub enum AppArmorError {
    /// The host runs without AppArmor.
    #[error("AppArmor is not enabled on this host")]
    Disabled,
    /// Writing the profile's name for the next exec.
    #[error("{0}")]
    Write(#[source] std::io::Error),
}

/// Why a program cannot be run, worded as Go's `exec.LookPath` words it.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// A bare name found in no `PATH` directory.
    #[error("executable file not found in $PATH")]
    NotInPath,
    /// A path that does not exist.
    #[error("stat {}: no such file or directory", .0.display())]
    NoSuchFile(PathBuf),
    /// Not a regular file with an execute bit, or not reachable.
    #[error("permission denied")]
    PermissionDenied,
    /// Another stat(2) failure.
    #[error("stat {}: {source}", path.display())]
    Stat {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Settings that need the setup's privileges: OOM score, scheduler (a
/// real-time policy or a lower nice value needs CAP_SYS_NICE), IO priority,
/// rlimits. Runs before `Ready`, so failures reach `create`.
pub fn apply_privileged(p: &Process) -> Result<(), PrepareError> {
    if let Some(score) = p.oom_score_adj() {
        fs::write("/proc/self/oom_score_adj", score.to_string())
            .map_err(|source| PrepareError::OomScoreAdj { score, source })?;
    }
    if let Some(s) = p.scheduler() {
        let attr = crate::spec::sched::attr("process.scheduler", s)?;
        attrs::apply_scheduler(&attr)?;
    }
    if let Some(io) = p.io_priority() {
        set_ioprio(ioprio_value(io.class(), io.priority())).map_err(PrepareError::IoPriority)?;
    }
    if let Some(r) = p.rlimits() {
        rlimits::apply(r)?;
    }
    Ok(())
}

/// A process ready to be executed: everything resolved and allocated, so
/// that the steps after `start` are a handful of syscalls.
#[derive(Debug)]
pub struct Prepared {
    path: CString,
    // Own the strings that the pointer arrays below point into.
    #[allow(dead_code)]
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// NULL-terminated pointer arrays into `argv` and `envp` for execve(2),
    /// built here so that nothing is allocated after the filter. The
    /// strings' heap buffers do not move when this value does.
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// The spec's capability sets, to set after the seccomp filter when
    /// CAP_SYS_ADMIN was kept for loading it (see the module documentation).
    caps_after_filter: Option<RawCaps>,
    /// The CPU affinity to set last, before the filter (see
    /// [`Prepared::with_affinity`]).
    affinity: Affinity,
}

/// What [`exec`] does with the CPU affinity.
#[derive(Debug, Default)]
pub enum Affinity {
    /// Leaves it (the container's init: `execCPUAffinity` is not for init).
    #[default]
    Keep,
    /// `process.execCPUAffinity.final`: an error if it cannot be set.
    Final(IdMask),
    /// No `execCPUAffinity` given: every CPU, so the process does not keep
    /// the affinity of vessel's caller (runc does the same); a failure is
    /// ignored, the cpuset still bounds the process.
    Reset,
}

impl Prepared {
    /// The process's environment (`process.env` and the HOME added to it).
    pub fn env(&self) -> Vec<String> {
        self.envp
            .iter()
            .map(|e| e.to_string_lossy().into_owned())
            .collect()
    }

    /// Sets the affinity [`exec`] gives the process (the default: keep it).
    pub fn with_affinity(mut self, affinity: Affinity) -> Prepared {
        self.affinity = affinity;
        self
    }
}

/// Switches to the process's user and capabilities, umask and cwd, and
/// resolves the program. Runs in the container, after pivot_root.
/// `filter_without_nnp`: a seccomp filter will be loaded without
/// no_new_privs, so CAP_SYS_ADMIN is kept for it until then.
pub fn drop_privileges(
    p: &Process,
    user_ns: bool,
    filter_without_nnp: bool,
) -> Result<Prepared, PrepareError> {
    let user = p.user();
    let caps = p.capabilities().as_ref();
    if let Some(c) = caps {
        capabilities::drop_bounding(c)?;
    }
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        apparmor_exec(profile).map_err(|source| PrepareError::AppArmor {
            profile: profile.into(),
            source,
        })?;
    }
    if p.no_new_privileges().unwrap_or(false) {
        security::set_no_new_privs().map_err(PrepareError::NoNewPrivs)?;
    }
    capabilities::set_keep_caps(true)?;
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
        nix::unistd::setgroups(&gids).map_err(|source| PrepareError::Groups {
            gids: gids.clone(),
            source,
        })?;
    } else if !gids.is_empty() {
        return Err(PrepareError::GroupsDenied);
    }
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).map_err(|source| PrepareError::Gid {
        gid: user.gid(),
        source,
    })?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).map_err(|source| PrepareError::Uid {
        uid: user.uid(),
        source,
    })?;
    capabilities::set_keep_caps(false)?;
    // Without a capabilities object the sets are left as they are (runc).
    let sys_admin = caps::Capability::CAP_SYS_ADMIN;
    let caps_after_filter = match (caps, filter_without_nnp) {
        (Some(c), false) => {
            capabilities::apply(c)?;
            None
        }
        (Some(c), true) => capabilities::apply_keeping(c, sys_admin)?,
        (None, false) => None,
        (None, true) => capabilities::hold_effective(sys_admin)?,
    };
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
        |s: &[u8], field: &'static str| CString::new(s).map_err(|_| PrepareError::Nul { field });
    let argv: Vec<CString> = args
        .iter()
        .map(|a| cs(a.as_bytes(), "process.args"))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = env
        .iter()
        .map(|e| cs(e.as_bytes(), "process.env"))
        .collect::<Result<_, _>>()?;
    let ptrs = |v: &[CString]| {
        v.iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    Ok(Prepared {
        path: cs(path.as_os_str().as_bytes(), "process.args[0]")?,
        argv_ptrs: ptrs(&argv),
        envp_ptrs: ptrs(&envp),
        argv,
        envp,
        caps_after_filter,
        affinity: Affinity::Keep,
    })
}

/// `base` with `extra` (`KEY=VALUE` each) applied as `exec --env` applies
/// them: a key already in `base` gets the new value in its place, a new key
/// is appended, and a key given twice keeps the last value. An entry
/// without `=` is a key of its own.
pub fn merge_env(base: &[String], extra: &[String]) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let mut out: Vec<String> = base.to_vec();
    for e in extra {
        let k = key(e);
        match out.iter().position(|o| key(o) == k) {
            Some(i) => out[i] = e.clone(),
            None => out.push(e.clone()),
        }
    }
    out
}

/// chdir into `cwd` and make sure it lies inside the container's root: a cwd
/// reached through a leaked host descriptor (/proc/self/fd/N) shows up as
/// "(unreachable)" (CVE-2024-21626).
fn enter_cwd(cwd: &Path) -> Result<(), PrepareError> {
    nix::unistd::chdir(cwd).map_err(|source| PrepareError::Cwd {
        cwd: cwd.into(),
        source,
    })?;
    let outside = |resolved: String| PrepareError::CwdOutside {
        cwd: cwd.into(),
        resolved,
    };
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        Ok(p) => Err(outside(p.display().to_string())),
        Err(e) => Err(outside(e.to_string())),
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
fn lookup(prog: &str, env: &[String]) -> Result<PathBuf, PrepareError> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| match fs::metadata(p) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err(LookupError::PermissionDenied),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(LookupError::NoSuchFile(p.into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(LookupError::PermissionDenied)
        }
        Err(source) => Err(LookupError::Stat {
            path: p.into(),
            source,
        }),
    };
    let program = |why| PrepareError::Program {
        prog: prog.into(),
        why,
    };
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return executable(&p).map(|()| p).map_err(program);
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
    Err(program(LookupError::NotInPath))
}

fn apparmor_exec(profile: &str) -> Result<(), AppArmorError> {
    let enabled = fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    if !enabled {
        return Err(AppArmorError::Disabled);
    }
    let data = format!("exec {profile}");
    fs::write("/proc/self/attr/apparmor/exec", &data)
        .or_else(|_| fs::write("/proc/self/attr/exec", &data))
        .map_err(AppArmorError::Write)
}

/// Where [`exec`] reports a failure. Both are descriptors that are open
/// already, so the report needs no system call but write(2).
#[derive(Clone, Copy, Debug)]
pub enum Report<'a> {
    /// The sync channel: a `Msg::Error` packet.
    Channel(BorrowedFd<'a>),
    /// The start-status fifo of a detached container: the bare message.
    Status(BorrowedFd<'a>),
}

impl Report<'_> {
    /// `msg` in this report's form, with room for `extra` more bytes of
    /// message before [`Report::close`]: composed before the filter, so that
    /// a failure after it needs no allocation.
    fn open(self, msg: &str, extra: usize) -> Vec<u8> {
        let mut buf = match self {
            Report::Channel(_) => {
                // `{"Error":"<msg>"}` without its closing `"}`.
                let mut v = serde_json::to_vec(&Msg::Error(msg.to_string())).unwrap_or_default();
                v.truncate(v.len().saturating_sub(2));
                v
            }
            Report::Status(_) => msg.as_bytes().to_vec(),
        };
        buf.reserve_exact(extra + 2);
        buf
    }

    /// Appends `text` (plain ASCII words, e.g. an errno's description) in
    /// lowercase, within the room reserved by [`Report::open`]; escaping is
    /// not needed for such text, quotes and controls are left out.
    fn push(buf: &mut Vec<u8>, text: &str) {
        for b in text.bytes() {
            if buf.len() + 2 >= buf.capacity() {
                break;
            }
            if b.is_ascii() && !b.is_ascii_control() && b != b'"' && b != b'\\' {
                buf.push(b.to_ascii_lowercase());
            }
        }
    }

    /// Writes the report (one write(2)) and ends the process.
    fn send(self, mut buf: Vec<u8>) -> ! {
        let fd = match self {
            Report::Channel(fd) => {
                buf.extend_from_slice(b"\"}");
                fd
            }
            Report::Status(fd) => fd,
        };
        // SAFETY: writes the initialised bytes of `buf` to an open descriptor.
        let _ = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        // SAFETY: _exit ends this forked process without running the parent's
        // atexit handlers (and makes no system call but exit_group).
        unsafe { libc::_exit(1) }
    }

    /// Reports `msg` and ends the process (before the filter: may allocate).
    fn fail(self, msg: &str) -> ! {
        let buf = self.open(msg, 0);
        self.send(buf)
    }
}

/// Gives the calling process a fresh program's signal state: every
/// disposition the default, nothing blocked. Ignored signals and the mask
/// survive execve: vessel ignores SIGPIPE (Rust's default), glibc's
/// posix_spawn leaves its reserved signals (32, 33) ignored in a child, and
/// whoever started vessel may have ignored others (nohup ignores SIGHUP, and
/// a shell then cannot even trap it) or blocked some. Raw system calls only,
/// so it may run between fork and exec: glibc's wrappers refuse the
/// real-time signals it reserves.
pub fn reset_signals() -> std::io::Result<()> {
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
    let empty = 0u64;
    // SAFETY: rt_sigprocmask reads an 8-byte mask from a valid u64 and does
    // not return the old one.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The last steps: descriptors beyond stdio and the preserved ones become
/// close-on-exec, signals are reset, seccomp is installed, the capabilities
/// kept for it are dropped, and the program replaces us. On failure the
/// message goes to `report` and the process exits.
pub fn exec(
    prep: &Prepared,
    preserve_fds: u32,
    seccomp: Option<&CompiledSeccomp>,
    report: Report<'_>,
) -> ! {
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
        report.fail(&format!("close_range: {}", std::io::Error::last_os_error()));
    }
    if let Err(e) = reset_signals() {
        report.fail(&format!("reset the signal mask: {e}"));
    }
    match &prep.affinity {
        Affinity::Keep => {}
        Affinity::Final(mask) => {
            if let Err(e) = attrs::set_affinity(0, mask) {
                report.fail(&format!(
                    "process.execCPUAffinity.final: sched_setaffinity: {e}"
                ));
            }
        }
        Affinity::Reset => {
            let _ = attrs::set_affinity(0, &attrs::all_cpus());
        }
    }
    // Everything the failure reports below need is allocated now.
    const ROOM: usize = 128;
    let mut caps_failed = report.open(
        "process.capabilities: dropping CAP_SYS_ADMIN after loading linux.seccomp \
         (the profile must allow capset when noNewPrivileges is false): capset: ",
        ROOM,
    );
    // Worded like Go's errors (lowercase), which engines match to pick 126/127.
    let mut exec_failed = report.open(
        &format!("process.args[0]: exec: {:?}: ", prep.path.to_string_lossy()),
        ROOM,
    );
    if let Some(s) = seccomp {
        if let Err(e) = s.apply() {
            report.fail(&format!("linux.seccomp: {e}"));
        }
    }
    // From here on: capset (only without no_new_privs), execve, and on
    // failure write and exit_group.
    if let Some(c) = &prep.caps_after_filter {
        if let Err(e) = c.set() {
            let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0));
            Report::push(&mut caps_failed, errno.desc());
            report.send(caps_failed);
        }
    }
    // SAFETY: the path and both NULL-terminated arrays point into C strings
    // owned by `prep`, alive for the call; execve returns only on failure.
    unsafe {
        libc::execve(
            prep.path.as_ptr(),
            prep.argv_ptrs.as_ptr(),
            prep.envp_ptrs.as_ptr(),
        )
    };
    Report::push(&mut exec_failed, nix::errno::Errno::last().desc());
    report.send(exec_failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_env_overrides_in_place() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let base = v(&["PATH=/bin", "A=1", "B=2"]);
        assert_eq!(
            merge_env(&base, &v(&["A=x", "C=3", "C=4", "B="])),
            v(&["PATH=/bin", "A=x", "B=", "C=4"])
        );
        assert_eq!(merge_env(&base, &[]), base);
    }

    #[test]
    fn a_program_that_cannot_run_is_worded_as_runc_words_it() {
        // Engines map these words to exit codes 127 and 126.
        let env = ["PATH=/nonexistent-dir".to_string()];
        let e = lookup("no-such-program", &env).unwrap_err();
        assert!(matches!(
            &e,
            PrepareError::Program {
                why: LookupError::NotInPath,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "process.args[0]: exec: \"no-such-program\": executable file not found in $PATH"
        );
        let e = lookup("/nonexistent-dir/prog", &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "process.args[0]: exec: \"/nonexistent-dir/prog\": stat /nonexistent-dir/prog: \
             no such file or directory"
        );
        // A directory is no program.
        let e = lookup("/", &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "process.args[0]: exec: \"/\": permission denied"
        );
        assert_eq!(
            lookup("sh", &["PATH=/bin:/usr/bin".into()]).is_ok(),
            Path::new("/bin/sh").exists() || Path::new("/usr/bin/sh").exists()
        );
    }
}
