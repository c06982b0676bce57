//! Test doubles for host tests of this crate and of drivers (feature `test-utils`), in one
//! place, as rust-vmm's `virtio-queue` keeps its `mock` module:
//!
//! - [`GuestDma`]: a DMA allocator over `vm-memory` guest memory whose device ("guest physical")
//!   addresses are far from the host addresses the driver sees, so a missing translation makes
//!   the device fault, and whose freed blocks are poisoned;
//! - [`HostDma`]: identity-mapped host memory, for benchmarks and fuzz targets in which this
//!   process plays the device through the ring addresses;
//! - [`PackedDevice`]: the device side of a packed ring, written from the virtio 1.2 §2.8 text
//!   and sharing no code with the driver;
//! - the register-level transport fakes and [`FakeClock`], re-exported from
//!   [`transport::fake`](crate::transport::fake).
//!
//! They need `std`, so they are for host builds only.

extern crate std;

mod guest_dma;
mod packed_device;

pub use self::{
    guest_dma::{GUEST_BASE, GuestDma},
    packed_device::{PackedChain, PackedDevice},
};
pub use crate::{dma::HostDma, transport::fake::FakeClock};
