//! The rootfs of the microVM mode. A guest cannot share the host's `/usr`
//! (vessel copies bind-mount sources into the guest, at most 2 MiB), so
//! the VM gets a rootfs directory holding copies of the workload tools
//! from the host's Debian packages, the shared libraries `ldd` lists for
//! them, and the workloads' input files under `/work`. The binaries and
//! inputs are the same bytes the other modes use; vessel turns the
//! directory into an image for the guest.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Context, Result};

/// The programs the VM workloads call (looked up in `/usr/bin`).
pub const TOOLS: &[&str] = &[
    "sh", "dash", "sysbench", "bzip2", "awk", "date", "sync", "rm", "sleep", "sed", "cat", "cut",
    "dd", "mkdir", "iperf3", "ls", "echo",
];

/// Makes the VM rootfs at `root`: merged-/usr links, [`TOOLS`] and their
/// libraries, passwd/group/hosts, and an empty `/work`.
pub fn make(root: &Path) -> Result<()> {
    for d in [
        "usr/bin",
        "usr/lib",
        "usr/lib64",
        "usr/sbin",
        "work",
        "tmp",
        "proc",
        "sys",
        "dev",
        "etc",
        "root",
        "run",
    ] {
        fs::create_dir_all(root.join(d))
            .with_context(|| format!("creating {}", root.join(d).display()))?;
    }
    for l in ["bin", "lib", "lib64", "sbin"] {
        symlink(format!("usr/{l}"), root.join(l))
            .with_context(|| format!("linking {}", root.join(l).display()))?;
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    let mut libs: Vec<PathBuf> = Vec::new();
    for t in TOOLS {
        let host = Path::new("/usr/bin").join(t);
        if !host.exists() {
            return Err(anyhow!(
                "{} is missing on the host (see scripts/install-deps.sh)",
                host.display()
            ));
        }
        // Copy the file the link resolves to, under the tool's own name.
        fs::copy(&host, root.join("usr/bin").join(t))
            .with_context(|| format!("copying {} into the VM rootfs", host.display()))?;
        for l in shared_libs(&host)? {
            if !libs.contains(&l) {
                libs.push(l);
            }
        }
    }
    for l in &libs {
        let dest = root.join(l.strip_prefix("/").unwrap_or(l));
        if let Some(p) = dest.parent() {
            fs::create_dir_all(p)?;
        }
        fs::copy(l, &dest)
            .with_context(|| format!("copying {} into the VM rootfs", l.display()))?;
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    fs::write(root.join("etc/group"), "root:x:0:\n")?;
    fs::write(root.join("etc/hosts"), "127.0.0.1 localhost vessel-bench\n")?;
    Ok(())
}

/// The libraries (and the loader) `ldd` reports for `bin`.
fn shared_libs(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .with_context(|| format!("running ldd {}", bin.display()))?;
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd() {
        let t = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                 \tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n\
                 \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(t),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

    /// The copied tools run chrooted in the rootfs: nothing is missing.
    #[test]
    fn tools_run_in_the_rootfs() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: chroot needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        make(d.path()).unwrap();
        let out = Command::new("chroot")
            .arg(d.path())
            .args([
                "/bin/sh",
                "-c",
                "sysbench --version && echo x | bzip2 | bzip2 -d && echo 1 2 | awk '{print $2}' && iperf3 --version >/dev/null && date +%s.%N",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("sysbench") && text.contains("\nx\n2\n"),
            "{text}"
        );
    }
}
