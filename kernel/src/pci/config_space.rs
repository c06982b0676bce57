//! The [`ConfigSpace`] seam. This file, `regs.rs`, `capability.rs` and `virtio.rs` use nothing but
//! `core` and each other, so they can move as they are to a crate below the kernel (the `virtio`
//! crate's PCI transport) with the kernel then implementing the trait from there.

/// Access to one PCI function's configuration space, with no dependency on the kernel.
///
/// This is the seam the `virtio` crate's PCI transport uses (to walk capabilities, read the
/// virtio structure locations and flip MSI-X bits): the kernel implements it for
/// [`PciDevice`](super::PciDevice) and [`PciConfig`](super::PciConfig), host tests implement it
/// over a byte array. Everything it returns comes from a device and must be treated as untrusted
/// by the caller.
///
/// Contract for implementations:
/// - An access is naturally aligned and inside the space (256 bytes through port I/O, 4096 through
///   ECAM); a misaligned or out-of-range read returns all-ones (what an absent device answers)
///   and such a write is ignored. Implementations never panic on an offset, so offsets taken from
///   device data can be passed straight through.
/// - An implementation may refuse writes that would break its own memory safety (the kernel's
///   refuses to move BARs through this interface); refused writes are ignored.
/// - Multi-byte values are little-endian, as on the bus.
pub trait ConfigSpace {
    /// Reads the byte at `offset`.
    fn read_u8(&self, offset: u16) -> u8;
    /// Reads the 16-bit value at `offset` (2-aligned).
    fn read_u16(&self, offset: u16) -> u16;
    /// Reads the 32-bit value at `offset` (4-aligned).
    fn read_u32(&self, offset: u16) -> u32;
    /// Writes the byte at `offset`.
    fn write_u8(&self, offset: u16, value: u8);
    /// Writes the 16-bit value at `offset` (2-aligned).
    fn write_u16(&self, offset: u16, value: u16);
    /// Writes the 32-bit value at `offset` (4-aligned).
    fn write_u32(&self, offset: u16, value: u32);
}
