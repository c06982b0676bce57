//! [`Instant`]: a point on the monotonic clock.

use core::{
    ops::{Add, AddAssign, Sub, SubAssign},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use super::tsc::rdtsc;

/// TSC value at which the clock reads zero.
static BASE_TSC: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC cycle, as a 32.32 fixed-point number (0 until calibrated).
static NS_PER_CYCLE_32: AtomicU64 = AtomicU64::new(0);

/// Starts the clock at zero now, ticking `tsc_hz` cycles per second.
pub(super) fn start(tsc_hz: u64) {
    let mult = ((1_000_000_000u128 << 32) / u128::from(tsc_hz.max(1))) as u64;
    BASE_TSC.store(rdtsc(), Ordering::Relaxed);
    NS_PER_CYCLE_32.store(mult, Ordering::Release);
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
        let mult = NS_PER_CYCLE_32.load(Ordering::Acquire);
        let cycles = rdtsc().saturating_sub(BASE_TSC.load(Ordering::Relaxed));
        Instant(((u128::from(cycles) * u128::from(mult)) >> 32) as u64)
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
