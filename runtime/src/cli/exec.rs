//! `vessel exec`

use std::path::PathBuf;

use oci_spec::runtime::{Capability, Process};
use vessel::container::{self, ExecOptions};
use vessel::security::capabilities::parse_capability;

use super::Cli;

/// `vessel exec [flags] <id> [command...]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// JSON file with the process (OCI `process` object); replaces the command.
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Allocate a terminal.
    #[arg(short, long)]
    tty: bool,
    /// Working directory in the container.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Extra environment variables (KEY=VALUE).
    #[arg(short, long)]
    env: Vec<String>,
    /// User as uid[:gid].
    #[arg(short, long)]
    user: Option<String>,
    /// Additional group ids.
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Capabilities to add.
    #[arg(short, long)]
    cap: Vec<String>,
    /// Set no_new_privs.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// AppArmor profile.
    #[arg(long)]
    apparmor: Option<String>,
    /// Return once the process runs.
    #[arg(short, long)]
    detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket to receive the pty master.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Pass this many extra descriptors (from 3 on).
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Exec even if the container is paused (the process waits for resume).
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// Run the process in an existing sub-cgroup of the container's:
    /// `path`, or `controller[,controller]:path` (cgroup v1, repeatable).
    #[arg(long = "cgroup")]
    cgroup: Vec<String>,
    /// Container id.
    id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn build_process(cli: &Cli, a: &Args) -> anyhow::Result<Process> {
    if let Some(path) = &a.process {
        let data =
            vessel::spec::read_json_file(path).map_err(|e| anyhow::anyhow!("--process {e}"))?;
        let p: Process = vessel::spec::parse_process(path, &data).map_err(|e| match e {
            vessel::spec::SpecError::Parse { field, msg, .. } => {
                anyhow::anyhow!("--process {}: field {field}: {msg}", path.display())
            }
            other => anyhow::anyhow!("--process {}: {other}", path.display()),
        })?;
        vessel::spec::check_user_ids(&p)
            .map_err(|e| anyhow::anyhow!("--process {}: {}", path.display(), field_msg(&e)))?;
        return Ok(p);
    }
    if a.command.is_empty() {
        anyhow::bail!("exec: no command given (use --process or name a command)");
    }
    // The container's own process is the template, as runc does.
    let c = container::Container::load(&cli.root, &a.id)?;
    let spec = vessel::spec::load(&c.state.bundle)?;
    drop(c);
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if !a.env.is_empty() {
        p.set_env(Some(vessel::process::exec::merge_env(
            p.env().as_deref().unwrap_or(&[]),
            &a.env,
        )));
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u.as_str(), None),
        };
        let id = |s: &str, what: &str| -> anyhow::Result<u32> {
            let n: u32 = s
                .parse()
                .map_err(|_| anyhow::anyhow!("--user {u:?}: {what} must be a number"))?;
            vessel::spec::check_id("--user", n)
                .map_err(|e| anyhow::anyhow!("--user {u:?}: {what} {}", field_msg(&e)))?;
            Ok(n)
        };
        let uid = id(uid, "uid")?;
        let gid = gid.map(|g| id(g, "gid")).transpose()?;
        let user = p.user_mut();
        user.set_uid(uid);
        if let Some(g) = gid {
            user.set_gid(g);
        }
    }
    for g in &a.additional_gids {
        vessel::spec::check_id("--additional-gids", *g)
            .map_err(|e| anyhow::anyhow!("--additional-gids: {}", field_msg(&e)))?;
    }
    if !a.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(a.additional_gids.clone()));
    }
    if !a.cap.is_empty() {
        let added: Vec<Capability> = a
            .cap
            .iter()
            .map(|c| parse_capability(c).map_err(|e| anyhow::anyhow!("--cap: {e}")))
            .collect::<Result<_, _>>()?;
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let add = |set: &Option<std::collections::HashSet<Capability>>| {
            let mut s = set.clone().unwrap_or_default();
            s.extend(added.iter().copied());
            Some(s)
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(ap) = &a.apparmor {
        p.set_apparmor_profile(Some(ap.clone()));
    }
    Ok(p)
}

/// A spec error without its "config.json:" prefix: these came from the
/// command line or the --process file, which the caller names.
fn field_msg(e: &vessel::spec::SpecError) -> String {
    match e {
        vessel::spec::SpecError::Invalid { field, msg } if field.starts_with("process.") => {
            format!("{field}: {msg}")
        }
        vessel::spec::SpecError::Invalid { msg, .. } => msg.clone(),
        other => other.to_string(),
    }
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    let process = build_process(cli, a)?;
    let code = container::exec(ExecOptions {
        root: cli.root.clone(),
        id: a.id.clone(),
        process,
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        detach: a.detach,
        preserve_fds: a.preserve_fds,
        sub_cgroups: a.cgroup.clone(),
        ignore_paused: a.ignore_paused,
    })?;
    Ok(code.clamp(0, 255) as u8)
}
