//! The periodic APIC timer (forced even where TSC-deadline mode exists) ticks at the right rate.
//!
//! vireo-test: append vireo.timer=periodic

#![no_std]
#![no_main]

#[path = "support/time.rs"]
mod time_support;

use time_support::ticks_agree_with_the_clock;

use core::time::Duration;

use vireo::time::{self, Instant, TimerMode};

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

fn sleep_is_accurate() {
    let start = Instant::now();
    time::sleep(Duration::from_millis(35));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(35) && took < Duration::from_millis(135),
        "sleep(35 ms) took {took:?}"
    );
}
