//! virtio's vendor-specific PCI capabilities (virtio 1.2 §4.1.4): where each configuration
//! structure lives in which BAR.

use core::fmt;

use super::{
    capability::{CapabilityError, VendorCapability},
    config_space::ConfigSpace,
};

/// virtio's PCI vendor ID.
pub const VIRTIO_VENDOR_ID: u16 = 0x1AF4;

/// Which structure a virtio capability locates (`cfg_type`, virtio 1.2 §4.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioCapKind {
    /// Common configuration (1).
    Common,
    /// Notifications (2); comes with a notify offset multiplier.
    Notify,
    /// ISR status (3).
    Isr,
    /// Device-specific configuration (4).
    Device,
    /// PCI configuration access window (5).
    PciCfg,
    /// Shared memory region (8).
    SharedMemory,
    /// Vendor data (9).
    Vendor,
    /// A type this kernel does not know (must be ignored, §4.1.4).
    Other(u8),
}

impl VirtioCapKind {
    fn from_cfg_type(t: u8) -> Self {
        match t {
            1 => Self::Common,
            2 => Self::Notify,
            3 => Self::Isr,
            4 => Self::Device,
            5 => Self::PciCfg,
            8 => Self::SharedMemory,
            9 => Self::Vendor,
            n => Self::Other(n),
        }
    }
}

impl fmt::Display for VirtioCapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Common => f.write_str("common"),
            Self::Notify => f.write_str("notify"),
            Self::Isr => f.write_str("isr"),
            Self::Device => f.write_str("device"),
            Self::PciCfg => f.write_str("pci-cfg"),
            Self::SharedMemory => f.write_str("shm"),
            Self::Vendor => f.write_str("vendor"),
            Self::Other(n) => write!(f, "type {n}"),
        }
    }
}

/// One `struct virtio_pci_cap` (and the notify capability's multiplier), as read from the device:
/// the numbers are unchecked against the BAR until [`VirtioPciCap::fits_in`] says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioPciCap {
    /// Offset of the capability in configuration space.
    pub cap_offset: u8,
    /// Which structure it locates.
    pub kind: VirtioCapKind,
    /// The BAR slot holding it (only 0..=5 are valid; checked by `fits_in`'s caller).
    pub bar: u8,
    /// The `id` byte (distinguishes several shared-memory regions).
    pub id: u8,
    /// Offset of the structure within the BAR.
    pub offset: u32,
    /// Length of the structure in bytes.
    pub length: u32,
    /// For [`VirtioCapKind::Notify`]: the queue notify offset multiplier.
    pub notify_off_multiplier: Option<u32>,
}

impl VirtioPciCap {
    /// The fixed part of `struct virtio_pci_cap`: cap_vndr, cap_next, cap_len, cfg_type, bar, id,
    /// `padding[2]`, offset, length.
    pub const LEN: u8 = 16;
    /// `struct virtio_pci_notify_cap`: the above plus notify_off_multiplier.
    pub const NOTIFY_LEN: u8 = 20;

    /// Parses a vendor capability as a virtio one; fails if it is too short for its type.
    pub fn parse<C: ConfigSpace + ?Sized>(
        cap: &VendorCapability<'_, C>,
    ) -> Result<Self, CapabilityError> {
        let bad = CapabilityError::BadLength(cap.offset());
        let byte = |i| cap.read_u8(i).ok_or(bad);
        let word = |i| cap.read_u32(i).ok_or(bad);
        if cap.len() < Self::LEN {
            return Err(bad);
        }
        let kind = VirtioCapKind::from_cfg_type(byte(3)?);
        let notify_off_multiplier = if kind == VirtioCapKind::Notify {
            Some(word(16)?)
        } else {
            None
        };
        Ok(Self {
            cap_offset: cap.offset(),
            kind,
            bar: byte(4)?,
            id: byte(5)?,
            offset: word(8)?,
            length: word(12)?,
            notify_off_multiplier,
        })
    }

    /// Whether `[offset, offset + length)` lies inside a BAR of `bar_size` bytes.
    pub fn fits_in(&self, bar_size: u64) -> bool {
        u64::from(self.offset)
            .checked_add(u64::from(self.length))
            .is_some_and(|end| end <= bar_size)
    }
}

impl fmt::Display for VirtioPciCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "virtio {} at cfg {:#x}: BAR{} {:#x}+{:#x}",
            self.kind, self.cap_offset, self.bar, self.offset, self.length
        )?;
        if let Some(m) = self.notify_off_multiplier {
            write!(f, " multiplier {m}")?;
        }
        Ok(())
    }
}
