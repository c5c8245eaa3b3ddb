//! Process security: capabilities, seccomp, rlimits, no_new_privs.

pub mod capabilities;
pub mod rlimits;
pub mod seccomp;
