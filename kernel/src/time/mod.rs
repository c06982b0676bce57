//! Time: a monotonic clock from the TSC and a periodic timer interrupt.
//!
//! [`init`] finds the TSC frequency from the first source that gives one, in this order (the
//! command line's `vireo.tsc_ref=NAME` puts one first; see [`TscReference`]):
//!
//! 1. a figure the CPU or hypervisor reports exactly: CPUID leaf 0x40000010 (the hypervisor's TSC
//!    kHz), CPUID leaf 0x15 (crystal clock times ratio), kvmclock's TSC-to-nanoseconds scale;
//! 2. a measurement against the PIT (channel 2) or, without one, the HPET: a 0.5 ms window at
//!    boot (a few hundred ppm), refined about a second later over the whole second (a few ppm)
//!    by the timer interrupt, without a jump of the clock;
//! 3. CPUID leaf 0x16 (base frequency, in MHz steps);
//! 4. under QEMU TCG only, a measurement against the local APIC timer, whose rate QEMU fixes at
//!    1 GHz (QEMU `-machine microvm,pit=off` has nothing else under TCG), logged as a warning;
//! 5. nothing: the kernel panics with what it tried. No frequency is ever assumed silently.
//!
//! The log says which source gave the frequency. Then [`init`] starts [`Instant`]'s clock, starts
//! the local APIC timer at [`TICK_HZ`] — in TSC-deadline mode when the CPU has it, else in
//! periodic mode at a rate measured against the TSC during the same window (see [`TimerMode`]) —
//! and enables interrupts. Nothing here needs the PIC, the RTC or ACPI.
//!
//! Under nested KVM every `rdtsc` may exit to the hypervisor (tens of microseconds each here), so
//! [`Instant::now`] is not free there; keep it out of tight loops.

mod hpet;
mod instant;
mod kvmclock;
mod pit;
mod reference;
mod timer;
mod tsc;

use core::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

pub use instant::Instant;
use reference::{Counter, Measurement};
use spin::Once;
pub use timer::TimerMode;
use timer::{ApicRate, begin_rate_sample};

/// Timer interrupts per second.
pub const TICK_HZ: u32 = 100;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// How far off [`TSC_HZ`] may be, in ppm.
static TSC_UNCERTAINTY_PPM: AtomicU64 = AtomicU64::new(0);
/// The refinement's baseline in TSC cycles (0: not refined).
static REFINED_OVER_CYCLES: AtomicU64 = AtomicU64::new(0);
static TIMER_MODE: Once<TimerMode> = Once::new();
static TSC_REFERENCE: Once<TscReference> = Once::new();

/// The boot window against the PIT or HPET: long enough for a few hundred ppm under QEMU TCG (the
/// refinement does better a second later), short enough not to show in the boot time; where
/// reads are slow it grows (see `reference::measure`).
const BOOT_WINDOW_NS: u64 = 500_000;
/// The window of [`measure_tsc_frequency`].
const MEASURE_WINDOW_NS: u64 = 10_000_000;

/// Kernel command-line option that makes the HPET the first choice for calibrating the TSC.
pub const HPET_REFERENCE_OPTION: &str = "vireo.tsc_ref=hpet";
/// Kernel command-line key naming the first source to try (`vireo.tsc_ref=`), and the names it
/// takes, as [`TscReference`] lists them. They live with the option table in `vireo_kcore::cmdline`.
pub use vireo_kcore::cmdline::{REFERENCE_KEY, REFERENCE_NAMES};

/// Where the TSC frequency came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TscReference {
    /// Measured against PIT channel 2.
    Pit,
    /// Measured against the HPET main counter.
    Hpet,
    /// Reported by this CPUID leaf: 0x15, 0x16 or 0x40000010.
    Cpuid(u32),
    /// KVM's paravirtual clock's TSC scale.
    KvmClock,
    /// Measured against the local APIC timer at QEMU's fixed 1 GHz (QEMU TCG only).
    QemuApicTimer,
}

impl TscReference {
    /// The sources in the order [`init`] tries them.
    const ORDER: [TscReference; 7] = [
        Self::Cpuid(tsc::LEAF_HYPERVISOR_TIMING),
        Self::Cpuid(tsc::LEAF_CRYSTAL),
        Self::KvmClock,
        Self::Pit,
        Self::Hpet,
        Self::Cpuid(tsc::LEAF_FREQUENCY),
        Self::QemuApicTimer,
    ];

    /// The name `vireo.tsc_ref=` takes (one of [`REFERENCE_NAMES`]).
    fn option_name(self) -> &'static str {
        match self {
            Self::Pit => "pit",
            Self::Hpet => "hpet",
            Self::KvmClock => "kvmclock",
            Self::QemuApicTimer => "apic",
            Self::Cpuid(tsc::LEAF_CRYSTAL) => "cpuid15",
            Self::Cpuid(tsc::LEAF_FREQUENCY) => "cpuid16",
            Self::Cpuid(_) => "cpuid40000010",
        }
    }
}

impl fmt::Display for TscReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pit => f.write_str("the PIT"),
            Self::Hpet => f.write_str("the HPET"),
            Self::Cpuid(leaf) => write!(f, "CPUID leaf {leaf:#x}"),
            Self::KvmClock => f.write_str("kvmclock"),
            Self::QemuApicTimer => f.write_str("the local APIC timer at QEMU's 1 GHz"),
        }
    }
}

/// A frequency found by [`find`], and what keeps the reference for the refinement.
struct Found {
    reference: TscReference,
    hz: u64,
    uncertainty_ppm: u64,
    /// The measurement window in microseconds (0: a reported figure).
    window_us: u64,
    refine: Option<(Counter, Measurement)>,
}

/// Starts a reference counter that can be measured against (`None` for reported figures, or if
/// it is missing).
fn counter(reference: TscReference) -> Option<Counter> {
    match reference {
        TscReference::Pit => pit::Pit::start().map(Counter::Pit),
        TscReference::Hpet => {
            let phys = crate::interrupts::hpet_address(crate::boot_info().rsdp()).ok()?;
            hpet::Hpet::start(phys).map(Counter::Hpet)
        }
        TscReference::QemuApicTimer => (crate::arch::hypervisor() == crate::arch::Hypervisor::Tcg
            && timer_mode().is_none())
        .then(Counter::qemu_apic),
        TscReference::Cpuid(_) | TscReference::KvmClock => None,
    }
}

/// The frequency from `reference`, measured over `window_ns` if it is a counter.
fn find(reference: TscReference, window_ns: u64) -> Option<Found> {
    let reported = |hz: Option<u64>, uncertainty_ppm| {
        hz.map(|hz| Found {
            reference,
            hz,
            uncertainty_ppm,
            window_us: 0,
            refine: None,
        })
    };
    match reference {
        TscReference::Cpuid(leaf) => {
            let hz = tsc::cpuid_frequency(leaf);
            // 0x16 is in MHz steps, 0x40000010 in kHz; 0x15 is exact.
            let ppm = match leaf {
                tsc::LEAF_FREQUENCY => hz.map_or(0, |hz| 1_000_000_000_000 / hz),
                tsc::LEAF_HYPERVISOR_TIMING => hz.map_or(0, |hz| 1_000_000_000 / hz),
                _ => 0,
            };
            reported(hz, ppm)
        }
        TscReference::KvmClock => reported(kvmclock::frequency(), 0),
        _ => {
            let mut counter = counter(reference)?;
            let m = reference::measure(&mut counter, window_ns)?;
            Some(Found {
                reference,
                hz: m.hz,
                uncertainty_ppm: m.uncertainty_ppm,
                window_us: m.window_ns / 1000,
                refine: (reference != TscReference::QemuApicTimer).then_some((counter, m)),
            })
        }
    }
}

/// Measures (or reads) the TSC frequency against `reference` now: a 10 ms window for the PIT
/// and HPET. `None` if that reference is missing or does not count, and for the APIC timer once
/// it ticks. Interrupts may stay enabled: a window whose readings were delayed is measured again.
pub fn measure_tsc_frequency(reference: TscReference) -> Option<u64> {
    find(reference, MEASURE_WINDOW_NS).map(|f| f.hz)
}

/// What the TSC frequency was measured against (`None` before [`init`]).
pub fn tsc_reference() -> Option<TscReference> {
    TSC_REFERENCE.get().copied()
}

/// How far off [`tsc_frequency`] may be, in parts per million: the width of its readings over
/// its window, or the resolution of a reported figure (0: exact).
pub fn tsc_uncertainty_ppm() -> u64 {
    TSC_UNCERTAINTY_PPM.load(Ordering::Relaxed)
}

/// The baseline the TSC frequency was refined over (`None` until then; only the PIT and HPET
/// are refined).
pub fn tsc_refined_over() -> Option<Duration> {
    match REFINED_OVER_CYCLES.load(Ordering::Relaxed) {
        0 => None,
        cycles => Some(cycles_to_duration(cycles)),
    }
}

/// Kernel command-line option that forces the periodic APIC timer even where TSC-deadline mode
/// exists.
pub const PERIODIC_TIMER_OPTION: &str = "vireo.timer=periodic";

/// Calibrates the clock, starts the timer and enables interrupts.
///
/// # Panics
/// If no source gives a TSC frequency (see the module's documentation).
pub fn init() {
    if !tsc::is_invariant() {
        log::debug!("the TSC is not invariant (CPUID.80000007h:EDX[8] clear)");
    }
    let option = |o: &str| {
        let (key, value) = o.split_once('=').unwrap_or((o, ""));
        crate::cmdline::text(key) == Some(value)
    };
    // `cmdline` reports a name that is not a source (its table lists the names).
    let first = crate::cmdline::text(REFERENCE_KEY).and_then(|name| {
        TscReference::ORDER
            .into_iter()
            .find(|r| r.option_name() == name)
    });
    let order = first.into_iter().chain(
        TscReference::ORDER
            .into_iter()
            .filter(|r| Some(*r) != first),
    );
    let apic_sample = begin_rate_sample();
    let mut tried: [Option<TscReference>; 8] = [None; 8];
    let mut found = None;
    for (i, reference) in order.enumerate() {
        if let Some(f) = find(reference, BOOT_WINDOW_NS) {
            found = Some(f);
            break;
        }
        tried[i] = Some(reference);
    }
    for r in tried.iter().flatten() {
        log::debug!("TSC frequency: nothing from {r}");
    }
    let Some(Found {
        reference,
        hz,
        uncertainty_ppm,
        window_us,
        refine,
    }) = found
    else {
        panic!(
            "cannot determine the TSC frequency: no CPUID frequency leaf (0x15, 0x16, \
             0x40000010), no kvmclock, no PIT, no HPET, and not QEMU TCG (whose APIC timer \
             runs at a known 1 GHz)"
        );
    };
    TSC_REFERENCE.call_once(|| reference);
    TSC_HZ.store(hz, Ordering::Relaxed);
    TSC_UNCERTAINTY_PPM.store(uncertainty_ppm, Ordering::Relaxed);
    instant::start(hz);
    let mhz = format_args!("{}.{:03} MHz", hz / 1_000_000, hz / 1000 % 1000);
    match (reference, &refine) {
        (TscReference::QemuApicTimer, _) => log::warn!(
            "TSC: {mhz} from {reference} (±{uncertainty_ppm} ppm over {window_us} us): no PIT, \
             HPET, CPUID frequency leaf or kvmclock, and QEMU TCG's APIC bus clock is a known 1 GHz"
        ),
        (_, Some(_)) => log::info!(
            "TSC: {mhz} from {reference} (±{uncertainty_ppm} ppm over {window_us} us; refined \
             over 1 s by the timer)"
        ),
        (_, None) => log::info!("TSC: {mhz} from {reference}"),
    }
    let apic_rate = if reference == TscReference::QemuApicTimer {
        ApicRate::Known(reference::QEMU_APIC_HZ / 16)
    } else {
        ApicRate::Sampled(apic_sample)
    };
    if let Some((counter, m)) = refine {
        reference::schedule_refinement(counter, m);
    }
    let allow_deadline = !option(PERIODIC_TIMER_OPTION);
    match timer::start(hz, TICK_HZ, allow_deadline, apic_rate) {
        Some(mode) => {
            TIMER_MODE.call_once(|| mode);
            log::debug!("timer: {mode}, ticking at {TICK_HZ} Hz");
        }
        None => log::error!("the APIC timer does not count; no timer interrupt"),
    }
    crate::interrupts::enable();
}

/// Called by the timer interrupt: applies the refined TSC frequency once it is due.
fn on_tick() {
    if !reference::refinement_pending() {
        return;
    }
    let Some((hz, ppm, cycles)) = reference::refine_if_due() else {
        return;
    };
    let old = TSC_HZ.load(Ordering::Relaxed);
    instant::set_rate(hz);
    TSC_HZ.store(hz, Ordering::Relaxed);
    TSC_UNCERTAINTY_PPM.store(ppm, Ordering::Relaxed);
    REFINED_OVER_CYCLES.store(cycles, Ordering::Relaxed);
    timer::retune(hz, TICK_HZ);
    let diff = (i128::from(hz) - i128::from(old)) * 1_000_000 / i128::from(old.max(1));
    log::info!(
        "TSC: refined to {}.{:06} MHz (±{}{} ppm over {} ms; {diff:+} ppm from the boot figure)",
        hz / 1_000_000,
        hz % 1_000_000,
        if ppm == 0 { "<" } else { "" },
        ppm.max(1),
        cycles_to_duration(cycles).as_millis()
    );
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

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    tsc::rdtsc()
}

/// How long `cycles` TSC cycles last at the calibrated frequency (zero before [`init`]).
pub fn cycles_to_duration(cycles: u64) -> Duration {
    let hz = tsc_frequency();
    if hz == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos((u128::from(cycles) * 1_000_000_000 / u128::from(hz)) as u64)
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
