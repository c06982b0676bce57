//! The virtio-net driver's errors ([`NetDriverError`]) and counters ([`NetDriverStats`]).
//!
//! Layer: driver (`vireo-drivers`). Applications never see [`NetDriverError`]: the kernel's
//! network stack turns a failed device into its own `vireo::net::NetError`, and reports these
//! counters inside `vireo::net::NetStats`.

use core::fmt;

use vireo_virtio::{BROKEN_DEVICE_HINT, QueueError, transport::TransportError};

/// Why a virtio-net operation failed.
///
/// [`Queue`](Self::Queue) with a protocol-violation kind, [`CtrlBadAck`](Self::CtrlBadAck) and
/// [`NeedsReset`](Self::NeedsReset) mean the device must be reset
/// ([`NetDriver::reset_and_reinit`](super::NetDriver::reset_and_reinit)). A malformed received
/// frame is not an error: it is dropped and counted in [`NetDriverStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetDriverError {
    /// Every transmit buffer is in flight; poll (or wait for the device) and retry.
    TxFull,
    /// A frame longer than [`NetDeviceConfig::max_frame_len`](super::NetDeviceConfig::max_frame_len).
    FrameTooLarge {
        /// The length asked for.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// A checksum offload was asked for without `VIRTIO_NET_F_CSUM`, or with offsets outside
    /// the frame.
    ChecksumOffload,
    /// The control queue was not negotiated (`VIRTIO_NET_F_CTRL_VQ`, `CTRL_RX`).
    NoControlQueue,
    /// A control command's data does not fit the command buffer (too many MAC addresses).
    CtrlTooLarge,
    /// The device answered a control command with `VIRTIO_NET_ERR`.
    CtrlRejected,
    /// The device answered a control command with an ack that is neither OK nor ERR, or
    /// without writing it.
    CtrlBadAck(u8),
    /// The control queue still holds a command the device never answered (a timeout); reset.
    CtrlBusy,
    /// The driver could not allocate its DMA buffers.
    AllocFailed,
    /// The driver is not operational (a reset or re-initialisation failed).
    NotReady,
    /// The device set `DEVICE_NEEDS_RESET`.
    NeedsReset,
    /// A virtqueue error; the protocol-violation kinds mean the device must be reset.
    Queue(QueueError),
    /// A transport error during initialisation, configuration access, a wait or a reset.
    Transport(TransportError),
}

impl fmt::Display for NetDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TxFull => f.write_str("every transmit buffer is in flight"),
            Self::FrameTooLarge { len, max } => write!(f, "frame of {len} bytes, most is {max}"),
            Self::ChecksumOffload => f.write_str("checksum offload not negotiated or out of frame"),
            Self::NoControlQueue => f.write_str("control queue not negotiated"),
            Self::CtrlTooLarge => f.write_str("control command too large"),
            Self::CtrlRejected => f.write_str("device rejected the control command"),
            Self::CtrlBadAck(a) => write!(f, "device wrote control ack {a:#04x}"),
            Self::CtrlBusy => f.write_str("control queue holds an unanswered command"),
            Self::AllocFailed => f.write_str("DMA allocation failed"),
            Self::NotReady => f.write_str("driver not operational"),
            Self::NeedsReset => f.write_str("device needs a reset"),
            Self::Queue(e) => write!(f, "virtqueue: {e}"),
            Self::Transport(e) => write!(f, "transport: {e}"),
        }
    }
}

impl core::error::Error for NetDriverError {}

impl NetDriverError {
    /// What a user can do about this error, in words for a boot log (`None`: the message says
    /// it all). Queue and transport errors take the queue layer's hint
    /// ([`TransportError::hint`]) except where a network device has its own remedy (Vireo's
    /// `vireo.net.*` options, `virtio-net` device properties).
    #[must_use]
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::FrameTooLarge { .. } | Self::CtrlTooLarge => None,
            Self::TxFull => Some("poll (or wait for the device) and send again"),
            Self::ChecksumOffload => Some(
                "checksum offload needs VIRTIO_NET_F_CSUM: keep vireo.net.csum=on and the \
                 device's csum=on (QEMU), or compute the checksum in software",
            ),
            Self::NoControlQueue => Some(
                "the control queue was not negotiated: keep vireo.net.ctrl_vq=on and give the \
                 device one (QEMU: ctrl_vq=on, ctrl_rx=on on the -device)",
            ),
            Self::CtrlRejected => Some(
                "the device refused the control command: it may not implement it (QEMU: check \
                 ctrl_rx= and ctrl_mac_addr= on the -device)",
            ),
            Self::CtrlBadAck(_) => Some(BROKEN_DEVICE_HINT),
            Self::CtrlBusy | Self::NeedsReset => {
                Some("reset the device (NetDriver::reset_and_reinit)")
            }
            Self::NotReady => Some(
                "an earlier reset or re-initialisation failed (logged when it happened): the \
                 card stays unusable until the next boot",
            ),
            Self::AllocFailed => Some(
                "out of device memory: give the machine more RAM (QEMU: -m) or use smaller \
                 queues (vireo.net.queue_size=)",
            ),
            Self::Queue(QueueError::ChainTooLong) => Some(
                "a frame to send takes 2 descriptors (header, data): give the queues at least 2, \
                 a power of two (vireo.net.queue_size=; QEMU: rx_queue_size=, tx_queue_size= on \
                 the -device)",
            ),
            Self::Transport(TransportError::VectorRejected) => Some(
                "the device refused an MSI-X vector: give it more (QEMU: vectors=N on the \
                 -device) or poll (vireo.net.polled=on)",
            ),
            Self::Transport(TransportError::QueueUnavailable) => Some(
                "the device lacks its receive, transmit or control queue, or offers size 0: \
                 turn the control queue off (vireo.net.ctrl_vq=off) or check the device's \
                 queue properties (QEMU: ctrl_vq=, rx_queue_size=, tx_queue_size=)",
            ),
            Self::Queue(e) => e.hint(),
            Self::Transport(e) => e.hint(),
        }
    }
}

impl From<TransportError> for NetDriverError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Queue(q) => q.into(),
            other => Self::Transport(other),
        }
    }
}

impl From<QueueError> for NetDriverError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::AllocFailed => Self::AllocFailed,
            other => Self::Queue(other),
        }
    }
}

/// Counters of what the driver did and of what it dropped, since initialisation (a reset
/// keeps them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetDriverStats {
    /// Frames delivered to the caller.
    pub rx_frames: u64,
    /// Bytes of those frames (net header excluded).
    pub rx_bytes: u64,
    /// Delivered frames that spanned several merged buffers and were copied into one.
    pub rx_merged: u64,
    /// Delivered frames the device flagged `DATA_VALID` (and not `NEEDS_CSUM`): with
    /// `VIRTIO_NET_F_GUEST_CSUM` accepted on that flag; without it smoltcp verifies them.
    pub rx_data_valid: u64,
    /// Delivered frames flagged `NEEDS_CSUM` (with `VIRTIO_NET_F_GUEST_CSUM`): accepted
    /// without computing anything, since the device validated every checksum before the
    /// partial one it left (virtio 1.2 §5.1.6.4).
    pub rx_needs_csum: u64,
    /// Delivered frames with neither flag whose TCP or UDP checksum the driver verified (with
    /// `VIRTIO_NET_F_GUEST_CSUM`; UDP over IPv4 sent without a checksum included).
    pub rx_csum_verified: u64,
    /// Dropped: the device wrote fewer bytes than a net header.
    pub rx_short: u64,
    /// Dropped: longer than the MTU allows (or than the merged buffers posted).
    pub rx_oversize: u64,
    /// Dropped: `num_buffers` of 0, or more buffers than the device had used.
    pub rx_bad_num_buffers: u64,
    /// Delivered coalesced TCP segments (`GSO_TCPV4`/`TCPV6`, with `VIRTIO_NET_F_GUEST_TSO4`
    /// or `TSO6`).
    pub rx_gso: u64,
    /// Dropped: a GSO type not negotiated or unknown, or a coalesced frame that is not one TCP
    /// segment over the IP version its type names, its IP length covering the frame.
    pub rx_bad_gso: u64,
    /// Dropped: `NEEDS_CSUM` with `csum_start`/`csum_offset` outside the frame.
    pub rx_bad_csum: u64,
    /// Dropped: a TCP or UDP checksum the driver verified (neither flag set, with
    /// `VIRTIO_NET_F_GUEST_CSUM`) was wrong.
    pub rx_csum_failed: u64,
    /// Frames handed to the device.
    pub tx_frames: u64,
    /// Bytes of those frames (net header excluded).
    pub tx_bytes: u64,
    /// Of those, TCP segments the device was asked to cut (`VIRTIO_NET_F_HOST_TSO4`).
    pub tx_tso: u64,
    /// Driver-to-device notifications sent for the rx queue (refills).
    pub rx_kicks: u64,
    /// Driver-to-device notifications sent for the tx queue (flushes).
    pub tx_kicks: u64,
    /// Errors from the phy layer, where smoltcp's interface has no way to report them (see
    /// [`NetDriver::take_error`](super::NetDriver::take_error)).
    pub phy_errors: u64,
}

impl NetDriverStats {
    /// Frames dropped for any reason.
    #[must_use]
    pub fn rx_dropped(&self) -> u64 {
        self.rx_short
            + self.rx_oversize
            + self.rx_bad_num_buffers
            + self.rx_bad_csum
            + self.rx_csum_failed
            + self.rx_bad_gso
    }
}

impl NetDriverStats {
    /// Adds `other`'s counters to these.
    pub(crate) fn add(&mut self, other: &Self) {
        let pairs = [
            (&mut self.rx_frames, other.rx_frames),
            (&mut self.rx_bytes, other.rx_bytes),
            (&mut self.rx_merged, other.rx_merged),
            (&mut self.rx_data_valid, other.rx_data_valid),
            (&mut self.rx_needs_csum, other.rx_needs_csum),
            (&mut self.rx_csum_verified, other.rx_csum_verified),
            (&mut self.rx_short, other.rx_short),
            (&mut self.rx_oversize, other.rx_oversize),
            (&mut self.rx_bad_num_buffers, other.rx_bad_num_buffers),
            (&mut self.rx_gso, other.rx_gso),
            (&mut self.rx_bad_gso, other.rx_bad_gso),
            (&mut self.rx_bad_csum, other.rx_bad_csum),
            (&mut self.rx_csum_failed, other.rx_csum_failed),
            (&mut self.tx_frames, other.tx_frames),
            (&mut self.tx_bytes, other.tx_bytes),
            (&mut self.tx_tso, other.tx_tso),
            (&mut self.rx_kicks, other.rx_kicks),
            (&mut self.tx_kicks, other.tx_kicks),
            (&mut self.phy_errors, other.phy_errors),
        ];
        for (total, more) in pairs {
            *total += more;
        }
    }
}
