//! Choosing the isolation mode, and the runtime-wide configuration file.
//!
//! The mode of a container is decided once, at `create`: the annotation
//! `io.vessel.isolation` of its config.json wins; otherwise the global
//! `--isolation` flag; otherwise `isolation` in the configuration file
//! (`--config`, default [`DEFAULT_CONFIG`]); otherwise `container`.

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
    /// The annotation names no mode.
    #[error("annotations.{ISOLATION_ANNOTATION}: {0}")]
    Annotation(#[source] UnknownMode),
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
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Default isolation mode.
    pub isolation: Option<Isolation>,
    /// Defaults of vm mode.
    #[serde(default)]
    pub vm: crate::vm::VmDefaults,
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
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }
}

/// The mode of a container with these annotations, given the runtime-wide
/// default.
pub fn decide(
    annotations: Option<&std::collections::HashMap<String, String>>,
    default: Isolation,
) -> Result<Isolation, ConfigError> {
    match annotations.and_then(|a| a.get(ISOLATION_ANNOTATION)) {
        Some(v) => v.parse().map_err(ConfigError::Annotation),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn annotation_wins_over_default() {
        let mut a = HashMap::new();
        assert_eq!(decide(Some(&a), Isolation::Vm).unwrap(), Isolation::Vm);
        a.insert(ISOLATION_ANNOTATION.to_string(), "container".to_string());
        assert_eq!(
            decide(Some(&a), Isolation::Vm).unwrap(),
            Isolation::Container
        );
        a.insert(ISOLATION_ANNOTATION.to_string(), "vm".to_string());
        assert_eq!(
            decide(None, Isolation::Container).unwrap(),
            Isolation::Container
        );
        assert_eq!(
            decide(Some(&a), Isolation::Container).unwrap(),
            Isolation::Vm
        );
        a.insert(ISOLATION_ANNOTATION.to_string(), "kata".to_string());
        let e = decide(Some(&a), Isolation::Container)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("annotations.io.vessel.isolation") && e.contains("kata"),
            "{e}"
        );
    }

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
}
