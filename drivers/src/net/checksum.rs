//! Internet checksums (RFC 1071) for the offloads: completing a partial checksum the device
//! delivered (`VIRTIO_NET_HDR_F_NEEDS_CSUM` on receive, §5.1.6.4), and preparing one for the
//! device to complete (`VIRTIO_NET_F_CSUM` on transmit, §5.1.6.2).

use super::tx::TxChecksum;

/// Ethertypes and IP protocol numbers the transmit offload recognises.
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
/// Where the checksum field lies in a TCP and in a UDP header.
const TCP_CSUM_OFFSET: u16 = 16;
const UDP_CSUM_OFFSET: u16 = 6;
/// Ethernet header length, and the fixed IPv6 header length.
const ETH_LEN: usize = 14;
const IPV6_LEN: usize = 40;

/// Completes a partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`, §5.1.6.4.1): the ones'
/// complement sum of `frame[start..]` (whose checksum field holds the pseudo-header sum) is
/// stored at `start + offset`. Returns `false` when the field is not inside the frame.
pub(crate) fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let Some(at) = start.checked_add(offset) else {
        return false;
    };
    if at.checked_add(2).is_none_or(|end| end > frame.len()) {
        return false;
    }
    let sum = ones_complement_sum(&frame[start..]);
    // A computed 0 is sent as 0xffff: the same value in ones' complement, and the only form
    // UDP allows (0 means "no checksum" there).
    let folded = match !sum {
        0 => 0xffff,
        c => c,
    };
    frame[at..at + 2].copy_from_slice(&folded.to_be_bytes());
    true
}

/// The 16-bit ones' complement sum of `data` (RFC 1071), big-endian words, folded.
fn ones_complement_sum(data: &[u8]) -> u16 {
    fold(sum_words(data))
}

/// Prepares a frame whose TCP or UDP checksum is left to the device: writes the pseudo-header
/// sum into the checksum field (what the device's sum from `start` then completes) and returns
/// where the checksum lies. `None` for anything else (not IPv4/IPv6 carrying TCP or UDP
/// directly, an IPv4 fragment, lengths that do not fit the frame): the frame is left as it is.
pub(crate) fn prepare_offload(frame: &mut [u8]) -> Option<TxChecksum> {
    let be16 = |f: &[u8], at: usize| Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]));
    let (l4_start, proto, l4_len, mut sum) = match be16(frame, 12)? {
        ETHERTYPE_IPV4 => {
            let ihl = usize::from(frame.get(ETH_LEN)? & 0x0f) * 4;
            let total = usize::from(be16(frame, ETH_LEN + 2)?);
            let fragment = be16(frame, ETH_LEN + 6)? & 0x3fff;
            if ihl < 20 || fragment != 0 {
                return None;
            }
            let l4_len = total.checked_sub(ihl)?;
            let addrs = frame.get(ETH_LEN + 12..ETH_LEN + 20)?;
            (
                ETH_LEN + ihl,
                *frame.get(ETH_LEN + 9)?,
                l4_len,
                sum_words(addrs),
            )
        }
        ETHERTYPE_IPV6 => {
            let l4_len = usize::from(be16(frame, ETH_LEN + 4)?);
            let addrs = frame.get(ETH_LEN + 8..ETH_LEN + IPV6_LEN)?;
            (
                ETH_LEN + IPV6_LEN,
                *frame.get(ETH_LEN + 6)?,
                l4_len,
                sum_words(addrs),
            )
        }
        _ => return None,
    };
    let offset = match proto {
        PROTO_TCP => TCP_CSUM_OFFSET,
        PROTO_UDP => UDP_CSUM_OFFSET,
        _ => return None,
    };
    let field = l4_start + usize::from(offset);
    if l4_start.checked_add(l4_len)? > frame.len() || field + 2 > l4_start + l4_len {
        return None;
    }
    sum += u64::from(proto) + l4_len as u64;
    frame[field..field + 2].copy_from_slice(&fold(sum).to_be_bytes());
    Some(TxChecksum {
        start: u16::try_from(l4_start).ok()?,
        offset,
    })
}

/// The sum of `data` as big-endian 16-bit words (a trailing byte padded with zero), unfolded.
fn sum_words(data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(2);
    let mut sum: u64 = (&mut words)
        .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_completion_matches_rfc1071() {
        // RFC 1071 §3 example words: 0001 f203 f4f5 f6f7 → sum ddf2, checksum 220d.
        let mut frame = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7, 0, 0];
        assert!(complete_checksum(&mut frame, 0, 8));
        assert_eq!(&frame[8..], &[0x22, 0x0d]);
        // The completed frame now sums to 0xffff.
        assert_eq!(ones_complement_sum(&frame), 0xffff);
    }

    #[test]
    fn checksum_offsets_outside_the_frame_are_refused() {
        let mut frame = [0u8; 20];
        assert!(!complete_checksum(&mut frame, 19, 0));
        assert!(!complete_checksum(&mut frame, 10, 9));
        assert!(!complete_checksum(&mut frame, 21, 0));
        assert!(!complete_checksum(&mut frame, usize::MAX, 2));
        assert!(complete_checksum(&mut frame, 10, 8));
    }

    /// A UDP/IPv4 frame built by smoltcp with its checksum, the same frame with the checksum
    /// prepared for offload and completed as a device would: identical.
    #[test]
    fn prepared_then_completed_checksum_is_the_real_one() {
        use smoltcp::{phy::ChecksumCapabilities, wire::*};
        let (src, dst) = (Ipv4Address::new(10, 0, 0, 1), Ipv4Address::new(10, 0, 0, 2));
        let payload = [1u8, 2, 3, 4, 5];
        let caps = ChecksumCapabilities::default();
        let mut frame = vec![0u8; 14 + 20 + 8 + payload.len()];
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype: EthernetProtocol::Ipv4,
        };
        eth.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Udp,
            payload_len: 8 + payload.len(),
            hop_limit: 64,
        };
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..]), &caps);
        let udp = UdpRepr {
            src_port: 1000,
            dst_port: 2000,
        };
        let mut packet = UdpPacket::new_unchecked(&mut frame[34..]);
        udp.emit(
            &mut packet,
            &src.into(),
            &dst.into(),
            payload.len(),
            |b| b.copy_from_slice(&payload),
            &caps,
        );
        let expected = frame.clone();
        frame[40..42].copy_from_slice(&[0, 0]);
        let csum = prepare_offload(&mut frame).unwrap();
        assert_eq!(
            csum,
            TxChecksum {
                start: 34,
                offset: 6
            }
        );
        assert!(complete_checksum(&mut frame, 34, 6));
        assert_eq!(frame, expected);
        // Not IP: left alone.
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(prepare_offload(&mut arp), None);
    }
}
