//! [`Instant`]: a point on the monotonic clock.

use core::{
    ops::{Add, AddAssign, Sub, SubAssign},
    sync::atomic::{AtomicU64, Ordering, fence},
    time::Duration,
};

use super::tsc::rdtsc;

/// The clock is `BASE_NS + (tsc - BASE_TSC) * NS_PER_CYCLE_32 >> 32`. The three change together
/// when a refined TSC frequency arrives (in the timer interrupt), so readers check `SEQ`: it is
/// bumped before and after every change and a reader that saw it move reads again. The writer
/// runs with interrupts off on the only CPU, so a reader never sees a change half done, only one
/// that happened between its loads.
static SEQ: AtomicU64 = AtomicU64::new(0);
/// TSC value at which the clock reads `BASE_NS`.
static BASE_TSC: AtomicU64 = AtomicU64::new(0);
/// The clock at `BASE_TSC`.
static BASE_NS: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC cycle, as a 32.32 fixed-point number (0 until calibrated).
static NS_PER_CYCLE_32: AtomicU64 = AtomicU64::new(0);

fn ns_per_cycle_32(tsc_hz: u64) -> u64 {
    ((1_000_000_000u128 << 32) / u128::from(tsc_hz.max(1))) as u64
}

/// Starts the clock at zero now, ticking `tsc_hz` cycles per second.
pub(super) fn start(tsc_hz: u64) {
    set(rdtsc(), 0, ns_per_cycle_32(tsc_hz));
}

/// From now on, ticks at `tsc_hz` cycles per second, continuing from the current reading (the
/// clock neither jumps nor goes back). Call with interrupts off.
pub(super) fn set_rate(tsc_hz: u64) {
    let tsc = rdtsc();
    let now = reading_at(tsc).0;
    set(tsc, now, ns_per_cycle_32(tsc_hz));
}

fn set(base_tsc: u64, base_ns: u64, mult: u64) {
    SEQ.fetch_add(1, Ordering::AcqRel);
    BASE_TSC.store(base_tsc, Ordering::Relaxed);
    BASE_NS.store(base_ns, Ordering::Relaxed);
    NS_PER_CYCLE_32.store(mult, Ordering::Relaxed);
    SEQ.fetch_add(1, Ordering::AcqRel);
}

/// The clock at TSC value `tsc` (the base if `tsc` is before it).
fn reading_at(tsc: u64) -> Instant {
    let cycles = tsc.saturating_sub(BASE_TSC.load(Ordering::Relaxed));
    let ns = (u128::from(cycles) * u128::from(NS_PER_CYCLE_32.load(Ordering::Relaxed))) >> 32;
    Instant(BASE_NS.load(Ordering::Relaxed) + ns as u64)
}

/// A reading of the monotonic clock: nanoseconds since the clock started (at `time::init`).
///
/// Before the clock is calibrated every reading is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The clock's start.
    pub const ZERO: Instant = Instant(0);

    /// The current time.
    pub fn now() -> Instant {
        loop {
            let seq = SEQ.load(Ordering::Acquire);
            let now = reading_at(rdtsc());
            // The loads above complete before `SEQ` is looked at again.
            fence(Ordering::Acquire);
            if SEQ.load(Ordering::Relaxed) == seq {
                return now;
            }
        }
    }

    /// Time since the clock started.
    pub fn since_start(&self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub fn duration_since(&self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }

    /// Time from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_duration_since(&self, earlier: Instant) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration::from_nanos)
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Time since `self`.
    pub fn elapsed(&self) -> Duration {
        Instant::now().duration_since(*self)
    }

    /// `self + d`, or `None` on overflow (after about 584 years).
    pub fn checked_add(&self, d: Duration) -> Option<Instant> {
        let ns = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_add(ns).map(Instant)
    }

    /// `self - d`, or `None` if that is before the clock's start.
    pub fn checked_sub(&self, d: Duration) -> Option<Instant> {
        let ns = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_sub(ns).map(Instant)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// # Panics
    /// On overflow.
    fn add(self, d: Duration) -> Instant {
        self.checked_add(d).expect("Instant + Duration overflowed")
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    /// # Panics
    /// If the result would be before the clock's start.
    fn sub(self, d: Duration) -> Instant {
        self.checked_sub(d)
            .expect("Instant - Duration is before the clock's start")
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// Saturates at zero, like [`Instant::duration_since`].
    fn sub(self, earlier: Instant) -> Duration {
        self.duration_since(earlier)
    }
}
