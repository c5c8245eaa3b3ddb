//! Small system helpers: interruption, timed child processes, cleanup.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP set a flag instead of killing the
/// process, so the suites stop at the next check and clean up.
pub fn install_interrupt_handler() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; `signal` takes a plain function pointer.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// Whether a stop signal arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// An error when a stop signal arrived.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps `d`, returning early with an error on interruption.
pub fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// What one finished child cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Wall time from spawn to reaping, in ms.
    pub wall_ms: f64,
    /// User + system CPU of the child and the descendants it waited for, ms.
    pub cpu_ms: f64,
    /// Largest resident set of the child and its waited-for descendants, KiB.
    pub maxrss_kib: u64,
    /// Exit code, or 128 + signal.
    pub status: i32,
}

fn tv_ms(t: libc::timeval) -> f64 {
    t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3
}

/// Runs `cmd` to completion with stdout and stderr discarded and measures
/// it with wait4(2), as `/usr/bin/time` does.
pub fn run_measured(cmd: &mut Command) -> Result<Usage> {
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    // Read stderr before reaping so a chatty child cannot block on a full pipe.
    let mut err = String::new();
    if let Some(mut e) = child.stderr {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = loop {
        // SAFETY: `pid` is our unreaped child (std's Child never waited on
        // it); status and ru point to live, writable locals.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if rc == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break rc;
    };
    let wall_ms = start.elapsed().as_secs_f64() * 1e3;
    if rc != pid {
        return Err(anyhow!("wait4({pid}): {}", std::io::Error::last_os_error()));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    if code != 0 {
        bail!("{cmd:?} exited with {code}: {}", err.trim());
    }
    Ok(Usage {
        wall_ms,
        cpu_ms: tv_ms(ru.ru_utime) + tv_ms(ru.ru_stime),
        maxrss_kib: ru.ru_maxrss as u64,
        status: code,
    })
}

/// Runs `cmd`, returning its stdout; fails with its stderr when it fails.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits for `child` up to `timeout`, polling so a stop signal is noticed.
/// On timeout or interruption the child is killed and an error returned.
pub fn wait_timeout(child: &mut Child, timeout: Duration, what: &str) -> Result<i32> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait()? {
            use std::os::unix::process::ExitStatusExt;
            return Ok(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
        }
        if interrupted() || Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            if interrupted() {
                bail!("interrupted while waiting for {what}");
            }
            bail!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The 1, 5 and 15 minute load averages from /proc/loadavg.
pub fn loadavg() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    parse_loadavg(&s)
}

fn parse_loadavg(s: &str) -> Option<[f64; 3]> {
    let mut it = s.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// The `some` stall total (µs) of `/proc/pressure/<resource>`.
pub fn psi_some_total_us(resource: &str) -> Option<u64> {
    parse_psi_some_total(&std::fs::read_to_string(format!("/proc/pressure/{resource}")).ok()?)
}

fn parse_psi_some_total(s: &str) -> Option<u64> {
    s.lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

/// `uptime`'s output, for the record.
pub fn uptime() -> String {
    output(&mut Command::new("uptime"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The UTC time as `date -u` prints it (ISO 8601).
pub fn now_utc() -> String {
    output(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The running kernel release.
pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// First line of `<bin> --version`.
pub fn version_of(bin: &Path) -> String {
    output(Command::new(bin).arg("--version"))
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default()
}

/// Whether a cgroup v1 hierarchy with `controller` is mounted at `dir`.
pub fn cgroup_v1_mounted(dir: &str, controller: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| mountinfo_has_cgroup(&m, dir, controller))
        .unwrap_or(false)
}

fn mountinfo_has_cgroup(mountinfo: &str, dir: &str, controller: &str) -> bool {
    mountinfo.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            return false;
        };
        f.get(4) == Some(&dir)
            && f.get(sep + 1) == Some(&"cgroup")
            && f.get(sep + 3)
                .is_some_and(|o| o.split(',').any(|x| x == controller))
    })
}

/// Actions run in reverse order of registration when dropped, so setup
/// steps are undone on success, error and interruption alike.
#[derive(Default)]
pub struct Cleanup {
    steps: Vec<(String, Step)>,
}

/// One registered cleanup action.
type Step = Box<dyn FnOnce() -> Result<()>>;

impl Cleanup {
    /// An empty stack.
    pub fn new() -> Cleanup {
        Cleanup::default()
    }

    /// Registers `f`, described by `what` in any failure message.
    pub fn push(&mut self, what: impl Into<String>, f: impl FnOnce() -> Result<()> + 'static) {
        self.steps.push((what.into(), Box::new(f)));
    }

    /// Runs every registered step now, newest first, printing failures.
    pub fn run(&mut self) {
        while let Some((what, f)) = self.steps.pop() {
            if let Err(e) = f() {
                eprintln!("vessel-bench: cleanup: {what}: {e:#}");
            }
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn loadavg_parses() {
        assert_eq!(
            parse_loadavg("1.62 1.51 1.41 2/300 1234\n"),
            Some([1.62, 1.51, 1.41])
        );
        assert_eq!(parse_loadavg("x"), None);
    }

    #[test]
    fn psi_parses() {
        let s = "some avg10=30.08 avg60=49.82 avg300=24.02 total=117753996\n\
                 full avg10=14.39 avg60=8.39 avg300=2.15 total=14010666\n";
        assert_eq!(parse_psi_some_total(s), Some(117753996));
        assert_eq!(parse_psi_some_total("full total=1"), None);
    }

    #[test]
    fn mountinfo_finds_v1_controller() {
        let m =
            "35 25 0:30 / /sys/fs/cgroup/blkio rw,relatime shared:15 - cgroup cgroup rw,blkio\n\
                 36 25 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert!(mountinfo_has_cgroup(m, "/sys/fs/cgroup/blkio", "blkio"));
        assert!(!mountinfo_has_cgroup(
            m,
            "/sys/fs/cgroup/hugetlb",
            "hugetlb"
        ));
        assert!(!mountinfo_has_cgroup(
            m,
            "/sys/fs/cgroup/unified",
            "hugetlb"
        ));
    }

    #[test]
    fn cleanup_runs_newest_first() {
        let log = Rc::new(RefCell::new(Vec::new()));
        {
            let mut c = Cleanup::new();
            for i in 0..3 {
                let l = log.clone();
                c.push(format!("step {i}"), move || {
                    l.borrow_mut().push(i);
                    Ok(())
                });
            }
        }
        assert_eq!(*log.borrow(), vec![2, 1, 0]);
    }

    #[test]
    fn measures_a_child() {
        let u = run_measured(Command::new("true").arg("x")).unwrap();
        assert_eq!(u.status, 0);
        assert!(u.maxrss_kib > 0);
        assert!(run_measured(&mut Command::new("false")).is_err());
    }
}
