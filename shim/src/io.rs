//! A process's stdio as containerd describes it: fifo paths, a
//! `file://` URI or a `binary://` logging driver, with or without a
//! terminal.
//!
//! Without a terminal the process writes straight into the stdout and
//! stderr fifos; the shim keeps a read end of each open, so a process
//! whose client went away (containerd restarted, `ctr run -d`) does not
//! die of SIGPIPE, and the client still sees end-of-file when the process
//! exits because the shim holds no write end. stdin goes through a pipe
//! that the shim feeds from the fifo, so `CloseIO` can close it. With a
//! terminal, the shim copies between the fifos and the pty master.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cli::ChildStdio;
use crate::error::ShimError;

/// stdio as containerd sends it in Create and Exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioSpec {
    /// stdin fifo path, or empty.
    pub stdin: String,
    /// stdout fifo path, `file://` or `binary://` URI, or empty.
    pub stdout: String,
    /// stderr, like stdout.
    pub stderr: String,
    /// Whether the process has a terminal.
    pub terminal: bool,
}

/// Where one output stream goes.
#[derive(Debug, PartialEq, Eq)]
enum Sink {
    Null,
    Fifo(PathBuf),
    File(PathBuf),
    Binary { path: PathBuf, args: Vec<String> },
}

fn parse_sink(s: &str) -> Result<Sink, ShimError> {
    if s.is_empty() {
        return Ok(Sink::Null);
    }
    let bad = |m: &str| ShimError::InvalidArgument(format!("stdio URI {s:?}: {m}"));
    if let Some(rest) = s.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(bad("the file path must be absolute"));
        }
        return Ok(Sink::File(PathBuf::from(unescape(rest))));
    }
    if let Some(rest) = s.strip_prefix("binary://") {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if !path.starts_with('/') {
            return Err(bad("the logging binary's path must be absolute"));
        }
        // containerd passes each query pair as two arguments, key then value.
        let mut args = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            args.push(unescape(k));
            if !v.is_empty() {
                args.push(unescape(v));
            }
        }
        return Ok(Sink::Binary {
            path: PathBuf::from(unescape(path)),
            args,
        });
    }
    if let Some((scheme, _)) = s.split_once("://") {
        return Err(bad(&format!(
            "unsupported scheme {scheme:?} (use a fifo path, file:// or binary://)"
        )));
    }
    Ok(Sink::Fifo(PathBuf::from(s)))
}

/// Percent-decoding of URI components.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .map_err(drop)
                .and_then(|h| u8::from_str_radix(h, 16).map_err(drop))
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn open_fifo_write(path: &Path) -> Result<(OwnedFd, OwnedFd), ShimError> {
    // A read end of our own first: it lets the write end open without a
    // client and keeps writes from failing once the client goes.
    let keep = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| ShimError::io(path, e))?;
    let w = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| ShimError::io(path, e))?;
    Ok((OwnedFd::from(w), OwnedFd::from(keep)))
}

/// The shim's side of one process's stdio, alive as long as the process
/// is known to the shim.
#[derive(Debug, Default)]
pub struct ProcessIo {
    keep: Vec<OwnedFd>,
    stdin: Option<StdinFeed>,
    spec: StdioSpec,
}

/// The pipe into a process's stdin and the fifo it is fed from.
#[derive(Debug)]
struct StdinFeed {
    writer: Arc<Mutex<Option<File>>>,
    /// Set by `CloseIO`: the copier drops the pipe after its current write
    /// (which may block while the process does not read).
    closed: Arc<AtomicBool>,
    fifo: PathBuf,
}

impl StdinFeed {
    /// Copies the fifo into `writer` on a thread until end-of-file or
    /// until `CloseIO` drops the writer.
    fn start(fifo: PathBuf, writer: File) -> StdinFeed {
        let writer = Arc::new(Mutex::new(Some(writer)));
        let closed = Arc::new(AtomicBool::new(false));
        let (w, done) = (writer.clone(), closed.clone());
        let f = fifo.clone();
        std::thread::spawn(move || {
            // Blocks until the client opens its end.
            let Ok(mut r) = File::open(&f) else {
                return;
            };
            let mut buf = [0u8; 8192];
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut g = w.lock().unwrap_or_else(|e| e.into_inner());
                let Some(out) = g.as_mut() else { break };
                if out.write_all(&buf[..n]).is_err() || done.load(Ordering::Acquire) {
                    break;
                }
            }
            w.lock().unwrap_or_else(|e| e.into_inner()).take();
        });
        StdinFeed {
            writer,
            closed,
            fifo,
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Not while the copier is inside a blocked write: it drops the
        // pipe itself when that write returns.
        if let Ok(mut g) = self.writer.try_lock() {
            g.take();
        }
        // Wake the copier if it still waits for the client to open.
        if let Ok(f) = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.fifo)
        {
            drop(f);
        }
    }
}

impl Drop for StdinFeed {
    fn drop(&mut self) {
        self.close();
    }
}

impl ProcessIo {
    /// Opens the process's stdio without a terminal and returns the
    /// descriptors for vessel's child with the shim's side.
    pub fn open(
        spec: &StdioSpec,
        id: &str,
        namespace: &str,
    ) -> Result<(ChildStdio, ProcessIo), ShimError> {
        let mut io = ProcessIo {
            spec: spec.clone(),
            ..Default::default()
        };
        let mut child = ChildStdio::default();
        if !spec.stdin.is_empty() {
            // The child's end loses close-on-exec as its stdin.
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| ShimError::io(Path::new("stdin pipe"), std::io::Error::from(e)))?;
            child.stdin = Some(r);
            io.stdin = Some(StdinFeed::start(PathBuf::from(&spec.stdin), File::from(w)));
        }
        let out = parse_sink(&spec.stdout)?;
        let err = parse_sink(&spec.stderr)?;
        match (&out, &err) {
            (Sink::Binary { path, args }, _) => {
                let (o, e) = spawn_logger(path, args, id, namespace)?;
                child.stdout = Some(o);
                child.stderr = Some(e);
                return Ok((child, io));
            }
            (Sink::File(p), _) => {
                let f = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(p)
                    .map_err(|e| ShimError::io(p, e))?;
                let f2 = f.try_clone().map_err(|e| ShimError::io(p, e))?;
                child.stdout = Some(f.into());
                child.stderr = Some(f2.into());
                return Ok((child, io));
            }
            _ => {}
        }
        if let Sink::Fifo(p) = &out {
            let (w, keep) = open_fifo_write(p)?;
            child.stdout = Some(w);
            io.keep.push(keep);
        }
        match &err {
            Sink::Fifo(p) => {
                let (w, keep) = open_fifo_write(p)?;
                child.stderr = Some(w);
                io.keep.push(keep);
            }
            Sink::Null => {}
            other => {
                return Err(ShimError::InvalidArgument(format!(
                    "stderr {other:?} with stdout {:?}: a URI must name both",
                    spec.stdout
                )))
            }
        }
        Ok((child, io))
    }

    /// The shim's side for a process with a terminal; [`ProcessIo::attach`]
    /// connects it once vessel has sent the pty master.
    pub fn for_terminal(spec: &StdioSpec) -> Result<ProcessIo, ShimError> {
        for s in [&spec.stdout, &spec.stderr] {
            if !matches!(parse_sink(s)?, Sink::Fifo(_) | Sink::Null) {
                return Err(ShimError::InvalidArgument(format!(
                    "stdio {s:?}: a terminal's output must go to a fifo"
                )));
            }
        }
        Ok(ProcessIo {
            spec: spec.clone(),
            ..Default::default()
        })
    }

    /// Copies stdin fifo -> pty master and pty master -> stdout fifo.
    pub fn attach(&mut self, master: &OwnedFd) -> Result<(), ShimError> {
        let dup = |m: &OwnedFd| {
            m.try_clone()
                .map(File::from)
                .map_err(|e| ShimError::io(Path::new("pty master"), e))
        };
        if !self.spec.stdin.is_empty() {
            self.stdin = Some(StdinFeed::start(
                PathBuf::from(&self.spec.stdin),
                dup(master)?,
            ));
        }
        if let Sink::Fifo(p) = parse_sink(&self.spec.stdout)? {
            let (w, keep) = open_fifo_write(&p)?;
            self.keep.push(keep);
            let mut r = dup(master)?;
            let mut w = File::from(w);
            std::thread::spawn(move || {
                // Ends with EIO once the process and every holder of the
                // terminal are gone; dropping `w` gives the client EOF.
                let _ = std::io::copy(&mut r, &mut w);
            });
        }
        Ok(())
    }

    /// `CloseIO` with stdin: the process reads end-of-file.
    pub fn close_stdin(&mut self) {
        if let Some(s) = self.stdin.take() {
            s.close();
        }
    }

    /// The stdio as containerd described it.
    pub fn spec(&self) -> &StdioSpec {
        &self.spec
    }
}

/// Starts a `binary://` logging driver as containerd defines it: the
/// process's stdout on fd 3, its stderr on fd 4, and fd 5 that the driver
/// closes once it is ready; `CONTAINER_ID` and `CONTAINER_NAMESPACE` in its
/// environment. Returns the write ends for the process.
fn spawn_logger(
    path: &Path,
    args: &[String],
    id: &str,
    namespace: &str,
) -> Result<(OwnedFd, OwnedFd), ShimError> {
    // Close-on-exec everywhere: only the dup2'ed copies 3..5 reach the
    // driver, so its closing fd 5 is the only signal of readiness.
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| ShimError::io(Path::new("logging pipe"), std::io::Error::from(e)))
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    let mut cmd = Command::new(path);
    cmd.args(args)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only
    // calls dup2, which is async-signal-safe; the source descriptors stay
    // open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            // Copy the sources above 5 first (close-on-exec, so only fds
            // 3..5 survive exec), so dup2 onto 3..5 cannot overwrite a
            // source that happens to sit there.
            let mut high = [0; 3];
            for (i, fd) in fds.iter().enumerate() {
                high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| ShimError::io(path, e))?;
    drop(cmd);
    drop((out_r, err_r, ready_w));
    // The driver closes fd 5 when ready (or dies); the shim's reaper waits
    // for it, so it is never waited for here.
    let mut ready = File::from(ready_r);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut b = [0u8; 1];
        let _ = tx.send(ready.read(&mut b).is_ok());
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(_) => Ok((out_w, err_w)),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::SIGKILL,
            );
            Err(ShimError::io(
                path,
                std::io::Error::other("the logging binary did not signal ready within 10s"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks() {
        assert_eq!(parse_sink("").unwrap(), Sink::Null);
        assert_eq!(
            parse_sink("/run/x/stdout").unwrap(),
            Sink::Fifo("/run/x/stdout".into())
        );
        assert_eq!(
            parse_sink("file:///var/log/a%20b.log").unwrap(),
            Sink::File("/var/log/a b.log".into())
        );
        assert_eq!(
            parse_sink("binary:///usr/bin/logger?tag=web&verbose").unwrap(),
            Sink::Binary {
                path: "/usr/bin/logger".into(),
                args: vec!["tag".into(), "web".into(), "verbose".into()]
            }
        );
        assert!(parse_sink("file://relative").is_err());
        let e = parse_sink("fluentd://host").unwrap_err();
        assert!(e.to_string().contains("fluentd"), "{e}");
    }
}
