//! The interface shared by both ring layouts.

use alloc::{collections::VecDeque, vec::Vec};
use core::fmt;

use crate::{
    dma::DmaAllocator,
    error::{DispatchError, QueueError},
    token::{AvailBufferToken, BufferType, UsedBufferToken},
};

/// Device-visible addresses of a queue's three areas, for the transport to program
/// (virtio 1.2 §2.6: descriptor area, driver area, device area).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingAddresses {
    /// Split: descriptor table. Packed: descriptor ring.
    pub descriptor_area: u64,
    /// Split: available ring. Packed: driver event suppression structure.
    pub driver_area: u64,
    /// Split: used ring. Packed: device event suppression structure.
    pub device_area: u64,
}

/// A virtqueue as seen by a driver: make buffers available, take used buffers back.
///
/// Everything the device writes into ring memory is checked before use: used ids must be in
/// range and in flight, written lengths must fit the device-writable part, the used index may
/// not run ahead of what is in flight, and packed used descriptors must match an in-flight
/// buffer. A violation is a [`QueueError`]; the queue is left unchanged, and no token is lost or
/// returned twice.
pub trait Virtq<A: DmaAllocator> {
    /// Makes one token available and notifies the device if it asked to be notified.
    ///
    /// Returns whether the device was notified.
    ///
    /// # Errors
    ///
    /// The token comes back intact inside the error: empty token or element, too many elements,
    /// [`QueueError::QueueFull`], indirect without `VIRTIO_F_INDIRECT_DESC`, allocation failure.
    fn dispatch(
        &mut self,
        token: AvailBufferToken<A>,
        buffer_type: BufferType,
    ) -> Result<bool, DispatchError<A>>;

    /// Makes tokens available from the front of `tokens` until it is empty, then decides the
    /// notification once for the whole batch.
    ///
    /// Returns whether the device was notified.
    ///
    /// # Errors
    ///
    /// On the first token that cannot be dispatched, the tokens before it stay available (and
    /// the device is notified for them if it asked), and that token and the rest stay in
    /// `tokens`, intact.
    fn dispatch_batch(
        &mut self,
        tokens: &mut VecDeque<AvailBufferToken<A>>,
        buffer_type: BufferType,
    ) -> Result<bool, QueueError>;

    /// Takes back the next used buffer, if any: the exact token dispatched, with the length the
    /// device wrote. The device may complete buffers in any order.
    ///
    /// # Errors
    ///
    /// A device protocol violation (see [`QueueError`]); the queue is unchanged.
    fn poll(&mut self) -> Result<Option<UsedBufferToken<A>>, QueueError>;

    /// Asks the device to notify the driver when it uses buffers (used-buffer notifications).
    ///
    /// Returns `true` if used buffers are already pending: poll again before waiting, or the
    /// notification for them may never come.
    #[must_use]
    fn enable_notifications(&mut self) -> bool;

    /// Asks the device not to notify the driver of used buffers (a hint the device may ignore).
    fn disable_notifications(&mut self);

    /// The queue size (number of descriptors).
    #[must_use]
    fn size(&self) -> u16;

    /// The queue index within its device.
    #[must_use]
    fn index(&self) -> u16;

    /// Number of free descriptors (a direct token of `n` elements needs `n`, an indirect one 1).
    #[must_use]
    fn free_descriptors(&self) -> u16;

    /// Number of tokens the device has not given back yet.
    #[must_use]
    fn in_flight(&self) -> usize;

    /// Returns the queue to its initial, empty state, after a device reset or a
    /// `VIRTIO_F_RING_RESET` queue reset, and gives back every token that was in flight.
    /// The ring addresses do not change.
    #[must_use = "the in-flight tokens are handed back; dropping them frees their buffers"]
    fn reset(&mut self) -> Vec<AvailBufferToken<A>>;

    /// The device-visible addresses of the queue's areas.
    #[must_use]
    fn ring_addresses(&self) -> RingAddresses;

    /// Notifies the device of this queue whatever its suppression state says: a notification
    /// that may have been lost is sent again (a spurious one is harmless, virtio 1.2 §2.7.13.4).
    fn notify(&mut self);

    /// A snapshot of the ring's indices and notification-suppression fields as both sides see
    /// them, for diagnostics: a driver that finds a used buffer without its interrupt logs it.
    #[must_use]
    fn ring_state(&self) -> RingState;
}

/// The notification state of a ring at one moment (see [`Virtq::ring_state`]). Fields the
/// device writes are shown as read, unchecked: this is for a log line, not for decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingState {
    /// A split ring (virtio 1.2 §2.7).
    Split {
        /// The driver's `avail.idx`.
        avail_idx: u16,
        /// `avail.flags` (bit 0: `NO_INTERRUPT`).
        avail_flags: u16,
        /// `used_event` (meaningful with `EVENT_IDX`).
        used_event: u16,
        /// The device's `used.idx`.
        used_idx: u16,
        /// `used.flags` (bit 0: `NO_NOTIFY`).
        used_flags: u16,
        /// `avail_event` (meaningful with `EVENT_IDX`).
        avail_event: u16,
        /// How far the driver has consumed the used ring.
        last_used_idx: u16,
        /// Tokens the device holds.
        in_flight: usize,
    },
    /// A packed ring (virtio 1.2 §2.8).
    Packed {
        /// Next descriptor the driver makes available, and its wrap counter.
        next_avail: u16,
        /// The driver's avail wrap counter.
        avail_wrap: bool,
        /// Next descriptor the device will mark used, and the used wrap counter.
        next_used: u16,
        /// The driver's used wrap counter.
        used_wrap: bool,
        /// The flags of the descriptor at `next_used`, as the device left them.
        next_used_flags: u16,
        /// Driver event suppression: flags and `off_wrap`.
        driver_event: (u16, u16),
        /// Device event suppression: flags and `off_wrap`.
        device_event: (u16, u16),
        /// Tokens the device holds.
        in_flight: usize,
    },
}

impl fmt::Display for RingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Split {
                avail_idx,
                avail_flags,
                used_event,
                used_idx,
                used_flags,
                avail_event,
                last_used_idx,
                in_flight,
            } => write!(
                f,
                "split avail.idx={avail_idx} avail.flags={avail_flags:#x} used_event={used_event} \
                 used.idx={used_idx} used.flags={used_flags:#x} avail_event={avail_event} \
                 last_used_idx={last_used_idx} in_flight={in_flight}"
            ),
            Self::Packed {
                next_avail,
                avail_wrap,
                next_used,
                used_wrap,
                next_used_flags,
                driver_event,
                device_event,
                in_flight,
            } => write!(
                f,
                "packed next_avail={next_avail}/{} next_used={next_used}/{} \
                 desc[next_used].flags={next_used_flags:#x} driver_event={:#x}/{:#x} \
                 device_event={:#x}/{:#x} in_flight={in_flight}",
                u8::from(avail_wrap),
                u8::from(used_wrap),
                driver_event.0,
                driver_event.1,
                device_event.0,
                device_event.1,
            ),
        }
    }
}

/// `vring_need_event` of virtio 1.2 §2.7.10 (and Linux `virtio_ring.h`): whether the index
/// `event` lies in the window `[old, new)` of indices just published, in 16-bit arithmetic.
pub(crate) fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}
