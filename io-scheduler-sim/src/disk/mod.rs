//! Block device models: a zoned rotating disk and an NVMe SSD.
//!
//! Parameters come from presets or from a TOML/JSON file (`kind = "rotating"`
//! or `kind = "nvme"`, the other keys as in [`RotatingParams`] and [`NvmeParams`]).

mod nvme;
mod rotating;
mod seek;

pub use nvme::{Nvme, NvmeParams};
pub use rotating::{Rotating, RotatingParams};
pub use seek::SeekCurve;

use crate::request::Request;
use crate::units::Time;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A device that serves requests. The engine keeps at most
/// [`Disk::queue_depth`] requests on it and starts at most [`Disk::servers`]
/// of them at once; each start asks the model how long that request takes.
pub trait Disk {
    /// Requests the device accepts at once (NCQ / submission queue depth).
    fn queue_depth(&self) -> usize;
    /// Requests the device serves concurrently (1 actuator, or flash channels).
    fn servers(&self) -> usize;
    /// Capacity in sectors.
    fn capacity_sectors(&self) -> u64;
    /// Starts `req` at `now` and returns its service time.
    fn service(&mut self, req: &Request, now: Time) -> Time;
}

/// Device parameters, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DiskParams {
    /// A rotating disk.
    Rotating(RotatingParams),
    /// An NVMe SSD.
    Nvme(NvmeParams),
}

impl DiskParams {
    /// Names of the built-in presets.
    pub const PRESETS: &'static [&'static str] = &["sata2008", "nvme"];

    /// A built-in preset by name.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "sata2008" | "sata" | "paper" => Ok(DiskParams::Rotating(RotatingParams::sata_2008())),
            "nvme" => Ok(DiskParams::Nvme(NvmeParams::default())),
            other => Err(Error::invalid(
                "disk",
                format!(
                    "unknown preset `{other}` (presets: {})",
                    Self::PRESETS.join(", ")
                ),
            )),
        }
    }

    /// Loads parameters from a `.toml` or `.json` file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let p: DiskParams = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|source| Error::Json {
                path: path.to_owned(),
                source,
            })?
        } else {
            toml::from_str(&text).map_err(|source| Error::Toml {
                path: path.to_owned(),
                source,
            })?
        };
        p.validate().map_err(|e| match e {
            // Name the file as well as the field.
            Error::Invalid { field, msg } => Error::Invalid {
                field: format!("{}: {field}", path.display()),
                msg,
            },
            other => other,
        })?;
        Ok(p)
    }

    /// A preset name, or a path to a TOML/JSON file.
    pub fn resolve(spec: &str) -> Result<Self> {
        if Self::PRESETS.contains(&spec) || spec == "paper" || spec == "sata" {
            Self::preset(spec)
        } else {
            Self::load(Path::new(spec))
        }
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        match self {
            DiskParams::Rotating(p) => p.validate(),
            DiskParams::Nvme(p) => p.validate(),
        }
    }

    /// Builds the model.
    pub fn build(&self) -> Box<dyn Disk> {
        match self {
            DiskParams::Rotating(p) => Box::new(Rotating::new(p.clone())),
            DiskParams::Nvme(p) => Box::new(Nvme::new(p.clone())),
        }
    }

    /// Capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        match self {
            DiskParams::Rotating(p) => p.capacity_bytes,
            DiskParams::Nvme(p) => p.capacity_bytes,
        }
    }
}

pub(crate) fn positive(field: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(field, format!("{v} must be > 0")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_roundtrip_through_toml_and_json() {
        for name in DiskParams::PRESETS {
            let p = DiskParams::preset(name).unwrap();
            let t = toml::to_string(&p).unwrap();
            assert_eq!(toml::from_str::<DiskParams>(&t).unwrap(), p);
            let j = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<DiskParams>(&j).unwrap(), p);
        }
        assert!(DiskParams::preset("floppy").is_err());
    }

    #[test]
    fn loads_toml_and_json_files_and_rejects_bad_values() {
        let dir = std::env::temp_dir().join(format!("iosim-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = DiskParams::preset("sata2008").unwrap();
        let json = dir.join("d.json");
        std::fs::write(&json, serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(DiskParams::resolve(json.to_str().unwrap()).unwrap(), p);
        let toml_path = dir.join("d.toml");
        let text = toml::to_string(&p)
            .unwrap()
            .replace("rpm = 7200.0", "rpm = 0.0");
        std::fs::write(&toml_path, text).unwrap();
        let e = DiskParams::load(&toml_path).unwrap_err().to_string();
        assert!(e.contains("rpm"), "{e}");
        assert!(DiskParams::load(&dir.join("missing.toml")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
