//! The HPET's main counter as a reference counter (IA-PC HPET specification 1.0a, §2.3).
//!
//! Its counter is read on demand, like a latched PIT count, so a loaded host cannot delay it. Its
//! period is a few nanoseconds (10 ns in QEMU), so a reading is dated by the TSC reads around it.

use crate::mm::{Mmio, map_mmio};

/// General capabilities: bits 63:32 are the counter period in femtoseconds; bit 13 says the
/// main counter is 64 bits wide.
const REG_CAPABILITIES: usize = 0x00;
const CAP_COUNT_SIZE_64: u64 = 1 << 13;
/// General configuration: bit 0 enables the main counter.
const REG_CONFIG: usize = 0x10;
const CONFIG_ENABLE: u64 = 1;
/// The main counter.
const REG_COUNTER: usize = 0xf0;
/// The specification's longest period: 100 ns.
const MAX_PERIOD_FS: u64 = 100_000_000;

/// A running HPET.
pub(super) struct Hpet {
    regs: Mmio,
    /// Counter period in femtoseconds.
    pub(super) period_fs: u64,
    /// Width of the main counter in bits (32 or 64).
    pub(super) bits: u32,
}

impl Hpet {
    /// Maps the HPET at `phys`, checks its period and starts its main counter (if it was not
    /// running already; it is never stopped or reset).
    pub(super) fn start(phys: u64) -> Option<Hpet> {
        // SAFETY: `phys` is the HPET's register block (from ACPI); reading its registers has no
        // side effects and the only write sets the main counter's enable bit, which starts the
        // counter (no comparator is armed, so no interrupt follows).
        let regs = unsafe { map_mmio(phys, 0x400) }.ok()?;
        let caps = regs.read_u64(REG_CAPABILITIES);
        let period_fs = caps >> 32;
        if period_fs == 0 || period_fs > MAX_PERIOD_FS {
            return None;
        }
        regs.write_u64(REG_CONFIG, regs.read_u64(REG_CONFIG) | CONFIG_ENABLE);
        let bits = if caps & CAP_COUNT_SIZE_64 != 0 {
            64
        } else {
            32
        };
        Some(Hpet {
            regs,
            period_fs,
            bits,
        })
    }

    /// The main counter.
    pub(super) fn ticks(&self) -> u64 {
        self.regs.read_u64(REG_COUNTER)
    }
}
