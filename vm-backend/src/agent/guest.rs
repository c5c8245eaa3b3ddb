//! Guest side of the agent: what PID 1 of the guest runs.
//!
//! [`run`] mounts the pseudo filesystems, loads the kernel modules listed in
//! the initramfs (in dependency order, with `finit_module(2)`), finds the
//! virtio-serial port named [`AGENT_PORT_NAME`], greets the host and serves
//! requests until told to shut down, then powers the guest off. Processes
//! are started through a [`ProcessRunner`]: [`CommandRunner`] runs a plain
//! command in the initramfs or chrooted into the root filesystem that
//! [`mount_rootfs`] assembled (image by serial, overlay on the scratch
//! disk); the container runner (vessel's container code: namespaces, OCI
//! mounts, users, capabilities, seccomp) plugs in through the same trait.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use super::protocol::{
    Frame, GuestRootfs, Message, RunProcess, Stream, MAX_DATA_CHUNK, PROTOCOL_VERSION,
};
use super::AGENT_PORT_NAME;
use crate::error::IoContext;
use crate::{Error, Result};

/// Where the initramfs lists the modules to load, one path per line, in
/// load order (written by [`crate::guest::InitramfsBuilder`]).
pub const MODULES_LIST: &str = "/etc/vessel/modules";

/// Flag of `finit_module(2)` asking the kernel to decompress the module.
const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// A started process, as a [`ProcessRunner`] hands it to the agent.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid in the guest.
    pub pid: i32,
    /// Write end of its stdin, if piped.
    pub stdin: Option<File>,
    /// Read end of its stdout, if piped.
    pub stdout: Option<File>,
    /// Read end of its stderr, if piped.
    pub stderr: Option<File>,
    /// The master of its pseudo-terminal, if it has one (resized on
    /// [`Message::ResizeTerminal`]); its output then comes through `stdout`.
    pub terminal: Option<File>,
}

/// Starts workload processes inside the guest. The agent owns waiting for
/// them (it is PID 1 and reaps every child) and forwarding their stdio.
pub trait ProcessRunner: Send + Sync {
    /// Sets up the container for a [`Message::RunProcess`] (root filesystem,
    /// mounts, hostname) before its process is spawned.
    fn prepare(&self, request: &RunProcess) -> Result<()>;
    /// Starts (or, for a container runner, creates) the container's first
    /// process, after [`ProcessRunner::prepare`]; the agent must not be
    /// blocked by it.
    fn spawn(&self, process: &Process) -> Result<Spawned>;
    /// Starts the created first process ([`Message::StartProcess`]). The
    /// plain command runner started it in `spawn` already.
    fn start(&self) -> Result<()> {
        Ok(())
    }
    /// Runs another process in the running container.
    fn exec(&self, process: &Process) -> Result<Spawned> {
        self.spawn(process)
    }
    /// Sends `signal` to every process of the container.
    fn signal_all(&self, signal: i32) -> Result<()> {
        let _ = signal;
        Err(Error::Agent(
            "signalling all processes needs the container runner".into(),
        ))
    }
    /// Lists the container's processes (`format` is `table` or `json`).
    fn ps(&self, format: &str) -> Result<String> {
        let _ = format;
        Err(Error::Agent(
            "listing processes needs the container runner".into(),
        ))
    }
    /// Creates another container of the pod ([`Message::CreateMember`]),
    /// joining the namespaces `join` of container `sandbox`; its init
    /// waits for [`ProcessRunner::start_in`].
    fn create_member(
        &self,
        request: &RunProcess,
        sandbox: &str,
        join: &[String],
    ) -> Result<Spawned> {
        let _ = (request, sandbox, join);
        Err(members_need_runner())
    }
    /// Starts the created init of member `container`.
    fn start_in(&self, container: &str) -> Result<()> {
        let _ = container;
        Err(members_need_runner())
    }
    /// Runs another process in member `container`.
    fn exec_in(&self, container: &str, process: &Process) -> Result<Spawned> {
        let _ = (container, process);
        Err(members_need_runner())
    }
    /// Sends `signal` to every process of member `container`.
    fn signal_all_in(&self, container: &str, signal: i32) -> Result<()> {
        let _ = (container, signal);
        Err(members_need_runner())
    }
    /// Lists the processes of member `container`.
    fn ps_in(&self, container: &str, format: &str) -> Result<String> {
        let _ = (container, format);
        Err(members_need_runner())
    }
    /// Deletes member `container` (killing what is left of it) and frees
    /// its guest resources.
    fn delete_member(&self, container: &str) -> Result<()> {
        let _ = container;
        Err(members_need_runner())
    }
}

fn members_need_runner() -> Error {
    Error::Agent("the containers of a pod need the container runner".into())
}

/// Runs the process as a plain command with its args, env, cwd, uid and
/// gid: in the initramfs, or, once a [`Message::RunProcess`] brought a
/// root filesystem, chrooted into it (mounted by [`mount_rootfs`]). It
/// applies none of the container setup (namespaces, OCI mounts,
/// capabilities, seccomp): that is the container runner's job, and OCI
/// mounts are refused here.
#[derive(Debug, Default)]
pub struct CommandRunner {
    root: Mutex<Option<PathBuf>>,
}

/// Where [`CommandRunner`] mounts the container's root filesystem.
pub const ROOTFS_MOUNT: &str = "/run/vessel/rootfs";

impl ProcessRunner for CommandRunner {
    fn prepare(&self, request: &RunProcess) -> Result<()> {
        if request.config.is_some() || !request.files.is_empty() {
            return Err(Error::Agent(
                "an OCI config needs the container runner; this agent runs plain commands".into(),
            ));
        }
        if !request.mounts.is_empty() {
            return Err(Error::Agent(
                "OCI mounts need the container runner; this agent runs plain commands".into(),
            ));
        }
        if let Some(rootfs) = &request.rootfs {
            let target = Path::new(ROOTFS_MOUNT);
            mount_rootfs(rootfs, target, Duration::from_secs(10))?;
            *self.root.lock().unwrap_or_else(|p| p.into_inner()) = Some(target.to_path_buf());
        }
        Ok(())
    }

    fn spawn(&self, process: &Process) -> Result<Spawned> {
        let args = process
            .args()
            .as_ref()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| Error::InvalidConfig("process.args is empty".into()))?;
        let mut cmd = Command::new(&args[0]);
        cmd.args(&args[1..]).env_clear();
        for kv in process.env().iter().flatten() {
            match kv.split_once('=') {
                Some((k, v)) => cmd.env(k, v),
                None => cmd.env(kv, ""),
            };
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (uid, gid) = (process.user().uid(), process.user().gid());
        let root = self.root.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match root {
            None => {
                cmd.current_dir(process.cwd()).uid(uid).gid(gid);
            }
            Some(root) => {
                let invalid =
                    |what: &str| Error::InvalidConfig(format!("{what} contains a NUL byte"));
                // Built before fork: the child may not allocate.
                let root = CString::new(root.as_os_str().as_encoded_bytes())
                    .map_err(|_| invalid("root path"))?;
                let cwd = CString::new(process.cwd().as_os_str().as_encoded_bytes())
                    .map_err(|_| invalid("process.cwd"))?;
                // SAFETY: the closure runs in the forked child before exec
                // and only makes async-signal-safe system calls on
                // pre-built C strings; it allocates nothing.
                unsafe {
                    cmd.pre_exec(move || {
                        let check = |rc: libc::c_int| {
                            if rc == 0 {
                                Ok(())
                            } else {
                                Err(std::io::Error::last_os_error())
                            }
                        };
                        check(libc::chroot(root.as_ptr()))?;
                        check(libc::chdir(cwd.as_ptr()))?;
                        check(libc::setgroups(0, std::ptr::null()))?;
                        check(libc::setgid(gid))?;
                        check(libc::setuid(uid))
                    });
                }
            }
        }
        let mut child = cmd.spawn().ctx(|| {
            format!(
                "starting process.args[0] {} in cwd {}",
                args[0],
                process.cwd().display()
            )
        })?;
        // The child is reaped by the agent's reaper thread, never through
        // `Child::wait`; dropping `Child` neither waits nor kills.
        Ok(Spawned {
            pid: child.id() as i32,
            stdin: child.stdin.take().map(|s| File::from(OwnedFd::from(s))),
            stdout: child.stdout.take().map(|s| File::from(OwnedFd::from(s))),
            stderr: child.stderr.take().map(|s| File::from(OwnedFd::from(s))),
            terminal: None,
        })
    }
}

/// Finds the virtio-blk device whose serial is `serial` (the engine's
/// [`BlockDevice::serial`](crate::engine::BlockDevice)), waiting up to
/// `timeout` for it to be probed.
pub fn find_block_device(serial: &str, timeout: Duration) -> Result<PathBuf> {
    let start = Instant::now();
    loop {
        if let Ok(entries) = fs::read_dir("/sys/block") {
            for entry in entries.flatten() {
                let found = fs::read_to_string(entry.path().join("serial")).unwrap_or_default();
                if found.trim_end_matches(['\0', '\n']) == serial {
                    let dev = Path::new("/dev").join(entry.file_name());
                    if dev.exists() {
                        return Ok(dev);
                    }
                }
            }
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: format!("a block device with serial {serial:?} (is virtio_blk loaded?)"),
                seconds: timeout.as_secs_f64(),
            });
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Mounts the container's root filesystem at `target`: the read-only image
/// alone, or, with a writable device, an overlay whose lower layer is the
/// image and whose upper and work directories live on the writable ext4
/// (under `/run/vessel/lower` and `/run/vessel/rw`).
pub fn mount_rootfs(rootfs: &GuestRootfs, target: &Path, timeout: Duration) -> Result<()> {
    let lower_dev = find_block_device(&rootfs.device_serial, timeout)?;
    let mount_dev = |dev: &Path, at: &Path, fstype: &str, flags: MsFlags| -> Result<()> {
        fs::create_dir_all(at).ctx(|| format!("creating {}", at.display()))?;
        mount(Some(dev), at, Some(fstype), flags, None::<&str>).map_err(|e| {
            Error::io(
                format!("mounting {} ({fstype}) on {}", dev.display(), at.display()),
                e.into(),
            )
        })
    };
    let Some(rw_serial) = &rootfs.writable_serial else {
        return mount_dev(&lower_dev, target, &rootfs.fstype, MsFlags::MS_RDONLY);
    };
    let lower = Path::new("/run/vessel/lower");
    let rw = Path::new("/run/vessel/rw");
    mount_dev(&lower_dev, lower, &rootfs.fstype, MsFlags::MS_RDONLY)?;
    let rw_dev = find_block_device(rw_serial, timeout)?;
    mount_dev(&rw_dev, rw, "ext4", MsFlags::empty())?;
    let (upper, work) = (rw.join("upper"), rw.join("work"));
    for dir in [&upper, &work, &target.to_path_buf()] {
        fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| {
        Error::io(
            format!("mounting overlay ({data}) on {}", target.display()),
            e.into(),
        )
    })
}

/// `BLKFLSBUF` (`_IO(0x12, 97)`): drop a block device's buffer cache.
const BLKFLSBUF: libc::c_ulong = 0x1261;

/// Mounts a pod member's root filesystem under `dir`: the read-only image
/// on the device `rootfs.device_serial` at `dir/lower`, and an overlay of
/// it at `dir/rootfs` whose upper and work directories are made under
/// `upper_base` (on the writable disk). The device is a pod slot the host
/// rewrote after boot: its buffer cache (filled by the partition scan, or
/// by the slot's previous member) is dropped first, or the guest would
/// read stale blocks. Returns the overlay's path.
pub fn mount_member_rootfs(
    rootfs: &GuestRootfs,
    dir: &Path,
    upper_base: &Path,
    timeout: Duration,
) -> Result<PathBuf> {
    let dev = find_block_device(&rootfs.device_serial, timeout)?;
    let f = File::open(&dev).ctx(|| format!("opening {}", dev.display()))?;
    // SAFETY: BLKFLSBUF takes no argument and only acts on the device
    // behind the descriptor, which is open for the duration of the call.
    if unsafe { libc::ioctl(f.as_raw_fd(), BLKFLSBUF as _, 0) } != 0 {
        return Err(Error::io(
            format!("dropping the buffer cache of {}", dev.display()),
            std::io::Error::last_os_error(),
        ));
    }
    drop(f);
    let lower = dir.join("lower");
    let target = dir.join("rootfs");
    let (upper, work) = (upper_base.join("upper"), upper_base.join("work"));
    for d in [&lower, &target, &upper, &work] {
        fs::create_dir_all(d).ctx(|| format!("creating {}", d.display()))?;
    }
    mount(
        Some(&dev),
        &lower,
        Some(rootfs.fstype.as_str()),
        MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|e| {
        Error::io(
            format!(
                "mounting {} ({}) on {}",
                dev.display(),
                rootfs.fstype,
                lower.display()
            ),
            e.into(),
        )
    })?;
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    if let Err(e) = mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    ) {
        let _ = nix::mount::umount(&lower);
        return Err(Error::io(
            format!("mounting overlay ({data}) on {}", target.display()),
            e.into(),
        ));
    }
    Ok(target)
}

/// Undoes [`mount_member_rootfs`]: unmounts the overlay and the image and
/// removes `dir` and `upper_base`. Goes on past failures, returns the first.
pub fn unmount_member_rootfs(dir: &Path, upper_base: &Path) -> Result<()> {
    let mut first = None;
    for m in [dir.join("rootfs"), dir.join("lower")] {
        match nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => {
                first.get_or_insert(Error::io(format!("unmounting {}", m.display()), e.into()));
            }
        }
    }
    for d in [dir, upper_base] {
        match fs::remove_dir_all(d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                first.get_or_insert(Error::io(format!("removing {}", d.display()), e));
            }
            _ => {}
        }
    }
    first.map_or(Ok(()), Err)
}

/// Configuration of the guest agent.
pub struct GuestOptions {
    /// File listing the modules to load (see [`MODULES_LIST`]).
    pub modules_list: PathBuf,
    /// Name of the virtio-serial port carrying the agent stream.
    pub port_name: String,
    /// How long to wait for the port to appear.
    pub port_timeout: Duration,
    /// Starts workload processes.
    pub runner: Arc<dyn ProcessRunner>,
    /// Agent name and version sent in the greeting.
    pub agent_name: String,
}

impl Default for GuestOptions {
    fn default() -> Self {
        GuestOptions {
            modules_list: PathBuf::from(MODULES_LIST),
            port_name: AGENT_PORT_NAME.to_string(),
            port_timeout: Duration::from_secs(30),
            runner: Arc::new(CommandRunner::default()),
            agent_name: format!("vessel-agent {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Runs the guest agent as PID 1 with the default options and powers the
/// guest off when the host asks for it or on a fatal error.
pub fn run() -> ! {
    run_with(GuestOptions::default())
}

/// Like [`run`], with explicit options.
pub fn run_with(options: GuestOptions) -> ! {
    if let Err(e) = agent_main(options) {
        eprintln!("vessel-agent: fatal: {e}");
    }
    power_off()
}

fn power_off() -> ! {
    nix::unistd::sync();
    // Powering off only returns on failure; PID 1 must never exit (the
    // kernel would panic), so it sleeps until the host kills the VM.
    let Err(e) = reboot(RebootMode::RB_POWER_OFF);
    eprintln!("vessel-agent: power off failed: {e}");
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

fn agent_main(options: GuestOptions) -> Result<()> {
    let init_ms = uptime_ms();
    leave_initramfs()?;
    mount_pseudo_filesystems()?;
    for (module, err) in load_modules(&options.modules_list)? {
        eprintln!("vessel-agent: loading {module}: {err}");
    }
    let port_path = find_port(&options.port_name, options.port_timeout)?;
    let port = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&port_path)
        .ctx(|| format!("opening agent port {}", port_path.display()))?;
    serve(
        port,
        options.runner,
        &options.agent_name,
        init_ms.or_else(uptime_ms),
    )
}

/// Where [`leave_initramfs`] builds the new root before moving it to `/`.
const NEW_ROOT: &str = "/.vessel-root";

/// Left on the tmpfs root by [`leave_initramfs`]: PID 1, re-executed from
/// that root, must not move it again.
const MOVED_MARKER: &str = "/.vessel-moved";

/// Moves PID 1 off the initramfs onto a tmpfs copy of it. The initial
/// ramfs can never be `pivot_root`ed away from, so containers made in it
/// would have to fall back to chroot; on a tmpfs root the guest's container
/// code pivots as on a host. The copy is then removed from the ramfs to
/// give its memory back, and PID 1 re-executes itself from the copy of
/// `/init` (returning only on failure): a removed file is freed only when
/// nothing maps it, and PID 1 maps its own `/init`. Without the re-exec the
/// guest keeps two copies of the static binary (measured with a 9.6 MB
/// binary: `Shmem` of a running guest 20.1 MB without the re-exec, 10.7 MB
/// with it; without it a 96 MiB guest ran out of memory creating the
/// container). A root that is not the initramfs is left alone.
pub fn leave_initramfs() -> Result<()> {
    let root = nix::sys::statfs::statfs("/").map_err(|e| Error::io("statfs /", e.into()))?;
    // RAMFS_MAGIC (0x858458f6): nix names only the tmpfs magic.
    const RAMFS: nix::sys::statfs::FsType = nix::sys::statfs::FsType(0x8584_58f6);
    if root.filesystem_type() != RAMFS && root.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC {
        return Ok(());
    }
    if Path::new(NEW_ROOT).exists() || Path::new(MOVED_MARKER).exists() || std::process::id() != 1 {
        return Ok(());
    }
    let new_root = Path::new(NEW_ROOT);
    fs::create_dir(new_root).ctx(|| format!("creating {NEW_ROOT}"))?;
    mount(
        Some("rootfs"),
        new_root,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(|e| Error::io(format!("mounting tmpfs on {NEW_ROOT}"), e.into()))?;
    for entry in fs::read_dir("/").ctx(|| "reading /".into())? {
        let entry = entry.ctx(|| "reading /".into())?;
        let name = entry.file_name();
        if entry.path() == new_root {
            continue;
        }
        copy_tree(&entry.path(), &new_root.join(&name))?;
        // What was copied is removed from the ramfs, which is not freed
        // otherwise (the mount points of a fresh boot are empty).
        let _ = remove_tree(&entry.path());
    }
    nix::unistd::chdir(new_root).map_err(|e| Error::io("chdir to the new root", e.into()))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| Error::io("moving the new root onto /", e.into()))?;
    nix::unistd::chroot(".").map_err(|e| Error::io("chroot to the new root", e.into()))?;
    nix::unistd::chdir("/").map_err(|e| Error::io("chdir /", e.into()))?;
    File::create(MOVED_MARKER).ctx(|| format!("creating {MOVED_MARKER}"))?;
    reexec_self()
}

/// Replaces this process's image with its own path (`argv[0]`, `/init`)
/// on the new root, keeping the arguments; returns only on failure.
fn reexec_self() -> Result<()> {
    use std::os::unix::ffi::OsStringExt;
    let args = std::env::args_os()
        .map(|a| CString::new(a.into_vec()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::InvalidConfig("an argument of PID 1 contains a NUL byte".into()))?;
    let Some(path) = args.first() else {
        return Err(Error::InvalidConfig("PID 1 has no argv[0]".into()));
    };
    let Err(e) = nix::unistd::execv(path, &args);
    Err(Error::io(
        format!("re-executing {} from the new root", path.to_string_lossy()),
        e.into(),
    ))
}

/// Copies a tree of directories, regular files, symlinks and device nodes,
/// keeping modes.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let meta = fs::symlink_metadata(from).ctx(|| format!("stat {}", from.display()))?;
    let ft = meta.file_type();
    if ft.is_dir() {
        fs::create_dir_all(to).ctx(|| format!("creating {}", to.display()))?;
        for entry in fs::read_dir(from).ctx(|| format!("reading {}", from.display()))? {
            let entry = entry.ctx(|| format!("reading {}", from.display()))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if ft.is_symlink() {
        let target = fs::read_link(from).ctx(|| format!("readlink {}", from.display()))?;
        std::os::unix::fs::symlink(target, to).ctx(|| format!("symlink {}", to.display()))?;
    } else if ft.is_file() {
        fs::copy(from, to).ctx(|| format!("copying {}", from.display()))?;
    } else if ft.is_char_device() || ft.is_block_device() {
        let kind = if ft.is_char_device() {
            nix::sys::stat::SFlag::S_IFCHR
        } else {
            nix::sys::stat::SFlag::S_IFBLK
        };
        nix::sys::stat::mknod(
            to,
            kind,
            nix::sys::stat::Mode::from_bits_truncate(meta.mode()),
            meta.rdev(),
        )
        .map_err(|e| Error::io(format!("mknod {}", to.display()), e.into()))?;
    }
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .or_else(|e| if ft.is_symlink() { Ok(()) } else { Err(e) })
        .ctx(|| format!("chmod {}", to.display()))
}

fn remove_tree(path: &Path) -> std::io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// Guest uptime in milliseconds, from /proc/uptime (None before /proc is
/// mounted).
fn uptime_ms() -> Option<u64> {
    let text = fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some((secs * 1000.0) as u64)
}

/// Serves the protocol on `stream` until the host sends
/// [`Message::Shutdown`]: the virtio port in a guest, or any bidirectional
/// byte stream (a socket in tests). `init_ms` is the guest uptime when PID
/// 1 started, reported in the greeting. Starts the thread that reaps every
/// child of this process, so the caller must not wait for children itself.
pub fn serve(
    stream: File,
    runner: Arc<dyn ProcessRunner>,
    agent_name: &str,
    init_ms: Option<u64>,
) -> Result<()> {
    let reader = stream
        .try_clone()
        .ctx(|| "duplicating the agent stream".into())?;
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let agent = Arc::new(Agent {
        writer: Mutex::new(stream),
        procs: Mutex::new(Procs::default()),
        runner,
        agent_name: agent_name.to_string(),
        kernel,
        init_ms,
    });
    let reaper = Arc::clone(&agent);
    thread::Builder::new()
        .name("reaper".into())
        .spawn(move || reaper.reap_forever())
        .ctx(|| "starting the reaper thread".into())?;
    agent.serve(reader)
}

/// Mounts /proc, /sys, /dev (devtmpfs), /dev/pts and the cgroup2
/// hierarchy (where the guest's container code makes the container's
/// cgroup); already mounted is fine.
pub fn mount_pseudo_filesystems() -> Result<()> {
    let mounts: [(&str, &str, &str); 5] = [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
        ("devpts", "/dev/pts", "devpts"),
        ("cgroup2", "/sys/fs/cgroup", "cgroup2"),
    ];
    for (source, target, fstype) in mounts {
        fs::create_dir_all(target).ctx(|| format!("creating {target}"))?;
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
        match mount(Some(source), target, Some(fstype), flags, None::<&str>) {
            Ok(()) | Err(Errno::EBUSY) => {}
            Err(e) => {
                return Err(Error::io(
                    format!("mounting {fstype} on {target}"),
                    e.into(),
                ))
            }
        }
    }
    Ok(())
}

/// Loads the modules listed in `list` in order. Returns the modules that
/// failed with their error (a missing device driver shows up later as a
/// missing device, with this list on the console to explain it).
pub fn load_modules(list: &Path) -> Result<Vec<(String, Error)>> {
    let text = match fs::read_to_string(list) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", list.display()), e)),
    };
    let params = CString::default();
    let mut failures = Vec::new();
    for module in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let compressed = [".ko.xz", ".ko.zst", ".ko.gz"]
            .iter()
            .any(|ext| module.ends_with(ext));
        let flags = if compressed {
            ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE)
        } else {
            ModuleInitFlags::empty()
        };
        let result = File::open(module)
            .map_err(|e| Error::io(format!("opening {module}"), e))
            .and_then(|f| match finit_module(f.as_fd(), &params, flags) {
                Ok(()) | Err(Errno::EEXIST) => Ok(()),
                Err(e) => Err(Error::io("finit_module", e.into())),
            });
        if let Err(e) = result {
            failures.push((module.to_string(), e));
        }
    }
    Ok(failures)
}

/// Waits for the virtio-serial port called `name` and returns its device.
pub fn find_port(name: &str, timeout: Duration) -> Result<PathBuf> {
    let start = Instant::now();
    loop {
        if let Ok(entries) = fs::read_dir("/sys/class/virtio-ports") {
            for entry in entries.flatten() {
                let port_name = fs::read_to_string(entry.path().join("name")).unwrap_or_default();
                if port_name.trim() == name {
                    let dev = Path::new("/dev").join(entry.file_name());
                    if dev.exists() {
                        return Ok(dev);
                    }
                }
            }
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: format!("virtio-serial port {name} (is virtio_console loaded?)"),
                seconds: timeout.as_secs_f64(),
            });
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A process the agent started.
struct Entry {
    pid: i32,
    stdin: Option<File>,
    terminal: Option<File>,
    io: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct Procs {
    by_id: HashMap<u32, Entry>,
    pid_to_id: HashMap<i32, u32>,
    /// Exits reaped before their process was registered (or of orphans).
    early: HashMap<i32, WaitStatus>,
}

struct Agent {
    writer: Mutex<File>,
    procs: Mutex<Procs>,
    runner: Arc<dyn ProcessRunner>,
    agent_name: String,
    kernel: String,
    init_ms: Option<u64>,
}

impl Agent {
    fn send(&self, frame: &Frame) -> Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        frame.write_to(&mut *w)
    }

    fn send_error(&self, id: Option<u32>, err: &Error) {
        let _ = self.send(&Frame::Control(Message::Error {
            id,
            message: err.to_string(),
        }));
    }

    fn hello(&self) -> Frame {
        Frame::Control(Message::Hello {
            version: PROTOCOL_VERSION,
            agent: self.agent_name.clone(),
            kernel: self.kernel.clone(),
            init_ms: self.init_ms,
            ready_ms: uptime_ms(),
        })
    }

    fn serve(self: &Arc<Self>, mut reader: File) -> Result<()> {
        // Writing blocks until the host side of the port is connected.
        self.send(&self.hello())?;
        loop {
            match Frame::read_from(&mut reader) {
                Ok(Frame::Control(Message::Shutdown)) => return Ok(()),
                Ok(frame) => self.handle(frame),
                // A virtio port reads as end of file while the host side is
                // not connected: wait for the next connection and greet it.
                Err(Error::Closed) | Err(Error::TruncatedFrame { .. }) => {
                    wait_host_connected(&reader);
                    self.send(&self.hello())?;
                }
                Err(
                    e @ (Error::VersionMismatch { .. }
                    | Error::BadMessage(_)
                    | Error::UnknownFrameKind(_)),
                ) => self.send_error(None, &e),
                Err(e) => return Err(e),
            }
        }
    }

    fn handle(self: &Arc<Self>, frame: Frame) {
        match frame {
            Frame::Control(Message::RunProcess(req)) => {
                let id = req.id;
                let result = self
                    .runner
                    .prepare(&req)
                    .and_then(|()| self.start(id, &req.process, false));
                if let Err(e) = result {
                    self.send_error(Some(id), &e);
                }
            }
            // Slow requests run on their own thread: stdin and signals for
            // running processes must keep flowing meanwhile.
            Frame::Control(Message::Exec { id, process }) => {
                let agent = Arc::clone(self);
                thread::spawn(move || {
                    if let Err(e) = agent.start(id, &process, true) {
                        agent.send_error(Some(id), &e);
                    }
                });
            }
            Frame::Control(Message::StartProcess { id }) => {
                let agent = Arc::clone(self);
                thread::spawn(move || match agent.runner.start() {
                    Ok(()) => {
                        let _ = agent.send(&Frame::Control(Message::Ack { id }));
                    }
                    Err(e) => agent.send_error(Some(id), &e),
                });
            }
            Frame::Control(Message::Signal { id, signal, all }) => {
                let result = if all {
                    self.runner.signal_all(signal)
                } else {
                    self.signal(id, signal)
                };
                if let Err(e) = result {
                    self.send_error(Some(id), &e);
                }
            }
            Frame::Control(Message::Ps { id, format }) => {
                let agent = Arc::clone(self);
                thread::spawn(move || match agent.runner.ps(&format) {
                    Ok(output) => {
                        let _ = agent.send(&Frame::Control(Message::PsOutput { id, output }));
                    }
                    Err(e) => agent.send_error(Some(id), &e),
                });
            }
            Frame::Control(Message::ResizeTerminal { id, rows, cols }) => {
                if let Err(e) = self.resize(id, rows, cols) {
                    self.send_error(Some(id), &e);
                }
            }
            Frame::Control(Message::CreateMember { run, sandbox, join }) => {
                let agent = Arc::clone(self);
                thread::spawn(move || {
                    let id = run.id;
                    let result = agent
                        .runner
                        .create_member(&run, &sandbox, &join)
                        .and_then(|spawned| agent.register(id, spawned));
                    if let Err(e) = result {
                        agent.send_error(Some(id), &e);
                    }
                });
            }
            Frame::Control(Message::InContainer { container, message }) => {
                self.handle_in(container, *message)
            }
            Frame::Control(Message::DeleteMember { id, container }) => {
                let agent = Arc::clone(self);
                thread::spawn(move || match agent.runner.delete_member(&container) {
                    Ok(()) => {
                        let _ = agent.send(&Frame::Control(Message::Ack { id }));
                    }
                    Err(e) => agent.send_error(Some(id), &e),
                });
            }
            Frame::Data {
                id,
                stream: Stream::Stdin,
                data,
            } => self.stdin(id, &data),
            other => self.send_error(
                None,
                &Error::UnexpectedMessage(format!("the agent does not accept {other:?}")),
            ),
        }
    }

    /// A request about a member container of the pod: each runs on its
    /// own thread (they start guest vessel commands).
    fn handle_in(self: &Arc<Self>, container: String, message: Message) {
        let agent = Arc::clone(self);
        thread::spawn(move || {
            let (id, result) = match message {
                Message::StartProcess { id } => (
                    id,
                    agent
                        .runner
                        .start_in(&container)
                        .map(|()| Some(Message::Ack { id })),
                ),
                Message::Exec { id, process } => (
                    id,
                    agent
                        .runner
                        .exec_in(&container, &process)
                        .and_then(|spawned| agent.register(id, spawned))
                        .map(|()| None),
                ),
                Message::Signal {
                    id,
                    signal,
                    all: true,
                } => (
                    id,
                    agent
                        .runner
                        .signal_all_in(&container, signal)
                        .map(|()| Some(Message::Ack { id })),
                ),
                Message::Ps { id, format } => (
                    id,
                    agent
                        .runner
                        .ps_in(&container, &format)
                        .map(|output| Some(Message::PsOutput { id, output })),
                ),
                other => {
                    agent.send_error(
                        None,
                        &Error::UnexpectedMessage(format!(
                            "not a request about a container: {other:?}"
                        )),
                    );
                    return;
                }
            };
            match result {
                Ok(Some(answer)) => {
                    let _ = agent.send(&Frame::Control(answer));
                }
                Ok(None) => {}
                Err(e) => agent.send_error(Some(id), &e),
            }
        });
    }

    fn start(self: &Arc<Self>, id: u32, process: &Process, exec: bool) -> Result<()> {
        if self.lock_procs().by_id.contains_key(&id) {
            return Err(Error::Agent(format!("process id {id} is already in use")));
        }
        let spawned = if exec {
            self.runner.exec(process)?
        } else {
            self.runner.spawn(process)?
        };
        self.register(id, spawned)
    }

    /// Tracks a started process under `id`: forwards its output, reports
    /// it started, and reports its exit when reaped.
    fn register(self: &Arc<Self>, id: u32, spawned: Spawned) -> Result<()> {
        if self.lock_procs().by_id.contains_key(&id) {
            return Err(Error::Agent(format!("process id {id} is already in use")));
        }
        let mut io = Vec::new();
        for (pipe, stream) in [
            (spawned.stdout, Stream::Stdout),
            (spawned.stderr, Stream::Stderr),
        ] {
            if let Some(pipe) = pipe {
                let agent = Arc::clone(self);
                io.push(thread::spawn(move || agent.forward(id, stream, pipe)));
            }
        }
        let pid = spawned.pid;
        let early = {
            let mut procs = self.lock_procs();
            procs.by_id.insert(
                id,
                Entry {
                    pid,
                    stdin: spawned.stdin,
                    terminal: spawned.terminal,
                    io,
                },
            );
            procs.pid_to_id.insert(pid, id);
            procs.early.remove(&pid)
        };
        self.send(&Frame::Control(Message::Started { id, pid }))?;
        if let Some(status) = early {
            let agent = Arc::clone(self);
            thread::spawn(move || agent.finish(pid, status));
        }
        Ok(())
    }

    fn lock_procs(&self) -> std::sync::MutexGuard<'_, Procs> {
        self.procs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Copies one output pipe of process `id` to the host, then sends the
    /// end-of-stream marker.
    fn forward(&self, id: u32, stream: Stream, mut pipe: File) {
        let mut buf = vec![0u8; MAX_DATA_CHUNK];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let frame = Frame::Data {
                        id,
                        stream,
                        data: buf[..n].to_vec(),
                    };
                    if self.send(&frame).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = self.send(&Frame::Data {
            id,
            stream,
            data: Vec::new(),
        });
    }

    fn stdin(&self, id: u32, data: &[u8]) {
        let mut procs = self.lock_procs();
        let Some(entry) = procs.by_id.get_mut(&id) else {
            return;
        };
        if data.is_empty() {
            entry.stdin = None;
        } else if let Some(stdin) = entry.stdin.as_mut() {
            if stdin.write_all(data).is_err() {
                entry.stdin = None;
            }
        }
    }

    fn resize(&self, id: u32, rows: u16, cols: u16) -> Result<()> {
        let procs = self.lock_procs();
        let entry = procs
            .by_id
            .get(&id)
            .ok_or_else(|| Error::Agent(format!("no process with id {id}")))?;
        let tty = entry
            .terminal
            .as_ref()
            .ok_or_else(|| Error::Agent(format!("process {id} has no terminal")))?;
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which
        // outlives the call; the descriptor is a pty master we own.
        let rc = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        if rc != 0 {
            return Err(Error::io(
                format!("resizing the terminal of process {id}"),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn signal(&self, id: u32, signal: i32) -> Result<()> {
        let pid = self
            .lock_procs()
            .by_id
            .get(&id)
            .map(|e| e.pid)
            .ok_or_else(|| Error::Agent(format!("no process with id {id}")))?;
        let sig = Signal::try_from(signal)
            .map_err(|_| Error::InvalidConfig(format!("invalid signal number {signal}")))?;
        kill(Pid::from_raw(pid), sig)
            .map_err(|e| Error::io(format!("signalling pid {pid}"), e.into()))
    }

    /// PID 1 reaps every child, workload or orphan.
    fn reap_forever(self: Arc<Self>) {
        loop {
            match waitpid(None::<Pid>, None) {
                Ok(status) => {
                    let Some(pid) = status.pid() else { continue };
                    if super::helpers::claim(pid.as_raw(), status) {
                        continue;
                    }
                    let known = {
                        let mut procs = self.lock_procs();
                        let known = procs.pid_to_id.contains_key(&pid.as_raw());
                        if !known {
                            if procs.early.len() > 1024 {
                                procs.early.clear();
                            }
                            procs.early.insert(pid.as_raw(), status);
                        }
                        known
                    };
                    if known {
                        let agent = Arc::clone(&self);
                        thread::spawn(move || agent.finish(pid.as_raw(), status));
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Reports the exit of `pid` once its output has been forwarded.
    fn finish(&self, pid: i32, status: WaitStatus) {
        let entry = {
            let mut procs = self.lock_procs();
            let Some(id) = procs.pid_to_id.remove(&pid) else {
                return;
            };
            procs.by_id.remove(&id).map(|e| (id, e))
        };
        let Some((id, entry)) = entry else { return };
        drop(entry.stdin);
        for handle in entry.io {
            let _ = handle.join();
        }
        let (code, signal) = match status {
            WaitStatus::Exited(_, code) => (code, None),
            WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, Some(sig as i32)),
            _ => (255, None),
        };
        let _ = self.send(&Frame::Control(Message::Exit { id, code, signal }));
    }
}

/// Blocks until the host side of the virtio port is connected again: the
/// port polls with `POLLHUP` while it is not.
fn wait_host_connected(port: &File) {
    loop {
        let mut fds = [PollFd::new(port.as_fd(), PollFlags::POLLIN)];
        let hup = match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLHUP)),
            Err(_) => true,
        };
        if !hup {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
