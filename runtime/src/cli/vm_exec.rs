//! `vessel vm-exec <dir> <process.json> [console socket]` (internal): the
//! relay of `exec --detach` in a vm-mode container.

use std::path::PathBuf;

/// `vessel vm-exec <state dir> <process file> [console socket]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The container's state directory.
    dir: PathBuf,
    /// The process, as JSON.
    process: PathBuf,
    /// Where to send the pty master.
    console_socket: Option<PathBuf>,
}

pub fn run(a: &Args) -> anyhow::Result<u8> {
    vessel::isolation::entry::vm_exec_relay(&a.dir, &a.process, a.console_socket.clone())
}
