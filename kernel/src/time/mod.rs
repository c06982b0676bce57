//! Time: a monotonic clock from the TSC and a periodic timer interrupt.

/// Calibrates the clock and starts the timer.
pub fn init() {}
