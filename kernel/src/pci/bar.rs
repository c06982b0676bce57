//! Base address registers: decoding, sizing (PCI Local Bus 3.0 §6.2.5.1) and programming.

use core::fmt;

use super::{config::PciConfig, regs};

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// Memory space, 32-bit address (also the legacy "below 1 MiB" type).
    Memory32,
    /// Memory space, 64-bit address: the BAR takes two slots, this one and the next.
    Memory64,
    /// I/O space.
    Io,
}

/// One base address register, sized, with the address it decodes (if it has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    pub(super) index: u8,
    pub(super) kind: BarKind,
    pub(super) prefetchable: bool,
    pub(super) size: u64,
    pub(super) address: Option<u64>,
    pub(super) assigned_by_kernel: bool,
}

impl Bar {
    /// The BAR's slot number (0..6); a 64-bit BAR also occupies slot `index + 1`.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// What the BAR decodes.
    pub fn kind(&self) -> BarKind {
        self.kind
    }

    /// Whether it decodes memory (32- or 64-bit).
    pub fn is_memory(&self) -> bool {
        self.kind != BarKind::Io
    }

    /// Whether it decodes I/O ports.
    pub fn is_io(&self) -> bool {
        self.kind == BarKind::Io
    }

    /// Whether it is a 64-bit memory BAR.
    pub fn is_64bit(&self) -> bool {
        self.kind == BarKind::Memory64
    }

    /// Whether the memory is prefetchable (reads have no side effects).
    pub fn is_prefetchable(&self) -> bool {
        self.prefetchable
    }

    /// The decoded size in bytes: a power of two, at least 16 for memory and 4 for I/O.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The first address (physical memory address or I/O port) it decodes, `None` if neither the
    /// firmware nor the kernel could assign one.
    pub fn address(&self) -> Option<u64> {
        self.address
    }

    /// Whether the kernel chose the address (the firmware left none, or an unsound one).
    pub fn assigned_by_kernel(&self) -> bool {
        self.assigned_by_kernel
    }

    /// `[address, address + size)`, if assigned.
    pub fn range(&self) -> Option<core::ops::Range<u64>> {
        self.address.map(|a| a..a + self.size)
    }
}

impl fmt::Display for Bar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            BarKind::Memory32 => "mem32",
            BarKind::Memory64 => "mem64",
            BarKind::Io => "io",
        };
        write!(f, "BAR{} {kind}", self.index)?;
        if self.prefetchable {
            f.write_str(" pref")?;
        }
        match self.address {
            Some(a) => write!(f, " {a:#x}+{:#x}", self.size)?,
            None => write!(f, " unassigned+{:#x}", self.size)?,
        }
        if self.assigned_by_kernel {
            f.write_str(" (kernel)")?;
        }
        Ok(())
    }
}

/// Why a BAR was not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarError {
    /// A 64-bit BAR in the last slot, with no slot left for its upper half.
    NoUpperSlot,
    /// The memory type field holds the reserved value 0b11.
    ReservedType,
    /// The writable bits read back after writing all-ones are not one contiguous run up to the top
    /// bit, so the size is not a power of two.
    BadSizeMask,
}

impl fmt::Display for BarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoUpperSlot => "64-bit BAR in the last slot",
            Self::ReservedType => "reserved memory BAR type",
            Self::BadSizeMask => "size mask is not a power of two",
        })
    }
}

/// Reads slot `index`: writes all-ones, reads back the writable bits, restores the original value.
/// Returns `(original, read-back)`.
///
/// # Safety
/// Memory and I/O decoding must be off in the function's command register.
unsafe fn probe_slot(cfg: &PciConfig, index: u8) -> (u32, u32) {
    let offset = regs::BAR0 + 4 * u16::from(index);
    let original = cfg.read_u32(offset);
    // SAFETY: decoding is off (caller's guarantee), so whatever the BAR holds for a moment
    // decodes nothing; the original value is written back before returning.
    unsafe { cfg.write_u32_raw(offset, u32::MAX) };
    let mask = cfg.read_u32(offset);
    // SAFETY: as above; this restores the firmware's value.
    unsafe { cfg.write_u32_raw(offset, original) };
    (original, mask)
}

/// Sizes the BARs in slots `0..count` of `cfg`. Each slot's result is a BAR, nothing (an
/// unimplemented slot or the upper half of a 64-bit BAR), or why the slot is unusable.
///
/// # Safety
/// Memory and I/O decoding must be off in the function's command register.
pub(super) unsafe fn probe_bars(cfg: &PciConfig, count: u8) -> [Option<Result<Bar, BarError>>; 6] {
    let mut out = [None; 6];
    let count = count.min(6);
    let mut index = 0;
    while index < count {
        // SAFETY: decoding is off (caller's guarantee).
        let (original, mask) = unsafe { probe_slot(cfg, index) };
        let upper = if Bar::probe_needs_upper(original) && index + 1 < count {
            // SAFETY: decoding is off (caller's guarantee).
            Some(unsafe { probe_slot(cfg, index + 1) })
        } else {
            None
        };
        out[usize::from(index)] = Bar::from_probe(index, original, mask, upper).transpose();
        index += if upper.is_some() { 2 } else { 1 };
    }
    out
}

impl Bar {
    /// Whether a BAR whose register held `original` is a 64-bit memory BAR, whose sizing needs
    /// the next slot's probe as well.
    pub fn probe_needs_upper(original: u32) -> bool {
        original & 0b111 == 0b100
    }

    /// Decodes one BAR sizing probe (the pure half of sizing, usable by any configuration-space
    /// backend): `original` is the register's value, `mask` what it read back after all-ones was
    /// written, `upper` the same pair for the next slot of a 64-bit BAR (`None` if there is none).
    ///
    /// `Ok(None)` is an unimplemented slot. The values are untrusted: the size is the lowest
    /// writable address bit, and the writable bits must be one contiguous run up to the top bit
    /// (bit 31, bit 15 for I/O decoders of 16 bits, bit 63 for 64-bit BARs), or the BAR is refused.
    pub fn from_probe(
        index: u8,
        original: u32,
        mask: u32,
        upper: Option<(u32, u32)>,
    ) -> Result<Option<Bar>, BarError> {
        let bar = |kind, prefetchable, size, address: u64| {
            Some(Bar {
                index,
                kind,
                prefetchable,
                size,
                address: (address != 0).then_some(address),
                assigned_by_kernel: false,
            })
        };
        if original & 1 == 1 {
            // I/O: bits 31:2 are the address; a device may implement only 16 of them.
            let bits = mask & !3;
            if bits == 0 {
                return Ok(None);
            }
            let size = bits & bits.wrapping_neg();
            let run = bits | (size - 1) | 3;
            if run != u32::MAX && run != 0xFFFF {
                return Err(BarError::BadSizeMask);
            }
            return Ok(bar(
                BarKind::Io,
                false,
                u64::from(size),
                u64::from(original & !3),
            ));
        }
        let prefetchable = original & 0x8 != 0;
        match (original >> 1) & 3 {
            0 | 1 => {
                let bits = mask & !0xF;
                if bits == 0 {
                    return Ok(None);
                }
                let size = bits & bits.wrapping_neg();
                if bits | (size - 1) != u32::MAX {
                    return Err(BarError::BadSizeMask);
                }
                let address = u64::from(original & !0xF);
                Ok(bar(
                    BarKind::Memory32,
                    prefetchable,
                    u64::from(size),
                    address,
                ))
            }
            2 => {
                let (original_hi, mask_hi) = upper.ok_or(BarError::NoUpperSlot)?;
                let bits = (u64::from(mask_hi) << 32) | u64::from(mask & !0xF);
                if bits == 0 {
                    return Ok(None);
                }
                let size = bits & bits.wrapping_neg();
                if bits | (size - 1) != u64::MAX {
                    return Err(BarError::BadSizeMask);
                }
                let address = (u64::from(original_hi) << 32) | u64::from(original & !0xF);
                Ok(bar(BarKind::Memory64, prefetchable, size, address))
            }
            _ => Err(BarError::ReservedType),
        }
    }
}

/// Programs `bar`'s address register(s) with `address`.
///
/// # Safety
/// Decoding of `bar`'s space must be off in the command register, and `[address, address + size)`
/// must be a range no RAM and no other device decodes.
pub(super) unsafe fn program_bar(cfg: &PciConfig, bar: &Bar, address: u64) {
    let offset = regs::BAR0 + 4 * u16::from(bar.index);
    let flags = cfg.read_u32(offset) & if bar.is_io() { 3 } else { 0xF };
    // SAFETY: the caller guarantees decoding is off and the range is free.
    unsafe { cfg.write_u32_raw(offset, (address as u32) | flags) };
    if bar.is_64bit() {
        // SAFETY: as above; the upper half of the same 64-bit BAR.
        unsafe { cfg.write_u32_raw(offset + 4, (address >> 32) as u32) };
    }
}
