//! `PciPlatform` for the kernel's PCI functions: configuration space and BAR ranges mapped
//! uncached.

use alloc::sync::Arc;

use vireo_virtio::transport::{PciPlatform, TransportError};

use super::MmioRegs;
use crate::{mm::map_mmio, pci::PciDevice};

/// A PCI function found by the kernel's scan, lent to a virtio PCI transport.
#[derive(Debug, Clone, Copy)]
pub struct KernelPci {
    device: &'static PciDevice,
}

impl KernelPci {
    /// Lends `device` to a transport.
    pub fn new(device: &'static PciDevice) -> Self {
        Self { device }
    }

    /// The function.
    pub fn device(&self) -> &'static PciDevice {
        self.device
    }
}

impl PciPlatform for KernelPci {
    type Regs = MmioRegs;
    type Config = PciDevice;

    fn config(&self) -> &PciDevice {
        self.device
    }

    fn bar_size(&self, bar: u8) -> Option<u64> {
        self.device
            .bar(bar)
            .filter(|b| b.is_memory() && b.address().is_some())
            .map(|b| b.size())
    }

    fn map_bar(&self, bar: u8, offset: u64, len: u64) -> Result<MmioRegs, TransportError> {
        let base = self
            .device
            .bar(bar)
            .and_then(|b| b.address())
            .ok_or(TransportError::MapFailed)?;
        let phys = base.checked_add(offset).ok_or(TransportError::MapFailed)?;
        let len = usize::try_from(len).map_err(|_| TransportError::MapFailed)?;
        // SAFETY: the range lies inside a memory BAR of a virtio function (the transport checked it
        // against `bar_size`); virtio registers start no DMA except into memory the driver posts.
        let mmio = unsafe { map_mmio(phys, len) }.map_err(|_| TransportError::MapFailed)?;
        MmioRegs::new(Arc::new(mmio), 0, len).ok_or(TransportError::MapFailed)
    }
}
