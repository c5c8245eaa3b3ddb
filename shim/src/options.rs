//! The shim's runtime options: which `vessel` binary to run, its `--root`,
//! its `--config` file and `--systemd-cgroup`.
//!
//! containerd hands them over in two shapes. CRI (and `ctr
//! --runtime-config-path`) sends `runtimeoptions.v1.Options {type_url,
//! config_path, config_body}` for runtimes that are not runc; clients that
//! speak to runc shims send the runc `Options` proto (`BinaryName`, `Root`,
//! `SystemdCgroup`). Both are accepted. The options are saved in the bundle
//! so that the `delete` action, which containerd runs without them, uses
//! the same binary and root.

use std::path::{Path, PathBuf};

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{CodedInputStream, Message};
use containerd_shim::protos::shim::oci::Options as RuncOptions;
use serde::{Deserialize, Serialize};

use crate::error::ShimError;

/// File in the bundle where [`ShimOptions`] are kept between the shim's
/// invocations.
pub const OPTIONS_FILE: &str = "vessel-shim.json";

/// Default state root of vessel under the shim; the namespace is appended.
pub const DEFAULT_ROOT: &str = "/run/containerd/vessel";

/// Where vessel is looked for when no option names it and none lies next
/// to the shim or on `$PATH`.
pub const FALLBACK_BINARY: &str = "/usr/local/bin/vessel";

/// The type URL of CRI's options for runtimes other than runc.
const RUNTIMEOPTIONS_TYPE: &str = "runtimeoptions.v1.Options";
/// The type URL of the runc shim's options (current and legacy names).
const RUNC_TYPES: [&str; 2] = [
    "containerd.runc.v1.Options",
    "io.containerd.runc.v2.Options",
];

/// What the shim was told about how to run vessel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimOptions {
    /// The vessel binary (runc's `BinaryName`); empty: found by
    /// [`ShimOptions::binary`].
    #[serde(default)]
    pub binary_name: String,
    /// vessel's `--root` without the namespace (runc's `Root`).
    #[serde(default)]
    pub root: String,
    /// vessel's `--config` file (CRI's `ConfigPath`).
    #[serde(default)]
    pub config_path: String,
    /// A TOML body to write to a file and pass as `--config` (CRI's
    /// `config_body`, used when `config_path` is empty).
    #[serde(default)]
    pub config_body: String,
    /// vessel's `--systemd-cgroup`.
    #[serde(default)]
    pub systemd_cgroup: bool,
    /// The cgroup containerd wants the shim itself in (runc's
    /// `ShimCgroup`).
    #[serde(default)]
    pub shim_cgroup: String,
}

impl ShimOptions {
    /// Decodes containerd's options; `None` or an empty Any means defaults.
    pub fn from_any(any: Option<&Any>) -> Result<ShimOptions, ShimError> {
        let Some(any) = any.filter(|a| !a.type_url.is_empty()) else {
            return Ok(ShimOptions::default());
        };
        let name = any.type_url.rsplit('/').next().unwrap_or_default();
        if name == RUNTIMEOPTIONS_TYPE {
            return parse_runtimeoptions(&any.value);
        }
        if RUNC_TYPES.contains(&name) {
            let o = RuncOptions::parse_from_bytes(&any.value).map_err(|e| {
                ShimError::Options(format!("runtime options {}: {e}", any.type_url))
            })?;
            return Ok(ShimOptions {
                binary_name: o.binary_name,
                root: o.root,
                systemd_cgroup: o.systemd_cgroup,
                shim_cgroup: o.shim_cgroup,
                ..Default::default()
            });
        }
        Err(ShimError::Options(format!(
            "runtime options of type {:?}: the vessel shim accepts {RUNTIMEOPTIONS_TYPE} \
             (ConfigPath) or the runc Options (BinaryName, Root, SystemdCgroup)",
            any.type_url
        )))
    }

    /// The vessel binary: `BinaryName`, else `vessel` beside the shim's own
    /// executable, else `vessel` on `$PATH`, else [`FALLBACK_BINARY`].
    pub fn binary(&self) -> PathBuf {
        if !self.binary_name.is_empty() {
            let p = PathBuf::from(&self.binary_name);
            if p.is_absolute() || p.components().count() > 1 {
                return p;
            }
            return which(&self.binary_name).unwrap_or(p);
        }
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            let beside = dir.join("vessel");
            if is_executable(&beside) {
                return beside;
            }
        }
        which("vessel").unwrap_or_else(|| PathBuf::from(FALLBACK_BINARY))
    }

    /// vessel's `--root` for `namespace`: `<Root or DEFAULT_ROOT>/<ns>`.
    pub fn root_for(&self, namespace: &str) -> PathBuf {
        let base = if self.root.is_empty() {
            DEFAULT_ROOT
        } else {
            &self.root
        };
        Path::new(base).join(namespace)
    }

    /// Saves the options in `bundle` (see [`OPTIONS_FILE`]).
    pub fn save(&self, bundle: &Path) -> Result<(), ShimError> {
        let path = bundle.join(OPTIONS_FILE);
        let data = serde_json::to_vec(self).map_err(|e| ShimError::Options(e.to_string()))?;
        std::fs::write(&path, data).map_err(|e| ShimError::io(&path, e))
    }

    /// Loads the options saved in `bundle`; defaults when there are none.
    pub fn load(bundle: &Path) -> Result<ShimOptions, ShimError> {
        let path = bundle.join(OPTIONS_FILE);
        match std::fs::read(&path) {
            Ok(d) => serde_json::from_slice(&d)
                .map_err(|e| ShimError::Options(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ShimOptions::default()),
            Err(e) => Err(ShimError::io(&path, e)),
        }
    }

    /// The `--config` file to pass to vessel: `config_path`, or
    /// `config_body` written to `<bundle>/vessel-config.toml`.
    pub fn config_file(&self, bundle: &Path) -> Result<Option<PathBuf>, ShimError> {
        if !self.config_path.is_empty() {
            return Ok(Some(PathBuf::from(&self.config_path)));
        }
        if self.config_body.is_empty() {
            return Ok(None);
        }
        let path = bundle.join("vessel-config.toml");
        std::fs::write(&path, &self.config_body).map_err(|e| ShimError::io(&path, e))?;
        Ok(Some(path))
    }
}

/// Decodes `runtimeoptions.v1.Options`: fields 1 `type_url`, 2
/// `config_path`, 3 `config_body`, all strings. The proto is not in
/// containerd-shim-protos, and three string fields do not need generated
/// code.
fn parse_runtimeoptions(value: &[u8]) -> Result<ShimOptions, ShimError> {
    let bad = |e: String| ShimError::Options(format!("runtime options {RUNTIMEOPTIONS_TYPE}: {e}"));
    let mut is = CodedInputStream::from_bytes(value);
    let mut o = ShimOptions::default();
    while let Some(tag) = is.read_raw_tag_or_eof().map_err(|e| bad(e.to_string()))? {
        let (field, wire) = (tag >> 3, tag & 7);
        match (field, wire) {
            (1, 2) => {
                is.read_string().map_err(|e| bad(e.to_string()))?;
            }
            (2, 2) => o.config_path = is.read_string().map_err(|e| bad(e.to_string()))?,
            (3, 2) => o.config_body = is.read_string().map_err(|e| bad(e.to_string()))?,
            _ => {
                let wt = containerd_shim::protos::protobuf::rt::WireType::new(wire)
                    .ok_or_else(|| bad(format!("field {field}: bad wire type {wire}")))?;
                is.skip_field(wt).map_err(|e| bad(e.to_string()))?;
            }
        }
    }
    Ok(o)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::CodedOutputStream;

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        Any {
            type_url: type_url.into(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn runtimeoptions_config_path_and_body() {
        let mut buf = Vec::new();
        {
            let mut os = CodedOutputStream::vec(&mut buf);
            os.write_string(1, "io.vessel.Config").unwrap();
            os.write_string(2, "/etc/vessel/vm.toml").unwrap();
            os.write_string(3, "isolation = \"vm\"").unwrap();
            os.flush().unwrap();
        }
        let o = ShimOptions::from_any(Some(&any(
            "type.googleapis.com/runtimeoptions.v1.Options",
            buf,
        )))
        .unwrap();
        assert_eq!(o.config_path, "/etc/vessel/vm.toml");
        assert_eq!(o.config_body, "isolation = \"vm\"");
        assert_eq!(
            o.config_file(Path::new("/nonexistent")).unwrap(),
            Some(PathBuf::from("/etc/vessel/vm.toml"))
        );
    }

    #[test]
    fn runc_options() {
        let r = RuncOptions {
            binary_name: "/opt/vessel".into(),
            root: "/run/x".into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        let o = ShimOptions::from_any(Some(&any(
            "containerd.runc.v1.Options",
            r.write_to_bytes().unwrap(),
        )))
        .unwrap();
        assert_eq!(o.binary(), PathBuf::from("/opt/vessel"));
        assert_eq!(o.root_for("k8s.io"), PathBuf::from("/run/x/k8s.io"));
        assert!(o.systemd_cgroup);
    }

    #[test]
    fn defaults_and_unknown_types() {
        let o = ShimOptions::from_any(None).unwrap();
        assert_eq!(
            o.root_for("default"),
            PathBuf::from("/run/containerd/vessel/default")
        );
        let e = ShimOptions::from_any(Some(&any("example.com/Other", vec![1, 2]))).unwrap_err();
        assert!(e.to_string().contains("example.com/Other"), "{e}");
        let e = ShimOptions::from_any(Some(&any(
            "runtimeoptions.v1.Options",
            vec![0x12, 0x05, b'a'],
        )))
        .unwrap_err();
        assert!(e.to_string().contains("runtimeoptions.v1.Options"), "{e}");
    }

    #[test]
    fn saved_options_round_trip() {
        let dir = std::env::temp_dir().join(format!("vessel-shim-opt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(ShimOptions::load(&dir).unwrap(), ShimOptions::default());
        let o = ShimOptions {
            root: "/r".into(),
            config_body: "isolation = \"vm\"".into(),
            ..Default::default()
        };
        o.save(&dir).unwrap();
        assert_eq!(ShimOptions::load(&dir).unwrap(), o);
        let cfg = o.config_file(&dir).unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(cfg).unwrap(), "isolation = \"vm\"");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
