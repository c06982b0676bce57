//! The periodic APIC timer (forced even where TSC-deadline mode exists) ticks at the right rate.
//!
//! vireo-test: append vireo.timer=periodic

#![no_std]
#![no_main]

use core::time::Duration;

use vireo::time::{self, Instant, TICK_HZ, TimerMode};

vireo::test_main!(
    timer_is_periodic,
    ticks_agree_with_the_clock,
    sleep_is_accurate
);

fn timer_is_periodic() {
    let Some(TimerMode::ApicPeriodic(rate)) = time::timer_mode() else {
        panic!("timer mode {:?}", time::timer_mode());
    };
    vireo::println!("APIC timer {rate} Hz at divide 16");
    // Plausible APIC timer clocks (bus or crystal, / 16): 1 MHz ..= 1 GHz.
    assert!((1_000_000..=1_000_000_000).contains(&rate), "{rate} Hz");
}

fn ticks_agree_with_the_clock() {
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

fn sleep_is_accurate() {
    let start = Instant::now();
    time::sleep(Duration::from_millis(35));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(35) && took < Duration::from_millis(135),
        "sleep(35 ms) took {took:?}"
    );
}
