//! Processes: the sync channel between vessel and the processes it forks,
//! the preparation every container process goes through before `execve`,
//! and waiting with signal forwarding.

pub mod attrs;
pub mod channel;
pub mod exec;
pub mod tty_proxy;
pub mod wait;
