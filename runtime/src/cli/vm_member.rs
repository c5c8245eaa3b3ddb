//! `vessel vm-member <dir>` (internal): the host-side relay of a container
//! of a VM pod, started by `create`.

use std::path::PathBuf;

/// `vessel vm-member <state dir>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The member container's state directory.
    dir: PathBuf,
}

pub fn run(a: &Args) -> anyhow::Result<u8> {
    vessel::isolation::entry::vm_member_relay(&a.dir)
}
