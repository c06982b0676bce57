//! Time: a monotonic clock from the TSC and a periodic timer interrupt.
//!
//! [`init`] measures the TSC frequency against the PIT (median of several rounds; the HPET and then
//! CPUID's figure are the fallbacks), starts [`Instant`]'s clock, starts the local APIC timer at [`TICK_HZ`] — in
//! TSC-deadline mode when the CPU has it, else in periodic mode calibrated against the TSC (see
//! [`TimerMode`]) — and enables interrupts.
//!
//! Under nested KVM every `rdtsc` may exit to the hypervisor (tens of microseconds each here), so
//! [`Instant::now`] is not free there; keep it out of tight loops.

mod hpet;
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
static TSC_REFERENCE: Once<TscReference> = Once::new();

/// Kernel command-line option that makes the HPET the first choice for calibrating the TSC.
pub const HPET_REFERENCE_OPTION: &str = "vireo.tsc_ref=hpet";

/// What the TSC frequency was measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TscReference {
    /// PIT channel 2 (the default).
    Pit,
    /// The HPET main counter (when the PIT does not count, or [`HPET_REFERENCE_OPTION`]).
    Hpet,
    /// Not measured: the frequency CPUID (or the hypervisor's CPUID leaf) reports.
    Cpuid,
}

/// Measures the TSC frequency against `reference` now (about 100 ms for the PIT or HPET; CPUID
/// is only read). `None` if that reference is missing or does not count. Interrupts may stay
/// enabled: a delayed read is detected and its round discarded.
pub fn measure_tsc_frequency(reference: TscReference) -> Option<u64> {
    match reference {
        TscReference::Pit => tsc::calibrate_with_pit(),
        TscReference::Hpet => {
            let phys = crate::interrupts::hpet_address(crate::boot_info().rsdp()).ok()?;
            tsc::calibrate_with_hpet(phys)
        }
        TscReference::Cpuid => tsc::cpuid_frequency(),
    }
}

/// What the TSC frequency was measured against (`None` before [`init`]).
pub fn tsc_reference() -> Option<TscReference> {
    TSC_REFERENCE.get().copied()
}

/// Kernel command-line option that forces the periodic APIC timer even where TSC-deadline mode
/// exists.
pub const PERIODIC_TIMER_OPTION: &str = "vireo.timer=periodic";

/// Calibrates the clock, starts the timer and enables interrupts.
///
/// # Panics
/// If neither the PIT, nor the HPET, nor CPUID gives a TSC frequency.
pub fn init() {
    if !tsc::is_invariant() {
        log::info!("the TSC is not invariant (CPUID.80000007h:EDX[8] clear)");
    }
    let option = |o: &str| {
        let (key, value) = o.split_once('=').unwrap_or((o, ""));
        crate::cmdline::text(key) == Some(value)
    };
    let order = if option(HPET_REFERENCE_OPTION) {
        [TscReference::Hpet, TscReference::Pit, TscReference::Cpuid]
    } else {
        [TscReference::Pit, TscReference::Hpet, TscReference::Cpuid]
    };
    let Some((reference, hz)) = order
        .into_iter()
        .find_map(|r| measure_tsc_frequency(r).map(|hz| (r, hz)))
    else {
        panic!("cannot determine the TSC frequency: no PIT, HPET or CPUID figure");
    };
    if reference != order[0] {
        log::warn!("TSC calibration against the {:?} failed", order[0]);
    }
    TSC_REFERENCE.call_once(|| reference);
    TSC_HZ.store(hz, Ordering::Relaxed);
    instant::start(hz);
    log::info!(
        "TSC: {}.{:03} MHz, measured against the {reference:?} (CPUID says {:?} Hz)",
        hz / 1_000_000,
        hz / 1000 % 1000,
        tsc::cpuid_frequency()
    );
    let allow_deadline = !option(PERIODIC_TIMER_OPTION);
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
