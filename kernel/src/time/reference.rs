//! Measuring the TSC against a reference counter of known rate: a short window at boot, then a
//! refinement over a long baseline once the timer ticks.
//!
//! A window's error is the uncertainty of its two end readings divided by its length. At boot a
//! short window (half a millisecond) gives a figure good to a few hundred ppm, which is all the
//! timer and the first timeouts need; the window's first reading is kept, and about a second
//! later the timer interrupt takes one more reading and recomputes the frequency over the whole
//! second, good to a few ppm. The reference may have wrapped meanwhile (the PIT every 55 ms):
//! the boot figure says how many wraps lie in between, as long as its error over the baseline
//! stays well under half a wrap, which is checked.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use super::{hpet::Hpet, pit::Pit, tsc::rdtsc};
use crate::interrupts::{TIMER_DIVIDE_1, timer_current, timer_start_masked};

/// Femtoseconds per second.
const FS_PER_SEC: u128 = 1_000_000_000_000_000;
/// QEMU's local APIC timer runs at its APIC bus clock of 1 GHz (one count per nanosecond at
/// divide-by-1); QEMU 7.2 fixes it (`APIC_BUS_CYCLE_NS`).
pub(super) const QEMU_APIC_HZ: u64 = 1_000_000_000;
/// Consecutive reads of an unchanged count after which a reference is taken as stopped.
const STILL_READS: u32 = 256;
/// Windows tried before the least uncertain one is taken anyway; each is four times as long as
/// the one before (where reads are slow, as under nested KVM, a longer window is what helps),
/// up to [`MAX_WINDOW_NS`].
const ATTEMPTS: usize = 4;
/// The longest window.
const MAX_WINDOW_NS: u64 = 32_000_000;
/// A window is good enough when its readings' uncertainty is below this (parts per million):
/// the refinement a second later needs its error over that second to stay well below half a
/// PIT wrap (27 ms), and timeouts until then do not need better.
const GOOD_PPM: u64 = 4_000;
/// The refinement's baseline: about a second after the boot window started.
const REFINE_AFTER_NS: u64 = 1_000_000_000;
/// Readings per stamp on a fine-grained counter; the narrowest bracket counts, so a vCPU
/// descheduled in the middle of one read does not skew it.
const READS_PER_STAMP: usize = 4;

/// A reading of a reference counter paired with the TSC at that moment.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stamp {
    /// Reference ticks counted upwards, modulo the counter's range.
    pub ticks: u64,
    /// The TSC at the reading (the middle of the bracket of TSC reads around it).
    pub tsc: u64,
    /// Width of that bracket in TSC cycles: `tsc` is off by at most half of it.
    pub width: u64,
}

/// The narrowest-bracketed of a few reads of `read` (a counter that changes faster than it can
/// be read, so the read itself is the instant).
fn bracketed_stamp(mut read: impl FnMut() -> u64) -> Stamp {
    let mut best: Option<Stamp> = None;
    for _ in 0..READS_PER_STAMP {
        let before = rdtsc();
        let ticks = read();
        let width = rdtsc().wrapping_sub(before);
        if best.is_none_or(|b| width < b.width) {
            best = Some(Stamp {
                ticks,
                tsc: before + width / 2,
                width,
            });
        }
    }
    best.expect("READS_PER_STAMP > 0")
}

/// A reference counter.
pub(super) enum Counter {
    /// PIT channel 2: 1.193182 MHz, 16 bits.
    Pit(Pit),
    /// The HPET main counter.
    Hpet(Hpet),
    /// The local APIC timer at divide-by-1, masked and one-shot from `u32::MAX`: QEMU's 1 GHz.
    QemuApic,
}

impl Counter {
    /// Starts the local APIC timer as a reference (QEMU TCG only: its rate is known there).
    pub(super) fn qemu_apic() -> Counter {
        timer_start_masked(TIMER_DIVIDE_1, u32::MAX);
        Counter::QemuApic
    }

    /// The counter now, counting upwards modulo [`Self::range`].
    fn ticks(&mut self) -> u64 {
        match self {
            Self::Pit(pit) => pit.ticks(),
            Self::Hpet(hpet) => hpet.ticks(),
            Self::QemuApic => u64::from(u32::MAX - timer_current()),
        }
    }

    /// How many ticks the counter holds before it wraps (0: 2^64).
    fn range(&self) -> u128 {
        match self {
            Self::Pit(_) => 1 << 16,
            Self::Hpet(hpet) => 1 << hpet.bits,
            Self::QemuApic => 1 << 32,
        }
    }

    /// How long `ticks` ticks last, in femtoseconds.
    fn fs(&self, ticks: u128) -> u128 {
        match self {
            Self::Pit(_) => ticks * FS_PER_SEC / u128::from(super::pit::PIT_HZ),
            Self::Hpet(hpet) => ticks * u128::from(hpet.period_fs),
            Self::QemuApic => ticks * FS_PER_SEC / u128::from(QEMU_APIC_HZ),
        }
    }

    /// How many ticks `fs` femtoseconds last (rounded down).
    fn ticks_in(&self, fs: u128) -> u128 {
        match self {
            Self::Pit(_) => fs * u128::from(super::pit::PIT_HZ) / FS_PER_SEC,
            Self::Hpet(hpet) => fs / u128::from(hpet.period_fs),
            Self::QemuApic => fs * u128::from(QEMU_APIC_HZ) / FS_PER_SEC,
        }
    }

    /// A reading dated by the TSC. `None` if the counter stands still.
    fn stamp(&mut self) -> Option<Stamp> {
        match self {
            Self::Pit(pit) => {
                // Two edges; the narrower bracket counts.
                let a = pit.stamp()?;
                let b = pit.stamp()?;
                Some(if b.width < a.width { b } else { a })
            }
            Self::Hpet(hpet) => Some(bracketed_stamp(|| hpet.ticks())),
            Self::QemuApic => Some(bracketed_stamp(|| u64::from(u32::MAX - timer_current()))),
        }
    }

    /// Ticks from `a` to `b`, assuming fewer than one wrap between them.
    fn elapsed(&self, a: u64, b: u64) -> u128 {
        let range = self.range();
        (u128::from(b) + range - u128::from(a)) % range
    }
}

/// A measured TSC frequency.
#[derive(Debug, Clone, Copy)]
pub(super) struct Measurement {
    /// TSC cycles per second.
    pub hz: u64,
    /// How far off `hz` may be, in parts per million (from the readings' brackets).
    pub uncertainty_ppm: u64,
    /// The window's first reading (the refinement measures from it).
    pub start: Stamp,
    /// The window's length in nanoseconds.
    pub window_ns: u64,
}

/// The frequency and its uncertainty from two stamps `ticks` reference ticks apart.
fn frequency(counter: &Counter, start: &Stamp, end: &Stamp, ticks: u128) -> Option<(u64, u64)> {
    let cycles = end.tsc.checked_sub(start.tsc).filter(|&c| c > 0)?;
    let fs = counter.fs(ticks);
    if fs == 0 {
        return None;
    }
    let hz = u64::try_from(u128::from(cycles) * FS_PER_SEC / fs).ok()?;
    let ppm = (start.width + end.width) / 2 * 1_000_000 / cycles;
    Some((hz, ppm))
}

/// Lets at least `window_ns` pass on `counter` and measures the TSC against it; a window whose
/// readings were imprecise (slow reads, a descheduled vCPU) is measured again over a longer one,
/// a few times, then the best is taken. `None` if the counter stands still.
pub(super) fn measure(counter: &mut Counter, window_ns: u64) -> Option<Measurement> {
    let mut best: Option<Measurement> = None;
    let mut window_ns = window_ns;
    for _ in 0..ATTEMPTS {
        let window = counter
            .ticks_in(u128::from(window_ns) * 1_000_000)
            .max(1)
            .min(counter.range() / 2);
        window_ns = (window_ns * 4).min(MAX_WINDOW_NS);
        let start = counter.stamp()?;
        let (mut last, mut still) = (start.ticks, 0);
        loop {
            let now = counter.ticks();
            if counter.elapsed(start.ticks, now) >= window {
                break;
            }
            still = if now == last { still + 1 } else { 0 };
            if still > STILL_READS {
                return None;
            }
            last = now;
        }
        let end = counter.stamp()?;
        let ticks = counter.elapsed(start.ticks, end.ticks);
        let Some((hz, uncertainty_ppm)) = frequency(counter, &start, &end, ticks) else {
            continue;
        };
        let m = Measurement {
            hz,
            uncertainty_ppm,
            start,
            window_ns: (counter.fs(ticks) / 1_000_000) as u64,
        };
        if uncertainty_ppm <= GOOD_PPM {
            return Some(m);
        }
        if best.is_none_or(|b| uncertainty_ppm < b.uncertainty_ppm) {
            best = Some(m);
        }
    }
    best
}

/// A refinement waiting for its baseline to pass.
struct Pending {
    counter: Counter,
    boot: Measurement,
}

static PENDING: Mutex<Option<Pending>> = Mutex::new(None);
/// The TSC value after which the refinement is due (0: none pending).
static DUE_TSC: AtomicU64 = AtomicU64::new(0);

/// Keeps `counter` and the boot window's first reading, to recompute the frequency over a
/// baseline of about a second at the first timer tick after that ([`refine_if_due`]).
pub(super) fn schedule_refinement(counter: Counter, boot: Measurement) {
    let due =
        boot.start.tsc + (u128::from(boot.hz) * u128::from(REFINE_AFTER_NS) / 1_000_000_000) as u64;
    *PENDING.lock() = Some(Pending { counter, boot });
    DUE_TSC.store(due, Ordering::Release);
}

/// Whether a refinement is still to come.
pub(super) fn refinement_pending() -> bool {
    DUE_TSC.load(Ordering::Acquire) != 0
}

/// Called at every timer tick: once the baseline has passed, reads the reference again, works
/// out how many wraps lie between the two readings from the boot figure, and returns the
/// frequency over the whole baseline with its uncertainty in ppm and the baseline's length in
/// TSC cycles. `None` when nothing is due, or when the result cannot be trusted (logged).
pub(super) fn refine_if_due() -> Option<(u64, u64, u64)> {
    let due = DUE_TSC.load(Ordering::Acquire);
    if due == 0 || rdtsc() < due {
        return None;
    }
    DUE_TSC.store(0, Ordering::Release);
    let Pending { mut counter, boot } = PENDING.try_lock()?.take()?;
    let end = counter.stamp()?;
    let cycles = end.tsc - boot.start.tsc;
    // Where the boot figure says the counter should be, and how far off that may be: three
    // times the boot figure's uncertainty, plus the readings.
    let predicted_fs = u128::from(cycles) * FS_PER_SEC / u128::from(boot.hz);
    let predicted = counter.ticks_in(predicted_fs);
    let slack = predicted * u128::from(boot.uncertainty_ppm.max(1)) * 3 / 1_000_000 + 2;
    let range = counter.range();
    let observed = counter.elapsed(boot.start.ticks, end.ticks);
    // The whole number of wraps that brings the observed count closest to the prediction.
    let wraps = (predicted + range / 2).saturating_sub(observed) / range;
    let ticks = observed + wraps * range;
    if slack >= range / 2 || ticks.abs_diff(predicted) > slack {
        log::warn!(
            "TSC refinement dropped: {ticks} reference ticks against {predicted} predicted \
             (slack {slack}, range {range}); the boot figure stays"
        );
        return None;
    }
    let (hz, ppm) = frequency(&counter, &boot.start, &end, ticks)?;
    Some((hz, ppm, cycles))
}
