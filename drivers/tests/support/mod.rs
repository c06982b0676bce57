//! Host test support for the virtio-blk and virtio-net drivers: a fake
//! [`Transport`](vireo_virtio::transport::Transport) with in-memory registers, and simulated
//! virtio-blk and virtio-net devices that serve split rings through rust-vmm's `virtio-queue` and
//! packed rings through the virtqueue core's packed-ring device (plus the checking body of the
//! `net_rx` fuzz target). The DMA allocator, the packed-ring device and the clock are the core's
//! test doubles (`vireo_virtio::mock`, feature `test-utils`).

#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod frames;
pub mod helpers;
pub mod net;
pub mod net_rx_fuzz;
pub mod sim;
pub mod tso;

#[allow(unused_imports, reason = "the net test binaries use no blk helper")]
pub use self::{helpers::*, sim::*};
#[allow(unused_imports, reason = "the net test binaries use no blk helper")]
pub use vireo_virtio::mock::GuestDma;
