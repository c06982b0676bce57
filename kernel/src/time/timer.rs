//! The periodic tick: the local APIC timer in TSC-deadline mode when the CPU has it (re-armed on
//! every tick), else in periodic mode at a rate measured against the TSC alongside the TSC's own
//! calibration.

use core::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
};

use super::tsc::rdtsc;
use crate::interrupts::{
    TIMER_DIVIDE_16, TIMER_VECTOR, has_tsc_deadline, set_fixed_handler, set_tsc_deadline,
    timer_current, timer_start_masked, timer_start_periodic, timer_start_tsc_deadline,
};

/// How the timer interrupt is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerMode {
    /// TSC-deadline mode, re-armed one period ahead on every tick.
    TscDeadline,
    /// Periodic mode; the APIC timer counts at this rate (Hz) at divide-by-16.
    ApicPeriodic(u64),
}

impl fmt::Display for TimerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TscDeadline => f.write_str("TSC-deadline"),
            Self::ApicPeriodic(hz) => write!(f, "periodic, APIC timer at {hz} Hz / 16"),
        }
    }
}

static TICKS: AtomicU64 = AtomicU64::new(0);
/// TSC cycles per tick in TSC-deadline mode.
static PERIOD_CYCLES: AtomicU64 = AtomicU64::new(0);
/// The TSC value the next deadline tick is due at.
static NEXT_DEADLINE: AtomicU64 = AtomicU64::new(0);

fn on_tick(_vector: u8) {
    TICKS.fetch_add(1, Ordering::Relaxed);
    super::on_tick();
}

fn on_deadline_tick(_vector: u8) {
    TICKS.fetch_add(1, Ordering::Relaxed);
    let period = PERIOD_CYCLES.load(Ordering::Relaxed);
    // Keep the phase (no drift); if interrupts were off for more than a period, start afresh.
    let mut next = NEXT_DEADLINE.load(Ordering::Relaxed) + period;
    let now = rdtsc();
    if next <= now {
        next = now + period;
    }
    NEXT_DEADLINE.store(next, Ordering::Relaxed);
    set_tsc_deadline(next);
    super::on_tick();
}

/// Timer interrupts since the timer started.
pub(super) fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// How the periodic mode learns the APIC timer's rate.
pub(super) enum ApicRate {
    /// Measured against the TSC from this reading (taken by [`begin_rate_sample`]) to the
    /// timer's start: the TSC calibration's window lies in between, so this costs nothing.
    Sampled(RateSample),
    /// Known at divide-by-16 (QEMU's 1 GHz bus clock, when that was the TSC's reference).
    Known(u64),
}

/// The APIC timer's count at a TSC value.
pub(super) struct RateSample {
    count: u32,
    tsc: u64,
}

/// The shortest span a sampled rate is measured over (the caller's window is usually longer).
const MIN_SAMPLE_NS: u64 = 200_000;

/// Starts the APIC timer counting down, masked, at divide-by-16 and reads it with the TSC.
pub(super) fn begin_rate_sample() -> RateSample {
    timer_start_masked(TIMER_DIVIDE_16, u32::MAX);
    read_sample()
}

/// The timer's count with the TSC at the middle of the read.
fn read_sample() -> RateSample {
    let before = rdtsc();
    let count = timer_current();
    let after = rdtsc();
    RateSample {
        count,
        tsc: before + (after - before) / 2,
    }
}

/// The APIC timer's rate (counts per second at divide-by-16) from `start` to now, waiting until
/// at least [`MIN_SAMPLE_NS`] have passed on the TSC (which always advances).
fn sampled_rate(start: &RateSample, tsc_hz: u64) -> u64 {
    let min_cycles = tsc_hz / (1_000_000_000 / MIN_SAMPLE_NS);
    while rdtsc() - start.tsc < min_cycles {
        core::hint::spin_loop();
    }
    let end = read_sample();
    let counted = u64::from(start.count.wrapping_sub(end.count));
    let elapsed = (end.tsc - start.tsc).max(1);
    (u128::from(counted) * u128::from(tsc_hz) / u128::from(elapsed)) as u64
}

/// Starts the timer at `hz` interrupts per second, in TSC-deadline mode if the CPU has it and
/// `allow_deadline`, else in periodic mode. `None` if the APIC timer does not count.
pub(super) fn start(
    tsc_hz: u64,
    hz: u32,
    allow_deadline: bool,
    apic_rate: ApicRate,
) -> Option<TimerMode> {
    if allow_deadline && has_tsc_deadline() {
        let period = tsc_hz / u64::from(hz);
        PERIOD_CYCLES.store(period, Ordering::Relaxed);
        set_fixed_handler(TIMER_VECTOR, on_deadline_tick);
        timer_start_tsc_deadline(TIMER_VECTOR);
        let first = rdtsc() + period;
        NEXT_DEADLINE.store(first, Ordering::Relaxed);
        set_tsc_deadline(first);
        return Some(TimerMode::TscDeadline);
    }
    let rate = match apic_rate {
        ApicRate::Sampled(start) => sampled_rate(&start, tsc_hz),
        ApicRate::Known(rate) => rate,
    };
    let initial = u32::try_from(rate / u64::from(hz)).unwrap_or(u32::MAX);
    if initial == 0 {
        return None;
    }
    set_fixed_handler(TIMER_VECTOR, on_tick);
    timer_start_periodic(TIMER_VECTOR, TIMER_DIVIDE_16, initial);
    Some(TimerMode::ApicPeriodic(rate))
}

/// Keeps the TSC-deadline period at one tick when the TSC frequency is refined.
pub(super) fn retune(tsc_hz: u64, hz: u32) {
    if PERIOD_CYCLES.load(Ordering::Relaxed) != 0 {
        PERIOD_CYCLES.store(tsc_hz / u64::from(hz), Ordering::Relaxed);
    }
}
