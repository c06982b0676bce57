//! The machine's side of [`vireo_virtio::wait`]: sleeping on a queue's MSI-X event with `hlt`,
//! the timer tick as the re-check period.

use core::time::Duration;

use vireo_virtio::wait::WaitPlatform;

use super::IrqEvent;
use crate::time::Instant;

/// How long a used buffer found at a tick may wait for its interrupt before it counts as a missed
/// wake-up: far above an interrupt's delivery time (microseconds), far below a tick (10 ms).
const GRACE: Duration = Duration::from_millis(1);

/// Waits on one MSI-X vector (see [`WaitPlatform`]).
#[derive(Debug, Clone, Copy)]
pub struct IrqWait(pub IrqEvent);

impl WaitPlatform for IrqWait {
    fn ticks(&self) -> u64 {
        crate::time::ticks()
    }

    fn events(&self) -> u64 {
        self.0.count()
    }

    fn sleep(&self, seen: u64, until: u64) -> bool {
        self.0.wait_past(seen, until)
    }

    fn grace(&self, seen: u64) -> bool {
        let start = Instant::now();
        while start.elapsed() < GRACE {
            if self.0.count() != seen {
                return true;
            }
            core::hint::spin_loop();
        }
        self.0.count() != seen
    }
}
