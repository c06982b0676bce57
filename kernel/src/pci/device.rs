//! [`PciDevice`]: one function found by the scan, with its sized and assigned BARs.

use core::fmt;

use vireo_virtio::transport::{VIRTIO_PCI_VENDOR_ID, VirtioCapKind, VirtioPciCap};

use super::{
    bar::Bar,
    capability::{
        CAP_ID_MSIX, CAP_ID_VENDOR, Capabilities, CapabilityError, MsixCapability, VendorCapability,
    },
    config::{ConfigError, PciAddress, PciConfig},
    config_space::ConfigSpace,
    regs,
};

/// Class code: base class, subclass, programming interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassCode {
    /// Base class (e.g. 0x01 mass storage, 0x02 network, 0x06 bridge).
    pub class: u8,
    /// Subclass within the base class.
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
}

impl fmt::Display for ClassCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}.{:02x}.{:02x}",
            self.class, self.subclass, self.prog_if
        )
    }
}

/// A PCI function, as found by [`init`](super::init).
///
/// The identification fields are read once at the scan; BARs are as sized at the scan and assigned
/// by the firmware or the kernel. Configuration reads go to the device each time.
#[derive(Debug, Clone)]
pub struct PciDevice {
    pub(super) config: PciConfig,
    pub(super) vendor_id: u16,
    pub(super) device_id: u16,
    pub(super) class: ClassCode,
    pub(super) revision: u8,
    pub(super) header_type: u8,
    pub(super) multifunction: bool,
    pub(super) interrupt_line: u8,
    pub(super) interrupt_pin: u8,
    pub(super) bars: [Option<Bar>; 6],
}

impl PciDevice {
    /// Where the function is: `(bus, device, function)`.
    pub fn address(&self) -> (u8, u8, u8) {
        let a = self.config.address();
        (a.bus(), a.device(), a.function())
    }

    /// Where the function is, as a [`PciAddress`].
    pub fn pci_address(&self) -> PciAddress {
        self.config.address()
    }

    /// The vendor ID.
    pub fn vendor_id(&self) -> u16 {
        self.vendor_id
    }

    /// The device ID.
    pub fn device_id(&self) -> u16 {
        self.device_id
    }

    /// The class code.
    pub fn class(&self) -> ClassCode {
        self.class
    }

    /// The revision ID.
    pub fn revision(&self) -> u8 {
        self.revision
    }

    /// The header layout (0 ordinary, 1 PCI-PCI bridge, 2 CardBus), without the multi-function bit.
    pub fn header_type(&self) -> u8 {
        self.header_type
    }

    /// Whether the device this function belongs to has several functions.
    pub fn is_multifunction(&self) -> bool {
        self.multifunction
    }

    /// The legacy interrupt line the firmware routed (0xFF or 0 if none).
    pub fn interrupt_line(&self) -> u8 {
        self.interrupt_line
    }

    /// The legacy interrupt pin: 0 none, 1..=4 INTA#..INTD#.
    pub fn interrupt_pin(&self) -> u8 {
        self.interrupt_pin
    }

    /// The function's BARs (a 64-bit BAR appears once, at its lower slot).
    pub fn bars(&self) -> impl Iterator<Item = &Bar> + '_ {
        self.bars.iter().flatten()
    }

    /// The BAR in slot `index`, if one starts there.
    pub fn bar(&self, index: u8) -> Option<&Bar> {
        self.bars.get(usize::from(index))?.as_ref()
    }

    /// The command register, read now.
    pub fn command(&self) -> u16 {
        self.config.read_u16(regs::COMMAND)
    }

    /// The raw configuration access for this function.
    pub fn config(&self) -> &PciConfig {
        &self.config
    }

    /// Walks the capability list (bounded; see [`Capabilities`]).
    pub fn capabilities(&self) -> Capabilities<'_, Self> {
        Capabilities::new(self)
    }

    /// The first capability with ID `id`, as its offset.
    pub fn find_capability(&self, id: u8) -> Option<u8> {
        self.capabilities().find(|c| c.id == id).map(|c| c.offset)
    }

    /// The vendor-specific capabilities, with raw byte access; malformed ones are skipped.
    pub fn vendor_capabilities(&self) -> impl Iterator<Item = VendorCapability<'_, Self>> + '_ {
        self.capabilities()
            .filter(|c| c.id == CAP_ID_VENDOR)
            .filter_map(|c| VendorCapability::new(self, c.offset).ok())
    }

    /// For a virtio device: its virtio capabilities, each checked to name an existing memory BAR
    /// and to fit inside it (errors are returned in place, for the caller to skip or refuse). The
    /// PCI configuration access capability is not checked: its fields are the access window the
    /// driver programs.
    pub fn virtio_capabilities(
        &self,
    ) -> impl Iterator<Item = Result<VirtioPciCap, CapabilityError>> + '_ {
        let is_virtio = self.vendor_id == VIRTIO_PCI_VENDOR_ID;
        self.vendor_capabilities()
            .filter(move |_| is_virtio)
            .map(|v| {
                let cap = VirtioPciCap::read(self, v.offset())
                    .map_err(|_| CapabilityError::BadLength(v.offset()))?;
                if cap.kind == VirtioCapKind::PciCfg {
                    // Its bar/offset/length are a window the driver writes, not a location.
                    return Ok(cap);
                }
                let bar = self
                    .bar(cap.bar)
                    .filter(|b| b.is_memory())
                    .ok_or(CapabilityError::BadBar(cap.cap_offset))?;
                if cap.fits_in(bar.size()) {
                    Ok(cap)
                } else {
                    Err(CapabilityError::OutsideBar(cap.cap_offset))
                }
            })
    }

    /// The MSI-X capability, if present, checked against the BARs: the table and pending-bit array
    /// must sit inside memory BARs of the function.
    pub fn msix(&self) -> Option<Result<MsixCapability, CapabilityError>> {
        let offset = self.find_capability(CAP_ID_MSIX)?;
        Some(MsixCapability::parse(self, offset).and_then(|m| {
            for (bar, start, len) in [
                (m.table_bar, m.table_offset, m.table_len()),
                (m.pba_bar, m.pba_offset, m.pba_len()),
            ] {
                let bar = self
                    .bar(bar)
                    .filter(|b| b.is_memory())
                    .ok_or(CapabilityError::BadBar(offset))?;
                if u64::from(start) + len > bar.size() {
                    return Err(CapabilityError::OutsideBar(offset));
                }
            }
            Ok(m)
        }))
    }

    /// Reads the byte at `offset` (all-ones if out of range).
    pub fn read_config_u8(&self, offset: u16) -> u8 {
        self.config.read_u8(offset)
    }

    /// Reads the `u16` at `offset` (all-ones if misaligned or out of range).
    pub fn read_config_u16(&self, offset: u16) -> u16 {
        self.config.read_u16(offset)
    }

    /// Reads the `u32` at `offset` (all-ones if misaligned or out of range).
    pub fn read_config_u32(&self, offset: u16) -> u32 {
        self.config.read_u32(offset)
    }

    /// Writes the byte at `offset`; BAR, ROM and bridge-window registers are refused.
    pub fn write_config_u8(&self, offset: u16, value: u8) -> Result<(), ConfigError> {
        self.config.try_write_u8(offset, value)
    }

    /// Writes the `u16` at `offset`; BAR, ROM and bridge-window registers are refused.
    pub fn write_config_u16(&self, offset: u16, value: u16) -> Result<(), ConfigError> {
        self.config.try_write_u16(offset, value)
    }

    /// Writes the `u32` at `offset`; BAR, ROM and bridge-window registers are refused.
    pub fn write_config_u32(&self, offset: u16, value: u32) -> Result<(), ConfigError> {
        self.config.try_write_u32(offset, value)
    }

    /// A short name for logs: the device if known, else its class.
    pub fn name(&self) -> &'static str {
        device_name(self.vendor_id, self.device_id).unwrap_or_else(|| class_name(self.class))
    }
}

impl ConfigSpace for PciDevice {
    fn read_u8(&self, offset: u16) -> u8 {
        ConfigSpace::read_u8(&self.config, offset)
    }
    fn read_u16(&self, offset: u16) -> u16 {
        ConfigSpace::read_u16(&self.config, offset)
    }
    fn read_u32(&self, offset: u16) -> u32 {
        ConfigSpace::read_u32(&self.config, offset)
    }
    fn write_u8(&self, offset: u16, value: u8) {
        ConfigSpace::write_u8(&self.config, offset, value);
    }
    fn write_u16(&self, offset: u16, value: u16) {
        ConfigSpace::write_u16(&self.config, offset, value);
    }
    fn write_u32(&self, offset: u16, value: u32) {
        ConfigSpace::write_u32(&self.config, offset, value);
    }
}

/// `00:03.0 1af4:1042 class 01.00.00 virtio-blk`
impl fmt::Display for PciDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:04x}:{:04x} class {} {}",
            self.config.address(),
            self.vendor_id,
            self.device_id,
            self.class,
            self.name()
        )
    }
}

/// Names of devices QEMU offers.
fn device_name(vendor: u16, device: u16) -> Option<&'static str> {
    Some(match (vendor, device) {
        (0x1AF4, 0x1000 | 0x1041) => "virtio-net",
        (0x1AF4, 0x1001 | 0x1042) => "virtio-blk",
        (0x1AF4, 0x1003 | 0x1043) => "virtio-console",
        (0x1AF4, 0x1005 | 0x1044) => "virtio-rng",
        (0x1AF4, 0x1002 | 0x1045) => "virtio-balloon",
        (0x1AF4, 0x1004 | 0x1048) => "virtio-scsi",
        (0x1AF4, 0x1009 | 0x1049) => "virtio-9p",
        (0x1AF4, 0x1050) => "virtio-gpu",
        (0x1AF4, 0x1052) => "virtio-input",
        (0x1AF4, 0x1053) => "virtio-vsock",
        (0x1AF4, 0x1110) => "ivshmem",
        (0x8086, 0x29C0) => "q35 host bridge",
        (0x8086, 0x2918) => "ICH9 LPC/ISA bridge",
        (0x8086, 0x2922) => "ICH9 AHCI",
        (0x8086, 0x2930) => "ICH9 SMBus",
        (0x8086, 0x1237) => "i440FX host bridge",
        (0x8086, 0x7000) => "PIIX3 ISA bridge",
        (0x8086, 0x7010) => "PIIX3 IDE",
        (0x8086, 0x7113) => "PIIX4 ACPI",
        (0x8086, 0x10D3) => "e1000e",
        (0x8086, 0x100E) => "e1000",
        (0x1234, 0x1111) => "VGA",
        (0x1B36, 0x000C) => "PCIe root port",
        (0x1B36, 0x0001) => "PCI-PCI bridge",
        _ => return None,
    })
}

/// Names of base classes (and a few subclasses).
fn class_name(class: ClassCode) -> &'static str {
    match (class.class, class.subclass) {
        (0x01, _) => "mass storage",
        (0x02, _) => "network",
        (0x03, _) => "display",
        (0x04, _) => "multimedia",
        (0x05, _) => "memory",
        (0x06, 0x00) => "host bridge",
        (0x06, 0x01) => "ISA bridge",
        (0x06, 0x04) => "PCI-PCI bridge",
        (0x06, _) => "bridge",
        (0x07, _) => "communication",
        (0x08, _) => "system peripheral",
        (0x0C, _) => "serial bus",
        _ => "unknown",
    }
}
