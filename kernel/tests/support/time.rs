//! Timer checks shared by the timer test images (both timer modes must pass them).

use core::time::Duration;

use vireo::time::{self, Instant, TICK_HZ};

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
