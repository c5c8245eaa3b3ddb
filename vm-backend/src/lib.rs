//! vessel's microVM mode.
//!
//! This crate holds everything vessel needs to run an OCI workload inside a
//! lightweight virtual machine instead of a set of host namespaces:
//!
//! - [`engine`]: the small [`engine::Engine`] interface every VMM backend
//!   implements, and the QEMU `microvm` engine ([`engine::qemu`]) with its
//!   KVM-or-TCG accelerator probe.
//! - [`guest`]: locating the guest kernel and its modules, building the
//!   initramfs (agent as `/init` plus the modules it loads) and the root
//!   filesystem images, all cached by content hash.
//! - [`agent`]: the versioned, length-prefixed protocol spoken over one byte
//!   stream between the host and the guest agent, the host-side client, and
//!   the guest-side agent loop run by PID 1.
#![warn(missing_docs)]

pub mod agent;
pub mod devices;
pub mod engine;
mod error;
pub mod guest;
pub mod net;

pub use error::{Error, Result};
