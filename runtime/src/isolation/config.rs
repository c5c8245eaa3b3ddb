//! Choosing the isolation mode, and the runtime-wide configuration file.
//!
//! The mode of a container is decided once, at `create`
//! ([`super::policy::decide`]): a member of a CRI pod takes its sandbox's
//! mode; otherwise the annotation `io.vessel.isolation` of its config.json;
//! otherwise the first matching rule of the `[policy]` of the configuration
//! file (`--config`, default [`DEFAULT_CONFIG`]); otherwise the global
//! `--isolation` flag; otherwise `isolation` in the configuration file;
//! otherwise `container`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The annotation that selects the mode of one container.
pub const ISOLATION_ANNOTATION: &str = "io.vessel.isolation";
/// The configuration file read when `--config` is not given (absent is fine).
pub const DEFAULT_CONFIG: &str = "/etc/vessel/config.toml";

/// How a container is isolated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Namespaces and cgroups on the host kernel.
    #[default]
    Container,
    /// A microVM with its own guest kernel.
    Vm,
}

impl Isolation {
    /// Whether CRIU can checkpoint and restore a container of this mode:
    /// only host processes (a VM needs a VM snapshot instead).
    pub fn checkpoints_with_criu(self) -> bool {
        self == Isolation::Container
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Isolation::Container => "container",
            Isolation::Vm => "vm",
        })
    }
}

/// A mode name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an isolation mode (use \"container\" or \"vm\")")]
pub struct UnknownMode(pub String);

impl FromStr for Isolation {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Self, UnknownMode> {
        match s {
            "container" => Ok(Isolation::Container),
            "vm" => Ok(Isolation::Vm),
            other => Err(UnknownMode(other.into())),
        }
    }
}

/// Why the mode of a container, or the configuration file, is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The mode cannot be decided or is refused for this spec.
    #[error(transparent)]
    Decide(#[from] super::policy::DecideError),
    /// The policy of the configuration file cannot be applied.
    #[error("config file {}: {source}", .path.display())]
    Policy {
        /// The file.
        path: std::path::PathBuf,
        /// Which rule and why.
        #[source]
        source: super::policy::PolicyError,
    },
    /// The configuration file cannot be read.
    #[error("config file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML of the expected shape.
    #[error("config file {}: {source}", .path.display())]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// Where and why.
        #[source]
        source: toml::de::Error,
    },
}

/// The runtime-wide configuration (TOML).
///
/// ```toml
/// isolation = "vm"          # default mode when config.json does not say
/// [vm]
/// engine = "qemu"           # the only engine so far
/// accel = "auto"            # auto (probe), kvm or tcg
/// kernel = "/boot/vmlinuz-6.1.0-28-cloud-amd64"
/// guest_agent = "/usr/local/bin/vessel"   # a static vessel for the guest
/// cpus = 1
/// memory_mib = 256
/// scratch_mib = 1024        # writable layer of the root filesystem
/// cache_dir = "/var/cache/vessel"
/// boot_timeout_secs = 60
/// [policy]                  # see [`super::policy::Policy`]
/// trusted_registries = ["registry.example.com"]
/// [[policy.rule]]
/// mode = "vm"
/// untrusted_image = true
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Default isolation mode.
    pub isolation: Option<Isolation>,
    /// Defaults of vm mode.
    #[serde(default)]
    pub vm: crate::vm::VmDefaults,
    /// The isolation policy.
    #[serde(default)]
    pub policy: super::policy::Policy,
}

impl RuntimeConfig {
    /// Reads `path`, or [`DEFAULT_CONFIG`] if it exists when `path` is None.
    pub fn load(path: Option<&Path>) -> Result<RuntimeConfig, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_CONFIG), false),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RuntimeConfig::default())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        let config: RuntimeConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        config
            .policy
            .validate()
            .map_err(|source| ConfigError::Policy {
                path: path.into(),
                source,
            })?;
        Ok(config)
    }
}

/// The default mode of this runtime and where it comes from: the
/// `--isolation` flag, else the file's `isolation`, else container mode.
pub fn default_mode(
    flag: Option<Isolation>,
    config: &RuntimeConfig,
) -> (Isolation, super::policy::DefaultFrom) {
    use super::policy::DefaultFrom;
    match (flag, config.isolation) {
        (Some(m), _) => (m, DefaultFrom::Flag),
        (None, Some(m)) => (m, DefaultFrom::ConfigFile),
        (None, None) => (Isolation::Container, DefaultFrom::BuiltIn),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_parses_and_rejects_unknown_keys() {
        let c: RuntimeConfig =
            toml::from_str("isolation = \"vm\"\n[vm]\ncpus = 2\nmemory_mib = 512\n").unwrap();
        assert_eq!(c.isolation, Some(Isolation::Vm));
        assert_eq!(c.vm.cpus, Some(2));
        assert!(toml::from_str::<RuntimeConfig>("isolaton = \"vm\"").is_err());
        assert!(toml::from_str::<RuntimeConfig>("isolation = \"kvm\"").is_err());
    }

    #[test]
    fn missing_default_file_is_fine_but_missing_explicit_file_is_not() {
        let e = RuntimeConfig::load(Some(Path::new("/nonexistent/vessel.toml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/vessel.toml"), "{e}");
    }

    #[test]
    fn bad_policy_names_the_file_and_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vessel.toml");
        std::fs::write(
            &path,
            "[policy]\ntrusted_registries = [\"r.example\"]\n\
             [[policy.rule]]\nmode = \"vm\"\nnamespaces = [\"ci\"]\n\
             [[policy.rule]]\nmode = \"vm\"\nhost_network = true\n",
        )
        .unwrap();
        let e = RuntimeConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(
            e.contains(path.to_str().unwrap())
                && e.contains("policy rule 2")
                && e.contains("host_network"),
            "{e}"
        );
        std::fs::write(&path, "[[policy.rule]]\nmode = \"vm\"\nprivilegd = true\n").unwrap();
        let e = RuntimeConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(
            e.contains(path.to_str().unwrap()) && e.contains("privilegd"),
            "{e}"
        );
    }

    #[test]
    fn default_mode_says_where_it_comes_from() {
        use crate::isolation::policy::DefaultFrom;
        let mut c = RuntimeConfig::default();
        assert_eq!(
            default_mode(None, &c),
            (Isolation::Container, DefaultFrom::BuiltIn)
        );
        c.isolation = Some(Isolation::Vm);
        assert_eq!(
            default_mode(None, &c),
            (Isolation::Vm, DefaultFrom::ConfigFile)
        );
        assert_eq!(
            default_mode(Some(Isolation::Container), &c),
            (Isolation::Container, DefaultFrom::Flag)
        );
    }
}
