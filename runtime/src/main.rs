//! The `vessel` command line: runc-compatible, so podman, docker and
//! containerd drive it unchanged. Each command lives in its own file under
//! `cli/` and only parses, calls the library and prints.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
