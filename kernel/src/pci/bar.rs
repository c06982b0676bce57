//! Base address registers: sizing (PCI Local Bus 3.0 §6.2.5.1) and programming over configuration
//! space. What a BAR is and how a sizing probe decodes are `vireo_kcore::pci::bar`, tested on the
//! host.

pub use vireo_kcore::pci::bar::{Bar, BarError, BarKind};

use super::{config::PciConfig, regs};

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

/// Programs `bar`'s address register(s) with `address`.
///
/// # Safety
/// Decoding of `bar`'s space must be off in the command register, and `[address, address + size)`
/// must be a range no RAM and no other device decodes.
pub(super) unsafe fn program_bar(cfg: &PciConfig, bar: &Bar, address: u64) {
    let offset = regs::BAR0 + 4 * u16::from(bar.index());
    let flags = cfg.read_u32(offset) & if bar.is_io() { 3 } else { 0xF };
    // SAFETY: the caller guarantees decoding is off and the range is free.
    unsafe { cfg.write_u32_raw(offset, (address as u32) | flags) };
    if bar.is_64bit() {
        // SAFETY: as above; the upper half of the same 64-bit BAR.
        unsafe { cfg.write_u32_raw(offset + 4, (address >> 32) as u32) };
    }
}
