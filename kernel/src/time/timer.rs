//! The periodic tick: the local APIC timer, calibrated against the TSC, in periodic mode.

use core::sync::atomic::{AtomicU64, Ordering};

use super::tsc::rdtsc;
use crate::interrupts::{
    TIMER_DIVIDE_16, TIMER_VECTOR, set_fixed_handler, timer_current, timer_start_masked,
    timer_start_periodic,
};

static TICKS: AtomicU64 = AtomicU64::new(0);

fn on_tick(_vector: u8) {
    TICKS.fetch_add(1, Ordering::Relaxed);
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

/// Calibrates the APIC timer and starts it at `hz` interrupts per second. Returns the timer's
/// rate (counts per second), or `None` if it does not count.
pub(super) fn start(tsc_hz: u64, hz: u32) -> Option<u64> {
    let rate = calibrate(tsc_hz);
    let initial = u32::try_from(rate / u64::from(hz)).unwrap_or(u32::MAX);
    if initial == 0 {
        return None;
    }
    set_fixed_handler(TIMER_VECTOR, on_tick);
    timer_start_periodic(TIMER_VECTOR, TIMER_DIVIDE_16, initial);
    Some(rate)
}
