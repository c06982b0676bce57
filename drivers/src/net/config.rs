//! Feature bits, driver options, the net header and the device configuration
//! (virtio 1.2 §5.1.3, §5.1.4, §5.1.6).
//!
//! Layer: driver (`vireo-drivers`). [`NetDeviceConfig`] is what the device's configuration
//! space says, checked; the kernel's `vireo::net::NetInfo` is the summary applications get.

use core::mem::{offset_of, size_of};

use vireo_virtio::{
    transport::{Device, Transport},
    virtio_spec::{F, net},
};

use super::error::NetDriverError;

/// Length of `struct virtio_net_hdr_v1` (§5.1.6): modern devices always have `num_buffers`.
pub const HEADER_LEN: usize = size_of::<net::Hdr>();
/// Length of the Ethernet header the MTU does not count (destination, source, ethertype).
pub const ETHERNET_HEADER_LEN: usize = 14;
/// The MTU used when the device offers none (or one the driver refuses).
pub const DEFAULT_MTU: u16 = 1500;
/// The smallest MTU the driver accepts from the device: IPv4's minimum (RFC 791, §5.1.4.1).
pub const MIN_MTU: u16 = 68;
/// Largest coalesced frame the driver takes with `VIRTIO_NET_F_GUEST_TSO4`/`TSO6` (Ethernet
/// header included): the 65,562-byte receive buffer virtio 1.2 §5.1.6.3.1 asks for without
/// merged buffers, less the 12-byte net header; Linux's GSO packets are at most 64 KiB plus
/// the Ethernet header.
pub const MAX_GSO_FRAME_LEN: usize = 65_550;
/// Largest TCP/IPv4 segment the driver hands the device to cut with `VIRTIO_NET_F_HOST_TSO4`
/// (Ethernet header included): the largest IPv4 packet, so its total length still says how
/// long it is (smoltcp writes 0 beyond, which the checksum offload could not read).
pub const MAX_TSO_FRAME_LEN: usize = ETHERNET_HEADER_LEN + 65_535;

/// Byte offsets in `struct virtio_net_hdr_v1` (§5.1.6), from the spec crate's layout.
pub(crate) mod hdr {
    use super::{net::Hdr, offset_of};

    pub(crate) const FLAGS: usize = offset_of!(Hdr, flags);
    pub(crate) const GSO_TYPE: usize = offset_of!(Hdr, gso_type);
    pub(crate) const HDR_LEN: usize = offset_of!(Hdr, hdr_len);
    pub(crate) const GSO_SIZE: usize = offset_of!(Hdr, gso_size);
    pub(crate) const CSUM_START: usize = offset_of!(Hdr, csum_start);
    pub(crate) const CSUM_OFFSET: usize = offset_of!(Hdr, csum_offset);
    pub(crate) const NUM_BUFFERS: usize = offset_of!(Hdr, num_buffers);
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
    pub(crate) const F_NEEDS_CSUM: u8 = 1;
    /// `VIRTIO_NET_HDR_F_DATA_VALID`.
    pub(crate) const F_DATA_VALID: u8 = 2;
}

/// Byte offsets in `struct virtio_net_config` (§5.1.4; the spec crate keeps its fields private).
mod offset {
    pub(super) const MAC: usize = 0;
    pub(super) const STATUS: usize = 6;
    pub(super) const MTU: usize = 10;
}

/// `VIRTIO_NET_S_LINK_UP` (§5.1.4).
const S_LINK_UP: u16 = 1;

/// Reads little-endian `u16` at `at` of a net header.
pub(crate) fn hdr_u16(header: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([header[at], header[at + 1]])
}

/// Writes `value` little-endian at `at` of a net header.
pub(crate) fn put_hdr_u16(header: &mut [u8], at: usize, value: u16) {
    header[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

/// What the kernel lets the driver negotiate, and how much memory it gives the queues.
///
/// Each feature is accepted only when the device offers it too; `false` refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetOptions {
    /// Use the packed ring layout (`VIRTIO_F_RING_PACKED`).
    pub packed: bool,
    /// Negotiate `VIRTIO_F_INDIRECT_DESC` (used for control commands, the only chains longer
    /// than one descriptor; rx and tx buffers are single descriptors).
    pub indirect: bool,
    /// Negotiate `VIRTIO_F_EVENT_IDX`.
    pub event_idx: bool,
    /// Negotiate `VIRTIO_F_RING_RESET` (the core can return a queue to its initial state).
    pub ring_reset: bool,
    /// Negotiate `VIRTIO_NET_F_MRG_RXBUF`: small rx buffers, frames spread over several.
    pub mrg_rxbuf: bool,
    /// Negotiate `VIRTIO_NET_F_CSUM` (tx checksum offload) and `VIRTIO_NET_F_GUEST_CSUM`
    /// (the device may deliver frames with a partial checksum; the driver then answers for
    /// received TCP and UDP checksums instead of smoltcp, see [`NetDriver::capabilities`]).
    ///
    /// [`NetDriver::capabilities`]: super::NetDriver::capabilities
    pub csum: bool,
    /// Negotiate `VIRTIO_NET_F_GUEST_TSO4` and `GUEST_TSO6`: the device may deliver TCP
    /// segments it coalesced, up to [`MAX_GSO_FRAME_LEN`] bytes, which smoltcp takes whole.
    /// Only together with [`csum`](Self::csum) (`GUEST_CSUM`, which they require) and
    /// [`mrg_rxbuf`](Self::mrg_rxbuf) (a coalesced frame is gathered from merged buffers; without
    /// them every buffer would need 64 KiB); dropped from the negotiation when the device does
    /// not offer both. A receive pool too small to hold one such frame in
    /// [`mrg_buffer_len`](Self::mrg_buffer_len) buffers gets longer buffers. On by default:
    /// over a tap it made host-to-guest TCP 1.3–1.5× faster under TCG (README, benchmarks).
    pub tso: bool,
    /// Negotiate `VIRTIO_NET_F_HOST_TSO4`: smoltcp (its `segmentation-offload` feature) sends
    /// TCP/IPv4 segments of up to [`MAX_TSO_FRAME_LEN`] bytes, which the device cuts at the
    /// MSS. Only with [`csum`](Self::csum) (`CSUM`, which it requires); such segments go in
    /// [`tso_buffers`](Self::tso_buffers). `HOST_TSO6` is never asked for: smoltcp 0.14 drops
    /// an IPv6 packet longer than the MTU before it looks at the segmentation size. On by
    /// default: over a tap it made guest-to-host TCP about 2.8× faster under TCG (README,
    /// benchmarks).
    pub host_tso: bool,
    /// Negotiate `VIRTIO_NET_F_MTU` (the device's MTU instead of 1500).
    pub mtu: bool,
    /// Negotiate `VIRTIO_NET_F_CTRL_VQ` and `VIRTIO_NET_F_CTRL_RX` (control queue, receive
    /// filtering: promiscuous and all-multicast turned off, MAC table set).
    pub ctrl_vq: bool,
    /// Largest rx and tx queue size wanted (the device's maximum if smaller; split rings round
    /// down to a power of two). The control queue has 8 descriptors.
    pub queue_size: u16,
    /// Receive buffers kept posted (at most the rx queue size).
    pub rx_buffers: u16,
    /// Transmit buffers (frames in flight or batched at once; at most the tx queue size, less
    /// the [`tso_buffers`](Self::tso_buffers)).
    pub tx_buffers: u16,
    /// With `VIRTIO_NET_F_HOST_TSO4`, transmit buffers of [`MAX_TSO_FRAME_LEN`] bytes besides
    /// [`tx_buffers`](Self::tx_buffers), for the segments the device cuts (at least 1, at most
    /// half the tx queue); smoltcp gets a transmit token only while one is free.
    pub tso_buffers: u16,
    /// Size of one receive buffer with `VIRTIO_NET_F_MRG_RXBUF` (at least [`HEADER_LEN`] + 1;
    /// longer when guest TSO needs it, see [`tso`](Self::tso)).
    pub mrg_buffer_len: u16,
    /// Largest MTU the driver accepts; a larger device MTU is clamped to it.
    pub max_mtu: u16,
    /// Free receive buffers gathered before they are posted again in one batch (one kick).
    pub refill_batch: u16,
    /// Status reads a dropped driver waits for the device to confirm its reset; past that its
    /// rings and buffers are leaked rather than freed.
    pub drop_reset_polls: u32,
}

impl Default for NetOptions {
    fn default() -> Self {
        Self {
            packed: false,
            indirect: true,
            event_idx: true,
            ring_reset: true,
            mrg_rxbuf: true,
            csum: true,
            tso: true,
            host_tso: true,
            mtu: true,
            ctrl_vq: true,
            queue_size: 256,
            rx_buffers: 256,
            tx_buffers: 64,
            tso_buffers: 8,
            mrg_buffer_len: 2048,
            max_mtu: 9000,
            refill_batch: 16,
            drop_reset_polls: 1 << 20,
        }
    }
}

impl NetOptions {
    /// The features the driver asks for with these options.
    pub(crate) fn wanted(&self) -> F {
        let mut wanted = F::VERSION_1 | F::from(net::F::MAC | net::F::STATUS);
        let pick = |on: bool, f: F| if on { f } else { F::empty() };
        wanted |= pick(self.packed, F::RING_PACKED);
        wanted |= pick(self.indirect, F::INDIRECT_DESC);
        wanted |= pick(self.event_idx, F::EVENT_IDX);
        wanted |= pick(self.ring_reset, F::RING_RESET);
        wanted |= pick(self.mrg_rxbuf, net::F::MRG_RXBUF.into());
        wanted |= pick(self.csum, (net::F::CSUM | net::F::GUEST_CSUM).into());
        wanted |= pick(
            self.tso && self.csum && self.mrg_rxbuf,
            (net::F::GUEST_TSO4 | net::F::GUEST_TSO6).into(),
        );
        wanted |= pick(self.host_tso && self.csum, net::F::HOST_TSO4.into());
        wanted |= pick(self.mtu, net::F::MTU.into());
        wanted |= pick(self.ctrl_vq, (net::F::CTRL_VQ | net::F::CTRL_RX).into());
        wanted
    }
}

/// Of the features about to be accepted, those the driver keeps: the guest TSO features
/// only with both `GUEST_CSUM` (virtio 1.2 §5.1.3.1) and `MRG_RXBUF` (this driver's choice:
/// without them every receive buffer would need 64 KiB, §5.1.6.3.1), `HOST_TSO4` only with
/// `CSUM` (§5.1.3.1).
pub(crate) fn settle(mut features: F) -> F {
    if !(has(features, net::F::GUEST_CSUM) && has(features, net::F::MRG_RXBUF)) {
        features -= F::from(net::F::GUEST_TSO4 | net::F::GUEST_TSO6);
    }
    if !has(features, net::F::CSUM) {
        features -= F::from(net::F::HOST_TSO4);
    }
    features
}

/// Whether the negotiated `features` contain the net feature `f`.
pub(crate) fn has(features: F, f: net::F) -> bool {
    features.contains(f.into())
}

/// What the driver knows about the device, read from its configuration and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetDeviceConfig {
    /// The MAC address (`VIRTIO_NET_F_MAC`), as read at initialisation or at the last
    /// [`config_changed`](super::NetDriver::config_changed); all zero when not offered.
    pub mac: [u8; 6],
    /// Link state (`VIRTIO_NET_F_STATUS`; always up without it).
    pub link_up: bool,
    /// The MTU in use (IP MTU: without the 14-byte Ethernet header).
    pub mtu: u16,
    /// The MTU the device reported when the driver refused it (below [`MIN_MTU`]) or clamped
    /// it (above [`NetOptions::max_mtu`]); `None` when it was fine or not offered.
    pub mtu_rejected: Option<u16>,
    /// Largest frame (Ethernet header and payload, no net header) sent or delivered.
    pub max_frame_len: usize,
    /// Size of each receive buffer, net header included.
    pub rx_buffer_len: usize,
}

impl NetDeviceConfig {
    /// Reads the configuration at initialisation: MAC, link state and MTU.
    ///
    /// # Errors
    /// [`NetDriverError::Transport`] if the configuration cannot be read.
    pub(crate) fn read<T: Transport>(
        device: &Device<T>,
        options: &NetOptions,
    ) -> Result<Self, NetDriverError> {
        let features = device.features();
        let (mac, link_up) = read_mac_status(device)?;
        let (mtu, mtu_rejected) = if has(features, net::F::MTU) {
            let mut raw = [0u8; 2];
            device.read_config(offset::MTU, &mut raw)?;
            checked_mtu(u16::from_le_bytes(raw), options.max_mtu)
        } else {
            (DEFAULT_MTU, None)
        };
        let max_frame_len = usize::from(mtu) + ETHERNET_HEADER_LEN;
        // §5.1.6.3.1: without MRG_RXBUF (and so without guest TSO, see `settle`; guest UFO and
        // USO are never negotiated) each buffer holds a whole frame: header + 14 + 1500 at
        // least, more for a larger MTU.
        let rx_buffer_len = if has(features, net::F::MRG_RXBUF) {
            usize::from(options.mrg_buffer_len).max(HEADER_LEN + 1)
        } else {
            HEADER_LEN + ETHERNET_HEADER_LEN + usize::from(mtu.max(DEFAULT_MTU))
        };
        Ok(Self {
            mac,
            link_up,
            mtu,
            mtu_rejected,
            max_frame_len,
            rx_buffer_len,
        })
    }
}

/// The MTU to use for a device MTU of `raw`, and the raw value if it was refused or clamped.
fn checked_mtu(raw: u16, max_mtu: u16) -> (u16, Option<u16>) {
    let max = max_mtu.max(MIN_MTU);
    if raw < MIN_MTU {
        (DEFAULT_MTU.min(max), Some(raw))
    } else if raw > max {
        (max, Some(raw))
    } else {
        (raw, None)
    }
}

/// Reads the MAC address (zero without `VIRTIO_NET_F_MAC`) and the link state (up without
/// `VIRTIO_NET_F_STATUS`).
///
/// # Errors
/// [`NetDriverError::Transport`] if the configuration cannot be read.
pub(crate) fn read_mac_status<T: Transport>(
    device: &Device<T>,
) -> Result<([u8; 6], bool), NetDriverError> {
    let features = device.features();
    let mut mac = [0u8; 6];
    if has(features, net::F::MAC) {
        device.read_config(offset::MAC, &mut mac)?;
    }
    let mut link_up = true;
    if has(features, net::F::STATUS) {
        let mut raw = [0u8; 2];
        device.read_config(offset::STATUS, &mut raw)?;
        link_up = u16::from_le_bytes(raw) & S_LINK_UP != 0;
    }
    Ok((mac, link_up))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_virtio_net_hdr_v1() {
        assert_eq!(HEADER_LEN, 12);
        assert_eq!(
            (
                hdr::FLAGS,
                hdr::CSUM_START,
                hdr::CSUM_OFFSET,
                hdr::NUM_BUFFERS
            ),
            (0, 6, 8, 10)
        );
    }

    #[test]
    fn mtu_is_refused_below_68_and_clamped_above_the_maximum() {
        assert_eq!(checked_mtu(1500, 9000), (1500, None));
        assert_eq!(checked_mtu(68, 9000), (68, None));
        assert_eq!(checked_mtu(67, 9000), (1500, Some(67)));
        assert_eq!(checked_mtu(0, 9000), (1500, Some(0)));
        assert_eq!(checked_mtu(65535, 9000), (9000, Some(65535)));
        assert_eq!(checked_mtu(10, 576), (576, Some(10)));
    }
}
