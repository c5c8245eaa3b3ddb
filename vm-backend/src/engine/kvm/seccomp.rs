//! Confinement of the VMM process: no capabilities, and a seccomp filter
//! per thread allowing only the system calls that thread's work needs.
//!
//! The filters are installed once setup is over (guest memory mapped,
//! files and sockets open), so none of them allows `open`, `socket`,
//! `execve` or `ptrace`: a guest that took over a device model cannot open
//! host files or start programs (with a vsock device, vCPUs may create
//! AF_UNIX sockets and connect them: guest connections to the host). A
//! call outside the list kills the whole
//! VMM (`SECCOMP_RET_KILL_PROCESS`), which the engine sees as the VMM
//! exiting.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::KvmError;

/// Which thread a filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A vCPU: KVM_RUN, device emulation (block IO, getrandom), kicks.
    Vcpu,
    /// The agent socket thread (poll, accept, read and write) and the host
    /// I/O thread of the taps and vsock (epoll, read and write).
    DeviceIo,
    /// The main thread once the VM runs: wait for exit, stop the vCPUs.
    Main,
}

/// Calls every thread makes: memory, locks, signals, time, exit, stderr.
const COMMON: &[libc::c_long] = &[
    // A thread stopped in poll, nanosleep or a timed futex wait by the
    // cgroup freezer (`pause`) or SIGSTOP resumes that call through
    // restart_syscall when thawed: without it, `resume` kills the VMM.
    libc::SYS_restart_syscall,
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_mprotect,
    libc::SYS_futex,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_sched_yield,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    // std checks a descriptor is open before closing it (F_GETFD).
    libc::SYS_fcntl,
    libc::SYS_rseq,
];

/// What the VMM was configured with, as far as the filters care.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// A vsock device is present: vCPUs connect unix sockets for guest
    /// connections (`socket` limited to AF_UNIX, `connect`), and the vCPU
    /// and I/O threads manage the device's epoll set.
    pub vsock: bool,
}

fn allowed(role: Role, policy: Policy) -> Vec<libc::c_long> {
    let mut calls = COMMON.to_vec();
    if policy.vsock {
        calls.extend_from_slice(&[
            libc::SYS_epoll_ctl,
            libc::SYS_epoll_wait,
            libc::SYS_epoll_pwait,
        ]);
        if role == Role::Vcpu {
            calls.push(libc::SYS_connect);
        }
    }
    calls.extend_from_slice(match role {
        Role::Vcpu => &[
            libc::SYS_ioctl, // KVM_RUN and the register ioctls
            libc::SYS_read,  // eventfds
            libc::SYS_pread64,
            libc::SYS_pwrite64,
            libc::SYS_fsync,
            libc::SYS_fdatasync,
            libc::SYS_getrandom,
            libc::SYS_tgkill,
        ][..],
        Role::DeviceIo => &[
            libc::SYS_poll,
            libc::SYS_ppoll,
            // The host I/O thread's epoll set (made before the filter).
            libc::SYS_epoll_ctl,
            libc::SYS_epoll_wait,
            libc::SYS_epoll_pwait,
            libc::SYS_accept,
            libc::SYS_accept4,
            libc::SYS_read,
            libc::SYS_recvfrom,
            libc::SYS_sendto,
            libc::SYS_ioctl, // FIONBIO on accepted sockets
        ][..],
        Role::Main => &[
            libc::SYS_poll,
            libc::SYS_ppoll,
            libc::SYS_read,
            libc::SYS_tgkill,
            libc::SYS_wait4,
        ][..],
    });
    calls
}

/// The filter for `role`.
pub fn filter(role: Role, policy: Policy) -> Result<BpfProgram, KvmError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = allowed(role, policy)
        .into_iter()
        .map(|n| (n, vec![]))
        .collect();
    if policy.vsock && role == Role::Vcpu {
        // socket(AF_UNIX, ...) only.
        let unix = SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            libc::AF_UNIX as u64,
        )
        .map_err(|e| KvmError::Device(format!("seccomp rule: {e}")))?])
        .map_err(|e| KvmError::Device(format!("seccomp rule: {e}")))?;
        rules.insert(libc::SYS_socket, vec![unix]);
    }
    let f = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| KvmError::Device(format!("building the {role:?} seccomp filter: {e}")))?;
    f.try_into()
        .map_err(|e| KvmError::Device(format!("compiling the {role:?} seccomp filter: {e}")))
}

/// Installs the filter of `role` on the calling thread (setting
/// no_new_privs, which seccomp needs without CAP_SYS_ADMIN).
pub fn apply(role: Role, policy: Policy) -> Result<(), KvmError> {
    let prog = filter(role, policy)?;
    seccompiler::apply_filter(&prog)
        .map_err(|e| KvmError::Device(format!("installing the {role:?} seccomp filter: {e}")))
}

/// Drops every capability: from the bounding set (so no exec could regain
/// one) and from the effective, permitted, inheritable and ambient sets.
/// The VMM needs none: /dev/kvm, the images and the sockets are opened
/// before this.
pub fn drop_capabilities() -> Result<(), KvmError> {
    use caps::CapSet;
    let err = |e: caps::errors::CapsError| KvmError::Device(format!("dropping capabilities: {e}"));
    for cap in caps::all() {
        if caps::has_cap(None, CapSet::Bounding, cap).map_err(err)? {
            caps::drop(None, CapSet::Bounding, cap).map_err(err)?;
        }
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_and_leave_out_dangerous_calls() {
        for (role, vsock) in [Role::Vcpu, Role::DeviceIo, Role::Main]
            .into_iter()
            .flat_map(|r| [(r, false), (r, true)])
        {
            let policy = Policy { vsock };
            assert!(!filter(role, policy).unwrap().is_empty());
            let calls = allowed(role, policy);
            for forbidden in [
                libc::SYS_open,
                libc::SYS_openat,
                libc::SYS_execve,
                libc::SYS_socket,
                libc::SYS_ptrace,
                libc::SYS_fork,
                libc::SYS_clone3,
            ] {
                assert!(!calls.contains(&forbidden), "{role:?} allows {forbidden}");
            }
        }
    }

    #[test]
    fn a_thread_stopped_in_poll_survives_being_continued() {
        // What `pause` and `resume` do to every VMM thread: a poll without
        // timeout, stopped and continued, comes back as restart_syscall.
        let mut fds = [0; 2];
        // SAFETY: pipe fills the two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only makes raw system calls before _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            if apply(Role::DeviceIo, Policy::default()).is_err() {
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(2) };
            }
            let mut pfd = libc::pollfd {
                fd: fds[0],
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut pfd, 1, -1) };
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(if n == 1 { 0 } else { 3 }) };
        }
        let wait_state = |want: u8| {
            for _ in 0..500 {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
                let state = stat.rsplit(") ").next().unwrap().as_bytes()[0];
                if state == want {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("child {pid} never reached state {}", want as char);
        };
        wait_state(b'S'); // in poll
                          // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        wait_state(b'T');
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        std::thread::sleep(std::time::Duration::from_millis(50));
        // SAFETY: writing one byte from a valid buffer to our pipe.
        assert_eq!(unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) }, 1);
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        // SAFETY: closing our own pipe.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the filtered thread did not survive stop and continue: status {status:#x} \
             (signal {})",
            libc::WTERMSIG(status)
        );
    }

    #[test]
    fn an_unlisted_call_kills_the_process() {
        // In a forked child (a single thread, so no locks held elsewhere):
        // install the vCPU filter, then call openat.
        // SAFETY: the child only makes raw system calls before _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            if apply(Role::Vcpu, Policy::default()).is_err() {
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(2) };
            }
            // SAFETY: a raw openat of a constant path; the filter stops it.
            unsafe {
                libc::syscall(
                    libc::SYS_openat,
                    libc::AT_FDCWD,
                    c"/etc/hostname".as_ptr(),
                    libc::O_RDONLY,
                );
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFSIGNALED(status), "status {status:#x}");
        assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
    }
}
