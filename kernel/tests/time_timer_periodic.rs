//! The periodic APIC timer (forced even where TSC-deadline mode exists) ticks at the right rate.
//!
//! vireo-test: append vireo.timer=periodic

#![no_std]
#![no_main]

#[path = "support/time.rs"]
mod time_support;

use time_support::{clock_agrees_with_the_hpet_within, sleep_takes, ticks_agree_with_the_clock};

use vireo::time::{self, TimerMode};

vireo::test_main!(
    timer_is_periodic,
    ticks_agree_with_the_clock,
    sleep_is_accurate,
    clock_agrees_with_the_hpet,
);

fn clock_agrees_with_the_hpet() {
    clock_agrees_with_the_hpet_within(5_000);
}

fn timer_is_periodic() {
    let Some(TimerMode::ApicPeriodic(rate)) = time::timer_mode() else {
        panic!("timer mode {:?}", time::timer_mode());
    };
    vireo::println!("APIC timer {rate} Hz at divide 16");
    // Plausible APIC timer clocks (bus or crystal, / 16): 1 MHz ..= 1 GHz.
    assert!((1_000_000..=1_000_000_000).contains(&rate), "{rate} Hz");
}

fn sleep_is_accurate() {
    sleep_takes(35);
}
