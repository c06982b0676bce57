//! Timer checks shared by the timer test images (both timer modes must pass them).

#![allow(dead_code, reason = "each test image uses the part it needs")]

use core::time::Duration;

use vireo::{
    mm::{Mmio, map_mmio},
    time::{self, Instant, TICK_HZ},
};

/// Over 300 ms of sleep, the tick counter advances at `TICK_HZ` as measured by the clock
/// (within -50 % / +50 %: a loaded host delays timer interrupts).
pub fn ticks_agree_with_the_clock() {
    let before = time::ticks();
    let start = Instant::now();
    time::sleep(Duration::from_millis(300));
    let ticks = time::ticks() - before;
    let expected = start.elapsed().as_millis() as u64 * u64::from(TICK_HZ) / 1000;
    vireo::println!("{ticks} ticks, {expected} expected");
    assert!(
        ticks * 2 >= expected && ticks * 2 <= expected * 3,
        "{ticks} ticks where {expected} were expected"
    );
}

/// Each `hlt` returns at the next interrupt: three ticks come within 2 s (without a timer the
/// test's timeout would end it).
pub fn ticks_wake_a_halted_cpu() {
    let before = time::ticks();
    let start = Instant::now();
    while time::ticks() < before + 3 {
        vireo::arch::halt();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "no ticks while halted"
        );
    }
}

/// `sleep(ms)` takes at least `ms` and less than 100 ms more (other virtual machines may share
/// the host).
pub fn sleep_takes(ms: u64) {
    let start = Instant::now();
    time::sleep(Duration::from_millis(ms));
    let took = start.elapsed();
    vireo::println!("sleep({ms} ms) took {took:?}");
    assert!(
        took >= Duration::from_millis(ms) && took < Duration::from_millis(ms + 100),
        "sleep({ms} ms) took {took:?}"
    );
}

/// QEMU's q35 HPET (an independent clock when the TSC was calibrated against the PIT).
const HPET_BASE: u64 = 0xfed0_0000;

/// Reads the HPET counter together with the clock, retrying until the two reads are close
/// (a descheduled vCPU between them would skew the comparison): `(ticks, clock, bracket)`.
fn sample(hpet: &Mmio) -> (u64, Instant, Duration) {
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

/// Over a 200 ms sleep the clock and the HPET agree within `ppm` parts per million (plus the
/// width of the reads), in at least one of three attempts.
pub fn clock_agrees_with_the_hpet_within(ppm: i128) {
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
        if (clock_ns - hpet_ns).abs() - slack <= hpet_ns * ppm / 1_000_000 {
            return;
        }
        *attempt = (clock_ns, hpet_ns);
    }
    panic!(
        "clock and HPET differ by more than {ppm} ppm in every attempt: {attempts:?} (clock, HPET ns)"
    );
}
