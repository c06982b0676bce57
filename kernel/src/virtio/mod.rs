//! The platform side of virtio: what the `vireo-virtio` core and the drivers need from the machine
//! (device memory, register blocks, PCI configuration space, time, MSI-X interrupts), and nothing
//! else. The core never touches the machine directly; this module is the only bridge.

mod msix;
mod pci;
mod platform;
mod wait;

pub use msix::{IrqEvent, MsixError, MsixVectors, ticks_for};
pub use pci::KernelPci;
pub use platform::{KernelClock, MmioRegs};
pub use wait::IrqWait;
