//! Internet checksums (RFC 1071) for the offloads: verifying the TCP or UDP checksum of a
//! received frame the device did not vouch for (`VIRTIO_NET_F_GUEST_CSUM`, §5.1.6.4), and
//! preparing one for the device to complete (`VIRTIO_NET_F_CSUM` on transmit, §5.1.6.2).
//!
//! Both find the TCP or UDP packet in a frame by the same rules ([`upper_layer`]), the ones
//! smoltcp 0.14 (with the features this workspace builds it with) uses to decide that a frame
//! carries one: the receive check must cover every frame smoltcp would hand to a TCP or UDP
//! socket, since smoltcp no longer verifies those checksums itself.

use super::tx::TxChecksum;

/// Ethertypes and IP protocol numbers the offloads recognise.
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
/// IPv6 extension headers with the generic layout (next header, length in 8-octet units
/// after the first 8) that change neither the addresses nor the payload: hop-by-hop options
/// and destination options (RFC 8200 §4.3, §4.6).
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_DEST_OPTS: u8 = 60;
/// How many such headers are walked before the frame is left alone.
const IPV6_MAX_EXT: usize = 4;
/// Where the checksum field lies in a TCP and in a UDP header.
const TCP_CSUM_OFFSET: u16 = 16;
const UDP_CSUM_OFFSET: u16 = 6;
/// The UDP header length.
const UDP_LEN: usize = 8;
/// Ethernet header length, the minimum IPv4 header length and the fixed IPv6 header length.
const ETH_LEN: usize = 14;
const IPV4_MIN_LEN: usize = 20;
const IPV6_LEN: usize = 40;

/// The TCP or UDP packet (or whatever upper-layer protocol) an IP frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct UpperLayer {
    /// Offset in the frame (Ethernet header included).
    start: usize,
    /// Length, as the IP header gives it (IPv4 total length less the header; IPv6 payload
    /// length less the extension headers walked): it lies inside the frame.
    len: usize,
    /// The IP protocol number (IPv6: the next header after those walked).
    proto: u8,
    /// IPv4 (`false`: IPv6).
    ipv4: bool,
    /// Sum of the source and destination addresses, for the pseudo-header (RFC 793 §3.1,
    /// RFC 8200 §8.1).
    addr_sum: u64,
}

/// Finds the upper-layer packet of an IPv4 or IPv6 frame the way smoltcp 0.14 does: IPv4 of
/// version 4 with a header of at least 20 bytes, a total length no shorter than the header
/// and inside the frame, and not a fragment (smoltcp is built without reassembly and
/// refuses fragments); IPv6 of version 6 whose payload lies inside the frame, after at most
/// [`IPV6_MAX_EXT`] hop-by-hop or destination-options headers (smoltcp 0.14 walks one
/// hop-by-hop header and refuses every other extension header). `None` for anything else:
/// not IP, or a packet smoltcp refuses before it reaches TCP or UDP.
fn upper_layer(frame: &[u8]) -> Option<UpperLayer> {
    let ip = frame.get(ETH_LEN..)?;
    match be16(frame, 12)? {
        ETHERTYPE_IPV4 => {
            let version_ihl = *ip.first()?;
            let ihl = usize::from(version_ihl & 0x0f) * 4;
            let total = usize::from(be16(ip, 2)?);
            let fragment = be16(ip, 6)? & 0x3fff;
            if version_ihl >> 4 != 4
                || ihl < IPV4_MIN_LEN
                || total < ihl
                || total > ip.len()
                || fragment != 0
            {
                return None;
            }
            Some(UpperLayer {
                start: ETH_LEN + ihl,
                len: total - ihl,
                proto: ip[9],
                ipv4: true,
                addr_sum: sum_words(&ip[12..20]),
            })
        }
        ETHERTYPE_IPV6 => {
            if ip.len() < IPV6_LEN || ip[0] >> 4 != 6 {
                return None;
            }
            let end = IPV6_LEN + usize::from(be16(ip, 4)?);
            let payload = ip.get(..end)?;
            let (mut proto, mut at) = (ip[6], IPV6_LEN);
            for _ in 0..IPV6_MAX_EXT {
                if proto != IPV6_HOP_BY_HOP && proto != IPV6_DEST_OPTS {
                    break;
                }
                let ext = payload.get(at..at + 2)?;
                proto = ext[0];
                at += (usize::from(ext[1]) + 1) * 8;
                if at > end {
                    return None;
                }
            }
            Some(UpperLayer {
                start: ETH_LEN + at,
                len: end - at,
                proto,
                ipv4: false,
                addr_sum: sum_words(&ip[8..IPV6_LEN]),
            })
        }
        _ => None,
    }
}

/// What the receive check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RxVerdict {
    /// A TCP or UDP packet with a correct checksum (or UDP over IPv4 sent without one).
    Valid,
    /// A TCP or UDP packet with a wrong checksum: drop it.
    Invalid,
    /// Not a TCP or UDP packet smoltcp would process (see [`upper_layer`]): left to smoltcp,
    /// which verifies the IPv4 header and ICMP checksums itself and refuses the rest.
    NotTcpUdp,
}

/// Verifies the TCP or UDP checksum of a received frame (one pass over the packet). UDP is
/// checked over the length its header gives, as smoltcp reads it, and a UDP length smoltcp
/// would refuse leaves the frame to smoltcp. A zero UDP checksum means "none sent" over IPv4
/// only (RFC 768); over IPv6 it fails, as RFC 8200 §8.1 requires (smoltcp alone would take it).
pub(crate) fn verify_received(frame: &[u8]) -> RxVerdict {
    let Some(l4) = upper_layer(frame) else {
        return RxVerdict::NotTcpUdp;
    };
    let packet = &frame[l4.start..l4.start + l4.len];
    let packet = match l4.proto {
        PROTO_TCP => packet,
        PROTO_UDP => {
            let Some(len) = be16(packet, 4).map(usize::from) else {
                return RxVerdict::NotTcpUdp;
            };
            if len < UDP_LEN || len > packet.len() {
                return RxVerdict::NotTcpUdp;
            }
            if l4.ipv4 && be16(packet, 6) == Some(0) {
                return RxVerdict::Valid;
            }
            &packet[..len]
        }
        _ => return RxVerdict::NotTcpUdp,
    };
    let sum = l4.addr_sum + u64::from(l4.proto) + packet.len() as u64 + sum_words(packet);
    if fold(sum) == 0xffff {
        RxVerdict::Valid
    } else {
        RxVerdict::Invalid
    }
}

/// Whether `frame` is one TCP segment over IPv6 (`ipv6`) or IPv4 whose IP packet spans the
/// whole frame (no Ethernet padding, no bytes past the IP length), by the rules of
/// [`upper_layer`].
pub(crate) fn is_tcp_segment(frame: &[u8], ipv6: bool) -> bool {
    upper_layer(frame).is_some_and(|l4| {
        l4.proto == PROTO_TCP && l4.ipv4 != ipv6 && l4.start + l4.len == frame.len()
    })
}

/// Where the TCP header of a TCP/IPv4 (`ipv6` false) or TCP/IPv6 frame ends (its data offset
/// read), if it lies inside the packet: the `hdr_len` of a segment the device cuts.
pub(crate) fn tcp_header_end(frame: &[u8], ipv6: bool) -> Option<usize> {
    let l4 = upper_layer(frame).filter(|l4| l4.proto == PROTO_TCP && l4.ipv4 != ipv6)?;
    let len = usize::from(frame.get(l4.start + 12)? >> 4) * 4;
    (len >= 20 && len <= l4.len).then_some(l4.start + len)
}

/// Prepares a frame whose TCP or UDP checksum is left to the device: writes the pseudo-header
/// sum into the checksum field (what the device's sum from `start` then completes) and returns
/// where the checksum lies. `None` for anything else (not a TCP or UDP packet by the rules of
/// [`upper_layer`], or a checksum field past its end): the frame is left as it is.
pub(crate) fn prepare_offload(frame: &mut [u8]) -> Option<TxChecksum> {
    let l4 = upper_layer(frame)?;
    let offset = match l4.proto {
        PROTO_TCP => TCP_CSUM_OFFSET,
        PROTO_UDP => UDP_CSUM_OFFSET,
        _ => return None,
    };
    let field = l4.start + usize::from(offset);
    if field + 2 > l4.start + l4.len {
        return None;
    }
    let sum = l4.addr_sum + u64::from(l4.proto) + l4.len as u64;
    frame[field..field + 2].copy_from_slice(&fold(sum).to_be_bytes());
    Some(TxChecksum {
        start: u16::try_from(l4.start).ok()?,
        offset,
    })
}

/// The big-endian `u16` at `at`, if it lies inside `data`.
fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

/// The sum of `data` as big-endian 16-bit words (a trailing byte padded with zero), unfolded.
/// Four bytes are added at a time: `2^16 ≡ 1` in ones' complement arithmetic, so a 32-bit
/// word adds the same as its two halves, and a 64-bit total of at most 2^16 such words cannot
/// overflow for any frame.
fn sum_words(data: &[u8]) -> u64 {
    let mut quads = data.chunks_exact(4);
    let mut sum: u64 = (&mut quads)
        .map(|q| u64::from(u32::from_be_bytes([q[0], q[1], q[2], q[3]])))
        .sum();
    let rest = quads.remainder();
    let mut words = rest.chunks_exact(2);
    sum += (&mut words)
        .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u64>();
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a sum of 16-bit words into 16 bits with end-around carry.
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The integration tests' frame builder, shared rather than copied.
#[cfg(test)]
#[path = "../../tests/support/frames.rs"]
#[allow(dead_code, reason = "the unit tests use part of it")]
mod test_frames;

#[cfg(test)]
mod tests {
    use smoltcp::wire::IpProtocol;

    use super::{
        test_frames::{L4, complete_checksum as complete},
        *,
    };

    /// A TCP (ACK, no options) or UDP frame with `payload`, checksummed by smoltcp.
    fn frame(ipv6: bool, proto: IpProtocol, payload: &[u8]) -> Vec<u8> {
        let l4 = match proto {
            IpProtocol::Tcp => L4::Tcp {
                port: 2000,
                syn: false,
                seq: 7,
            },
            _ => L4::Udp { port: 2000 },
        };
        test_frames::frame([2, 0, 0, 0, 0, 2], ipv6, l4, payload)
    }

    #[test]
    fn sums_match_rfc1071() {
        // RFC 1071 §3 example words: 0001 f203 f4f5 f6f7 → sum ddf2.
        let words = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(&words)), 0xddf2);
        // Four bytes at a time adds the same as two at a time, for every tail length.
        let data: Vec<u8> = (0..=255u8).map(|b| b.wrapping_mul(97) ^ 0x5a).collect();
        for len in 0..data.len() {
            let d = &data[..len];
            let pairs: u64 = d
                .chunks(2)
                .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
                .sum();
            assert_eq!(fold(sum_words(d)), fold(pairs), "length {len}");
        }
    }

    #[test]
    fn received_checksums_are_verified_over_ipv4_and_ipv6() {
        for ipv6 in [false, true] {
            for proto in [IpProtocol::Tcp, IpProtocol::Udp] {
                for len in [0, 1, 2, 3, 100, 1401] {
                    let payload: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
                    let good = frame(ipv6, proto, &payload);
                    assert_eq!(verify_received(&good), RxVerdict::Valid, "{ipv6} {proto}");
                    // Every single-byte change past the IP addresses is caught.
                    let from = if ipv6 { 14 + 40 } else { 14 + 20 };
                    for at in from..good.len() {
                        let udp = proto == IpProtocol::Udp;
                        if udp && (from + 4..from + 6).contains(&at) {
                            continue; // The UDP length: see the test below.
                        }
                        let mut bad = good.clone();
                        bad[at] ^= 0x41;
                        let unsent = udp && !ipv6 && bad[from + 6..from + 8] == [0, 0];
                        let expected = if unsent {
                            RxVerdict::Valid
                        } else {
                            RxVerdict::Invalid
                        };
                        assert_eq!(verify_received(&bad), expected, "byte {at}");
                    }
                    // Ethernet padding after the IP packet is not summed.
                    let mut padded = good.clone();
                    padded.extend_from_slice(&[0xee; 7]);
                    assert_eq!(verify_received(&padded), RxVerdict::Valid);
                }
            }
        }
    }

    #[test]
    fn a_zero_udp_checksum_means_none_over_ipv4_only() {
        for ipv6 in [false, true] {
            let mut f = frame(ipv6, IpProtocol::Udp, b"no checksum");
            let at = if ipv6 { 14 + 40 + 6 } else { 14 + 20 + 6 };
            f[at..at + 2].copy_from_slice(&[0, 0]);
            let expected = if ipv6 {
                RxVerdict::Invalid
            } else {
                RxVerdict::Valid
            };
            assert_eq!(verify_received(&f), expected);
        }
    }

    #[test]
    fn frames_smoltcp_refuses_before_tcp_are_left_to_it() {
        let good = frame(false, IpProtocol::Tcp, b"data");
        let mut cases = Vec::new();
        // An IPv4 fragment, a wrong version, a short header, a total length past the frame.
        for (at, value) in [(14 + 6, 0x20), (14, 0x55), (14, 0x44), (14 + 2, 0xff)] {
            let mut f = good.clone();
            f[at] = value;
            f[14 + 20 + 16] ^= 0xff;
            cases.push(f);
        }
        // ARP, and ICMP (smoltcp verifies that checksum itself).
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        cases.push(arp);
        let mut icmp = good.clone();
        icmp[14 + 9] = 1;
        cases.push(icmp);
        // UDP whose length field smoltcp refuses.
        let mut udp = frame(false, IpProtocol::Udp, b"data");
        udp[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&100u16.to_be_bytes());
        cases.push(udp);
        // IPv6 with a routing header, and a fragment header, before TCP.
        for next in [43, 44] {
            let mut v6 = frame(true, IpProtocol::Tcp, b"data");
            v6[14 + 6] = next;
            cases.push(v6);
        }
        for f in cases {
            assert_eq!(verify_received(&f), RxVerdict::NotTcpUdp, "{f:02x?}");
        }
    }

    #[test]
    fn ipv6_hop_by_hop_header_is_walked() {
        let f = frame(true, IpProtocol::Tcp, b"behind a hop-by-hop header");
        // An 8-byte hop-by-hop header after the fixed header: the TCP checksum does not
        // cover it.
        let mut f = test_frames::with_ext_header(&f, 0, 0);
        assert_eq!(verify_received(&f), RxVerdict::Valid);
        f[14 + 48 + 16] ^= 1;
        assert_eq!(verify_received(&f), RxVerdict::Invalid);
        // A length running past the payload: left to smoltcp.
        f[14 + 41] = 200;
        assert_eq!(verify_received(&f), RxVerdict::NotTcpUdp);
    }

    /// A frame built by smoltcp with its checksum, the same frame with the checksum prepared
    /// for offload and completed as a device would: identical.
    #[test]
    fn prepared_then_completed_checksum_is_the_real_one() {
        for ipv6 in [false, true] {
            for (proto, offset) in [(IpProtocol::Udp, 6), (IpProtocol::Tcp, 16)] {
                let expected = frame(ipv6, proto, &[1, 2, 3, 4, 5]);
                let start = if ipv6 { 54 } else { 34 };
                let mut f = expected.clone();
                f[start + offset..start + offset + 2].copy_from_slice(&[0, 0]);
                let csum = prepare_offload(&mut f).unwrap();
                assert_eq!(
                    csum,
                    TxChecksum {
                        start: start as u16,
                        offset: offset as u16
                    }
                );
                complete(&mut f, start, offset);
                assert_eq!(f, expected);
            }
        }
        // Not IP: left alone.
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(prepare_offload(&mut arp), None);
    }
}
