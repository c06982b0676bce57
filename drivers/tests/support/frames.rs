//! TCP and UDP frames over IPv4 and IPv6 as a peer would send them (built with smoltcp's
//! wire types, checksums computed), and the checksum arithmetic a device does.

use smoltcp::{phy::ChecksumCapabilities, wire::*};

/// The peer's (sender's) MAC address.
pub const PEER_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc];
/// The peer's and the driver's IPv4 addresses.
pub const PEER_V4: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
pub const OURS_V4: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
/// The peer's and the driver's IPv6 addresses (link-local).
pub const PEER_V6: Ipv6Address = Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
pub const OURS_V6: Ipv6Address = Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
/// Ethernet header length.
pub const ETH: usize = 14;

/// What a test frame carries above IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// A TCP segment from port 1000 to `port`, SYN or ACK with sequence number `seq`.
    Tcp { port: u16, syn: bool, seq: u32 },
    /// A UDP datagram from port 1000 to `port`.
    Udp { port: u16 },
}

/// Offset of the TCP or UDP header in a frame built by [`frame`].
pub fn l4_start(ipv6: bool) -> usize {
    ETH + if ipv6 { 40 } else { 20 }
}

/// Offset of the checksum field from the TCP or UDP header.
pub fn csum_offset(l4: L4) -> usize {
    match l4 {
        L4::Tcp { .. } => 16,
        L4::Udp { .. } => 6,
    }
}

/// An Ethernet frame from the peer to `dst_mac` carrying `l4` with `payload`, checksums
/// correct.
pub fn frame(dst_mac: [u8; 6], ipv6: bool, l4: L4, payload: &[u8]) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let (src, dst): (IpAddress, IpAddress) = if ipv6 {
        (PEER_V6.into(), OURS_V6.into())
    } else {
        (PEER_V4.into(), OURS_V4.into())
    };
    let (proto, l4_len) = match l4 {
        L4::Tcp { .. } => (IpProtocol::Tcp, 20 + payload.len()),
        L4::Udp { .. } => (IpProtocol::Udp, 8 + payload.len()),
    };
    let ip = IpRepr::new(src, dst, proto, l4_len, 64);
    let mut bytes = vec![0u8; ETH + ip.header_len() + l4_len];
    EthernetRepr {
        src_addr: EthernetAddress(PEER_MAC),
        dst_addr: EthernetAddress(dst_mac),
        ethertype: if ipv6 {
            EthernetProtocol::Ipv6
        } else {
            EthernetProtocol::Ipv4
        },
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut bytes[..]));
    ip.emit(&mut bytes[ETH..], &caps);
    let out = &mut bytes[ETH + ip.header_len()..];
    match l4 {
        L4::Tcp { port, syn, seq } => TcpRepr {
            src_port: 1000,
            dst_port: port,
            control: if syn {
                TcpControl::Syn
            } else {
                TcpControl::None
            },
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: None,
            window_len: 1024,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        }
        .emit(&mut TcpPacket::new_unchecked(out), &src, &dst, &caps),
        L4::Udp { port } => UdpRepr {
            src_port: 1000,
            dst_port: port,
        }
        .emit(
            &mut UdpPacket::new_unchecked(out),
            &src,
            &dst,
            payload.len(),
            |b| b.copy_from_slice(payload),
            &caps,
        ),
    }
    bytes
}

/// The 16-bit ones' complement sum of `data` (RFC 1071), big-endian words, folded.
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut sum: u64 = data
        .chunks(2)
        .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// What a device does for `NEEDS_CSUM`: the ones' complement of the sum from `start` (whose
/// field holds the pseudo-header sum) stored at `start + offset`, 0 sent as 0xffff.
pub fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) {
    let sum = match !ones_complement_sum(&frame[start..]) {
        0 => 0xffff,
        c => c,
    };
    frame[start + offset..start + offset + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Replaces a frame's TCP or UDP checksum by the partial one a device leaves with
/// `NEEDS_CSUM` (the pseudo-header sum, not complemented): returns (csum_start, csum_offset).
pub fn make_partial(frame: &mut [u8], ipv6: bool, l4: L4) -> (u16, u16) {
    let start = l4_start(ipv6);
    let at = start + csum_offset(l4);
    // The full sum over the segment with the field zeroed is pseudo + data; the field then
    // holds pseudo only: pseudo = !checksum - data.
    let checksum = u16::from_be_bytes([frame[at], frame[at + 1]]);
    frame[at..at + 2].copy_from_slice(&[0, 0]);
    let data = ones_complement_sum(&frame[start..]);
    let pseudo = ones_sub(!checksum, data);
    frame[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
    (start as u16, csum_offset(l4) as u16)
}

/// `a - b` in ones' complement arithmetic.
fn ones_sub(a: u16, b: u16) -> u16 {
    let sum = u32::from(a) + u32::from(!b);
    ((sum & 0xffff) + (sum >> 16)) as u16
}
