//! Busybox bundles made at run time from Debian's busybox-static.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};

/// Applets linked into the benchmark rootfs.
const APPLETS: &[&str] = &["sh", "true", "false", "sleep", "cat", "echo", "ls"];

/// Where busybox-static installs its binary.
pub fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Makes a busybox rootfs at `root` (directories, /bin/busybox, applet
/// links, passwd and group).
pub fn make_rootfs(root: &Path) -> Result<()> {
    let bb = busybox()
        .ok_or_else(|| anyhow!("busybox is missing: apt-get install -y busybox-static"))?;
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "root"] {
        fs::create_dir_all(root.join(d))
            .with_context(|| format!("creating {}", root.join(d).display()))?;
    }
    fs::copy(&bb, root.join("bin/busybox"))
        .with_context(|| format!("copying {} into the rootfs", bb.display()))?;
    for a in APPLETS {
        symlink("busybox", root.join("bin").join(a))?;
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    fs::write(root.join("etc/group"), "root:x:0:\n")?;
    Ok(())
}

/// The default config of `vessel spec`, with `terminal` false and `args`
/// as the process.
pub fn vessel_spec(vessel: &Path, args: &[&str]) -> Result<Value> {
    let dir = tempfile::Builder::new()
        .prefix("vessel-bench-spec-")
        .tempdir()?;
    crate::sys::output(
        Command::new(vessel)
            .args(["spec", "--bundle"])
            .arg(dir.path()),
    )?;
    let text = fs::read(dir.path().join("config.json"))?;
    let mut config: Value = serde_json::from_slice(&text).context("parsing vessel spec output")?;
    config["process"]["terminal"] = Value::Bool(false);
    config["process"]["args"] = json!(args);
    Ok(config)
}

/// Writes `config` as `<bundle>/config.json`.
pub fn write_config(bundle: &Path, config: &Value) -> Result<()> {
    fs::create_dir_all(bundle)?;
    let p = bundle.join("config.json");
    fs::write(&p, serde_json::to_vec_pretty(config)?)
        .with_context(|| format!("writing {}", p.display()))
}

/// Appends a mount to `config.mounts`.
pub fn add_mount(
    config: &mut Value,
    destination: &str,
    kind: &str,
    source: &str,
    options: &[&str],
) {
    let m = json!({
        "destination": destination,
        "type": kind,
        "source": source,
        "options": options,
    });
    match config["mounts"].as_array_mut() {
        Some(a) => a.push(m),
        None => config["mounts"] = json!([m]),
    }
}

/// Adds block device `major:minor` at `path` to `linux.devices` and allows
/// it (read/write) in `linux.resources.devices`.
pub fn add_block_device(config: &mut Value, path: &str, major: u64, minor: u64) {
    let linux = &mut config["linux"];
    let dev = json!({
        "path": path, "type": "b", "major": major, "minor": minor,
        "fileMode": 0o660, "uid": 0, "gid": 0,
    });
    match linux["devices"].as_array_mut() {
        Some(a) => a.push(dev),
        None => linux["devices"] = json!([dev]),
    }
    let allow = json!({"allow": true, "type": "b", "major": major, "minor": minor, "access": "rw"});
    match linux["resources"]["devices"].as_array_mut() {
        Some(a) => a.push(allow),
        None => linux["resources"]["devices"] = json!([allow]),
    }
}

/// Sets an annotation.
pub fn set_annotation(config: &mut Value, key: &str, value: &str) {
    if !config["annotations"].is_object() {
        config["annotations"] = json!({});
    }
    config["annotations"][key] = json!(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_config() {
        let mut c =
            json!({"linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}]}}});
        add_block_device(&mut c, "/dev/disk", 7, 3);
        add_mount(&mut c, "/usr", "bind", "/usr", &["rbind", "ro"]);
        set_annotation(&mut c, "a", "b");
        assert_eq!(c["linux"]["devices"][0]["major"], 7);
        assert_eq!(c["linux"]["resources"]["devices"][1]["minor"], 3);
        assert_eq!(c["linux"]["resources"]["devices"][1]["allow"], true);
        assert_eq!(c["mounts"][0]["options"][1], "ro");
        assert_eq!(c["annotations"]["a"], "b");
    }
}
