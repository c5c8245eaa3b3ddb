//! Process security: capabilities, seccomp, rlimits, no_new_privs.

pub mod capabilities;
pub mod rlimits;
pub mod seccomp;
mod seccomp_notify;

/// Sets no_new_privs on the calling thread (inherited by children, kept
/// across execve, never cleared): execve can no longer grant privileges
/// through setuid bits or file capabilities, and seccomp filters can be
/// installed without CAP_SYS_ADMIN.
pub fn set_no_new_privs() -> std::io::Result<()> {
    nix::sys::prctl::set_no_new_privs().map_err(std::io::Error::from)
}
