//! The platform side of virtio: what the `vireo-virtio` core and the drivers need from the machine
//! (device memory, register blocks, PCI configuration space, time, MSI-X interrupts), and the
//! device layer every device type shares (finding functions, options, interrupts, bounded waits,
//! recovery). The core never touches the machine directly; this module is the only bridge.

mod device;
mod line;
pub mod mmio;
mod msix;
mod pci;
mod platform;
mod transport;
mod wait;

pub use device::{
    FailedDevice, Interrupts, RESET_BUDGET, failed_devices, functions, probe_each, recover,
    report_missed_wakeup, wait_queue, with_budget,
};
pub use line::{IrqLine, LineError};
pub use msix::{IrqEvent, MsixError, MsixVectors, ticks_for};
pub use pci::KernelPci;
pub use platform::{KernelClock, MmioRegs};
pub use transport::{KernelNotifier, KernelTransport, Location};
pub use wait::IrqWait;
