//! A small blocking rtnetlink client: one request, its replies or its ack.
//!
//! rtnetlink (the crate) is async on tokio; the guest side runs in the
//! static agent as PID 1, so both sides use this synchronous path on a
//! netlink-sys socket instead.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{
    ErrorMessage, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_ACK,
    NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute, LinkFlags, LinkLayerType, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::tc::TcMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// A link as listed by the kernel.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub flags: LinkFlags,
    pub link_type: LinkLayerType,
    /// `IFLA_INFO_KIND`, e.g. `veth` or `tun`.
    pub kind: Option<String>,
}

/// An address as listed by the kernel.
#[derive(Debug, Clone)]
pub(crate) struct Address {
    pub index: u32,
    pub ip: IpAddr,
    pub prefix_len: u8,
    pub scope: AddressScope,
}

/// A route of the main table as listed by the kernel.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub destination: Option<(IpAddr, u8)>,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub metric: Option<u32>,
    pub protocol: RouteProtocol,
    pub kind: RouteType,
}

/// An open NETLINK_ROUTE socket in the namespace of the thread that
/// opened it.
pub(crate) struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Errors carry the kernel's explanation (extack) where it has one;
        // the answer is still a plain errno, so this is best effort.
        let _ = socket.set_ext_ack(true);
        Ok(Rtnl { socket, seq: 0 })
    }

    /// Sends one request and returns what the kernel answered: the messages
    /// of a dump, or nothing once a request is acknowledged. A negative
    /// acknowledgement becomes the matching `io::Error`.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut rest = &data[..];
            while !rest.is_empty() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = (reply.header.length as usize + 3) & !3;
                rest = &rest[len.clamp(1, rest.len())..];
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) => match e.code {
                        Some(_) => return Err(kernel_error(reply.header.flags, &e)),
                        // A dump ends with Done; a request with its ack.
                        None if !dump => return Ok(replies),
                        None => {}
                    },
                    _ => {}
                }
            }
        }
    }

    /// Lists the links.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_from(l)),
                _ => None,
            })
            .collect())
    }

    /// Lists the addresses of every link.
    pub fn addresses(&mut self) -> io::Result<Vec<Address>> {
        let replies = self.request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => address_from(a),
                _ => None,
            })
            .collect())
    }

    /// Lists the IPv4 and IPv6 routes of the main table.
    pub fn main_routes(&mut self) -> io::Result<Vec<Route>> {
        let replies = self.request(
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => route_from(r),
                _ => None,
            })
            .collect())
    }

    /// Changes a link: its up flag, MTU and name, where given.
    pub fn set_link(
        &mut self,
        index: u32,
        up: Option<bool>,
        mtu: Option<u32>,
        name: Option<&str>,
    ) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if let Some(up) = up {
            msg.header.change_mask = LinkFlags::Up;
            if up {
                msg.header.flags = LinkFlags::Up;
            }
        }
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(name) = name {
            msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        }
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// Moves link `index` into the network namespace open at `netns`,
    /// renamed to `name` there if given (the kernel applies the move,
    /// then the name, in one request).
    pub fn set_link_netns(
        &mut self,
        index: u32,
        netns: std::os::fd::RawFd,
        name: Option<&str>,
    ) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::NetNsFd(netns));
        if let Some(name) = name {
            msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        }
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// Stops the kernel from giving link `index` IPv6 addresses of its own
    /// (address generation mode `none`), so that it sends no router
    /// solicitations or duplicate address probes of its own.
    pub fn no_ipv6_addresses(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
            )]));
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// Deletes a link.
    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(msg), 0).map(drop)
    }

    /// Adds an address to a link. IPv6 addresses skip duplicate address
    /// detection: the host side already owns them, and a tentative
    /// address cannot be used for the first seconds.
    pub fn add_address(&mut self, index: u32, ip: IpAddr, prefix_len: u8) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.prefix_len = prefix_len;
        msg.header.scope = AddressScope::Universe;
        match ip {
            IpAddr::V4(v4) => {
                msg.header.family = AddressFamily::Inet;
                msg.attributes.push(AddressAttribute::Local(ip));
                msg.attributes.push(AddressAttribute::Address(ip));
                if let Some(brd) = ipv4_broadcast(v4, prefix_len) {
                    msg.attributes.push(AddressAttribute::Broadcast(brd));
                }
            }
            IpAddr::V6(_) => {
                msg.header.family = AddressFamily::Inet6;
                msg.attributes.push(AddressAttribute::Address(ip));
                msg.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
        }
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Adds a route of the main table through link `oif`.
    pub fn add_route(
        &mut self,
        destination: Option<(IpAddr, u8)>,
        gateway: Option<IpAddr>,
        oif: u32,
        metric: Option<u32>,
    ) -> io::Result<()> {
        let family_of = |ip: &IpAddr| match ip {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        let family = match (destination, gateway) {
            (Some((dst, _)), _) => family_of(&dst),
            (None, Some(gw)) => family_of(&gw),
            (None, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a default route needs a gateway",
                ))
            }
        };
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.kind = RouteType::Unicast;
        msg.header.scope = if gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if let Some((dst, len)) = destination {
            msg.header.destination_prefix_length = len;
            msg.attributes
                .push(RouteAttribute::Destination(route_address(dst)));
        }
        if let Some(gw) = gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(route_address(gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(oif));
        if let Some(metric) = metric {
            msg.attributes.push(RouteAttribute::Priority(metric));
        }
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Adds a qdisc (`NLM_F_EXCL`: an existing one gives `EEXIST`).
    pub fn add_qdisc(&mut self, msg: TcMessage) -> io::Result<()> {
        self.request(
            RouteNetlinkMessage::NewQueueDiscipline(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Deletes a qdisc.
    pub fn delete_qdisc(&mut self, msg: TcMessage) -> io::Result<()> {
        self.request(RouteNetlinkMessage::DelQueueDiscipline(msg), 0)
            .map(drop)
    }

    /// Adds a filter.
    pub fn add_filter(&mut self, msg: TcMessage) -> io::Result<()> {
        self.request(
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Deletes a filter.
    pub fn delete_filter(&mut self, msg: TcMessage) -> io::Result<()> {
        self.request(RouteNetlinkMessage::DelTrafficFilter(msg), 0)
            .map(drop)
    }
}

/// An error the kernel answered a request with, and the explanation it
/// gave (extended ack), e.g. "TC classifier not found".
#[derive(Debug)]
pub(crate) struct KernelError {
    errno: i32,
    message: String,
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let os = io::Error::from_raw_os_error(self.errno);
        write!(f, "{}: {os}", self.message)
    }
}

impl std::error::Error for KernelError {}

/// The errno of an error from [`Rtnl`] (or any `io::Error` from the OS).
pub(crate) fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error()
        .or_else(|| e.get_ref()?.downcast_ref::<KernelError>().map(|k| k.errno))
}

fn kernel_error(flags: u16, e: &ErrorMessage) -> io::Error {
    let errno = e.raw_code().abs();
    match extack_message(flags, &e.header) {
        Some(message) => io::Error::new(
            io::Error::from_raw_os_error(errno).kind(),
            KernelError { errno, message },
        ),
        None => io::Error::from_raw_os_error(errno),
    }
}

/// `NLMSGERR_ATTR_MSG`: the extended ack's text.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// The text of an extended ack. `body` is what follows the error code: the
/// original request (only its header when capped), then attributes.
fn extack_message(flags: u16, body: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let request_len = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        u32::from_ne_bytes(body.get(..4)?.try_into().ok()?) as usize
    };
    let attributes = body.get((request_len + 3) & !3..)?;
    for nla in NlasIterator::new(attributes) {
        let nla = nla.ok()?;
        if nla.kind() == NLMSGERR_ATTR_MSG {
            let text = nla.value().split(|&b| b == 0).next()?;
            return Some(String::from_utf8_lossy(text).into_owned());
        }
    }
    None
}

/// The IPv4 broadcast address of a network, as `ip addr add ... brd +`
/// computes it; none for /31 and /32 (point to point and host routes).
pub(crate) fn ipv4_broadcast(ip: std::net::Ipv4Addr, prefix_len: u8) -> Option<std::net::Ipv4Addr> {
    if prefix_len >= 31 {
        return None;
    }
    let host_mask = u32::MAX >> prefix_len;
    Some((u32::from(ip) | host_mask).into())
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

fn ip_of(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn link_from(msg: LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        flags: msg.header.flags,
        link_type: msg.header.link_layer_type,
        kind: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name = name,
            LinkAttribute::Mtu(mtu) => link.mtu = mtu,
            LinkAttribute::Address(bytes) => link.mac = bytes.try_into().ok(),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let netlink_packet_route::link::LinkInfo::Kind(kind) = info {
                        link.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn address_from(msg: AddressMessage) -> Option<Address> {
    let mut local = None;
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's
    // on point-to-point links, and the only one IPv6 sends.
    Some(Address {
        index: msg.header.index,
        ip: local.or(address)?,
        prefix_len: msg.header.prefix_len,
        scope: msg.header.scope,
    })
}

fn route_from(msg: RouteMessage) -> Option<Route> {
    let mut table = u32::from(msg.header.table);
    let mut destination = None;
    let mut gateway = None;
    let mut oif = None;
    let mut metric = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => destination = ip_of(a),
            RouteAttribute::Gateway(a) => gateway = ip_of(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = Some(*p),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    if !matches!(
        msg.header.address_family,
        AddressFamily::Inet | AddressFamily::Inet6
    ) {
        return None;
    }
    let prefix = msg.header.destination_prefix_length;
    let destination = match destination {
        Some(ip) if prefix > 0 => Some((ip, prefix)),
        _ => None,
    };
    Some(Route {
        destination,
        gateway,
        oif,
        metric,
        protocol: msg.header.protocol,
        kind: msg.header.kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn extended_ack_text_is_read() {
        // A capped error: the request's 16-byte header, then
        // NLMSGERR_ATTR_MSG "TC classifier not found\0" (24 bytes).
        let mut body = vec![0u8; 16];
        body[..4].copy_from_slice(&60u32.to_ne_bytes());
        body.extend_from_slice(&[28, 0, 1, 0]);
        body.extend_from_slice(b"TC classifier not found\0");
        let flags = NLM_F_ACK_TLVS | NLM_F_CAPPED;
        assert_eq!(
            extack_message(flags, &body).as_deref(),
            Some("TC classifier not found")
        );
        assert_eq!(extack_message(NLM_F_CAPPED, &body), None);

        let mut e = ErrorMessage::default();
        e.code = std::num::NonZeroI32::new(-libc::ENOENT);
        e.header = body;
        let err = kernel_error(flags, &e);
        assert_eq!(errno(&err), Some(libc::ENOENT));
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string().starts_with("TC classifier not found: "),
            "{err}"
        );
        assert_eq!(errno(&kernel_error(0, &e)), Some(libc::ENOENT));
    }

    #[test]
    fn broadcast_is_the_network_with_all_host_bits() {
        let ip = Ipv4Addr::new(10, 1, 2, 3);
        assert_eq!(ipv4_broadcast(ip, 24), Some(Ipv4Addr::new(10, 1, 2, 255)));
        assert_eq!(
            ipv4_broadcast(ip, 8),
            Some(Ipv4Addr::new(10, 255, 255, 255))
        );
        assert_eq!(ipv4_broadcast(ip, 0), Some(Ipv4Addr::BROADCAST));
        assert_eq!(ipv4_broadcast(ip, 31), None);
        assert_eq!(ipv4_broadcast(ip, 32), None);
    }
}
