//! vm-mode networking against the real kernel: taps and tc redirects in a
//! namespace pair made here (with frames sent through them), and the
//! guest-side configuration in a namespace of its own.
//!
//! Needs root, iproute2 (`ip`, `tc`: the setup, and an independent reading
//! of what vessel's netlink calls did), /dev/net/tun and busybox (`ping`).
//! Every namespace is deleted by a guard, so links, taps and filters go
//! with it even when an assertion fails.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};
use serde_json::Value;
use vessel_vm::engine::NetTap;
use vessel_vm::net::{self, GuestInterface, GuestNetwork, GuestRoute};

/// Why this machine cannot run the tests, if it cannot.
fn missing() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    for tool in ["ip", "tc", "busybox"] {
        let found = Command::new(tool)
            .arg(if tool == "busybox" { "--help" } else { "-V" })
            .output()
            .is_ok();
        if !found {
            return Some(format!("{tool} not installed (iproute2 / busybox-static)"));
        }
    }
    None
}

macro_rules! require_host {
    () => {
        if let Some(why) = missing() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

/// A named network namespace (`/run/netns/<name>`), deleted on drop.
struct Netns {
    name: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Netns {
    fn new(role: &str) -> Netns {
        let name = format!(
            "vessel-net-{role}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let _g = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        NETNS_DIR_BEFORE.get_or_init(|| (Path::new("/run/netns").exists(), netns_dir_is_mount()));
        run("ip", &["netns", "add", &name]);
        Netns { name }
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// `ip -n <ns> args...`
    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip -n <ns> -j args...`, parsed.
    fn ip_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ip(&all)).expect("ip -j prints JSON")
    }

    /// `tc -n <ns> -j args...`, parsed.
    fn tc_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-n", &self.name, "-j"];
        all.extend_from_slice(args);
        let out = run("tc", &all);
        serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out })
            .expect("tc -j prints JSON")
    }

    /// Runs `f` on a thread inside the namespace.
    fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = File::open(self.path()).expect("open netns");
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _g = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        // `ip netns add` made /run/netns a shared mount point on first
        // use and never undoes it: undo it once the last namespace of
        // this process is gone, if it was no mount point before.
        let dir = Path::new("/run/netns");
        let Some(&(existed, was_mount)) = NETNS_DIR_BEFORE.get() else {
            return;
        };
        let empty = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
        if was_mount || !empty {
            return;
        }
        if netns_dir_is_mount() {
            if let Err(e) = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("cleanup: umount /run/netns: {e}");
            }
        }
        if !existed {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Serializes `ip netns add` with the check-and-unmount of the drop, so
/// one test's unmount never detaches another test's namespace file.
static NETNS_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether /run/netns existed and was a mount point before this process
/// first added a namespace.
static NETNS_DIR_BEFORE: std::sync::OnceLock<(bool, bool)> = std::sync::OnceLock::new();

fn netns_dir_is_mount() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines().any(|l| {
                let p = l.split(' ').nth(4);
                p == Some("/run/netns") || p == Some("/var/run/netns")
            })
        })
        .unwrap_or(false)
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A subnet octet of our own so that parallel runs do not collide.
fn octet() -> u8 {
    (std::process::id() % 200 + 20) as u8
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    let v: Vec<u8> = mac
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// The mirred targets of the filters on `dev`'s ingress, as tc prints them.
fn redirect_targets(ns: &Netns, dev: &str) -> Vec<String> {
    let filters = ns.tc_json(&["filter", "show", "dev", dev, "ingress"]);
    let mut targets = Vec::new();
    for f in filters.as_array().unwrap() {
        for a in f["options"]["actions"].as_array().into_iter().flatten() {
            assert_eq!(a["kind"], "mirred", "{f}");
            assert_eq!(a["mirred_action"], "redirect", "{f}");
            assert_eq!(a["direction"], "egress", "{f}");
            assert_eq!(f["pref"], 1, "{f}");
            targets.push(a["to_dev"].as_str().unwrap().to_string());
        }
    }
    targets
}

// ---------------------------------------------------------------------------
// Frames

fn ip_checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in bytes.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn arp_request(src_mac: [u8; 6], src_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&src_ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

fn icmp_echo(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    seq: u16,
) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(b"vessel tap redirect test");
    let sum = ip_checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 1, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = ip_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());

    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    f
}

/// Opens the persistent tap `name` of the calling thread's namespace the
/// way QEMU does (TUNSETIFF with the same name attaches to it).
fn open_tap(name: &str) -> File {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .expect("open /dev/net/tun");
    // SAFETY: ifreq is plain data; zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: valid descriptor and ifreq for the duration of the call.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) };
    assert_eq!(
        rc,
        0,
        "TUNSETIFF {name}: {}",
        std::io::Error::last_os_error()
    );
    tun
}

/// Waits until `dev` is operationally up. Carrier changes take effect
/// through the kernel's link watcher, up to a second later; until then the
/// device's qdisc drops what is sent through it.
fn wait_oper_up(ns: &Netns, dev: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = ns.ip_json(&["link", "show", dev])[0]["operstate"].clone();
        if state == "UP" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{dev} in {} stays {state}",
            ns.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads frames from the tap until `want` accepts one (returns it) or
/// five seconds pass (panics, listing what was seen).
fn read_until(tap: &mut File, what: &str, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let mut fds = [PollFd::new(tap.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(left.as_millis().min(1000) as u32).unwrap();
        if poll(&mut fds, ms).expect("poll tap") == 0 {
            continue;
        }
        let n = tap.read(&mut buf).expect("read tap");
        let frame = buf[..n].to_vec();
        if want(&frame) {
            return frame;
        }
        seen.push(format!("{:02x?}", &frame[..n.min(42)]));
    }
    panic!("no {what} read from the tap within 5 s; other frames: {seen:#?}");
}

// ---------------------------------------------------------------------------

#[test]
fn attach_joins_veths_to_taps_and_carries_traffic() {
    require_host!();
    let c = Netns::new("c");
    let h = Netns::new("h");
    let o = octet();
    let (c_ip, h_ip) = (Ipv4Addr::new(10, 77, o, 2), Ipv4Addr::new(10, 77, o, 1));
    let (c_mac, h_mac) = ("02:00:0a:4d:00:02", "02:00:0a:4d:00:01");
    let h_name = h.name.clone();
    c.ip(&[
        "link", "add", "eth0", "address", c_mac, "mtu", "1400", "type", "veth", "peer", "name",
        "eth0h", "address", h_mac, "mtu", "1400", "netns", &h_name,
    ]);
    // A second interface whose name leaves no room for the "vt-" prefix.
    c.ip(&[
        "link",
        "add",
        "longname-12345",
        "type",
        "veth",
        "peer",
        "name",
        "eth1h",
        "netns",
        &h_name,
    ]);
    c.ip(&["addr", "add", &format!("{c_ip}/24"), "dev", "eth0"]);
    c.ip(&["addr", "add", "fd77::2/64", "dev", "eth0", "nodad"]);
    c.ip(&["link", "set", "lo", "up"]);
    c.ip(&["link", "set", "eth0", "up"]);
    c.ip(&["link", "set", "longname-12345", "up"]);
    c.ip(&["route", "add", "default", "via", &h_ip.to_string()]);
    c.ip(&[
        "route",
        "add",
        "10.78.0.0/16",
        "via",
        &h_ip.to_string(),
        "metric",
        "7",
    ]);
    c.ip(&["-6", "route", "add", "default", "via", "fd77::1"]);
    h.ip(&["addr", "add", &format!("{h_ip}/24"), "dev", "eth0h"]);
    h.ip(&["link", "set", "eth0h", "up"]);
    h.ip(&["link", "set", "eth1h", "up"]);
    let long_index = c.ip_json(&["link", "show", "longname-12345"])[0]["ifindex"]
        .as_u64()
        .unwrap();
    let long_mac = c.ip_json(&["link", "show", "longname-12345"])[0]["address"]
        .as_str()
        .unwrap()
        .to_string();

    let att = net::attach(&c.path(), "nettest").expect("attach");

    // What the VMM and the guest get.
    let long_tap = format!("vt-{long_index}");
    assert_eq!(
        att.taps,
        vec![
            NetTap {
                tap: "vt-eth0".into(),
                mac: Some(c_mac.into())
            },
            NetTap {
                tap: long_tap.clone(),
                mac: Some(long_mac.clone())
            },
        ]
    );
    let eth0 = &att.guest.interfaces[0];
    assert_eq!(
        (eth0.name.as_str(), eth0.mac.as_str(), eth0.mtu),
        ("eth0", c_mac, 1400)
    );
    let mut addrs = eth0.addresses.clone();
    addrs.sort();
    assert_eq!(
        addrs,
        vec![(IpAddr::V4(c_ip), 24), ("fd77::2".parse().unwrap(), 64)]
    );
    let long = &att.guest.interfaces[1];
    assert_eq!(
        (
            long.name.as_str(),
            long.mac.as_str(),
            long.mtu,
            long.addresses.len()
        ),
        ("longname-12345", long_mac.as_str(), 1500, 0)
    );
    let route = |dst: Option<(&str, u8)>, gw: &str, metric: Option<u32>| GuestRoute {
        destination: dst.map(|(ip, len)| (ip.parse().unwrap(), len)),
        gateway: Some(gw.parse().unwrap()),
        device: "eth0".into(),
        metric,
    };
    let routes = &att.guest.routes;
    for expected in [
        route(None, &h_ip.to_string(), None),
        route(Some(("10.78.0.0", 16)), &h_ip.to_string(), Some(7)),
        route(None, "fd77::1", Some(1024)),
    ] {
        assert!(
            routes.contains(&expected),
            "{expected:?} not in {routes:#?}"
        );
    }
    assert_eq!(
        routes.len(),
        3,
        "kernel-made routes are not carried: {routes:#?}"
    );
    // The attachment survives the state file.
    let json = serde_json::to_string(&att).unwrap();
    assert_eq!(
        serde_json::from_str::<net::NetAttachment>(&json).unwrap(),
        att
    );

    // What the kernel has, read back by iproute2.
    for (tap, dev) in [("vt-eth0", "eth0"), (long_tap.as_str(), "longname-12345")] {
        let link = &c.ip_json(&["-d", "link", "show", tap])[0];
        assert_eq!(link["linkinfo"]["info_kind"], "tun", "{link}");
        assert_eq!(link["linkinfo"]["info_data"]["type"], "tap", "{link}");
        assert_eq!(link["linkinfo"]["info_data"]["pi"], false, "{link}");
        assert_eq!(link["linkinfo"]["info_data"]["persist"], true, "{link}");
        assert!(
            link["flags"].as_array().unwrap().contains(&"UP".into()),
            "{link}"
        );
        let mtu = if dev == "eth0" { 1400 } else { 1500 };
        assert_eq!(link["mtu"], mtu, "{link}");
        assert_eq!(link["inet6_addr_gen_mode"], "none", "{link}");
        let addrs = &c.ip_json(&["addr", "show", "dev", tap])[0]["addr_info"];
        assert_eq!(addrs, &Value::Array(vec![]), "the tap has no address");
        assert_eq!(redirect_targets(&c, dev), vec![tap.to_string()]);
        assert_eq!(redirect_targets(&c, tap), vec![dev.to_string()]);
    }

    // Frames: what the guest writes to the tap leaves by eth0 and H's
    // answers come back to the tap.
    let (c_mac_b, h_mac_b) = (mac_bytes(c_mac), mac_bytes(h_mac));
    wait_oper_up(&c, "eth0");
    wait_oper_up(&h, "eth0h");
    c.run_in(|| {
        let mut tap = open_tap("vt-eth0");
        wait_oper_up(&c, "vt-eth0");
        tap.write_all(&arp_request(c_mac_b, c_ip, h_ip)).unwrap();
        let reply = read_until(&mut tap, "ARP reply", |f| {
            f.len() >= 42
                && f[12..14] == [8, 6]
                && f[20..22] == [0, 2]
                && f[28..32] == h_ip.octets()
        });
        assert_eq!(&reply[0..6], &c_mac_b, "ARP reply to the veth's MAC");
        assert_eq!(&reply[22..28], &h_mac_b, "H answers with its MAC");
        assert_eq!(&reply[38..42], &c_ip.octets());

        tap.write_all(&icmp_echo(c_mac_b, h_mac_b, c_ip, h_ip, 0x5e55, 1))
            .unwrap();
        let reply = read_until(&mut tap, "ICMP echo reply", |f| {
            f.len() >= 42
                && f[12..14] == [8, 0]
                && f[23] == 1
                && f[34] == 0
                && f[38..40] == 0x5e55u16.to_be_bytes()
        });
        assert_eq!(&reply[26..30], &h_ip.octets(), "from H");
        assert_eq!(&reply[30..34], &c_ip.octets(), "to the container's address");
        assert_eq!(&reply[40..42], &1u16.to_be_bytes(), "sequence");
    });

    // While attached, the namespace's own stack no longer gets eth0's
    // frames (they go to the tap, where nobody reads now).
    let blocked = Command::new("ip")
        .args([
            "netns", "exec", &c.name, "busybox", "ping", "-c", "1", "-W", "1",
        ])
        .arg(h_ip.to_string())
        .output()
        .unwrap();
    assert!(!blocked.status.success(), "ping went around the redirect");

    net::detach(&att).expect("detach");
    for (tap, dev) in [("vt-eth0", "eth0"), (long_tap.as_str(), "longname-12345")] {
        let names: Vec<Value> = c
            .ip_json(&["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].clone())
            .collect();
        assert!(
            !names.contains(&tap.into()),
            "{tap} still exists: {names:?}"
        );
        assert!(names.contains(&dev.into()));
        assert_eq!(
            c.tc_json(&["filter", "show", "dev", dev, "ingress"]),
            Value::Array(vec![])
        );
        let qdiscs = c.tc_json(&["qdisc", "show", "dev", dev]);
        assert!(
            !qdiscs
                .as_array()
                .unwrap()
                .iter()
                .any(|q| q["kind"] == "ingress"),
            "{qdiscs}"
        );
    }
    // eth0 is the namespace's again.
    run(
        "ip",
        &[
            "netns",
            "exec",
            &c.name,
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            &h_ip.to_string(),
        ],
    );
    // Detach is idempotent, and a namespace gone is not an error.
    net::detach(&att).expect("second detach");
    drop(c);
    net::detach(&att).expect("detach after the namespace is gone");
}

#[test]
fn attach_keeps_an_existing_ingress_qdisc() {
    require_host!();
    let c = Netns::new("q");
    c.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
    ]);
    c.ip(&["link", "set", "eth0", "up"]);
    run(
        "tc",
        &["-n", &c.name, "qdisc", "add", "dev", "eth0", "ingress"],
    );

    let att = net::attach(&c.path(), "qdisc-test").expect("attach");
    assert_eq!(att.taps.len(), 1);
    assert!(!att.links[0].created_qdisc);
    assert_eq!(redirect_targets(&c, "eth0"), vec!["vt-eth0".to_string()]);

    net::detach(&att).expect("detach");
    assert_eq!(redirect_targets(&c, "eth0"), Vec::<String>::new());
    let qdiscs = c.tc_json(&["qdisc", "show", "dev", "eth0"]);
    assert!(
        qdiscs
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["kind"] == "ingress"),
        "the qdisc that was there stays: {qdiscs}"
    );
}

#[test]
fn attach_failure_leaves_nothing_behind() {
    require_host!();
    let c = Netns::new("f");
    for (dev, peer) in [("eth0", "peer0"), ("eth1", "peer1")] {
        c.ip(&["link", "add", dev, "type", "veth", "peer", "name", peer]);
        c.ip(&["link", "set", dev, "up"]);
    }
    // eth1 already has a filter of another kind at vessel's priority: the
    // kernel refuses vessel's, after eth0 was joined.
    run(
        "tc",
        &["-n", &c.name, "qdisc", "add", "dev", "eth1", "ingress"],
    );
    run(
        "tc",
        &[
            "-n",
            &c.name,
            "filter",
            "add",
            "dev",
            "eth1",
            "ingress",
            "prio",
            "1",
            "protocol",
            "all",
            "bpf",
            "bytecode",
            "1,6 0 0 0",
        ],
    );
    let err = net::attach(&c.path(), "half").unwrap_err().to_string();
    for part in [
        "container half",
        c.name.as_str(),
        "interface eth1",
        "vt-eth1",
        "Specified filter kind does not match existing one",
    ] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }
    let names: Vec<Value> = c
        .ip_json(&["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].clone())
        .collect();
    assert!(
        !names.contains(&"vt-eth0".into()) && !names.contains(&"vt-eth1".into()),
        "{names:?}"
    );
    assert_eq!(
        c.tc_json(&["filter", "show", "dev", "eth0", "ingress"]),
        Value::Array(vec![])
    );
    let qdiscs = c.tc_json(&["qdisc", "show", "dev", "eth0"]);
    assert!(
        !qdiscs
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["kind"] == "ingress"),
        "{qdiscs}"
    );
    // The other filter is untouched.
    let filters = c.tc_json(&["filter", "show", "dev", "eth1", "ingress"]);
    assert!(
        filters
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["kind"] == "bpf"),
        "{filters}"
    );
    assert!(!filters.as_array().unwrap().is_empty());
}

#[test]
fn attach_in_an_empty_namespace_gives_no_taps() {
    require_host!();
    let c = Netns::new("e");
    // A link that is down is not taken either.
    c.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
    ]);
    let att = net::attach(&c.path(), "empty").expect("attach");
    assert!(att.taps.is_empty());
    assert_eq!(att.guest, GuestNetwork::default());
    assert!(att.links.is_empty());
    net::detach(&att).expect("detach");
}

#[test]
fn attach_names_a_missing_namespace() {
    let path = Path::new("/run/netns/vessel-net-does-not-exist");
    let err = net::attach(path, "ghost").unwrap_err().to_string();
    assert!(
        err.contains("ghost") && err.contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn configure_sets_up_the_guest_nic() {
    require_host!();
    let g = Netns::new("g");
    let o = octet();
    let mac = "02:00:0a:4f:00:05";
    g.ip(&[
        "link", "add", "tmp0", "address", mac, "type", "veth", "peer", "name", "peer0",
    ]);
    g.ip(&["link", "set", "peer0", "up"]);
    // Up already: configure takes it down to rename it.
    g.ip(&["link", "set", "tmp0", "up"]);
    let ip: IpAddr = Ipv4Addr::new(10, 79, o, 5).into();
    let gw: IpAddr = Ipv4Addr::new(10, 79, o, 1).into();
    let network = GuestNetwork {
        interfaces: vec![GuestInterface {
            name: "eth7".into(),
            mac: mac.to_uppercase(),
            mtu: 1300,
            addresses: vec![(ip, 24), ("fd79::5".parse().unwrap(), 64)],
        }],
        // Gateway routes first here: configure must still add the link
        // route they may depend on before them.
        routes: vec![
            GuestRoute {
                destination: None,
                gateway: Some(gw),
                device: "eth7".into(),
                metric: None,
            },
            GuestRoute {
                destination: Some(("10.81.0.0".parse().unwrap(), 16)),
                gateway: Some("10.80.0.1".parse().unwrap()),
                device: "eth7".into(),
                metric: Some(9),
            },
            GuestRoute {
                destination: Some(("fd79:1::".parse().unwrap(), 64)),
                gateway: Some("fd79::1".parse().unwrap()),
                device: "eth7".into(),
                metric: Some(50),
            },
            GuestRoute {
                destination: Some(("10.80.0.0".parse().unwrap(), 16)),
                gateway: None,
                device: "eth7".into(),
                metric: None,
            },
        ],
    };
    g.run_in(|| net::configure(&network)).expect("configure");

    let link = &g.ip_json(&["addr", "show", "dev", "eth7"])[0];
    assert_eq!(link["ifname"], "eth7");
    assert_eq!(link["address"], mac);
    assert_eq!(link["mtu"], 1300);
    assert!(
        link["flags"].as_array().unwrap().contains(&"UP".into()),
        "{link}"
    );
    let addrs: Vec<(String, u64, Option<String>)> = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["local"].as_str().unwrap().to_string(),
                a["prefixlen"].as_u64().unwrap(),
                a["broadcast"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert!(
        addrs.contains(&(ip.to_string(), 24, Some(format!("10.79.{o}.255")))),
        "{addrs:?}"
    );
    assert!(addrs.contains(&("fd79::5".into(), 64, None)), "{addrs:?}");
    assert!(
        g.ip_json(&["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ifname"] != "tmp0"),
        "renamed"
    );

    let lo = &g.ip_json(&["addr", "show", "dev", "lo"])[0];
    assert!(
        lo["flags"].as_array().unwrap().contains(&"UP".into()),
        "{lo}"
    );
    assert!(
        lo["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "127.0.0.1"),
        "{lo}"
    );

    let v4 = g.ip_json(&["route", "show"]);
    let find = |routes: &Value, dst: &str| {
        routes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["dst"] == dst)
            .unwrap_or_else(|| panic!("no route to {dst} in {routes}"))
            .clone()
    };
    let default = find(&v4, "default");
    assert_eq!(
        (default["gateway"].as_str(), default["dev"].as_str()),
        (Some(gw.to_string().as_str()), Some("eth7"))
    );
    let link_route = find(&v4, "10.80.0.0/16");
    assert_eq!(link_route["scope"], "link");
    assert!(link_route.get("gateway").is_none(), "{link_route}");
    let via = find(&v4, "10.81.0.0/16");
    assert_eq!(
        (via["gateway"].as_str(), via["metric"].as_u64()),
        (Some("10.80.0.1"), Some(9))
    );
    let v6 = find(&g.ip_json(&["-6", "route", "show"]), "fd79:1::/64");
    assert_eq!(
        (v6["gateway"].as_str(), v6["metric"].as_u64()),
        (Some("fd79::1"), Some(50))
    );
}

#[test]
fn configure_errors_name_the_interface() {
    require_host!();
    let g = Netns::new("x");
    let missing = GuestNetwork {
        interfaces: vec![GuestInterface {
            name: "eth3".into(),
            mac: "02:00:0a:00:de:ad".into(),
            mtu: 1500,
            addresses: vec![],
        }],
        routes: vec![],
    };
    let started = Instant::now();
    let err = g
        .run_in(|| net::configure(&missing))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("eth3") && err.contains("02:00:0a:00:de:ad"),
        "{err}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "waited for the NIC"
    );

    let bad_mac = GuestNetwork {
        interfaces: vec![GuestInterface {
            mac: "not a mac".into(),
            ..missing.interfaces[0].clone()
        }],
        routes: vec![],
    };
    let err = g
        .run_in(|| net::configure(&bad_mac))
        .unwrap_err()
        .to_string();
    assert!(err.contains("eth3") && err.contains("not a mac"), "{err}");

    g.ip(&[
        "link",
        "add",
        "eth3",
        "address",
        "02:00:0a:00:de:ad",
        "type",
        "veth",
        "peer",
        "name",
        "p3",
    ]);
    let bad_route = GuestNetwork {
        interfaces: missing.interfaces.clone(),
        routes: vec![GuestRoute {
            destination: None,
            gateway: Some("10.1.1.1".parse().unwrap()),
            device: "eth9".into(),
            metric: None,
        }],
    };
    let err = g
        .run_in(|| net::configure(&bad_route))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("eth9") && err.contains("default via 10.1.1.1"),
        "{err}"
    );
}

#[test]
fn configure_swaps_names_between_nics() {
    require_host!();
    let g = Netns::new("s");
    let (a, b) = ("02:00:0a:53:00:0a", "02:00:0a:53:00:0b");
    g.ip(&[
        "link", "add", "eth0", "address", a, "type", "veth", "peer", "name", "eth1", "address", b,
    ]);
    let iface = |name: &str, mac: &str| GuestInterface {
        name: name.into(),
        mac: mac.into(),
        mtu: 1500,
        addresses: vec![],
    };
    let network = GuestNetwork {
        interfaces: vec![iface("eth1", a), iface("eth0", b)],
        routes: vec![],
    };
    g.run_in(|| net::configure(&network)).expect("configure");
    for (name, mac) in [("eth1", a), ("eth0", b)] {
        let link = &g.ip_json(&["link", "show", name])[0];
        assert_eq!(link["address"], mac, "{link}");
        assert!(
            link["flags"].as_array().unwrap().contains(&"UP".into()),
            "{link}"
        );
    }
}
