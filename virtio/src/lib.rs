//! Vireo's virtqueue core: split (virtio 1.2 §2.7) and packed (§2.8) rings, buffer tokens and
//! feature negotiation, with no kernel code.
//!
//! Layer: the lowest of three. The drivers (`vireo-drivers`) build requests from buffer tokens
//! and the kernel (`vireo`) supplies memory, registers and interrupts; neither touches ring
//! memory.
//!
//! The kernel plugs in through two traits: [`DmaAllocator`] (device memory and
//! virtual→physical translation) and [`Notifier`] (driver→device notification). Both ring
//! layouts, [`SplitVq`] and [`PackedVq`], are one generic [`Queue`] and implement [`Virtq`].
//! The device is not trusted: every value it writes into ring memory is checked before use (see
//! [`QueueError`]).

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

mod barrier;
#[allow(unsafe_code)]
mod dma;
mod error;
pub mod features;
mod inflight;
mod layout;
#[cfg(feature = "test-utils")]
pub mod mock;
mod packed;
mod queue;
mod split;
mod token;
pub mod transport;
mod virtq;
pub mod wait;

pub use allocator_api2;
pub use virtio_spec;

pub use crate::{
    dma::{DmaAllocator, DmaBuffer, Notifier},
    error::{BROKEN_DEVICE_HINT, DispatchError, FeatureError, QueueError},
    features::negotiate,
    packed::PackedVq,
    queue::Queue,
    split::SplitVq,
    token::{AvailBufferToken, BufferType, UsedBufferToken},
    virtq::{RingAddresses, RingState, Virtq},
};
