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

/// Reads the 128 feature bits through a select/window register pair (virtio 1.2 §4.1.4.3 and
/// §4.2.2 both expose them as four 32-bit windows).
pub(crate) fn read_feature_windows<R: RegisterBlock + ?Sized>(
    regs: &R,
    select: usize,
    window: usize,
) -> virtio_spec::F {
    let mut bits = 0u128;
    for index in 0..4u32 {
        regs.write_u32(select, index);
        bits |= u128::from(regs.read_u32(window)) << (32 * index);
    }
    virtio_spec::F::from_bits_retain(virtio_spec::le128::from_ne(bits))
}

/// Writes the 128 feature bits through a select/window register pair.
pub(crate) fn write_feature_windows<R: RegisterBlock + ?Sized>(
    regs: &R,
    select: usize,
    window: usize,
    features: virtio_spec::F,
) {
    let bits = features.bits().to_ne();
    for index in 0..4u32 {
        regs.write_u32(select, index);
        // Truncation intended: one 32-bit window.
        regs.write_u32(window, (bits >> (32 * index)) as u32);
    }
}
