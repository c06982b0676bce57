//! The HPET's main counter as a second reference clock (IA-PC HPET specification 1.0a, §2.3).
//!
//! Its counter is read on demand, like a latched PIT count, so a loaded host cannot delay it; it
//! serves when the PIT does not count, or when the command line asks for it.

use crate::mm::{Mmio, map_mmio};

/// General capabilities: bits 63:32 are the counter period in femtoseconds.
const REG_CAPABILITIES: usize = 0x00;
/// General configuration: bit 0 enables the main counter.
const REG_CONFIG: usize = 0x10;
const CONFIG_ENABLE: u64 = 1;
/// The main counter.
const REG_COUNTER: usize = 0xf0;
/// The specification's longest period: 100 ns.
const MAX_PERIOD_FS: u64 = 100_000_000;
/// Reads at each end of a round; the one with the narrowest bracket counts.
const READS_PER_END: usize = 4;
/// Most counter reads in one round.
const MAX_POLLS: u32 = 1_000_000;

/// A running HPET.
pub(super) struct Hpet {
    regs: Mmio,
    period_fs: u64,
}

/// One counter read with the reference counter's value at it and the bracket's width.
#[derive(Clone, Copy)]
struct Read {
    ticks: u64,
    at: u64,
    width: u64,
}

impl Hpet {
    /// Maps the HPET at `phys`, checks its period and starts its main counter.
    pub(super) fn start(phys: u64) -> Option<Hpet> {
        // SAFETY: `phys` is the HPET's register block (from ACPI); reading its registers has no
        // side effects and the only write sets the main counter's enable bit, which starts the
        // counter (no comparator is armed, so no interrupt follows).
        let regs = unsafe { map_mmio(phys, 0x400) }.ok()?;
        let period_fs = regs.read_u64(REG_CAPABILITIES) >> 32;
        if period_fs == 0 || period_fs > MAX_PERIOD_FS {
            return None;
        }
        regs.write_u64(REG_CONFIG, regs.read_u64(REG_CONFIG) | CONFIG_ENABLE);
        Some(Hpet { regs, period_fs })
    }

    fn read(&self, counter: &impl Fn() -> u64) -> Read {
        let before = counter();
        let ticks = self.regs.read_u64(REG_COUNTER);
        let after = counter();
        let width = after.wrapping_sub(before);
        Read {
            ticks,
            at: before + width / 2,
            width,
        }
    }

    fn best_read(&self, first: Read, counter: &impl Fn() -> u64) -> Read {
        let mut best = first;
        for _ in 1..READS_PER_END {
            let r = self.read(counter);
            if r.width < best.width {
                best = r;
            }
        }
        best
    }

    /// Lets at least `window_ns` pass on the HPET and returns `(counter units, nanoseconds,
    /// uncertainty in counter units)`, or `None` if the HPET stands still or the wait exceeds
    /// `max_counter_units` or the poll budget.
    pub(super) fn measure(
        &self,
        window_ns: u64,
        max_counter_units: u64,
        counter: impl Fn() -> u64,
    ) -> Option<(u64, u64, u64)> {
        let window_ticks = (u128::from(window_ns) * 1_000_000 / u128::from(self.period_fs)) as u64;
        let first = self.read(&counter);
        let start = self.best_read(first, &counter);
        for _ in 0..MAX_POLLS {
            let r = self.read(&counter);
            if r.at.wrapping_sub(start.at) > max_counter_units || r.ticks < start.ticks {
                return None;
            }
            if r.ticks - start.ticks >= window_ticks {
                let end = self.best_read(r, &counter);
                let ns =
                    u128::from(end.ticks - start.ticks) * u128::from(self.period_fs) / 1_000_000;
                return Some((end.at - start.at, ns as u64, start.width + end.width));
            }
        }
        None
    }
}
