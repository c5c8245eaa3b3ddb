//! The network the iperf3 workload uses: a named network namespace with a
//! veth pair to the host, and iperf3 servers on the host side.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::sys::{self, Cleanup};

/// A network namespace joined to the host by a veth pair; removed (with
/// its links) by the [`Cleanup`] it was registered on.
#[derive(Debug, Clone)]
pub struct Netns {
    /// `ip netns` name.
    pub name: String,
    /// Its bind-mounted namespace file, for `linux.namespaces[].path`.
    pub path: PathBuf,
    /// The host end's address (the iperf3 server's).
    pub host_ip: String,
    /// The namespace end's address.
    pub ns_ip: String,
}

fn ip(args: &[&str]) -> Result<()> {
    sys::output(Command::new("ip").args(args)).map(|_| ())
}

impl Netns {
    /// Creates namespace `vb<tag>` with veth `vbh<tag>` (host, `.1/30`) and
    /// `eth0` inside (`.2/30`) on `10.231.<tag % 250>.0/30`, loopback up.
    pub fn create(tag: u32, cleanup: &mut Cleanup) -> Result<Netns> {
        let name = format!("vb{tag}");
        let host_if = format!("vbh{tag}");
        let net = tag % 250;
        let host_ip = format!("10.231.{net}.1");
        let ns_ip = format!("10.231.{net}.2");
        // `ip netns add` makes the netns directory a shared mount point on
        // first use and nothing ever undoes it: undo it here when this call
        // made it (runs after the namespace's own deletion, cleanup being
        // newest first), so the host keeps the mount table it had.
        let dir_existed = Path::new(NETNS_DIR).exists();
        let was_mount = netns_dir_is_mount();
        ip(&["netns", "add", &name]).with_context(|| format!("creating netns {name}"))?;
        if !was_mount && netns_dir_is_mount() {
            cleanup.push(format!("unmount {NETNS_DIR}"), move || {
                restore_netns_dir(dir_existed)
            });
        }
        let n = name.clone();
        cleanup.push(format!("delete netns {name}"), move || {
            ip(&["netns", "del", &n])
        });
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "vbc0", "netns", &name,
        ])
        .with_context(|| format!("creating veth {host_if}"))?;
        let h = host_if.clone();
        cleanup.push(format!("delete link {host_if}"), move || {
            // Gone already when the namespace (holding its peer) went first.
            let _ = ip(&["link", "del", &h]);
            Ok(())
        });
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["link", "set", "vbc0", "name", "eth0"],
            vec!["addr", "add", &format!("{ns_ip}/30"), "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
        ] {
            let mut full = vec!["netns", "exec", &name, "ip"];
            full.extend(args);
            ip(&full).with_context(|| format!("configuring netns {name}"))?;
        }
        Ok(Netns {
            path: PathBuf::from(format!("/var/run/netns/{name}")),
            name,
            host_ip,
            ns_ip,
        })
    }
}

/// Where `ip netns` keeps its bind-mounted namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Whether the netns directory is a mount point of this mount namespace.
fn netns_dir_is_mount() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines().any(|l| {
                let p = l.split(' ').nth(4);
                p == Some(NETNS_DIR) || p == Some("/var/run/netns")
            })
        })
        .unwrap_or(false)
}

/// Unmounts the netns directory `ip` mounted, and removes it when it did
/// not exist before; left alone while another namespace is still in it.
fn restore_netns_dir(dir_existed: bool) -> Result<()> {
    let dir = Path::new(NETNS_DIR);
    let empty = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
    if !empty {
        return Ok(());
    }
    sys::output(Command::new("umount").arg(dir))
        .with_context(|| format!("unmounting {NETNS_DIR}"))?;
    if !dir_existed {
        std::fs::remove_dir(dir).with_context(|| format!("removing {NETNS_DIR}"))?;
    }
    Ok(())
}

/// Starts `iperf3 -s` bound to `addr:port` on the host, waits until it
/// listens, and registers its end (by pid) on `cleanup`.
pub fn start_iperf_server(addr: &str, port: u16, cleanup: &mut Cleanup) -> Result<()> {
    let child: Child = Command::new("iperf3")
        .args(["-s", "-B", addr, "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iperf3 -s (apt-get install -y iperf3)")?;
    let pid = child.id();
    let mut child = Some(child);
    cleanup.push(format!("stop iperf3 server {addr}:{port}"), move || {
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(())
    });
    let end = Instant::now() + Duration::from_secs(10);
    while !listening(addr, port) {
        if Instant::now() > end {
            bail!("iperf3 server (pid {pid}) not listening on {addr}:{port} after 10 s");
        }
        sys::sleep(Duration::from_millis(20))?;
    }
    Ok(())
}

/// Whether a TCP socket listens on `addr:port` (IPv4), from /proc/net/tcp.
fn listening(addr: &str, port: u16) -> bool {
    let Ok(a) = addr.parse::<std::net::Ipv4Addr>() else {
        return false;
    };
    let want = format!("{:08X}:{port:04X}", u32::from_le_bytes(a.octets()));
    std::fs::read_to_string("/proc/net/tcp")
        .map(|t| {
            t.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A")
            })
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn sees_a_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(listening("127.0.0.1", port));
        // Not drop(l): closing our descriptor does not close the socket
        // while a child that another test thread is spawning still holds
        // a copy (its exec closes it, CLOEXEC, but later); the socket then
        // listens on, and this failed 2 runs in 6 of the whole lib's tests.
        // shutdown stops the listen on every copy at once.
        // SAFETY: `l` owns the descriptor and outlives the call.
        let r = unsafe { libc::shutdown(l.as_raw_fd(), libc::SHUT_RDWR) };
        assert_eq!(r, 0, "shutdown: {}", std::io::Error::last_os_error());
        assert!(!listening("127.0.0.1", port));
        drop(l);
    }

    #[test]
    fn netns_and_veth_come_and_go() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root for ip netns");
            return;
        }
        let tag = 200 + std::process::id() % 40;
        let mounts_before = netns_dir_is_mount();
        {
            let mut c = Cleanup::new();
            let n = Netns::create(tag, &mut c).unwrap();
            assert!(n.path.exists());
            let out = sys::output(
                Command::new("ip")
                    .args(["netns", "exec", &n.name, "ip", "-4", "addr", "show", "eth0"]),
            )
            .unwrap();
            assert!(out.contains(&n.ns_ip), "{out}");
        }
        assert!(!PathBuf::from(format!("/var/run/netns/vb{tag}")).exists());
        // `ip netns add` mounts the netns directory; the cleanup unmounts
        // it again unless it was there before (or another netns is in it).
        if !mounts_before {
            assert!(!netns_dir_is_mount(), "{NETNS_DIR} left mounted");
        }
        assert!(
            sys::output(Command::new("ip").args(["link", "show", &format!("vbh{tag}")])).is_err()
        );
    }
}
