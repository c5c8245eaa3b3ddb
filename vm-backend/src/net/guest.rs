//! The guest side: configuring the NICs the VMM gave the guest.

use std::thread;
use std::time::{Duration, Instant};

use netlink_packet_route::link::LinkFlags;

use super::host::format_mac;
use super::rtnl::{Link, Rtnl};
use super::{GuestInterface, GuestNetwork};
use crate::error::IoContext;
use crate::{Error, Result};

/// How long to wait for a NIC to appear: virtio_net probes its devices
/// asynchronously after the module is loaded.
const NIC_WAIT: Duration = Duration::from_secs(5);

/// Configures the network of the calling thread's namespace (the guest's
/// root namespace when the agent runs it as PID 1): loopback up, then for
/// each interface the link carrying its MAC (waited for up to 5 s) is
/// renamed to its name, given its MTU and addresses and set up; then the
/// routes are added, those on a link before those through a gateway.
/// Errors name the interface or route.
pub fn configure(net: &GuestNetwork) -> Result<()> {
    let mut rtnl = Rtnl::open().ctx(|| "guest network: opening rtnetlink".to_string())?;
    let links = rtnl
        .links()
        .ctx(|| "guest network: listing links".to_string())?;
    for lo in links
        .iter()
        .filter(|l| l.flags.contains(LinkFlags::Loopback))
    {
        rtnl.set_link(lo.index, Some(true), None, None)
            .ctx(|| format!("guest network: setting {} up", lo.name))?;
    }

    // Find every NIC first: a rename may need a name another NIC holds.
    let mut found = Vec::new();
    for iface in &net.interfaces {
        let mac = parse_mac(&iface.mac).ok_or_else(|| {
            Error::InvalidConfig(format!(
                "guest network: interface {}: invalid MAC address {:?}",
                iface.name, iface.mac
            ))
        })?;
        found.push((iface, wait_for_mac(&mut rtnl, iface, mac)?));
    }
    // Renames go through a temporary name so that swapping names between
    // two NICs (eth0 <-> eth1) works.
    for (i, (iface, link)) in found.iter().enumerate() {
        if link.name != iface.name {
            let temporary = format!("vessel-tmp{i}");
            let context = || {
                format!(
                    "guest network: interface {}: renaming {}",
                    iface.name, link.name
                )
            };
            // The kernel applies a new name before new flags: down first.
            rtnl.set_link(link.index, Some(false), None, None)
                .ctx(context)?;
            rtnl.set_link(link.index, None, None, Some(&temporary))
                .ctx(context)?;
        }
    }
    for (iface, link) in &found {
        let context = |what: &str| format!("guest network: interface {}: {what}", iface.name);
        if link.name != iface.name {
            rtnl.set_link(link.index, None, None, Some(&iface.name))
                .ctx(|| context(&format!("renaming {}", link.name)))?;
        }
        rtnl.set_link(link.index, None, Some(iface.mtu), None)
            .ctx(|| context(&format!("setting MTU {}", iface.mtu)))?;
        for &(ip, prefix_len) in &iface.addresses {
            rtnl.add_address(link.index, ip, prefix_len)
                .ctx(|| context(&format!("adding address {ip}/{prefix_len}")))?;
        }
        rtnl.set_link(link.index, Some(true), None, None)
            .ctx(|| context("setting it up"))?;
    }

    // Link routes first: a gateway must be reachable when its route is
    // added.
    let mut routes: Vec<_> = net.routes.iter().collect();
    routes.sort_by_key(|r| r.gateway.is_some());
    for route in routes {
        let (_, link) = found
            .iter()
            .find(|(iface, _)| iface.name == route.device)
            .ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "guest network: route {}: device {} is not one of the interfaces",
                    describe(route),
                    route.device
                ))
            })?;
        rtnl.add_route(route.destination, route.gateway, link.index, route.metric)
            .ctx(|| format!("guest network: adding route {}", describe(route)))?;
    }
    Ok(())
}

/// Polls the links until one carries `mac`.
fn wait_for_mac(rtnl: &mut Rtnl, iface: &GuestInterface, mac: [u8; 6]) -> Result<Link> {
    let start = Instant::now();
    loop {
        let links = rtnl
            .links()
            .ctx(|| format!("guest network: interface {}: listing links", iface.name))?;
        if let Some(link) = links.into_iter().find(|l| l.mac == Some(mac)) {
            return Ok(link);
        }
        if start.elapsed() >= NIC_WAIT {
            return Err(Error::Timeout {
                what: format!(
                    "guest network: interface {}: a NIC with MAC {}",
                    iface.name,
                    format_mac(&mac)
                ),
                seconds: start.elapsed().as_secs_f64(),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (either case).
pub(crate) fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// `10.0.0.0/24 via 10.0.0.1 dev eth0`, as `ip route` prints it.
fn describe(route: &super::GuestRoute) -> String {
    let mut text = match route.destination {
        Some((ip, len)) => format!("{ip}/{len}"),
        None => "default".to_string(),
    };
    if let Some(gw) = route.gateway {
        text += &format!(" via {gw}");
    }
    text + &format!(" dev {}", route.device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::GuestRoute;

    #[test]
    fn parse_mac_round_trips() {
        assert_eq!(
            parse_mac("02:00:AB:0c:ff:01"),
            Some([0x02, 0, 0xab, 0x0c, 0xff, 1])
        );
        assert_eq!(
            format_mac(&parse_mac("02:00:ab:0c:ff:01").unwrap()),
            "02:00:ab:0c:ff:01"
        );
        for bad in [
            "",
            "02:00:ab:0c:ff",
            "02:00:ab:0c:ff:01:02",
            "2:00:ab:0c:ff:01",
            "0g:00:ab:0c:ff:01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn routes_are_described_like_ip_route() {
        let route = GuestRoute {
            destination: None,
            gateway: Some("10.0.0.1".parse().unwrap()),
            device: "eth0".into(),
            metric: None,
        };
        assert_eq!(describe(&route), "default via 10.0.0.1 dev eth0");
        let route = GuestRoute {
            destination: Some(("fd00::".parse().unwrap(), 64)),
            gateway: None,
            device: "eth1".into(),
            metric: Some(5),
        };
        assert_eq!(describe(&route), "fd00::/64 dev eth1");
    }
}
