//! The [`ConfigSpace`] seam: the `virtio` crate's trait, implemented here by the kernel for
//! [`PciDevice`](super::PciDevice) and [`PciConfig`](super::PciConfig). Fakes implement it over a
//! 256-byte array: `vireo_virtio`'s `FakeConfig` (`test-utils`), for the host tests of the virtio
//! PCI transport and its capability parser, and the in-QEMU test `kernel/tests/pci_caps.rs`, which
//! drives `capability.rs` with hostile lists. This file, `regs.rs` and `capability.rs` use nothing
//! but `core`, the trait and each other (virtio's vendor capabilities are parsed by
//! `vireo_virtio::transport::VirtioPciCap`).
//!
//! What the kernel's implementations guarantee, beyond the trait's contract:
//! - A misaligned or out-of-range access (beyond the 256 bytes reachable through port I/O) reads
//!   all-ones, as an absent device answers, and such a write is ignored; nothing panics on an
//!   offset, so offsets taken from device data can be passed straight through.
//! - Writes that would move or widen address decoding (BARs, the expansion ROM, bridge windows,
//!   bus numbers and bridge control, setting a clear decode bit in the command register) are
//!   refused with a warning in the log and otherwise ignored.
//! - Multi-byte values are little-endian, as on the bus.
//!
//! Everything read through it comes from a device and is untrusted.

pub use vireo_virtio::transport::ConfigSpace;
