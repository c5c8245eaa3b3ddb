//! vessel: an OCI runtime. This library holds everything the `vessel` binary
//! does; the CLI in `src/cli/` only parses arguments, calls in here and prints.
#![warn(missing_docs)]

pub mod checkpoint;
pub mod container;
pub mod features;
pub mod hooks;
pub mod host;
pub mod intel_rdt;
pub mod isolation;
pub mod ledger;
pub mod logging;
pub mod namespaces;
pub mod netdev;
pub mod process;
pub mod reexec;
pub mod rootfs;
pub mod security;
pub mod spec;
pub mod state;
pub mod terminal;
pub mod utils;
pub mod vm;
