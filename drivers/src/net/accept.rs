//! What a received frame must satisfy before smoltcp sees it, from its net header: the GSO
//! type (`VIRTIO_NET_F_GUEST_TSO4`/`TSO6`, virtio 1.2 §5.1.6.4) and the TCP or UDP checksum
//! (`VIRTIO_NET_F_GUEST_CSUM`; the policy is in the `phy` module docs).

use vireo_virtio::virtio_spec::net::HdrGso;

use super::{
    checksum::{RxVerdict, is_tcp_segment, verify_received},
    config::{HEADER_LEN, MAX_GSO_FRAME_LEN, hdr, hdr_u16},
    error::NetDriverStats,
};

/// The negotiated features and limits a received frame is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RxConfig {
    /// `VIRTIO_NET_F_MRG_RXBUF`: a frame may span several buffers (`num_buffers`).
    pub(crate) mrg_rxbuf: bool,
    /// `VIRTIO_NET_F_GUEST_CSUM`: the driver answers for TCP and UDP checksums.
    pub(crate) guest_csum: bool,
    /// `VIRTIO_NET_F_GUEST_TSO4` and `GUEST_TSO6`: the device may coalesce TCP segments.
    pub(crate) tso4: bool,
    /// See [`tso4`](Self::tso4).
    pub(crate) tso6: bool,
    /// Largest frame without GSO (Ethernet header included): the MTU's.
    pub(crate) max_frame_len: usize,
}

impl RxConfig {
    /// The longest frame the queue may have to reassemble.
    pub(crate) fn max_merged_len(&self) -> usize {
        if self.tso4 || self.tso6 {
            self.max_frame_len.max(MAX_GSO_FRAME_LEN)
        } else {
            self.max_frame_len
        }
    }

    /// The longest frame allowed with this header's GSO type: the MTU's without GSO,
    /// [`MAX_GSO_FRAME_LEN`] for a coalesced TCP segment. `None` for a GSO type that was not
    /// negotiated or is unknown (a device must send `GSO_NONE` without the guest TSO features,
    /// and never `GSO_ECN` without `GUEST_ECN`, which is not negotiated: §5.1.6.4.1).
    pub(crate) fn frame_limit(&self, header: &[u8; HEADER_LEN]) -> Option<usize> {
        match HdrGso::try_from(header[hdr::GSO_TYPE]) {
            Ok(HdrGso::None) => Some(self.max_frame_len),
            Ok(HdrGso::Tcpv4) if self.tso4 => Some(MAX_GSO_FRAME_LEN),
            Ok(HdrGso::Tcpv6) if self.tso6 => Some(MAX_GSO_FRAME_LEN),
            _ => None,
        }
    }
}

/// Whether a received frame (its length within [`RxConfig::frame_limit`]) goes to smoltcp;
/// a refused one is counted. First its GSO type: a coalesced frame (`GSO_TCPV4`/`TCPV6`)
/// must be one TCP segment over that IP version whose IP length covers the whole frame, as
/// Linux and QEMU deliver them (smoltcp reads the IP length, and would take a shorter one
/// as a cut segment); otherwise it is dropped (`rx_bad_gso`). smoltcp takes a TCP segment
/// longer than the MSS or MTU as it is: its receive path checks neither. Then the checksum:
/// see [`checksum`].
pub(crate) fn accept(
    config: &RxConfig,
    stats: &mut NetDriverStats,
    header: &[u8; HEADER_LEN],
    frame: &[u8],
) -> bool {
    let gso = match HdrGso::try_from(header[hdr::GSO_TYPE]) {
        Ok(HdrGso::Tcpv4) => Some(false),
        Ok(HdrGso::Tcpv6) => Some(true),
        _ => None,
    };
    if let Some(ipv6) = gso
        && !is_tcp_segment(frame, ipv6)
    {
        stats.rx_bad_gso += 1;
        return false;
    }
    if !checksum(config.guest_csum, stats, header, frame) {
        return false;
    }
    if gso.is_some() {
        stats.rx_gso += 1;
    }
    true
}

/// Decides whether a frame's TCP or UDP checksum is good enough to hand it to smoltcp, which
/// does not verify those checksums when `guest_csum` (`VIRTIO_NET_F_GUEST_CSUM`) was
/// negotiated (virtio 1.2 §5.1.6.4; Linux's `virtio_net` trusts the same flags, as
/// `CHECKSUM_PARTIAL` and `CHECKSUM_UNNECESSARY`):
///
/// - `NEEDS_CSUM`: the device validated every checksum up to the partial one, which it left
///   incomplete; accepted without reading the payload, once `csum_start`/`csum_offset` are
///   seen to lie inside the frame (otherwise dropped, counted in `rx_bad_csum`).
/// - `DATA_VALID`: the device validated the checksum; accepted.
/// - Neither: the driver verifies a TCP or UDP checksum itself (one pass; a wrong one is
///   dropped, counted in `rx_csum_failed`); anything else goes to smoltcp unchanged.
///
/// Without `guest_csum` smoltcp verifies every checksum and every frame is accepted here (a
/// `DATA_VALID` the device may set even then, as the corrected spec allows, is only counted).
fn checksum(
    guest_csum: bool,
    stats: &mut NetDriverStats,
    header: &[u8; HEADER_LEN],
    frame: &[u8],
) -> bool {
    let flags = header[hdr::FLAGS];
    if !guest_csum {
        if flags & hdr::F_DATA_VALID != 0 {
            stats.rx_data_valid += 1;
        }
        return true;
    }
    if flags & hdr::F_NEEDS_CSUM != 0 {
        let start = usize::from(hdr_u16(header, hdr::CSUM_START));
        let offset = usize::from(hdr_u16(header, hdr::CSUM_OFFSET));
        // The 2-byte field at start + offset (both 16-bit: no overflow in usize).
        if start + offset + 2 > frame.len() {
            stats.rx_bad_csum += 1;
            return false;
        }
        stats.rx_needs_csum += 1;
        return true;
    }
    if flags & hdr::F_DATA_VALID != 0 {
        stats.rx_data_valid += 1;
        return true;
    }
    match verify_received(frame) {
        RxVerdict::Valid => {
            stats.rx_csum_verified += 1;
            true
        }
        RxVerdict::Invalid => {
            stats.rx_csum_failed += 1;
            false
        }
        RxVerdict::NotTcpUdp => true,
    }
}
