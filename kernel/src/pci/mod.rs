//! PCI: enumeration over configuration ports 0xCF8/0xCFC, BARs, capabilities, MSI-X.
//!
//! [`init`] scans every bus reachable from bus 0 (numbering bridges the firmware left unnumbered),
//! sizes every BAR, keeps the firmware's placements when they are sound and places the rest (qboot
//! places none), then turns on decoding and bus mastering; [`devices`] returns what it found.
//! Drivers reach configuration space through the kernel-independent [`ConfigSpace`] trait.

mod assign;
mod bar;
mod bridge;
mod capability;
mod config;
mod config_space;
mod device;
pub mod regs;
mod scan;

use alloc::vec::Vec;

use spin::Once;

pub use assign::{
    IO_END, IO_START, MEM32_END, MEM32_START, MEM64_START, MMCONFIG, physical_address_bits,
};
pub use bar::{Bar, BarError, BarKind};
pub use capability::{
    CAP_ID_MSI, CAP_ID_MSIX, CAP_ID_PCIE, CAP_ID_VENDOR, Capabilities, Capability, CapabilityError,
    MAX_CAPABILITIES, MsixCapability, VendorCapability,
};
pub use config::{CONFIG_SPACE_SIZE, ConfigError, PciAddress, PciConfig};
pub use config_space::ConfigSpace;
pub use device::{ClassCode, PciDevice};
pub use vireo_virtio::transport::{VIRTIO_PCI_VENDOR_ID, VirtioCapKind, VirtioPciCap};

static DEVICES: Once<Vec<PciDevice>> = Once::new();

/// Scans the bus, assigns BARs the firmware left unassigned, enables decoding, and logs one line
/// per function (at `debug`). A machine without configuration mechanism #1 (QEMU `microvm`) has
/// no bus: the list stays empty. Runs once; later calls do nothing.
pub fn init() {
    DEVICES.call_once(|| {
        if !config::mechanism_present() {
            log::info!("pci: nothing decodes CONFIG_ADDRESS (0xCF8): no PCI bus");
            return Vec::new();
        }
        let mut devices = scan::scan();
        assign::assign(
            &mut devices,
            crate::boot_info().memory_map(),
            physical_address_bits(),
        );
        for dev in &devices {
            log::debug!("pci {dev}");
            for bar in dev.bars() {
                log::debug!("pci {}:   {bar}", dev.pci_address());
            }
        }
        devices
    });
}

/// Every function [`init`] found, in bus/device/function order of discovery (empty before it ran).
pub fn devices() -> &'static [PciDevice] {
    DEVICES.get().map_or(&[], Vec::as_slice)
}

/// The functions with vendor ID `vendor` and device ID `device`.
pub fn find(vendor: u16, device: u16) -> impl Iterator<Item = &'static PciDevice> {
    devices()
        .iter()
        .filter(move |d| d.vendor_id() == vendor && d.device_id() == device)
}
