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

/// `frame` (IPv6, as built by [`frame`]) with an extension header of type `kind` (0
/// hop-by-hop, 60 destination options: RFC 8200 §4.3, §4.6) inserted after the fixed header:
/// `(len8 + 1) * 8` bytes, a PadN option filling them, the payload length grown to match. The
/// TCP or UDP checksum stays right: the pseudo-header does not cover extension headers.
pub fn with_ext_header(frame: &[u8], kind: u8, len8: u8) -> Vec<u8> {
    let mut f = frame.to_vec();
    let len = (usize::from(len8) + 1) * 8;
    let mut ext = vec![0u8; len];
    ext[..4].copy_from_slice(&[f[ETH + 6], len8, 1, (len - 4) as u8]);
    f.splice(ETH + 40..ETH + 40, ext.iter().copied());
    f[ETH + 6] = kind;
    let payload = u16::from_be_bytes([f[ETH + 4], f[ETH + 5]]) + len as u16;
    f[ETH + 4..ETH + 6].copy_from_slice(&payload.to_be_bytes());
    f
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

/// The upper-layer packet an Ethernet frame carries as smoltcp 0.14 (this workspace's
/// features) would see it: (IPv6, protocol, offset, length). IPv4: version 4, header of 20
/// bytes or more, total length from the header to the frame's end at most, no fragment. IPv6:
/// version 6, payload inside the frame, up to four hop-by-hop or destination-options headers
/// walked. `None` otherwise. (The tests' own reading, written apart from the driver's.)
pub fn ip_payload(frame: &[u8]) -> Option<(bool, u8, usize, usize)> {
    let word = |at: usize| -> Option<usize> {
        Some(usize::from(*frame.get(at)?) << 8 | usize::from(*frame.get(at + 1)?))
    };
    match word(12)? {
        0x0800 => {
            let vhl = *frame.get(ETH)?;
            let (version, header) = (vhl >> 4, usize::from(vhl & 15) * 4);
            let total = word(ETH + 2)?;
            let fragmented = word(ETH + 6)? & 0x3fff != 0;
            let fits = header >= 20 && total >= header && ETH + total <= frame.len();
            (version == 4 && fits && !fragmented)
                .then(|| (false, frame[ETH + 9], ETH + header, total - header))
        }
        0x86dd => {
            if frame.len() < ETH + 40 || frame[ETH] >> 4 != 6 {
                return None;
            }
            let end = ETH + 40 + word(ETH + 4)?;
            if end > frame.len() {
                return None;
            }
            let (mut next, mut at) = (frame[ETH + 6], ETH + 40);
            for _ in 0..4 {
                if next != 0 && next != 60 {
                    break;
                }
                if at + 2 > end {
                    return None;
                }
                next = frame[at];
                at += 8 + usize::from(frame[at + 1]) * 8;
                if at > end {
                    return None;
                }
            }
            Some((true, next, at, end - at))
        }
        _ => None,
    }
}

/// Whether a received frame's TCP or UDP checksum is right (`Some(true)`; UDP over IPv4 sent
/// without one counts as right), wrong (`Some(false)`), or the frame carries no TCP or UDP
/// packet smoltcp would take (`None`; a UDP length outside 8..=the IP payload included).
pub fn checksum_verdict(frame: &[u8]) -> Option<bool> {
    let (ipv6, proto, start, len) = ip_payload(frame)?;
    let packet = &frame[start..start + len];
    let packet = match proto {
        6 => packet,
        17 => {
            let udp_len = usize::from(u16::from_be_bytes([*packet.get(4)?, *packet.get(5)?]));
            if udp_len < 8 || udp_len > len {
                return None;
            }
            if !ipv6 && packet[6..8] == [0, 0] {
                return Some(true);
            }
            &packet[..udp_len]
        }
        _ => return None,
    };
    let addresses = if ipv6 {
        &frame[ETH + 8..ETH + 40]
    } else {
        &frame[ETH + 12..ETH + 20]
    };
    let mut pseudo = addresses.to_vec();
    pseudo.extend_from_slice(&(packet.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, proto]);
    let a = u32::from(ones_complement_sum(&pseudo));
    let b = u32::from(ones_complement_sum(packet));
    let total = (a + b) % 0xffff;
    // Ones' complement: a sum of 0xffff (negative zero) or 0 folds to "all ones".
    Some(total == 0 && (a + b) != 0)
}
