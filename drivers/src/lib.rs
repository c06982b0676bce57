//! Vireo's virtio device drivers, on top of the virtqueue core (`vireo-virtio`).
//!
//! Layer: the middle of three, below the kernel (`vireo`), which owns waiting, memory and the
//! APIs applications use. Each driver's types are named for its layer (`BlkDriverError`,
//! `BlkDeviceConfig`, `NetDriverError`, `NetDeviceConfig`, `NetDriverStats`) so they cannot be
//! mistaken for the kernel's (`BlockError`, `BlockInfo`, `NetError`, `NetInfo`, `NetStats`).
//!
//! - [`blk`]: virtio-blk (virtio 1.2 §5.2).
//! - [`net`]: virtio-net (virtio 1.2 §5.1), with a smoltcp `phy::Device`.
//!
//! Drivers hold no waiting policy: they offer non-blocking submit and poll, and the kernel
//! decides whether to wait for an interrupt or to poll.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod blk;
mod lifecycle;
pub mod net;
