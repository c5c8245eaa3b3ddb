//! virtio-net on a host tap device.
//!
//! The tap is opened with `IFF_VNET_HDR` and a 12-byte header, the layout
//! of `virtio_net_hdr_v1`, so frames pass between the queues and the tap
//! with their header unchanged (no offloads are offered, so the header is
//! always "no checksum, no GSO"); on receive the device sets `num_buffers`
//! to 1. A frame waits in the tap while the guest has no receive buffer
//! (the I/O thread stops polling the tap until the driver adds some).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

use super::chain::Limits;
use super::mmio::read_config_bytes;
use super::{device_id, process_chains, Memory, VirtioDevice, VIRTIO_F_VERSION_1};

/// Feature bit: the device has a MAC address in its configuration.
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// Size of `virtio_net_hdr_v1`.
pub const HDR_LEN: usize = 12;
/// Largest frame with its header (64 KiB of payload, Ethernet and VLAN
/// headers).
pub const MAX_FRAME: usize = HDR_LEN + 65_550;
const QUEUE_SIZE: u16 = 256;
const RX: usize = 0;
const TX: usize = 1;

/// Errors opening a tap.
#[derive(Debug, thiserror::Error)]
#[error("tap {name}: {what}: {source}")]
pub struct TapError {
    /// Interface name.
    pub name: String,
    /// The step that failed.
    pub what: &'static str,
    /// The error.
    #[source]
    pub source: std::io::Error,
}

/// Opens (or creates, if it does not exist) tap `name`, non-blocking, with
/// 12-byte virtio-net headers.
pub fn open_tap(name: &str) -> Result<File, TapError> {
    let err = |what, source| TapError {
        name: name.to_string(),
        what,
        source,
    };
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(err(
            "invalid name",
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| err("opening /dev/net/tun", e))?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes an ifreq, which `ifr` is.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
        return Err(err("TUNSETIFF", std::io::Error::last_os_error()));
    }
    let hdr = HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr) } < 0 {
        return Err(err("TUNSETVNETHDRSZ", std::io::Error::last_os_error()));
    }
    Ok(file)
}

/// Parses `52:54:00:12:34:56`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| {
            (p.len() == 2)
                .then(|| u8::from_str_radix(p, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    parts.try_into().ok()
}

/// The network device.
pub struct Net {
    tap: File,
    mac: Option<[u8; 6]>,
    wake: EventFd,
    rx_starved: Arc<AtomicBool>,
}

impl Net {
    /// A NIC on `tap`; `wake` and `rx_starved` are shared with the host
    /// I/O thread ([`super::host_io`]).
    pub fn new(
        tap: File,
        mac: Option<[u8; 6]>,
        wake: EventFd,
        rx_starved: Arc<AtomicBool>,
    ) -> Self {
        Net {
            tap,
            mac,
            wake,
            rx_starved,
        }
    }

    fn receive(&mut self, queues: &mut [Queue], mem: &Memory) -> bool {
        let Some(q) = queues.get_mut(RX) else {
            return false;
        };
        let tap = &mut self.tap;
        let mut tap_empty = false;
        let mut frame = vec![0u8; MAX_FRAME];
        let used = process_chains(q, mem, Limits::default(), |c| {
            let n = match tap.read(&mut frame) {
                Ok(n) if n >= HDR_LEN => n,
                // A short read or an error: nothing to deliver now.
                _ => {
                    tap_empty = true;
                    return None;
                }
            };
            if c.writable_len() < n as u64 {
                // The driver's buffer cannot hold the frame: drop it (a
                // real NIC drops oversized frames too) and return the
                // buffer empty.
                return Some(0);
            }
            frame[10..12].copy_from_slice(&1u16.to_le_bytes()); // num_buffers
            Some(c.write_at(mem, 0, &frame[..n]) as u32)
        });
        // Ran out of receive buffers before the tap ran dry: stop polling
        // the tap until the driver adds some.
        self.rx_starved.store(!tap_empty, Ordering::Release);
        used
    }

    fn transmit(&mut self, queues: &mut [Queue], mem: &Memory) -> bool {
        let Some(q) = queues.get_mut(TX) else {
            return false;
        };
        let tap = &mut self.tap;
        let limits = Limits {
            max_descriptors: 64,
            max_bytes: MAX_FRAME as u64,
        };
        process_chains(q, mem, limits, |c| {
            let len = c.readable_len() as usize;
            if len > HDR_LEN {
                let mut buf = vec![0u8; len];
                let n = c.read_at(mem, 0, &mut buf);
                // A full tap queue drops the frame, as a congested link.
                let _ = tap.write(&buf[..n]);
            }
            Some(0)
        })
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        device_id::NET
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
            | if self.mac.is_some() {
                VIRTIO_NET_F_MAC
            } else {
                0
            }
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut cfg = [0u8; 6];
        if let Some(mac) = self.mac {
            cfg = mac;
        }
        read_config_bytes(&cfg, offset, data);
    }
    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &Memory) -> bool {
        match index {
            RX => {
                let used = self.receive(queues, mem);
                // New buffers: let the I/O thread poll the tap again.
                let _ = self.wake.write(1);
                used
            }
            TX => self.transmit(queues, mem),
            _ => false,
        }
    }
    fn poll_host(&mut self, queues: &mut [Queue], mem: &Memory) -> bool {
        self.receive(queues, mem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::chain::tests::{desc, link, test_memory, W};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("52:54:00:12:34:5f"),
            Some([0x52, 0x54, 0, 0x12, 0x34, 0x5f])
        );
        for bad in [
            "52:54:00:12:34",
            "52:54:00:12:34:5g",
            "525:4:00:12:34:56",
            "",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    const ETHERTYPE: u16 = 0x88b5; // IEEE local experimental

    fn ifindex(name: &str) -> i32 {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: a valid NUL-terminated name.
        unsafe { libc::if_nametoindex(c.as_ptr()) as i32 }
    }

    fn set_up(name: &str) {
        // SAFETY: plain socket, ioctl on an ifreq, close.
        unsafe {
            let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
            assert!(s >= 0);
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (d, b) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
                *d = b as libc::c_char;
            }
            ifr.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_NOARP) as libc::c_short;
            assert_eq!(
                libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr),
                0,
                "{}",
                std::io::Error::last_os_error()
            );
            libc::close(s);
        }
    }

    /// A raw packet socket on `ifindex` for our ethertype.
    fn packet_socket(index: i32) -> i32 {
        // SAFETY: socket and bind with a sockaddr_ll of the right size.
        unsafe {
            let s = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                (ETHERTYPE).to_be() as i32,
            );
            assert!(s >= 0);
            let mut sa: libc::sockaddr_ll = std::mem::zeroed();
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_protocol = ETHERTYPE.to_be();
            sa.sll_ifindex = index;
            let r = libc::bind(
                s,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(r, 0);
            let tv = libc::timeval {
                tv_sec: 5,
                tv_usec: 0,
            };
            libc::setsockopt(
                s,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            s
        }
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        f.extend_from_slice(&ETHERTYPE.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_cross_a_real_tap_both_ways() {
        // In a network namespace of this test's own (unshare on a thread
        // changes only that thread's namespace); the tap is not persistent
        // and goes away with its descriptor and the namespace.
        std::thread::spawn(|| {
            // SAFETY: unshare of the calling thread's network namespace.
            let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
            let tap = open_tap("vsktest0").unwrap();
            set_up("vsktest0");
            let sock = packet_socket(ifindex("vsktest0"));
            let wake = EventFd::new(libc::EFD_NONBLOCK).unwrap();
            let starved = Arc::new(AtomicBool::new(false));
            let mut net = Net::new(
                tap,
                parse_mac("52:54:00:12:34:56"),
                wake.try_clone().unwrap(),
                starved.clone(),
            );
            assert_ne!(net.features() & VIRTIO_NET_F_MAC, 0);
            let mut mac = [0u8; 6];
            net.read_config(0, &mut mac);
            assert_eq!(mac, [0x52, 0x54, 0, 0x12, 0x34, 0x56]);

            let mem = test_memory();
            let rxq = MockSplitQueue::create(&mem, GuestAddress(0x1_0000), 16);
            let txq = MockSplitQueue::create(&mem, GuestAddress(0x2_0000), 16);
            let mut queues: Vec<Queue> =
                vec![rxq.create_queue().unwrap(), txq.create_queue().unwrap()];

            // Guest -> tap: header and frame in two descriptors.
            let out = frame(b"vessel-tx");
            mem.write_slice(&[0u8; HDR_LEN], GuestAddress(0x8_0000))
                .unwrap();
            mem.write_slice(&out, GuestAddress(0x8_1000)).unwrap();
            txq.add_desc_chains(
                &link(
                    &[
                        desc(0x8_0000, HDR_LEN as u32, 0),
                        desc(0x8_1000, out.len() as u32, 0),
                    ],
                    0,
                ),
                0,
            )
            .unwrap();
            assert!(net.process_queue(TX, &mut queues, &mem));
            let mut buf = [0u8; 2048];
            // SAFETY: reading into a local buffer.
            let n = unsafe { libc::recv(sock, buf.as_mut_ptr().cast(), buf.len(), 0) };
            assert_eq!(n as usize, out.len(), "{}", std::io::Error::last_os_error());
            assert_eq!(&buf[..out.len()], &out[..]);

            // Tap -> guest: a frame sent on the interface reaches an rx
            // buffer with its header (num_buffers = 1). Other frames the
            // kernel may send on a new link are skipped.
            let back = frame(b"vessel-rx");
            // SAFETY: sockaddr_ll is plain data; all-zero is valid.
            let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_ifindex = ifindex("vsktest0");
            sa.sll_halen = 6;
            // SAFETY: sending a local buffer to a sockaddr_ll of the right size.
            let sent = unsafe {
                libc::sendto(
                    sock,
                    back.as_ptr().cast(),
                    back.len(),
                    0,
                    (&sa as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(sent as usize, back.len());
            let chains: Vec<_> = (0..8u64)
                .map(|i| desc(0x9_0000 + i * 0x1000, 2048, W))
                .collect();
            for (i, d) in chains.iter().enumerate() {
                rxq.add_desc_chains(std::slice::from_ref(d), i as u16)
                    .unwrap();
            }
            assert!(net.process_queue(RX, &mut queues, &mem));
            assert!(wake.read().is_ok(), "I/O thread woken for the new buffers");
            let used = rxq.used().idx().load();
            let found = (0..used).any(|i| {
                let e = rxq.used().ring().ref_at(i as usize).unwrap().load();
                let mut got = vec![0u8; e.len() as usize];
                mem.read_slice(
                    &mut got,
                    GuestAddress(0x9_0000 + u64::from(e.id()) * 0x1000),
                )
                .unwrap();
                got.len() == HDR_LEN + back.len()
                    && got[HDR_LEN..] == back[..]
                    && got[10..12] == [1, 0]
            });
            assert!(
                found,
                "the frame reached the guest ({used} frames delivered)"
            );
            assert!(!starved.load(Ordering::Acquire), "buffers remain");
            // SAFETY: closing our socket.
            unsafe { libc::close(sock) };
        })
        .join()
        .unwrap();
    }
}
