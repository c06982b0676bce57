//! What the platform lends a transport: register blocks, PCI configuration space, a clock.

/// A block of device registers (a mapped BAR range, or an MMIO window).
///
/// Accesses are volatile and little-endian, as the device defines them. An access outside the
/// block or misaligned is a bug of the transport, and an implementation may panic on it; it must
/// never reach memory outside the block.
pub trait RegisterBlock {
    /// The block's length in bytes.
    fn len(&self) -> usize;
    /// Whether the block is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads the 8-bit register at `offset`.
    fn read_u8(&self, offset: usize) -> u8;
    /// Reads the 16-bit register at `offset`.
    fn read_u16(&self, offset: usize) -> u16;
    /// Reads the 32-bit register at `offset`.
    fn read_u32(&self, offset: usize) -> u32;
    /// Writes the 8-bit register at `offset`.
    fn write_u8(&self, offset: usize, value: u8);
    /// Writes the 16-bit register at `offset`.
    fn write_u16(&self, offset: usize, value: u16);
    /// Writes the 32-bit register at `offset`.
    fn write_u32(&self, offset: usize, value: u32);
}

/// A PCI function's configuration space (the 256 bytes of conventional PCI).
///
/// Reads of a device that is gone return all ones, as the bus does.
pub trait ConfigSpace {
    /// Reads the byte at `offset`.
    fn read_u8(&self, offset: u16) -> u8;
    /// Reads the little-endian 16-bit word at `offset` (2-aligned).
    fn read_u16(&self, offset: u16) -> u16;
    /// Reads the little-endian 32-bit word at `offset` (4-aligned).
    fn read_u32(&self, offset: u16) -> u32;
    /// Writes the byte at `offset`.
    fn write_u8(&self, offset: u16, value: u8);
    /// Writes the 16-bit word at `offset` (2-aligned).
    fn write_u16(&self, offset: u16, value: u16);
    /// Writes the 32-bit word at `offset` (4-aligned).
    fn write_u32(&self, offset: u16, value: u32);
}

/// Monotonic time, for bounded waits on a device.
pub trait Clock {
    /// Nanoseconds since an arbitrary fixed point; never decreases.
    fn now_ns(&self) -> u64;
    /// Called between two polls of a device register (a spin hint by default).
    fn relax(&self) {
        core::hint::spin_loop();
    }
}
