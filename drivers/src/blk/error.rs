//! [`BlkDriverError`]: why the virtio-blk driver refused a request or what the device answered.
//!
//! Layer: driver (`vireo-drivers`). Applications see these wrapped in the kernel's
//! `vireo::block::BlockError::Driver`, next to the kernel's own failures (timeouts, memory).

use core::fmt;

use vireo_virtio::{BROKEN_DEVICE_HINT, DmaAllocator, QueueError, transport::TransportError};

use super::request::Request;

/// Why a virtio-blk operation failed.
///
/// Variants up to [`Unsupported`](Self::Unsupported) are validation failures: the request never
/// reached the device. [`IoError`](Self::IoError) and [`DeviceUnsupported`](Self::DeviceUnsupported)
/// are the device's answers. [`BadStatus`](Self::BadStatus), [`UsedLength`](Self::UsedLength),
/// [`BadId`](Self::BadId) and [`Queue`](Self::Queue) report a device that broke the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkDriverError {
    /// The sector range ends beyond the capacity (or its arithmetic overflows).
    OutOfRange,
    /// The start sector or the length is not a multiple of the block size.
    Misaligned,
    /// A write, discard or write-zeroes on a read-only device.
    ReadOnly,
    /// No buffer, an empty buffer, no range or an empty range.
    EmptyBuffer,
    /// More segments than the device accepts in one request.
    TooManySegments {
        /// The most segments allowed.
        max: u32,
    },
    /// A segment (buffer, or discard/write-zeroes range) larger than the device accepts.
    SegmentTooLarge {
        /// The most bytes (data) or sectors (discard/write-zeroes ranges) allowed.
        max: u32,
    },
    /// The device did not offer this operation (flush, discard, write-zeroes).
    Unsupported,
    /// There is no request queue with this index.
    NoSuchQueue,
    /// The queue has no room for the request now; poll completions and retry.
    QueueFull,
    /// The driver could not allocate the request header or status byte.
    AllocFailed,
    /// The device completed the request with `VIRTIO_BLK_S_IOERR`.
    IoError,
    /// The device completed the request with `VIRTIO_BLK_S_UNSUPP`.
    DeviceUnsupported,
    /// The device wrote a status byte that is none of OK, IOERR, UNSUPP.
    BadStatus(u8),
    /// The device reported writing fewer bytes than the request's device-writable part
    /// (status byte, data it claims to have read).
    UsedLength {
        /// The length the device reported.
        len: u32,
        /// The length the request requires.
        expected: u32,
    },
    /// The device's id string is not NUL-padded ASCII (§5.2.6).
    BadId,
    /// The device was reset while the request was in flight; it may or may not have run.
    DeviceReset,
    /// The configuration reports a capacity whose byte size overflows 64 bits.
    BadCapacity,
    /// The driver is not operational (a reset or re-initialisation failed).
    NotReady,
    /// The device set `DEVICE_NEEDS_RESET`: call
    /// [`BlkDriver::reset_and_reinit`](super::BlkDriver::reset_and_reinit).
    NeedsReset,
    /// A virtqueue error; the protocol-violation kinds mean the device must be reset.
    Queue(QueueError),
    /// A transport error during initialisation, configuration access or reset.
    Transport(TransportError),
}

impl fmt::Display for BlkDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange => f.write_str("sector range beyond the disk capacity"),
            Self::Misaligned => f.write_str("sector or length not a multiple of the block size"),
            Self::ReadOnly => f.write_str("device is read-only"),
            Self::EmptyBuffer => f.write_str("empty buffer or range"),
            Self::TooManySegments { max } => write!(f, "more than {max} segments"),
            Self::SegmentTooLarge { max } => write!(f, "segment larger than {max}"),
            Self::Unsupported => f.write_str("operation not offered by the device"),
            Self::NoSuchQueue => f.write_str("no such request queue"),
            Self::QueueFull => f.write_str("request queue full"),
            Self::AllocFailed => f.write_str("DMA allocation failed"),
            Self::IoError => f.write_str("device reported an I/O error"),
            Self::DeviceUnsupported => f.write_str("device reported the request unsupported"),
            Self::BadStatus(s) => write!(f, "device wrote invalid status {s:#04x}"),
            Self::UsedLength { len, expected } => {
                write!(
                    f,
                    "device reported {len} bytes written, expected {expected}"
                )
            }
            Self::BadId => f.write_str("device id is not NUL-padded ASCII"),
            Self::DeviceReset => f.write_str("device reset with the request in flight"),
            Self::BadCapacity => f.write_str("device capacity overflows"),
            Self::NotReady => f.write_str("driver not operational"),
            Self::NeedsReset => f.write_str("device needs a reset"),
            Self::Queue(e) => write!(f, "virtqueue: {e}"),
            Self::Transport(e) => write!(f, "transport: {e}"),
        }
    }
}

impl core::error::Error for BlkDriverError {}

impl BlkDriverError {
    /// What a user can do about this error, in words for a boot log (`None`: the message says
    /// it all). Queue and transport errors take the queue layer's hint
    /// ([`TransportError::hint`]) except where a block device has its own remedy (Vireo's
    /// `vireo.blk.*` options, `virtio-blk` device properties).
    #[must_use]
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::OutOfRange
            | Self::Misaligned
            | Self::EmptyBuffer
            | Self::TooManySegments { .. }
            | Self::SegmentTooLarge { .. }
            | Self::NoSuchQueue => None,
            Self::ReadOnly => Some(
                "the disk is read-only: attach it writable (QEMU: no readonly=on on the -drive)",
            ),
            Self::Unsupported | Self::DeviceUnsupported => Some(
                "the device does not offer this operation: check BlkDriver::supports first, or \
                 enable it on the device (QEMU: discard=on, write-zeroes=on on the -device)",
            ),
            Self::QueueFull => Some("poll completions and submit again"),
            Self::IoError => Some(
                "the host could not carry out the I/O: check the disk image (path, permissions, \
                 free space) and QEMU's messages",
            ),
            Self::BadId => Some(
                "the device's serial is not ASCII: give it an ASCII one (QEMU: serial=NAME on \
                 the -device)",
            ),
            Self::DeviceReset => Some("the device was reset: submit the request again"),
            Self::NotReady => Some(
                "an earlier reset or re-initialisation failed (logged when it happened): the \
                 disk stays unusable until the next boot",
            ),
            Self::NeedsReset => Some("reset the device (BlkDriver::reset_and_reinit)"),
            Self::BadStatus(_) | Self::UsedLength { .. } | Self::BadCapacity => {
                Some(BROKEN_DEVICE_HINT)
            }
            Self::AllocFailed
            | Self::Queue(QueueError::AllocFailed)
            | Self::Transport(TransportError::Queue(QueueError::AllocFailed)) => Some(
                "out of device memory: give the machine more RAM (QEMU: -m) or use smaller \
                 queues (vireo.blk.queue_size=, vireo.blk.queues=)",
            ),
            Self::Queue(QueueError::ChainTooLong)
            | Self::Transport(TransportError::Queue(QueueError::ChainTooLong)) => Some(
                "a block request takes 3 descriptors or more (header, data, status): give the \
                 queue at least 4, a power of two (vireo.blk.queue_size=; QEMU: queue-size= on \
                 the -device)",
            ),
            Self::Transport(TransportError::VectorRejected) => Some(
                "the device refused an MSI-X vector: give it more (QEMU: vectors=N on the \
                 -device) or poll (vireo.blk.polled=on)",
            ),
            Self::Transport(TransportError::QueueUnavailable) => Some(
                "the device lacks a request queue or offers size 0: use fewer queues \
                 (vireo.blk.queues=1) or check QEMU's num-queues= and queue-size=",
            ),
            Self::Queue(e) => e.hint(),
            Self::Transport(e) => e.hint(),
        }
    }
}

impl From<TransportError> for BlkDriverError {
    fn from(e: TransportError) -> Self {
        Self::Transport(e)
    }
}

/// A refused [`submit`](super::BlkDriver::submit): the reason, and the request with the caller's
/// buffers, intact (it did not reach the device).
pub struct SubmitError<A: DmaAllocator> {
    /// Why the request was refused.
    pub error: BlkDriverError,
    /// The request, as given.
    pub request: Request<A>,
}

impl<A: DmaAllocator> fmt::Debug for SubmitError<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitError")
            .field("error", &self.error)
            .field("request", &self.request)
            .finish()
    }
}

impl<A: DmaAllocator> fmt::Display for SubmitError<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}
