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

/// Writes the 128 feature bits through a select/window register pair, window 1 last.
///
/// QEMU's virtio-mmio (7.2) takes any non-zero select as window 1: there, windows 2 and 3 (zero)
/// land on window 1, and writing it last leaves bits 32..63 (`VIRTIO_F_VERSION_1`,
/// `VIRTIO_F_RING_PACKED`) as the driver chose them; written first, they would be wiped and the
/// device would run the split layout under a driver using packed. A device that follows the
/// spec gets all four windows either way.
pub(crate) fn write_feature_windows<R: RegisterBlock + ?Sized>(
    regs: &R,
    select: usize,
    window: usize,
    features: virtio_spec::F,
) {
    let bits = features.bits().to_ne();
    for index in [0u32, 2, 3, 1] {
        regs.write_u32(select, index);
        // Truncation intended: one 32-bit window.
        regs.write_u32(window, (bits >> (32 * index)) as u32);
    }
}

#[cfg(test)]
mod tests {
    use core::cell::RefCell;

    use super::*;

    /// A feature window that behaves as QEMU's virtio-mmio does: any non-zero select is window 1.
    struct ClampingWindows {
        select: RefCell<u32>,
        words: RefCell<[u32; 2]>,
    }

    impl RegisterBlock for ClampingWindows {
        fn len(&self) -> usize {
            8
        }
        fn read_u8(&self, _: usize) -> u8 {
            0
        }
        fn read_u16(&self, _: usize) -> u16 {
            0
        }
        fn read_u32(&self, offset: usize) -> u32 {
            match offset {
                4 => self.words.borrow()[usize::from(*self.select.borrow() != 0)],
                _ => *self.select.borrow(),
            }
        }
        fn write_u8(&self, _: usize, _: u8) {}
        fn write_u16(&self, _: usize, _: u16) {}
        fn write_u32(&self, offset: usize, value: u32) {
            match offset {
                4 => self.words.borrow_mut()[usize::from(*self.select.borrow() != 0)] = value,
                _ => *self.select.borrow_mut() = value,
            }
        }
    }

    #[test]
    fn window_one_survives_a_device_that_clamps_the_select() {
        let regs = ClampingWindows {
            select: RefCell::new(0),
            words: RefCell::new([0; 2]),
        };
        let features =
            virtio_spec::F::VERSION_1 | virtio_spec::F::RING_PACKED | virtio_spec::F::INDIRECT_DESC;
        write_feature_windows(&regs, 0, 4, features);
        let low = features.bits().to_ne();
        assert_eq!(*regs.words.borrow(), [low as u32, (low >> 32) as u32]);
    }
}
