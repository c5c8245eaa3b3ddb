//! Watching a container's memory cgroup for OOM kills, for the TaskOOM
//! event: cgroup v1's `memory.oom_control` eventfd, or cgroup v2's
//! `memory.events` `oom_kill` counter through inotify.

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// The memory cgroup directory of process `pid`: v1's memory hierarchy, or
/// the unified hierarchy when it has the memory controller.
pub fn memory_cgroup_of(pid: u32) -> Option<(PathBuf, bool)> {
    let data = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in data.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        if ctrls.split(',').any(|c| c == "memory") {
            let dir = Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
            return Some((dir, false));
        }
    }
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let path = data.lines().find_map(|l| l.strip_prefix("0::"))?;
        let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        return Some((dir, true));
    }
    None
}

/// Calls `on_oom` on a thread each time the kernel OOM-kills a process in
/// the cgroup `dir`; the thread ends when the cgroup is removed.
pub fn watch(dir: PathBuf, v2: bool, on_oom: impl Fn() + Send + 'static) -> std::io::Result<()> {
    if v2 {
        watch_v2(dir, on_oom)
    } else {
        watch_v1(dir, on_oom)
    }
}

fn watch_v1(dir: PathBuf, on_oom: impl Fn() + Send + 'static) -> std::io::Result<()> {
    let ctl = fs::File::open(dir.join("memory.oom_control"))?;
    // SAFETY: eventfd takes no pointers; a non-negative result is a new
    // descriptor that only this OwnedFd owns.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: see above: efd is a fresh descriptor owned by no one else.
    let efd = unsafe { OwnedFd::from_raw_fd(efd) };
    fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", efd.as_raw_fd(), ctl.as_raw_fd()),
    )?;
    std::thread::spawn(move || {
        let _ctl = ctl;
        let mut f = fs::File::from(efd);
        let mut b = [0u8; 8];
        // The eventfd also fires when the cgroup goes away.
        while f.read_exact(&mut b).is_ok() {
            if !dir.join("memory.oom_control").exists() {
                break;
            }
            on_oom();
        }
    });
    Ok(())
}

fn oom_kills(events: &Path) -> u64 {
    fs::read_to_string(events)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn watch_v2(dir: PathBuf, on_oom: impl Fn() + Send + 'static) -> std::io::Result<()> {
    let events = dir.join("memory.events");
    let ino = Inotify::init(InitFlags::IN_CLOEXEC).map_err(std::io::Error::from)?;
    ino.add_watch(&events, AddWatchFlags::IN_MODIFY)
        .map_err(std::io::Error::from)?;
    let mut seen = oom_kills(&events);
    std::thread::spawn(move || {
        while let Ok(evs) = ino.read_events() {
            let removed = evs
                .iter()
                .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED));
            if removed || !events.exists() {
                break;
            }
            let now = oom_kills(&events);
            if now > seen {
                seen = now;
                on_oom();
            }
        }
    });
    Ok(())
}
