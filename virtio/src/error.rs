//! The queue layer's errors.

use core::fmt;

use crate::{dma::DmaAllocator, token::AvailBufferToken};

/// Why a queue operation failed.
///
/// The variants from [`UsedIdOutOfRange`](Self::UsedIdOutOfRange) on report a device that broke
/// the virtio protocol. They leave the queue unchanged: the driver should reset the device and
/// call [`Virtq::reset`](crate::Virtq::reset), which hands back every token still in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The token has neither a device-readable nor a device-writable element.
    EmptyToken,
    /// An element of the token has length zero.
    EmptyElement,
    /// An element of the token is longer than a descriptor can describe (`u32::MAX`).
    ElementTooLarge,
    /// The token has more elements than the queue size (virtio 1.2 §2.7.5.3.1, §2.8.18).
    ChainTooLong,
    /// Not enough free descriptors right now; retry after polling used buffers.
    QueueFull,
    /// Indirect dispatch was asked for but `VIRTIO_F_INDIRECT_DESC` was not negotiated.
    IndirectNotNegotiated,
    /// The DMA allocator could not provide ring or indirect-table memory.
    AllocFailed,
    /// The queue size is zero, above 32768, or (split ring) not a power of two.
    InvalidQueueSize,
    /// The device returned a buffer id at or beyond the queue size.
    UsedIdOutOfRange {
        /// The id the device wrote.
        id: u32,
    },
    /// The device returned a buffer id that is not in flight (never made available, or
    /// already used).
    UsedIdNotInFlight {
        /// The id the device wrote.
        id: u32,
    },
    /// The device claims to have written more bytes than the buffer's device-writable part holds.
    WrittenLenTooLarge {
        /// The length the device wrote.
        len: u32,
        /// The capacity of the device-writable part.
        capacity: u64,
    },
    /// The split ring's `used.idx` ran further ahead than the number of buffers in flight.
    UsedIndexAhead {
        /// The `used.idx` the device wrote.
        used_idx: u16,
        /// The driver's last seen used index.
        last_used_idx: u16,
    },
    /// A packed-ring descriptor was marked used while no buffer was in flight.
    UsedWithoutInFlight,
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyToken => f.write_str("buffer token has no elements"),
            Self::EmptyElement => f.write_str("buffer element has length zero"),
            Self::ElementTooLarge => f.write_str("buffer element longer than u32::MAX"),
            Self::ChainTooLong => f.write_str("buffer token has more elements than the queue size"),
            Self::QueueFull => f.write_str("not enough free descriptors"),
            Self::IndirectNotNegotiated => f.write_str("VIRTIO_F_INDIRECT_DESC not negotiated"),
            Self::AllocFailed => f.write_str("DMA allocation failed"),
            Self::InvalidQueueSize => f.write_str("invalid queue size"),
            Self::UsedIdOutOfRange { id } => write!(f, "device used id {id}, out of range"),
            Self::UsedIdNotInFlight { id } => write!(f, "device used id {id}, not in flight"),
            Self::WrittenLenTooLarge { len, capacity } => {
                write!(f, "device wrote {len} bytes into {capacity} writable bytes")
            }
            Self::UsedIndexAhead {
                used_idx,
                last_used_idx,
            } => write!(
                f,
                "device used index {used_idx} runs ahead of last used {last_used_idx}"
            ),
            Self::UsedWithoutInFlight => {
                f.write_str("device used a descriptor with none in flight")
            }
        }
    }
}

impl core::error::Error for QueueError {}

impl QueueError {
    /// What a user can do about this error, in words for a boot log (`None`: nothing beyond the
    /// message). The queue layer does not know the device type: a driver's error gives the
    /// option of its own for the cases it knows better (see `BlkDriverError::hint` in
    /// `vireo-drivers`).
    #[must_use]
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::EmptyToken
            | Self::EmptyElement
            | Self::ElementTooLarge
            | Self::IndirectNotNegotiated => Some(
                "the driver built a request the queue cannot carry: a driver bug, please report \
                 it with this log",
            ),
            Self::ChainTooLong => Some(
                "the queue is smaller than one request needs: give it more descriptors (Vireo's \
                 vireo.blk.queue_size= or vireo.net.queue_size=, a power of two; QEMU: the \
                 device's queue-size property)",
            ),
            Self::QueueFull => Some(
                "every descriptor is in flight: retry once the device has completed requests; a \
                 larger queue size makes it rarer",
            ),
            Self::AllocFailed => Some(
                "out of device memory: give the machine more RAM (QEMU: -m) or use smaller \
                 queues (vireo.blk.queue_size=, vireo.net.queue_size=)",
            ),
            Self::InvalidQueueSize => Some(
                "queue sizes run from 1 to 32768 and a split ring's is a power of two: choose \
                 such a size (vireo.blk.queue_size=, vireo.net.queue_size=; QEMU: queue-size=)",
            ),
            Self::UsedIdOutOfRange { .. }
            | Self::UsedIdNotInFlight { .. }
            | Self::WrittenLenTooLarge { .. }
            | Self::UsedIndexAhead { .. }
            | Self::UsedWithoutInFlight => Some(BROKEN_DEVICE_HINT),
        }
    }
}

/// The hint for a device that broke the virtio protocol: nothing a user can set fixes it (drivers'
/// errors use it for their own protocol violations).
pub const BROKEN_DEVICE_HINT: &str = "the device broke the virtio protocol: nothing to set on \
    Vireo's side; report a bug to the device's (or QEMU's) authors with this log";

/// A failed [`Virtq::dispatch`](crate::Virtq::dispatch): the reason and the caller's token,
/// intact.
pub struct DispatchError<A: DmaAllocator> {
    /// Why the token was not made available.
    pub error: QueueError,
    /// The token, unchanged.
    pub token: AvailBufferToken<A>,
}

impl<A: DmaAllocator> fmt::Debug for DispatchError<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatchError")
            .field("error", &self.error)
            .field("token", &self.token)
            .finish()
    }
}

impl<A: DmaAllocator> fmt::Display for DispatchError<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

/// Why feature negotiation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureError {
    /// The device does not offer `VIRTIO_F_VERSION_1`; legacy devices are not supported.
    Version1NotOffered,
}

impl fmt::Display for FeatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version1NotOffered => f.write_str("device does not offer VIRTIO_F_VERSION_1"),
        }
    }
}

impl core::error::Error for FeatureError {}

impl FeatureError {
    /// What a user can do about this error, in words for a boot log.
    #[must_use]
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Version1NotOffered => Some(LEGACY_DEVICE),
        }
    }
}

/// The hint for a legacy-only (pre-1.0) device.
pub(crate) const LEGACY_DEVICE: &str = "a legacy (pre-virtio-1.0) device: Vireo drives virtio \
    1.0 and later only; in QEMU give virtio-pci devices disable-legacy=on (and no \
    disable-modern=on), virtio-mmio ones -global virtio-mmio.force-legacy=false";
