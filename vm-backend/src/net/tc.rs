//! The traffic-control messages that join an interface to its tap.
//!
//! Per direction: an ingress qdisc on the receiving device and a u32 filter
//! matching every frame (one key with mask 0) whose only action is
//! `mirred egress redirect` to the other device, the netlink form of
//! `tc filter add dev A ingress prio 1 protocol all u32 match u32 0 0
//! action mirred egress redirect dev B`.

use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionMirrorOption, TcActionOption, TcActionType, TcAttribute,
    TcFilterU32Option, TcHandle, TcMessage, TcMirror, TcMirrorActionType, TcOption, TcU32Key,
    TcU32Selector, TcU32SelectorFlags,
};

/// The ingress qdisc's handle, `ffff:`.
const INGRESS_HANDLE: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};

/// Parent of ingress filters, `ffff:fff2`: accepted by both the `ingress`
/// and the `clsact` qdisc, so an existing clsact is used as it is.
const INGRESS_FILTER_PARENT: TcHandle = TcHandle {
    major: 0xffff,
    minor: TcHandle::MIN_INGRESS,
};

/// Priority of vessel's filter. 1 runs it before any other; [`detach`]
/// removes the filters of this priority.
///
/// [`detach`]: super::detach
pub(crate) const FILTER_PRIO: u16 = 1;

/// `ETH_P_ALL`: the filter sees every protocol.
const ETH_P_ALL: u16 = 0x0003;

/// `tcm_info` of a filter: priority in the upper half, protocol (network
/// byte order) in the lower.
fn filter_info(prio: u16) -> u32 {
    (u32::from(prio) << 16) | u32::from(ETH_P_ALL.to_be())
}

/// An `ingress` qdisc on link `index`.
pub(crate) fn ingress_qdisc(index: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.handle = INGRESS_HANDLE;
    msg.header.parent = TcHandle::INGRESS;
    msg.attributes
        .push(TcAttribute::Kind("ingress".to_string()));
    msg
}

/// The filter redirecting every frame received by link `from` out of link
/// `to`.
pub(crate) fn redirect_filter(from: u32, to: u32) -> TcMessage {
    let mut key = TcU32Key::default();
    key.mask = 0;
    key.val = 0;
    let mut selector = TcU32Selector::default();
    selector.flags = TcU32SelectorFlags::Terminal;
    selector.nkeys = 1;
    selector.keys = vec![key];

    let mut mirred = TcMirror::default();
    // The frame is taken (stolen): the receiving device's stack never
    // sees it.
    mirred.generic.action = TcActionType::Stolen;
    mirred.eaction = TcMirrorActionType::EgressRedir;
    mirred.ifindex = to;
    let mut action = TcAction::default();
    action.attributes = vec![
        TcActionAttribute::Kind("mirred".to_string()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirred,
        ))]),
    ];

    let mut msg = TcMessage::with_index(from as i32);
    msg.header.parent = INGRESS_FILTER_PARENT;
    msg.header.info = filter_info(FILTER_PRIO);
    msg.attributes = vec![
        TcAttribute::Kind("u32".to_string()),
        TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::Selector(selector)),
            TcOption::U32(TcFilterU32Option::Action(vec![action])),
        ]),
    ];
    msg
}

/// What deletes vessel's filters on link `index`: every filter of
/// [`FILTER_PRIO`] on its ingress hook.
pub(crate) fn redirect_filter_delete(index: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = INGRESS_FILTER_PARENT;
    msg.header.info = filter_info(FILTER_PRIO);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, Parseable};

    fn round_trip(msg: &TcMessage) -> Vec<u8> {
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        assert_eq!(&TcMessage::parse(&buf[..]).unwrap(), msg);
        buf
    }

    #[test]
    fn filter_info_holds_priority_and_protocol_all() {
        // tc prints it as "pref 1 protocol all".
        assert_eq!(filter_info(1), 0x0001_0300);
        assert_eq!(filter_info(49152), 0xc000_0300);
    }

    #[test]
    fn ingress_qdisc_message() {
        let buf = round_trip(&ingress_qdisc(7));
        // tcmsg: family, pad, ifindex 7, handle ffff:0000, parent ffff:fff1
        assert_eq!(&buf[4..8], &7i32.to_ne_bytes());
        assert_eq!(&buf[8..12], &0xffff_0000u32.to_ne_bytes());
        assert_eq!(&buf[12..16], &0xffff_fff1u32.to_ne_bytes());
        // TCA_KIND "ingress\0"
        assert_eq!(&buf[20..24], &[12, 0, 1, 0]);
        assert_eq!(&buf[24..32], b"ingress\0");
    }

    #[test]
    fn redirect_filter_message() {
        let msg = redirect_filter(3, 9);
        let buf = round_trip(&msg);
        assert_eq!(&buf[4..8], &3i32.to_ne_bytes());
        assert_eq!(&buf[12..16], &0xffff_fff2u32.to_ne_bytes());
        assert_eq!(&buf[16..20], &0x0001_0300u32.to_ne_bytes());
        // TCA_KIND "u32\0"
        assert_eq!(&buf[20..28], &[8, 0, 1, 0, b'u', b'3', b'2', 0]);
        // tc_mirred: index, capab, action (TC_ACT_STOLEN = 4), refcnt,
        // bindcnt, eaction (TCA_EGRESS_REDIR = 1), ifindex 9.
        let mut parms = Vec::new();
        for v in [0i32, 0, 4, 0, 0, 1, 9] {
            parms.extend_from_slice(&v.to_ne_bytes());
        }
        assert!(
            buf.windows(parms.len()).any(|w| w == parms),
            "tc_mirred not found in {buf:?}"
        );
        // TCA_U32_SEL (36 bytes, type 5): tc_u32_sel with flags TERMINAL,
        // nkeys 1 and the rest zero, then one tc_u32_key of mask 0 and
        // value 0 (matches everything).
        let mut sel = vec![36, 0, 5, 0, 1, 0, 1, 0];
        sel.extend_from_slice(&[0; 12 + 16]);
        assert!(
            buf.windows(sel.len()).any(|w| w == sel),
            "u32 selector not found in {buf:?}"
        );
    }

    #[test]
    fn delete_message_names_priority_only() {
        let msg = redirect_filter_delete(5);
        let buf = round_trip(&msg);
        assert_eq!(buf.len(), 20, "no attributes: every filter of the priority");
        assert_eq!(&buf[16..20], &0x0001_0300u32.to_ne_bytes());
    }
}
