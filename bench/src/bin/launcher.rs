//! `vessel-bench-launcher`: forks and execs one command, reaps it with
//! wait4(2) and prints its wall time, CPU time and peak RSS on one line.
//!
//! Why a separate, small process: a child's `ru_maxrss` includes the
//! high-water RSS of the address space it had before `exec`, which is a
//! copy of its parent's (or, with `vfork`/`posix_spawn`, the parent's own).
//! Launched from the benchmark itself, every runtime's peak RSS would read
//! at least the benchmark's RSS. This launcher allocates next to nothing,
//! uses a real `fork` (only its few written pages are copied), and reports
//! that floor with `--floor` so the benchmark can show it.
//!
//! Usage:
//!   vessel-bench-launcher [--sample-after-ms N] -- PROGRAM [ARGS...]
//!   vessel-bench-launcher --floor
//!
//! Output (stdout, one line of `key=value`): `status`, `wall_us`,
//! `utime_us`, `stime_us`, `maxrss_kib`, and with `--sample-after-ms`
//! `rss_kib`/`pss_kib` of the child (its /proc/PID/smaps_rollup read N ms
//! after the fork, while it runs).

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vessel-bench-launcher: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let mut sample_after: Option<Duration> = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].to_str() {
            Some("--floor") => return floor(),
            Some("--sample-after-ms") => {
                let ms = args
                    .get(i + 1)
                    .and_then(|a| a.to_str())
                    .and_then(|a| a.parse::<u64>().ok())
                    .ok_or("--sample-after-ms needs a number of milliseconds")?;
                sample_after = Some(Duration::from_millis(ms));
                i += 2;
            }
            Some("--") => {
                i += 1;
                break;
            }
            _ => break,
        }
    }
    let cmd: Vec<CString> = args[i..]
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| "an argument holds a NUL byte"))
        .collect::<Result<_, _>>()?;
    if cmd.is_empty() {
        return Err("no command given (usage: vessel-bench-launcher [--sample-after-ms N] -- PROGRAM [ARGS...])".into());
    }
    let mut argv: Vec<*const libc::c_char> = cmd.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());

    let start = Instant::now();
    // SAFETY: this process is single-threaded; the child only calls the
    // async-signal-safe execvp and _exit on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: argv is a NUL-terminated array of pointers to live C
        // strings; _exit is the only way out of a failed exec in a child.
        // The child's stdout goes to stderr: stdout carries the result line.
        unsafe {
            libc::dup2(2, 1);
            libc::execvp(argv[0], argv.as_ptr());
            libc::_exit(127);
        }
    }
    let sample = sample_after.map(|d| {
        std::thread::sleep(d);
        smaps_rollup(pid)
    });
    let (status, ru) = reap(pid)?;
    let wall = start.elapsed();
    let mut line = format!(
        "status={} wall_us={} utime_us={} stime_us={} maxrss_kib={}",
        status,
        wall.as_micros(),
        tv_us(ru.ru_utime),
        tv_us(ru.ru_stime),
        ru.ru_maxrss
    );
    if let Some(s) = sample {
        let (rss, pss) = s?;
        line.push_str(&format!(" rss_kib={rss} pss_kib={pss}"));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|e| format!("writing the result: {e}"))
}

/// The RSS floor a child of this launcher starts from: a forked child that
/// exits at once, its `ru_maxrss`.
fn floor() -> Result<(), String> {
    // SAFETY: single-threaded; the child only calls _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: leaving the forked child without running any destructor.
        unsafe { libc::_exit(0) };
    }
    let (_, ru) = reap(pid)?;
    println!("maxrss_kib={}", ru.ru_maxrss);
    Ok(())
}

/// wait4 on `pid`: the exit status (128 + signal when killed) and rusage.
fn reap(pid: libc::pid_t) -> Result<(i32, libc::rusage), String> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our unreaped child; both pointers are to live locals.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if rc == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4({pid}): {e}"));
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((code, ru))
}

fn tv_us(t: libc::timeval) -> i64 {
    t.tv_sec * 1_000_000 + t.tv_usec
}

/// `Rss` and `Pss` (KiB) of a running process, from smaps_rollup.
fn smaps_rollup(pid: libc::pid_t) -> Result<(u64, u64), String> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| format!("{path} has no {name} line (did the process exit already?)"))
    };
    Ok((field("Rss:")?, field("Pss:")?))
}
