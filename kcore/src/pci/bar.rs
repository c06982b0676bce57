//! Base address registers: what a BAR decodes, and the decoding of a sizing probe (PCI Local Bus
//! 3.0 §6.2.5.1). The kernel's `pci::bar` does the probing and programming over configuration
//! space.

use core::fmt;

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
    index: u8,
    kind: BarKind,
    prefetchable: bool,
    size: u64,
    address: Option<u64>,
    assigned_by_kernel: bool,
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

    /// Forgets the address (a firmware placement found unsound): the BAR is unassigned.
    pub fn forget_address(&mut self) {
        self.address = None;
    }

    /// Records `address` as the one the kernel programmed into the BAR.
    pub fn set_kernel_address(&mut self, address: u64) {
        self.address = Some(address);
        self.assigned_by_kernel = true;
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
    /// `Ok(None)` is an unimplemented slot. An address of zero, or one whose range would run past
    /// 2^64, is left unassigned. The values are untrusted: the size is the lowest
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
                // Zero is "not placed"; so is a range past the top of the address space, which no
                // decoder can answer (and whose end would not fit a `u64`).
                address: (address != 0 && address.checked_add(size).is_some()).then_some(address),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(original: u32, mask: u32, upper: Option<(u32, u32)>) -> Result<Option<Bar>, BarError> {
        Bar::from_probe(0, original, mask, upper)
    }

    #[test]
    fn unimplemented_slots_are_empty() {
        assert_eq!(probe(0, 0, None), Ok(None));
        assert_eq!(probe(1, 1, None), Ok(None), "I/O type bit only");
        assert_eq!(probe(0x8, 0x8, None), Ok(None), "flag bits only");
        assert_eq!(
            probe(0x4, 0x4, Some((0, 0))),
            Ok(None),
            "64-bit, nothing writable"
        );
    }

    #[test]
    fn io_bars_of_16_and_32_bits() {
        let bar = probe(0xC041, 0xFFFF_FFE1, None).unwrap().unwrap();
        assert_eq!(bar.kind(), BarKind::Io);
        assert_eq!((bar.size(), bar.address()), (0x20, Some(0xC040)));
        assert!(!bar.is_prefetchable() && bar.is_io() && !bar.is_memory() && !bar.is_64bit());
        // A decoder of 16 bits reads back zeros above bit 15.
        let bar = probe(0x1, 0x0000_FFC1, None).unwrap().unwrap();
        assert_eq!((bar.size(), bar.address()), (0x40, None));
        // The smallest I/O BAR: 4 ports; bit 1 of an I/O BAR is reserved, not part of the address.
        let bar = probe(0x1003, 0xFFFF_FFFD, None).unwrap().unwrap();
        assert_eq!((bar.size(), bar.address()), (4, Some(0x1000)));
    }

    #[test]
    fn memory32_bars() {
        let bar = probe(0xC100_0000, 0xFFFF_F000, None).unwrap().unwrap();
        assert_eq!(bar.kind(), BarKind::Memory32);
        assert_eq!((bar.size(), bar.address()), (0x1000, Some(0xC100_0000)));
        assert_eq!(bar.range(), Some(0xC100_0000..0xC100_1000));
        assert!(bar.is_memory() && !bar.is_io() && !bar.is_64bit());
        let bar = probe(0x8, 0xFF00_0008, None).unwrap().unwrap();
        assert!(bar.is_prefetchable());
        assert_eq!(
            (bar.size(), bar.address(), bar.range()),
            (16 << 20, None, None)
        );
        // The legacy "below 1 MiB" type decodes as 32-bit.
        let bar = probe(0x2, 0xFFFF_FFF2, None).unwrap().unwrap();
        assert_eq!((bar.kind(), bar.size()), (BarKind::Memory32, 16));
        // The largest: 2 GiB.
        let bar = probe(0, 0x8000_0000, None).unwrap().unwrap();
        assert_eq!(bar.size(), 1 << 31);
    }

    #[test]
    fn memory64_bars_span_two_slots() {
        assert!(Bar::probe_needs_upper(0xC));
        assert!(Bar::probe_needs_upper(0x4));
        assert!(!Bar::probe_needs_upper(0x8));
        assert!(
            !Bar::probe_needs_upper(0x5),
            "I/O with bit 2 set is not 64-bit"
        );
        let bar = probe(0xC, 0xFFFF_C00C, Some((0x80, 0xFFFF_FFFF)))
            .unwrap()
            .unwrap();
        assert_eq!(bar.kind(), BarKind::Memory64);
        assert!(bar.is_64bit() && bar.is_prefetchable());
        assert_eq!((bar.size(), bar.address()), (0x4000, Some(0x80_0000_0000)));
        // 8 GiB: the size lives in the upper slot.
        let bar = probe(0x4, 0x0000_0004, Some((0, 0xFFFF_FFFE)))
            .unwrap()
            .unwrap();
        assert_eq!(bar.size(), 8 << 30);
        // Both halves of the address count.
        let bar = probe(0x8000_000C, 0xFFFF_F00C, Some((0x1, 0xFFFF_FFFF)))
            .unwrap()
            .unwrap();
        assert_eq!(bar.address(), Some(0x1_8000_0000));
    }

    #[test]
    fn hostile_masks_are_refused() {
        // Writable bits with a hole: not a power-of-two size.
        assert_eq!(probe(0, 0xFF0F_F000, None), Err(BarError::BadSizeMask));
        assert_eq!(probe(0, 0x0000_F000, None), Err(BarError::BadSizeMask));
        assert_eq!(probe(1, 0xFF00_FFF1, None), Err(BarError::BadSizeMask));
        assert_eq!(
            probe(0x4, 0xFFFF_F004, Some((0, 0x7FFF_FFFF))),
            Err(BarError::BadSizeMask)
        );
        // A 64-bit BAR with no slot for its upper half, and the reserved type.
        assert_eq!(probe(0x4, 0xFFFF_F004, None), Err(BarError::NoUpperSlot));
        assert_eq!(probe(0x6, 0xFFFF_F006, None), Err(BarError::ReservedType));
    }

    #[test]
    fn an_address_at_the_top_of_the_space_is_left_unassigned() {
        // 4 KiB at 2^64 - 4 KiB: its end does not exist.
        let bar = probe(0xFFFF_F004, 0xFFFF_F004, Some((u32::MAX, u32::MAX)))
            .unwrap()
            .unwrap();
        assert_eq!(
            (bar.size(), bar.address(), bar.range()),
            (0x1000, None, None)
        );
        // One BAR lower is fine.
        let bar = probe(0xFFFF_E004, 0xFFFF_F004, Some((u32::MAX, u32::MAX)))
            .unwrap()
            .unwrap();
        assert_eq!(
            bar.range(),
            Some(0xFFFF_FFFF_FFFF_E000..0xFFFF_FFFF_FFFF_F000)
        );
    }

    #[test]
    fn every_power_of_two_size_decodes() {
        for bit in 4..32 {
            let mask = u32::MAX << bit;
            let bar = probe(0, mask, None).unwrap().unwrap();
            assert_eq!(bar.size(), 1 << bit, "32-bit, mask {mask:#x}");
        }
        for bit in 4..64 {
            let mask = u64::MAX << bit;
            let bar = probe(0x4, mask as u32 | 0x4, Some((0, (mask >> 32) as u32)))
                .unwrap()
                .unwrap();
            assert_eq!(bar.size(), 1 << bit, "64-bit, mask {mask:#x}");
        }
        for bit in 2..16 {
            let bar = probe(1, (0xFFFF << bit) & 0xFFFF | 1, None)
                .unwrap()
                .unwrap();
            assert_eq!(bar.size(), 1 << bit, "16-bit I/O");
        }
    }

    #[test]
    fn the_kernel_records_what_it_placed() {
        let mut bar = probe(0xC100_0000, 0xFFFF_F000, None).unwrap().unwrap();
        assert!(!bar.assigned_by_kernel());
        assert_eq!(bar.to_string(), "BAR0 mem32 0xc1000000+0x1000");
        bar.forget_address();
        assert_eq!((bar.address(), bar.assigned_by_kernel()), (None, false));
        assert_eq!(bar.to_string(), "BAR0 mem32 unassigned+0x1000");
        bar.set_kernel_address(0xD000_0000);
        assert_eq!(bar.range(), Some(0xD000_0000..0xD000_1000));
        assert!(bar.assigned_by_kernel());
        assert_eq!(bar.to_string(), "BAR0 mem32 0xd0000000+0x1000 (kernel)");
        let pref = Bar::from_probe(3, 0xC, 0xFFFF_C00C, Some((0x80, u32::MAX)))
            .unwrap()
            .unwrap();
        assert_eq!(pref.to_string(), "BAR3 mem64 pref 0x8000000000+0x4000");
        assert_eq!(pref.index(), 3);
    }
}
