//! Errors of vm mode on the host, each naming the step (and the file or
//! field) that failed.

use std::path::PathBuf;

/// What failed in vm mode; [`crate::container::Error::Vm`] names the
/// container.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The bundle cannot run in a VM as it is (the field is named).
    #[error(transparent)]
    Plan(#[from] super::guest_spec::PlanError),
    /// No kernel, engine or guest agent is usable, or the configuration
    /// names one that does not exist.
    #[error(transparent)]
    Resolve(#[from] super::resolve::ResolveError),
    /// Building or making a disk image or the initramfs.
    #[error("vm mode: {what}: {source}")]
    Image {
        /// Which image.
        what: String,
        /// Why.
        #[source]
        source: vessel_vm::Error,
    },
    /// Attaching the container's network namespace to the VM.
    #[error("vm mode: {0}")]
    Net(#[source] vessel_vm::Error),
    /// A file of the VM's (scratch directory, launch file, console socket).
    #[error("{}: {source}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Starting the VM supervisor.
    #[error("starting the VM supervisor: {0}")]
    Spawn(#[source] std::io::Error),
    /// The supervisor's report on the VM's boot: its own failure message,
    /// or what went wrong reading it.
    #[error("{0}")]
    Boot(String),
    /// The supervisor ended before it reported.
    #[error("the VM supervisor exited without a report (see {})", .log.display())]
    NoReport {
        /// Its log.
        log: PathBuf,
    },
    /// The VMM exited during setup.
    #[error("the VMM exited during setup")]
    VmmGone,
    /// A request to the supervisor (`start`, `kill`, `ps`) failed.
    // `cause` is embedded in the message and deliberately not a #[source]:
    // the CLI prints an error with its whole source chain, and the guest's
    // message, which ends most of these chains, would be printed again.
    #[error("{what}: {cause}")]
    Request {
        /// The command.
        what: &'static str,
        /// The supervisor's or the guest's answer, or why there was none.
        cause: super::control::ControlError,
    },
    /// `exec` failed (`cause` not a #[source], as for `Request`).
    #[error("exec: {cause}")]
    Exec {
        /// Why.
        cause: super::exec::ExecError,
    },
    /// `--preserve-fds` in a VM.
    #[error("--preserve-fds: descriptors cannot be passed into a VM")]
    PreserveFds,
    /// A container of a VM pod cannot join it.
    #[error("vm pod: {0}")]
    Pod(#[from] super::pod::PodError),
    /// Encoding the launch description.
    #[error("the VM's launch description: {0}")]
    Json(#[source] serde_json::Error),
}
