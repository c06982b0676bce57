//! The capability list (PCI Local Bus 3.0 §6.7), vendor-specific capabilities, and MSI-X (§6.8.2).
//!
//! Everything here works over any [`ConfigSpace`], so it moves with that trait to whatever crate
//! needs it. Pointers come from the device and are untrusted: a walk stops at a pointer below the
//! header (0x40), a misaligned one, one it has already visited, or after
//! [`MAX_CAPABILITIES`] entries.

use core::fmt;

use super::{config_space::ConfigSpace, regs};

/// The longest capability list walked: (256 - 64) / 4 slots of the smallest capability.
pub const MAX_CAPABILITIES: usize = 48;

/// Capability ID of MSI.
pub const CAP_ID_MSI: u8 = 0x05;
/// Capability ID of a vendor-specific capability (virtio's structures use it).
pub const CAP_ID_VENDOR: u8 = 0x09;
/// Capability ID of PCI Express.
pub const CAP_ID_PCIE: u8 = 0x10;
/// Capability ID of MSI-X.
pub const CAP_ID_MSIX: u8 = 0x11;

/// One entry of the list: its ID and where it starts in configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// The capability ID (byte 0).
    pub id: u8,
    /// Its offset in configuration space (≥ 0x40, 4-aligned).
    pub offset: u8,
}

/// Why a capability walk stopped early or a capability could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityError {
    /// A next pointer pointed into the header or was not 4-aligned.
    BadPointer(u8),
    /// A next pointer pointed at a capability already visited.
    Loop(u8),
    /// More than [`MAX_CAPABILITIES`] entries.
    TooMany,
    /// A capability's length field is too small for its structure or runs past the space.
    BadLength(u8),
    /// A field names a BAR that does not exist or is not a memory BAR.
    BadBar(u8),
    /// A structure does not fit inside the BAR it names.
    OutsideBar(u8),
}

impl fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadPointer(p) => write!(f, "capability pointer {p:#x} is invalid"),
            Self::Loop(p) => write!(f, "capability list loops back to {p:#x}"),
            Self::TooMany => write!(f, "more than {MAX_CAPABILITIES} capabilities"),
            Self::BadLength(o) => write!(f, "capability at {o:#x} has a bad length"),
            Self::BadBar(o) => write!(f, "capability at {o:#x} names an unusable BAR"),
            Self::OutsideBar(o) => write!(f, "capability at {o:#x} points outside its BAR"),
        }
    }
}

/// Iterator over a function's capability list, yielding `(id, offset)` items.
///
/// It ends at the end of the list or at the first malformed pointer; [`Capabilities::error`] then
/// says which.
#[derive(Debug)]
pub struct Capabilities<'a, C: ConfigSpace + ?Sized> {
    cfg: &'a C,
    next: u8,
    visited: u64,
    count: usize,
    error: Option<CapabilityError>,
}

impl<'a, C: ConfigSpace + ?Sized> Capabilities<'a, C> {
    /// Starts a walk of `cfg`'s list (empty if the status register says there is none).
    pub fn new(cfg: &'a C) -> Self {
        let next = if cfg.read_u16(regs::STATUS) & regs::STATUS_CAP_LIST != 0 {
            cfg.read_u8(regs::CAP_PTR)
        } else {
            0
        };
        Self {
            cfg,
            next,
            visited: 0,
            count: 0,
            error: None,
        }
    }

    /// Why the walk stopped early, if it did (valid once the iterator returned `None`).
    pub fn error(&self) -> Option<CapabilityError> {
        self.error
    }
}

impl<C: ConfigSpace + ?Sized> Iterator for Capabilities<'_, C> {
    type Item = Capability;

    fn next(&mut self) -> Option<Capability> {
        let at = self.next;
        if at == 0 || self.error.is_some() {
            return None;
        }
        self.next = 0;
        if at < 0x40 || !at.is_multiple_of(4) {
            self.error = Some(CapabilityError::BadPointer(at));
            return None;
        }
        let bit = 1u64 << (at / 4);
        if self.visited & bit != 0 {
            self.error = Some(CapabilityError::Loop(at));
            return None;
        }
        if self.count == MAX_CAPABILITIES {
            self.error = Some(CapabilityError::TooMany);
            return None;
        }
        self.visited |= bit;
        self.count += 1;
        let header = self.cfg.read_u16(at.into());
        self.next = (header >> 8) as u8;
        Some(Capability {
            id: header as u8,
            offset: at,
        })
    }
}

/// A vendor-specific capability (ID 0x09): raw bytes whose layout the vendor defines, bounded by
/// the capability's own length byte.
#[derive(Debug)]
pub struct VendorCapability<'a, C: ConfigSpace + ?Sized> {
    cfg: &'a C,
    offset: u8,
    len: u8,
}

impl<'a, C: ConfigSpace + ?Sized> VendorCapability<'a, C> {
    /// Reads the vendor capability at `offset` (as yielded by [`Capabilities`]); fails if its
    /// length byte is below 3 or runs past the 256-byte space.
    pub fn new(cfg: &'a C, offset: u8) -> Result<Self, CapabilityError> {
        let len = cfg.read_u8(u16::from(offset) + 2);
        if len < 3 || usize::from(offset) + usize::from(len) > 256 {
            return Err(CapabilityError::BadLength(offset));
        }
        Ok(Self { cfg, offset, len })
    }

    /// Where the capability starts in configuration space.
    pub fn offset(&self) -> u8 {
        self.offset
    }

    /// Its length in bytes, from its length byte (at least 3).
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Always false: a vendor capability holds at least its three header bytes.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The byte at `index` within the capability, `None` past its length.
    pub fn read_u8(&self, index: u8) -> Option<u8> {
        (index < self.len).then(|| self.cfg.read_u8(u16::from(self.offset) + u16::from(index)))
    }

    /// The little-endian `u32` at `index` within the capability (any alignment), `None` if it
    /// does not fit inside the capability.
    pub fn read_u32(&self, index: u8) -> Option<u32> {
        let mut bytes = [0; 4];
        for (i, b) in (0u8..).zip(bytes.iter_mut()) {
            *b = self.read_u8(index.checked_add(i)?)?;
        }
        Some(u32::from_le_bytes(bytes))
    }

    /// The config space it lives in (to write fields a vendor defines as writable).
    pub fn config(&self) -> &'a C {
        self.cfg
    }
}

/// Where an MSI-X capability puts its table and pending-bit array (location only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixCapability {
    /// The capability's offset in configuration space.
    pub offset: u8,
    /// Number of table entries (1..=2048).
    pub table_size: u16,
    /// BAR slot holding the table.
    pub table_bar: u8,
    /// Offset of the table in that BAR (8-aligned).
    pub table_offset: u32,
    /// BAR slot holding the pending-bit array.
    pub pba_bar: u8,
    /// Offset of the pending-bit array in that BAR (8-aligned).
    pub pba_offset: u32,
}

/// Message control: MSI-X enable.
const MSIX_ENABLE: u16 = 1 << 15;
/// Message control: all vectors masked.
const MSIX_FUNCTION_MASK: u16 = 1 << 14;

impl MsixCapability {
    /// Bytes of one table entry.
    pub const ENTRY_SIZE: u64 = 16;

    /// Reads the MSI-X capability at `offset`; fails if a BAR indicator is above 5.
    pub fn parse<C: ConfigSpace + ?Sized>(cfg: &C, offset: u8) -> Result<Self, CapabilityError> {
        let at = u16::from(offset);
        if usize::from(offset) + 12 > 256 {
            return Err(CapabilityError::BadLength(offset));
        }
        let control = cfg.read_u16(at + 2);
        let table = cfg.read_u32(at + 4);
        let pba = cfg.read_u32(at + 8);
        let (table_bar, pba_bar) = ((table & 7) as u8, (pba & 7) as u8);
        if table_bar > 5 || pba_bar > 5 {
            return Err(CapabilityError::BadBar(offset));
        }
        Ok(Self {
            offset,
            table_size: (control & 0x7FF) + 1,
            table_bar,
            table_offset: table & !7,
            pba_bar,
            pba_offset: pba & !7,
        })
    }

    /// Bytes of the pending-bit array: one bit per entry, in whole quadwords.
    pub fn pba_len(&self) -> u64 {
        u64::from(self.table_size).div_ceil(64) * 8
    }

    /// Bytes of the table.
    pub fn table_len(&self) -> u64 {
        u64::from(self.table_size) * Self::ENTRY_SIZE
    }

    /// Whether MSI-X is enabled in the message control register.
    pub fn is_enabled<C: ConfigSpace + ?Sized>(&self, cfg: &C) -> bool {
        cfg.read_u16(u16::from(self.offset) + 2) & MSIX_ENABLE != 0
    }

    /// Sets or clears MSI-X enable. Program the table before enabling; with MSI-X enabled the
    /// function no longer signals INTx.
    pub fn set_enabled<C: ConfigSpace + ?Sized>(&self, cfg: &C, enabled: bool) {
        self.update_control(cfg, MSIX_ENABLE, enabled);
    }

    /// Sets or clears the function mask, which masks every vector regardless of the table.
    pub fn set_function_mask<C: ConfigSpace + ?Sized>(&self, cfg: &C, masked: bool) {
        self.update_control(cfg, MSIX_FUNCTION_MASK, masked);
    }

    fn update_control<C: ConfigSpace + ?Sized>(&self, cfg: &C, bit: u16, set: bool) {
        let at = u16::from(self.offset) + 2;
        let control = cfg.read_u16(at);
        let control = if set { control | bit } else { control & !bit };
        cfg.write_u16(at, control);
    }
}
