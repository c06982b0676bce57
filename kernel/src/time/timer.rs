//! The periodic tick: the local APIC timer in TSC-deadline mode when the CPU has it (re-armed on
//! every tick), else in periodic mode after calibrating its rate against the TSC.

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
}

/// Timer interrupts since the timer started.
pub(super) fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Measures the APIC timer's rate (counts per second at divide-by-16) against the TSC: the median
/// of three 10 ms rounds. Every wait is bounded by the TSC, which always advances.
fn calibrate(tsc_hz: u64) -> u64 {
    let window = tsc_hz / 100;
    let mut rounds = [0u64; 3];
    for r in &mut rounds {
        timer_start_masked(TIMER_DIVIDE_16, u32::MAX);
        let start = rdtsc();
        let mut now = start;
        while now - start < window {
            core::hint::spin_loop();
            now = rdtsc();
        }
        let counted = u64::from(u32::MAX - timer_current());
        let elapsed = rdtsc() - start;
        *r = (u128::from(counted) * u128::from(tsc_hz) / u128::from(elapsed.max(1))) as u64;
    }
    timer_start_masked(TIMER_DIVIDE_16, 0);
    rounds.sort_unstable();
    rounds[1]
}

/// Starts the timer at `hz` interrupts per second, in TSC-deadline mode if the CPU has it and
/// `allow_deadline`, else in periodic mode. `None` if the APIC timer does not count.
pub(super) fn start(tsc_hz: u64, hz: u32, allow_deadline: bool) -> Option<TimerMode> {
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
    let rate = calibrate(tsc_hz);
    let initial = u32::try_from(rate / u64::from(hz)).unwrap_or(u32::MAX);
    if initial == 0 {
        return None;
    }
    set_fixed_handler(TIMER_VECTOR, on_tick);
    timer_start_periodic(TIMER_VECTOR, TIMER_DIVIDE_16, initial);
    Some(TimerMode::ApicPeriodic(rate))
}
