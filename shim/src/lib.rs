//! containerd shim v2 for vessel (`containerd-shim-vessel-v2`): containerd
//! and Kubernetes run vessel containers, in container or VM mode, without
//! the runc shim.
//!
//! The shim drives the `vessel` command line as containerd's runc shim
//! drives runc ([`cli`]), so both isolation modes come from vessel itself:
//! the OCI annotation `io.vessel.isolation` or vessel's `--config` file
//! (a runtime option, [`options`]) select the VM mode.
#![warn(missing_docs)]

pub mod cli;
pub mod console;
pub mod error;
pub mod events;
pub mod io;
pub mod metrics;
pub mod oom;
pub mod options;
pub mod process;
pub mod service;

/// The runtime name containerd knows the shim by
/// (`--runtime io.containerd.vessel.v2` finds `containerd-shim-vessel-v2`).
pub const RUNTIME_ID: &str = "io.containerd.vessel.v2";
