//! Persistent tap devices for the VMM, and their names.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// Longest interface name the kernel accepts (`IFNAMSIZ` - 1).
pub(crate) const MAX_IFNAME: usize = 15;

/// Prefix of the taps vessel creates.
pub(crate) const TAP_PREFIX: &str = "vt-";

/// The tap name for interface `ifname` (index `ifindex`): `vt-<ifname>`
/// when that fits in 15 bytes and `taken` does not refuse it, else
/// `vt-<ifindex>` (unique in the namespace). `None` if both are taken.
pub(crate) fn tap_name(ifname: &str, ifindex: u32, taken: impl Fn(&str) -> bool) -> Option<String> {
    [
        format!("{TAP_PREFIX}{ifname}"),
        format!("{TAP_PREFIX}{ifindex}"),
    ]
    .into_iter()
    .find(|name| name.len() <= MAX_IFNAME && !taken(name))
}

/// Creates the persistent tap `name` (`IFF_TAP | IFF_NO_PI`) in the calling
/// thread's network namespace. It outlives the file descriptor, so the VMM
/// later attaches to it by name (QEMU's `-netdev tap,ifname=`).
pub(crate) fn create_persistent_tap(name: &str) -> io::Result<()> {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: `tun` is an open /dev/net/tun descriptor and `req` a valid
    // ifreq that lives across the call; TUNSETIFF reads and writes it.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: TUNSETPERSIST takes an integer argument, no pointer.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An `ifreq` with `ifr_name` set and everything else zero.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() > MAX_IFNAME || name.contains(['\0', '/']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ));
    }
    // SAFETY: ifreq is plain old data (a name array and a union of
    // integers and pointers); all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_name_prefers_the_interface_name() {
        assert_eq!(tap_name("eth0", 2, |_| false).as_deref(), Some("vt-eth0"));
        assert_eq!(
            tap_name("abcdefghijkl", 2, |_| false).as_deref(),
            Some("vt-abcdefghijkl")
        );
    }

    #[test]
    fn tap_name_falls_back_to_the_index() {
        // 13 bytes do not fit after the prefix.
        assert_eq!(
            tap_name("abcdefghijklm", 42, |_| false).as_deref(),
            Some("vt-42")
        );
        assert_eq!(
            tap_name("eth0", 7, |n| n == "vt-eth0").as_deref(),
            Some("vt-7")
        );
        assert_eq!(
            tap_name("eth0", u32::MAX, |n| n == "vt-eth0").as_deref(),
            Some("vt-4294967295")
        );
        assert_eq!(tap_name("eth0", 7, |_| true), None);
    }

    #[test]
    fn ifreq_checks_the_name() {
        assert!(ifreq("").is_err());
        assert!(ifreq("sixteen-bytes-xx").is_err());
        assert!(ifreq("a/b").is_err());
        let req = ifreq("vt-eth0").unwrap();
        let name: Vec<u8> = req.ifr_name.iter().map(|&c| c as u8).collect();
        assert_eq!(&name[..8], b"vt-eth0\0");
    }
}
