//! `vireo-virtio`'s platform traits implemented over the kernel's memory, PCI and clock (its
//! `ConfigSpace` is implemented for `PciDevice` in `pci`).

use alloc::sync::Arc;
use core::ptr::NonNull;

use vireo_virtio::{
    DmaAllocator,
    transport::{Clock, RegisterBlock},
};

use crate::{
    mm::{DeviceAlloc, Mmio},
    time::Instant,
};

// `DeviceAlloc` blocks lie in one physically contiguous RAM pool in the direct map, mapped for the
// kernel's life; `virt_to_phys` panics on pointers from elsewhere. SAFETY: 1. blocks are contiguous
// and device-accessible; 2. phys = virt - PHYS_OFFSET is linear; 3. all clones share the one pool.
unsafe impl DmaAllocator for DeviceAlloc {
    fn virt_to_phys(&self, ptr: NonNull<u8>) -> u64 {
        DeviceAlloc::virt_to_phys(ptr.as_ptr())
    }
}

/// A window `[base, base + len)` of a shared uncached MMIO mapping, as a virtio register block.
#[derive(Debug, Clone)]
pub struct MmioRegs {
    mmio: Arc<Mmio>,
    base: usize,
    len: usize,
}

impl MmioRegs {
    /// The window `[base, base + len)` of `mmio`, or `None` if it does not fit inside.
    pub fn new(mmio: Arc<Mmio>, base: usize, len: usize) -> Option<Self> {
        (base.checked_add(len)? <= mmio.len()).then_some(Self { mmio, base, len })
    }

    fn at(&self, offset: usize, size: usize) -> usize {
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len),
            "register access of {size} bytes at {offset:#x} outside a {:#x}-byte window",
            self.len
        );
        self.base + offset
    }
}

impl RegisterBlock for MmioRegs {
    fn len(&self) -> usize {
        self.len
    }
    fn read_u8(&self, offset: usize) -> u8 {
        self.mmio.read_u8(self.at(offset, 1))
    }
    fn read_u16(&self, offset: usize) -> u16 {
        self.mmio.read_u16(self.at(offset, 2))
    }
    fn read_u32(&self, offset: usize) -> u32 {
        self.mmio.read_u32(self.at(offset, 4))
    }
    fn write_u8(&self, offset: usize, value: u8) {
        self.mmio.write_u8(self.at(offset, 1), value);
    }
    fn write_u16(&self, offset: usize, value: u16) {
        self.mmio.write_u16(self.at(offset, 2), value);
    }
    fn write_u32(&self, offset: usize, value: u32) {
        self.mmio.write_u32(self.at(offset, 4), value);
    }
}

/// The kernel's monotonic clock (the calibrated TSC) for bounded device waits.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelClock;

impl Clock for KernelClock {
    fn now_ns(&self) -> u64 {
        Instant::now().since_start().as_nanos() as u64
    }
}
