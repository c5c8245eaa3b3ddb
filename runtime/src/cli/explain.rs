//! `vessel explain`: which isolation mode a container gets, and why.

use std::path::PathBuf;

use vessel::container::Container;
use vessel::isolation::{self, policy, RuntimeConfig};

use super::Cli;

/// `vessel explain <id or bundle>` or `vessel explain --bundle DIR`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A bundle directory whose container is not created yet: prints the
    /// mode `create` would choose with this runtime's flags and config.
    #[arg(short, long, conflicts_with = "target")]
    bundle: Option<PathBuf>,
    /// A container id (prints the recorded choice), or a bundle directory.
    target: Option<String>,
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    let bundle = match (&a.bundle, &a.target) {
        (Some(b), _) => b.clone(),
        (None, Some(t)) => {
            // An existing container first: ids cannot contain '/', so a
            // path is never taken for one.
            if !t.contains('/') && cli.root.join(t).is_dir() {
                return recorded(cli, t);
            }
            PathBuf::from(t)
        }
        (None, None) => anyhow::bail!("explain: name a container id or a bundle (--bundle DIR)"),
    };
    if !bundle.join("config.json").is_file() {
        anyhow::bail!(
            "explain: {} is neither a container of {} nor a bundle with a config.json",
            bundle.display(),
            cli.root.display()
        );
    }
    let spec = vessel::spec::load(&bundle)?;
    let config = RuntimeConfig::load(cli.config.as_deref()).map_err(|e| anyhow::anyhow!(e))?;
    let (default, default_from) = isolation::default_mode(cli.isolation, &config);
    let sandbox = policy::sandbox_of(&cli.root, "", &spec)?;
    let d = policy::decide(
        &spec,
        policy::Inputs {
            policy: &config.policy,
            default,
            default_from,
            sandbox: sandbox.as_ref().map(|(s, m)| (s.as_str(), *m)),
        },
    )
    .map_err(|e| anyhow::anyhow!("bundle {}: {e}", bundle.display()))?;
    println!("{d}");
    Ok(0)
}

/// The choice recorded in the state of container `id`.
fn recorded(cli: &Cli, id: &str) -> anyhow::Result<u8> {
    let c = Container::peek(&cli.root, id)?;
    let mode = c.state.mode.isolation();
    match c.state.annotations.get(isolation::REASON_ANNOTATION) {
        Some(why) => println!("{mode}: {why}"),
        None => println!("{mode}: (no reason recorded: created by an older vessel)"),
    }
    Ok(0)
}
