//! The monotonic clock, sleep and the periodic timer interrupt.

#![no_std]
#![no_main]

#[path = "support/time.rs"]
mod time_support;

use time_support::ticks_agree_with_the_clock;

use core::time::Duration;

use vireo::{
    mm::map_mmio,
    time::{self, Instant},
};

vireo::test_main!(
    tsc_frequency_is_plausible,
    interrupts_are_enabled,
    ticks_advance_while_busy,
    ticks_wake_a_halted_cpu,
    clock_is_monotonic,
    sleep_waits_long_enough,
    ticks_agree_with_the_clock,
    instant_arithmetic,
    clock_agrees_with_the_hpet,
);

fn tsc_frequency_is_plausible() {
    let hz = time::tsc_frequency();
    let mode = time::timer_mode().expect("a timer interrupt runs");
    vireo::println!("TSC {hz} Hz, timer {mode}");
    assert!(
        (100_000_000..20_000_000_000).contains(&hz),
        "TSC at {hz} Hz"
    );
}

fn interrupts_are_enabled() {
    assert!(vireo::interrupts::are_enabled());
}

/// Spins until `d` has passed on the clock (bounded by the clock itself).
fn spin_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        core::hint::spin_loop();
    }
}

fn ticks_advance_while_busy() {
    let before = time::ticks();
    spin_for(Duration::from_millis(100));
    let n = time::ticks() - before;
    // 10 expected, but an overloaded host (TCG guests sharing a CPU) delays and coalesces timer
    // interrupts; the rate is checked by `ticks_agree_with_the_clock`.
    assert!(n >= 1, "no tick in 100 ms of busy-waiting");
}

fn ticks_wake_a_halted_cpu() {
    let before = time::ticks();
    let start = Instant::now();
    // Each `hlt` returns at the next interrupt; without a timer the test's timeout would end it.
    while time::ticks() < before + 3 {
        vireo::arch::halt();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "no ticks while halted"
        );
    }
}

fn clock_is_monotonic() {
    const READS: u32 = 50_000;
    let mut prev = Instant::now();
    let first = prev;
    for _ in 0..READS {
        let now = Instant::now();
        assert!(now >= prev, "clock went back: {prev:?} then {now:?}");
        prev = now;
    }
    assert!(prev > first, "clock did not advance over {READS} reads");
    vireo::println!("{:?} per clock read", (prev - first) / READS);
}

fn sleep_waits_long_enough() {
    for ms in [1u64, 10, 25] {
        let start = Instant::now();
        time::sleep(Duration::from_millis(ms));
        let took = start.elapsed();
        vireo::println!("sleep({ms} ms) took {took:?}");
        assert!(
            took >= Duration::from_millis(ms),
            "sleep({ms} ms) took {took:?}"
        );
        // Generous: other virtual machines may share the host.
        assert!(
            took < Duration::from_millis(ms + 100),
            "sleep({ms} ms) took {took:?}"
        );
    }
}

fn instant_arithmetic() {
    let a = Instant::now();
    let d = Duration::from_micros(1500);
    let b = a + d;
    assert_eq!(b - a, d);
    assert_eq!(b.duration_since(a), d);
    assert_eq!(a.duration_since(b), Duration::ZERO);
    assert_eq!(a.checked_duration_since(b), None);
    assert_eq!(b - d, a);
    let mut c = b;
    c -= d;
    assert_eq!(c, a);
    c += d;
    assert_eq!(c, b);
    assert_eq!(Instant::ZERO.checked_sub(Duration::from_nanos(1)), None);
    assert!(time::uptime() >= a.since_start());
}

/// QEMU's q35 HPET (an independent clock: the TSC was calibrated against the PIT).
const HPET_BASE: u64 = 0xfed0_0000;

/// Reads the HPET counter together with the clock, retrying until the two reads are close
/// (a descheduled vCPU between them would skew the comparison): `(ticks, clock, bracket)`.
fn sample(hpet: &vireo::mm::Mmio) -> (u64, Instant, Duration) {
    let mut best: Option<(u64, Instant, Duration)> = None;
    for _ in 0..20 {
        let before = Instant::now();
        let ticks = hpet.read_u64(0xf0);
        let after = Instant::now();
        let width = after - before;
        let mid = before + width / 2;
        if best.is_none_or(|(_, _, w)| width < w) {
            best = Some((ticks, mid, width));
        }
        if width < Duration::from_micros(300) {
            break;
        }
    }
    best.unwrap()
}

fn clock_agrees_with_the_hpet() {
    // SAFETY: q35 has its HPET at 0xFED00000; reading its counter and setting its enable bit only
    // starts the HPET's main counter (no comparator is armed, so no interrupt is raised).
    let hpet = unsafe { map_mmio(HPET_BASE, 0x400) }.unwrap();
    let period_fs = hpet.read_u64(0) >> 32;
    if period_fs == 0 || period_fs > 100_000_000 {
        vireo::println!("no HPET (period {period_fs} fs); comparison skipped");
        return;
    }
    hpet.write_u64(0x10, hpet.read_u64(0x10) | 1);
    // A calibration error shows in every attempt; a host hiccup (TCG's TSC is the host's, and a
    // loaded nested host can stall one clock against the other) in one attempt only.
    let mut attempts = [(0i128, 0i128); 3];
    for attempt in &mut attempts {
        let (h0, i0, w0) = sample(&hpet);
        time::sleep(Duration::from_millis(200));
        let (h1, i1, w1) = sample(&hpet);
        let hpet_ns = (u128::from(h1 - h0) * u128::from(period_fs) / 1_000_000) as i128;
        let clock_ns = (i1 - i0).as_nanos() as i128;
        let slack = (w0 + w1).as_nanos() as i128;
        vireo::println!(
            "200 ms sleep: clock {clock_ns} ns, HPET {hpet_ns} ns (reads within {slack} ns)"
        );
        if (clock_ns - hpet_ns).abs() - slack < hpet_ns / 200 {
            return;
        }
        *attempt = (clock_ns, hpet_ns);
    }
    panic!(
        "clock and HPET differ by more than 0.5% in every attempt: {attempts:?} (clock, HPET ns)"
    );
}
