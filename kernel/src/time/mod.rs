//! Time: a monotonic clock from the TSC and a periodic timer interrupt.
//!
//! [`init`] measures the TSC frequency against the PIT (median of several rounds; CPUID's figure is
//! the fallback), starts [`Instant`]'s clock, starts the local APIC timer at [`TICK_HZ`] — in
//! TSC-deadline mode when the CPU has it, else in periodic mode calibrated against the TSC (see
//! [`TimerMode`]) — and enables interrupts.
//!
//! Under nested KVM every `rdtsc` may exit to the hypervisor (tens of microseconds each here), so
//! [`Instant::now`] is not free there; keep it out of tight loops.

mod instant;
mod pit;
mod timer;
mod tsc;

use core::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

pub use instant::Instant;
use spin::Once;
pub use timer::TimerMode;

/// Timer interrupts per second.
pub const TICK_HZ: u32 = 100;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TIMER_MODE: Once<TimerMode> = Once::new();

/// Kernel command-line option that forces the periodic APIC timer even where TSC-deadline mode
/// exists.
pub const PERIODIC_TIMER_OPTION: &str = "vireo.timer=periodic";

/// Calibrates the clock, starts the timer and enables interrupts.
///
/// # Panics
/// If neither the PIT nor CPUID gives a TSC frequency.
pub fn init() {
    if !tsc::is_invariant() {
        log::info!("the TSC is not invariant (CPUID.80000007h:EDX[8] clear)");
    }
    let reported = tsc::cpuid_frequency();
    let hz = match (tsc::calibrate_with_pit(), reported) {
        (Some(hz), _) => hz,
        (None, Some(hz)) => {
            log::warn!("PIT calibration failed; using the CPUID TSC frequency");
            hz
        }
        (None, None) => panic!("cannot determine the TSC frequency"),
    };
    TSC_HZ.store(hz, Ordering::Relaxed);
    instant::start(hz);
    log::info!(
        "TSC: {}.{:03} MHz (CPUID says {:?} Hz)",
        hz / 1_000_000,
        hz / 1000 % 1000,
        reported
    );
    let allow_deadline = !crate::boot_info()
        .cmdline()
        .split(' ')
        .any(|a| a == PERIODIC_TIMER_OPTION);
    match timer::start(hz, TICK_HZ, allow_deadline) {
        Some(mode) => {
            TIMER_MODE.call_once(|| mode);
            log::info!("timer: {mode}, ticking at {TICK_HZ} Hz");
        }
        None => log::error!("the APIC timer does not count; no timer interrupt"),
    }
    crate::interrupts::enable();
}

/// The calibrated TSC frequency in Hz (0 before [`init`]).
pub fn tsc_frequency() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// How the timer interrupt is produced (`None` if there is no timer interrupt).
pub fn timer_mode() -> Option<TimerMode> {
    TIMER_MODE.get().copied()
}

/// Timer interrupts since the timer started ([`TICK_HZ`] per second).
pub fn ticks() -> u64 {
    timer::ticks()
}

/// Time since the clock started.
pub fn uptime() -> Duration {
    Instant::now().since_start()
}

/// Waits at least `d`: halts between timer ticks while more than a tick remains (if interrupts are
/// enabled and the timer runs), then spins to the deadline.
///
/// # Panics
/// If called before [`init`] (the clock would never advance).
pub fn sleep(d: Duration) {
    assert!(
        tsc_frequency() != 0,
        "time::sleep before the clock is calibrated"
    );
    let deadline = Instant::now() + d;
    let tick = Duration::from_secs(1) / TICK_HZ;
    let can_halt = timer_mode().is_some() && crate::interrupts::are_enabled();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        if can_halt && deadline - now > tick {
            crate::arch::halt();
        } else {
            core::hint::spin_loop();
        }
    }
}
