//! Waiting for a used buffer: the enable-notifications / re-check / sleep sequence of virtio 1.2
//! §2.7.10 and §2.8.10, with a periodic look at the ring that catches a lost interrupt.
//!
//! A driver that sleeps until the device's interrupt depends on both sides' store→load fences:
//! the driver stores "notify me" (`used_event`, or the flags) and then re-reads the used index;
//! the device stores the used index and then reads "notify me". If either fence is missing —
//! QEMU's single-threaded TCG before 8.1 drops a guest's `mfence` and turns `lock`-prefixed
//! instructions into plain ones when the machine can have only one CPU — both sides can read the
//! other's old value: the driver sleeps on an empty-looking ring and the device raises no
//! interrupt. [`wait`] therefore never sleeps longer than one timer tick without looking at the
//! ring again. A used buffer found that way, whose interrupt does not follow within the
//! platform's grace period, is a *missed wake-up*: it is reported through
//! [`WaitQueue::missed_wakeup`] (while the ring still shows it) and then taken, so a lost
//! interrupt costs at most a tick and is never silent. The mirror-image race on the kick side
//! (the driver reads a stale "don't notify me" and the device sleeps on a request it never saw)
//! cannot be seen from the used ring; a wait that has seen nothing for
//! [`RENOTIFY_AFTER_TICKS`] ticks notifies the device again, at doubling intervals (a spurious
//! notification is harmless, §2.7.13.4 / §2.8.21.3).
//!
//! The sequence is written once here, generic over the queue ([`WaitQueue`]) and the machine
//! ([`WaitPlatform`]), so that host tests can complete a request at every step of it.

/// Wait for this many ticks with nothing used before notifying the device again; then again
/// after twice as many, and so on.
pub const RENOTIFY_AFTER_TICKS: u64 = 2;

/// What the machine offers a waiting driver: a tick counter, the queue's interrupt event count,
/// and ways to sleep and to wait briefly for the interrupt.
pub trait WaitPlatform {
    /// Timer ticks since boot (monotonic).
    fn ticks(&self) -> u64;
    /// How many times the queue's interrupt has fired.
    fn events(&self) -> u64;
    /// Sleeps until [`events`](Self::events) differs from `seen` or [`ticks`](Self::ticks)
    /// reaches `until`; returns whether the interrupt fired. Must not lose a wake-up between
    /// its own check and the sleep (`sti; hlt`).
    fn sleep(&self, seen: u64, until: u64) -> bool;
    /// Waits a short, bounded grace period (well below a tick) for the interrupt of a used
    /// buffer that is already in the ring; returns whether it fired.
    fn grace(&self, seen: u64) -> bool;
}

/// The queue side of a wait: one virtqueue of one device, and what the waiter wants from it.
pub trait WaitQueue {
    /// What the wait returns (a completion).
    type Output;
    /// The queue's or driver's error.
    type Error;
    /// Takes what the waiter waits for if the device has produced it, draining used buffers.
    ///
    /// # Errors
    /// A device protocol violation (the implementation may recover and return `Ok(None)`).
    fn take(&mut self) -> Result<Option<Self::Output>, Self::Error>;
    /// Enables used-buffer notifications and re-checks the ring after a full barrier; `true`
    /// when used buffers are already there (then the caller polls instead of sleeping).
    ///
    /// # Errors
    /// As [`take`](Self::take).
    fn enable_notifications(&mut self) -> Result<bool, Self::Error>;
    /// Suppresses used-buffer notifications again.
    fn disable_notifications(&mut self);
    /// Notifies the device of the queue again: a kick may have been lost.
    fn renotify(&mut self);
    /// A used buffer was found in the ring without its interrupt. Called before it is taken, so
    /// a report of the ring state still shows it.
    fn missed_wakeup(&mut self);
    /// The waiter slept and the queue's interrupt woke it.
    fn woke_by_interrupt(&mut self) {}
}

/// How a [`wait`] ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited<T> {
    /// What the waiter wanted.
    Ready(T),
    /// The deadline tick passed first.
    TimedOut,
}

/// Waits on `queue` until it yields its output or the tick count reaches `deadline`: notifications
/// are enabled only while asleep, each sleep lasts at most until the next tick, and every tick
/// without an interrupt looks at the ring (see the module docs).
///
/// # Errors
/// The queue's errors, as they come.
pub fn wait<P: WaitPlatform, Q: WaitQueue>(
    platform: &P,
    queue: &mut Q,
    deadline: u64,
) -> Result<Waited<Q::Output>, Q::Error> {
    let start = platform.ticks();
    let mut renotify_at = start.saturating_add(RENOTIFY_AFTER_TICKS);
    loop {
        if let Some(out) = queue.take()? {
            return Ok(Waited::Ready(out));
        }
        let now = platform.ticks();
        if now >= deadline {
            return Ok(Waited::TimedOut);
        }
        // The count is read before notifications are enabled: an interrupt raised after the
        // enable then always shows as a changed count.
        let seen = platform.events();
        if queue.enable_notifications()? {
            queue.disable_notifications();
            continue;
        }
        let fired = platform.sleep(seen, deadline.min(now + 1));
        if fired {
            queue.woke_by_interrupt();
        } else if queue.enable_notifications()? {
            // A tick, no interrupt, and something used: give a late interrupt its grace period.
            if platform.grace(seen) {
                queue.woke_by_interrupt();
            } else {
                queue.missed_wakeup();
            }
        } else if platform.ticks() >= renotify_at {
            queue.renotify();
            renotify_at = start + 2 * (renotify_at - start);
        }
        queue.disable_notifications();
    }
}
