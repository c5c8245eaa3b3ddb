//! Running the `criu` program: its command line, its log, and what of the
//! container it must be told about (external mounts, namespaces, stdio).
//!
//! vessel drives the `criu` CLI rather than CRIU's RPC (`criu swrk`, the
//! `rust-criu` crate): the CLI needs no protobuf code in the build, every
//! option runc's RPC sets has a CLI flag, and CRIU writes its log to a file
//! we name, whose path goes into every error.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// The CRIU program: the one given (`--criu`), else `criu` on `PATH`.
pub fn program(given: Option<&Path>) -> OsString {
    given.map_or_else(|| "criu".into(), |p| p.as_os_str().to_owned())
}

/// How CRIU treats cgroups (`--manage-cgroups=<mode>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CgroupMode {
    /// Restore properties only of cgroups CRIU created (runc's default).
    #[default]
    Soft,
    /// Restore all properties.
    Full,
    /// Require the cgroups to exist and match.
    Strict,
    /// Leave cgroups alone.
    Ignore,
}

impl CgroupMode {
    /// The word CRIU takes.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupMode::Soft => "soft",
            CgroupMode::Full => "full",
            CgroupMode::Strict => "strict",
            CgroupMode::Ignore => "ignore",
        }
    }
}

/// Whether a spec mount is a bind mount (CRIU cannot see where its source
/// comes from, so it is described as external, keyed by its destination).
fn is_bind(m: &oci_spec::runtime::Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

/// The bind mounts of the spec, as (destination, source).
pub fn bind_mounts(spec: &Spec) -> Vec<(PathBuf, PathBuf)> {
    spec.mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|m| is_bind(m))
        .filter_map(|m| Some((m.destination().clone(), m.source().clone()?)))
        .collect()
}

/// `--external mnt[<dest>]:<dest>` for each bind mount at dump time: the
/// key is the destination, which restore maps back to a source.
pub fn dump_mount_args(spec: &Spec) -> Vec<String> {
    bind_mounts(spec)
        .iter()
        .flat_map(|(dest, _)| {
            let d = dest.display();
            ["--external".to_string(), format!("mnt[{d}]:{d}")]
        })
        .collect()
}

/// `--external mnt[<dest>]:<source>` for each bind mount at restore time.
pub fn restore_mount_args(spec: &Spec, bundle: &Path) -> Vec<String> {
    bind_mounts(spec)
        .iter()
        .flat_map(|(dest, src)| {
            // A relative source is relative to the bundle, as at create.
            let src = if src.is_absolute() {
                src.clone()
            } else {
                bundle.join(src)
            };
            [
                "--external".to_string(),
                format!("mnt[{}]:{}", dest.display(), src.display()),
            ]
        })
        .collect()
}

/// The key under which the container's network namespace, when it joined
/// an existing one (a path in the spec), is external to the image.
pub const NETNS_KEY: &str = "vessel-netns";

/// The path of the network namespace the container joined, if any.
pub fn joined_netns(spec: &Spec) -> Option<PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_deref()?
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)?
        .path()
        .clone()
}

/// Whether the spec gives the container its own pid namespace.
pub fn own_pid_ns(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_deref())
        .unwrap_or_default()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none())
}

/// A finished CRIU run that failed: its exit and the error lines of its log.
#[derive(Debug)]
pub struct Failure {
    /// How criu ended.
    pub status: String,
    /// CRIU's log file.
    pub log: PathBuf,
    /// The log's `Error` lines (the last few), or criu's stderr.
    pub errors: String,
}

/// Runs `criu <args>` with its log at `log`; `prepare` runs in the child
/// before exec (restore enters a private mount namespace there).
pub fn run(
    criu: Option<&Path>,
    args: &[String],
    log: &Path,
    prepare: Option<Box<dyn FnMut() -> std::io::Result<()> + Send + Sync>>,
) -> Result<Result<(), Failure>, std::io::Error> {
    let mut cmd = Command::new(program(criu));
    cmd.args(args)
        .arg("-v4")
        .arg("-o")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(f) = prepare {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure only makes system calls on data prepared
        // before the fork (no allocation, no locks).
        unsafe { cmd.pre_exec(f) };
    }
    tracing::debug!("running {:?}", cmd);
    let out = cmd.output()?;
    if out.status.success() {
        return Ok(Ok(()));
    }
    if !log.exists() {
        // CRIU fails some checks (kernel feature detection) before it opens
        // its log: its stderr becomes the log, so the named file holds why.
        let _ = std::fs::write(log, &out.stderr);
    }
    Ok(Err(Failure {
        status: out.status.to_string(),
        log: log.to_path_buf(),
        errors: error_lines(log)
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }))
}

/// The last error lines of a CRIU log, joined for one message.
fn error_lines(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let errs: Vec<&str> = text.lines().filter(|l| l.contains("Error")).collect();
    if errs.is_empty() {
        return None;
    }
    let start = errs.len().saturating_sub(4);
    Some(errs[start..].join("; "))
}

/// Why `criu check` refused.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The program could not be run.
    #[error("cannot run {program:?}: {source}")]
    Run {
        /// The program tried.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// CRIU ran and said the kernel or sandbox lacks something (its own
    /// error lines).
    #[error("{0}")]
    Lacks(String),
}

/// The result of `criu check` (or `criu check --feature <f>`): `Err` with
/// CRIU's own words when the kernel or sandbox lacks it.
pub fn check(criu: Option<&Path>, feature: Option<&str>) -> Result<(), CheckError> {
    let mut cmd = Command::new(program(criu));
    cmd.arg("check");
    if let Some(f) = feature {
        cmd.args(["--feature", f]);
    }
    let out = cmd.output().map_err(|source| CheckError::Run {
        program: program(criu).to_string_lossy().into_owned(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let errs: Vec<&str> = text.lines().filter(|l| l.contains("Error")).collect();
    Err(CheckError::Lacks(if errs.is_empty() {
        text.trim().to_string()
    } else {
        errs.join("; ")
    }))
}
