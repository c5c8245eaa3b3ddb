//! `vessel vm-supervise <dir>` (internal): started by `create` in vm mode.

use std::path::PathBuf;

/// `vessel vm-supervise <state dir>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The container's state directory.
    dir: PathBuf,
}

pub fn run(a: &Args) -> anyhow::Result<u8> {
    vessel::isolation::entry::vm_supervise(&a.dir)
}
