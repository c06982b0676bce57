//! Host test support for the virtio-blk and virtio-net drivers: a DMA allocator over `vm-memory`
//! guest memory, a fake [`Transport`](vireo_virtio::transport::Transport) with in-memory
//! registers, and simulated virtio-blk and virtio-net devices that serve split rings through
//! rust-vmm's `virtio-queue` and packed rings through a small device side written from virtio
//! 1.2 §2.8 (plus the checking body of the `net_rx` fuzz target).

#![allow(dead_code, reason = "each test binary uses a different subset")]

/// The virtio crate's test DMA allocator, shared rather than copied.
#[path = "../../../virtio/tests/support/dma.rs"]
pub mod dma;
pub mod helpers;
pub mod net;
pub mod net_rx_fuzz;
pub mod packed;
pub mod sim;

#[allow(unused_imports, reason = "the net test binaries use no blk helper")]
pub use self::{dma::GuestDma, helpers::*, sim::*};
