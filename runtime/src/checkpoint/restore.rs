//! `restore`: a container created from a bundle whose processes CRIU
//! brings back from an image instead of spawning them.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{criu, CheckpointError, CriuFlags, DESCRIPTORS, RESTORE_LOG};
use crate::container::create::{Bundle, NewContainer, Spawned};
use crate::container::{CreateOptions, Error};
use crate::isolation::{Isolation, Spawner};
use crate::ledger::Role;
use crate::state::{HostState, Mode, Status};

/// Options of `vessel restore`.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// What `create` takes (bundle, id, pid file, console socket).
    pub create: CreateOptions,
    /// The shared CRIU flags.
    pub criu: CriuFlags,
}

/// The file inventory CRIU writes first in every image.
const INVENTORY: &str = "inventory.img";

/// Restores container `opts.create.id` from `opts.criu.image_path`; a
/// stopped container of that id (the one checkpointed) is deleted first.
pub fn restore(opts: &RestoreOptions) -> Result<i32, CheckpointError> {
    let id = opts.create.id.as_str();
    crate::container::check_id(id)?;
    let image = &opts.criu.image_path;
    let image_err = |why: String| CheckpointError::Image {
        id: id.into(),
        path: image.clone(),
        why,
    };
    match std::fs::metadata(image.join(INVENTORY)) {
        Ok(m) if m.len() > 0 => {}
        Ok(_) => return Err(image_err(format!("{INVENTORY} is empty"))),
        Err(e) if !image.is_dir() => return Err(image_err(e.to_string())),
        Err(_) => {
            return Err(image_err(format!(
                "no {INVENTORY}: not a CRIU checkpoint image"
            )))
        }
    }
    if let Some(w) = &opts.criu.work_path {
        std::fs::create_dir_all(w).map_err(|e| CheckpointError::io(id, "work path", w, e))?;
    }
    match crate::container::Container::peek(&opts.create.root, id) {
        Ok(c) if c.status() == Status::Stopped => {
            crate::container::delete(&opts.create.root, id, false)?
        }
        Ok(_) => return Err(Error::Exists(id.into()).into()),
        Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let criu_flags = opts.criu.clone();
    let created = crate::container::create_with(&opts.create, move |mode, create, bundle| {
        prepare(mode, create, bundle, criu_flags)
    })?;
    Ok(created.pid)
}

fn prepare(
    mode: Isolation,
    opts: &CreateOptions,
    bundle: &Bundle,
    criu: CriuFlags,
) -> Result<Box<dyn Spawner>, Error> {
    let id = opts.id.as_str();
    if !mode.checkpoints_with_criu() {
        return Err(Error::Checkpoint(Box::new(CheckpointError::Vm {
            id: id.into(),
        })));
    }
    if bundle.terminal {
        return Err(Error::Checkpoint(Box::new(CheckpointError::Unsupported {
            id: id.into(),
            flag: "process.terminal",
            why: "restore of a container with a terminal is not supported yet".into(),
        })));
    }
    Ok(Box::new(CriuSpawner { criu }))
}

/// Spawns by `criu restore`.
struct CriuSpawner {
    criu: CriuFlags,
}

/// The directory `--root` names: the rootfs bound there in criu's own
/// mount namespace (CRIU wants a mount point).
const CRIU_ROOT: &str = "criu-root";
/// Where `criu restore --pidfile` writes the restored init's pid.
const RESTORED_PID: &str = "restored.pid";

impl Spawner for CriuSpawner {
    fn mode(&self) -> Mode {
        Mode::Container(HostState::default())
    }

    fn spawn(self: Box<Self>, new: &mut NewContainer<'_>) -> Result<Spawned, Error> {
        let id = new.id().to_string();
        let fail = |e: CheckpointError| Error::Checkpoint(Box::new(e));
        let spec = &new.bundle.spec;
        let linux = new.bundle.linux();

        // The restored tree inherits criu's cgroups: criu joins the
        // container's cgroup (created and limited here, from the bundle)
        // before it forks. No `--cgroup-root`: the dumped cgroup is not
        // this one (a new id), and CRIU would recreate it, while
        // `--manage-cgroups` governs what CRIU restores below it.
        let res = linux.resources().clone().unwrap_or_default();
        new.cgroup
            .apply(&res, false)
            .map_err(|e| Error::cgroup(&id, e))?;
        let procs: Vec<CString> = new
            .cgroup
            .dirs()
            .iter()
            .map(|d| cstr(&d.join("cgroup.procs")))
            .collect();

        let root_dir = new.dir.join(CRIU_ROOT);
        std::fs::create_dir(&root_dir)
            .map_err(|e| Error::io(&id, "creating", Some(&root_dir), e))?;
        let pid_file = new.dir.join(RESTORED_PID);
        let mut args = vec![
            "restore".to_string(),
            "--restore-detached".into(),
            "--pidfile".into(),
            pid_file.display().to_string(),
            "--root".into(),
            root_dir.display().to_string(),
        ];
        args.extend(self.criu.args());
        args.extend(criu::restore_mount_args(spec, &new.bundle.dir));

        // Descriptors handed to criu by number: the joined netns and our
        // stdio in place of the dumped side's pipes. Kept open until criu
        // has run.
        let mut keep: Vec<OwnedFd> = Vec::new();
        let mut inherit: Vec<i32> = Vec::new();
        if let Some(ns) = criu::joined_netns(spec) {
            let f = std::fs::File::open(&ns)
                .map_err(|e| Error::io(&id, "network namespace", Some(&ns), e))?;
            let fd = OwnedFd::from(f);
            args.extend([
                "--inherit-fd".into(),
                format!("fd[{}]:{}", fd.as_raw_fd(), criu::NETNS_KEY),
            ]);
            inherit.push(fd.as_raw_fd());
            keep.push(fd);
        }
        for (fd, key) in dumped_stdio(&self.criu.image_path).iter().enumerate() {
            // The container's stdio was external to the image: ours (this
            // restore's) takes its place, as with runc.
            if key.is_empty() {
                continue;
            }
            // criu's own stdio is not ours: hand it a copy by number.
            // SAFETY: F_DUPFD_CLOEXEC on our own stdio returns a new fd.
            let copy = unsafe { libc::fcntl(fd as i32, libc::F_DUPFD_CLOEXEC, 10) };
            if copy < 0 {
                let e = std::io::Error::last_os_error();
                return Err(Error::io(&id, "duplicating our stdio for", None, e));
            }
            // SAFETY: `copy` was just created and is owned only here.
            let copy = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(copy) };
            args.extend([
                "--inherit-fd".into(),
                format!("fd[{}]:{key}", copy.as_raw_fd()),
            ]);
            inherit.push(copy.as_raw_fd());
            keep.push(copy);
        }

        let rootfs = cstr(&new.bundle.rootfs);
        let target = cstr(&root_dir);
        let prepare = move || -> std::io::Result<()> {
            enter_private_root(&procs, &rootfs, &target, &inherit)
        };
        let log = self.criu.work().join(RESTORE_LOG);
        let program = self.criu.program.as_deref();
        let run = criu::run(program, &args, &log, Some(Box::new(prepare)));
        drop(keep);
        let _ = std::fs::remove_dir(&root_dir);
        run.map_err(|e| {
            fail(CheckpointError::io(
                &id,
                "running",
                Path::new(&criu::program(program)),
                e,
            ))
        })?
        .map_err(|f| fail(CheckpointError::criu(&id, "restore", f)))?;

        let pid: i32 = std::fs::read_to_string(&pid_file)
            .map_err(|e| Error::io(&id, "reading", Some(&pid_file), e))?
            .trim()
            .parse()
            .map_err(|_| {
                fail(CheckpointError::Image {
                    id: id.clone(),
                    path: pid_file.clone(),
                    why: "criu restore wrote no pid there".into(),
                })
            })?;
        let _ = std::fs::remove_file(&pid_file);
        let init = new.record_process(Role::Init, pid)?;
        new.state.pid = pid;
        new.state.pid_start_time = init.start;
        new.state.mode = Mode::Container(HostState {
            own_pid_ns: criu::own_pid_ns(spec),
            init_exe: None,
        });
        new.state.status = Status::Running;
        Ok(Spawned::default())
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// What `checkpoint` recorded of the container's stdio (empty if nothing).
fn dumped_stdio(image: &Path) -> Vec<String> {
    std::fs::read(image.join(DESCRIPTORS))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// In criu's child before exec: join the container's cgroup, take a mount
/// namespace of its own whose `/` is a slave (nothing propagates to the
/// host), bind the rootfs on `target` for `--root`, and keep the inherited
/// descriptors open across exec.
fn enter_private_root(
    procs: &[CString],
    rootfs: &CString,
    target: &CString,
    inherit: &[i32],
) -> std::io::Result<()> {
    let check = |r: libc::c_int| {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    for p in procs {
        // SAFETY: p is a valid C string; the fd is closed right after.
        let fd = unsafe { libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        check(fd)?;
        // SAFETY: writing two bytes from a static buffer to our own fd.
        let r = unsafe { libc::write(fd, b"0\n".as_ptr().cast(), 2) };
        // SAFETY: fd was opened above and is not used again.
        unsafe { libc::close(fd) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY: unshare affects only this (single-threaded, forked) child.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
    // SAFETY: null source/fstype/data are allowed for a propagation change;
    // the path is a static C string.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        )
    })?;
    // SAFETY: both paths are valid C strings prepared before the fork; the
    // namespace is this child's own, made above.
    check(unsafe {
        libc::mount(
            rootfs.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    })?;
    for &fd in inherit {
        // SAFETY: clearing FD_CLOEXEC on a descriptor the parent keeps open.
        check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) })?;
    }
    Ok(())
}
