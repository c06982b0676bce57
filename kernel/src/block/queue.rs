//! The queued side of [`BlockDevice`]: submission, completion routing, waiting (MSI-X or
//! polled, always bounded), and recovery from a device that broke the protocol.

use alloc::{collections::VecDeque, vec::Vec};

use vireo_drivers::blk::{BlkDriverError, Request, RequestId, SubmitError};
use vireo_virtio::wait::{WaitQueue, Waited};

use super::{
    BlockError, Completion,
    device::{BlockDevice, Inner, PendingRequest},
};
use crate::{
    mm::DeviceAlloc,
    virtio::{self, ticks_for},
};

impl Inner {
    fn record(&mut self, queue: u16, id: RequestId) {
        self.submitted += 1;
        self.in_flight.push(PendingRequest {
            id,
            queue,
            abandoned: false,
        });
    }

    /// Files a completion with its queue; drops it if its waiter gave up.
    fn file(&mut self, c: Completion) {
        let found = self.in_flight.iter().position(|f| f.id == c.id);
        match found.map(|i| self.in_flight.swap_remove(i)) {
            Some(PendingRequest {
                abandoned: true, ..
            }) => {}
            Some(PendingRequest { queue, .. }) => self.ready[usize::from(queue)].push_back(c),
            // Not submitted through this device's API: cannot happen, but never lose it.
            None => self.ready[0].push_back(c),
        }
    }

    /// Takes the completion of `want` (any if `None`) from `queue`, draining the device's used
    /// buffers into the ready lists on the way. A protocol violation resets the device.
    fn take(&mut self, queue: u16, want: Option<RequestId>) -> Option<Completion> {
        let q = usize::from(queue);
        loop {
            if let Some(pos) = self.ready[q]
                .iter()
                .position(|c| want.is_none_or(|w| c.id == w))
            {
                return self.ready[q].remove(pos);
            }
            match self.driver.poll(queue) {
                Ok(Some(c)) => self.file(c),
                Ok(None) => return None,
                Err(e) => {
                    log::error!("virtio-blk: {e}; resetting the device");
                    self.recover();
                }
            }
        }
    }

    /// Handles a configuration-change interrupt: a device that needs a reset gets one, a new
    /// capacity is picked up.
    pub(super) fn service_config(&mut self) {
        if !self.irq.config_changed() {
            return;
        }
        if self.driver.needs_reset() {
            log::warn!("virtio-blk: device needs a reset");
            self.recover();
        } else if let Ok(true) = self.driver.config_changed() {
            log::info!(
                "virtio-blk: capacity now {} sectors",
                self.driver.info().capacity
            );
        }
    }

    /// Resets and re-initialises the device; every request in flight completes (with an error
    /// unless the device had finished it).
    fn recover(&mut self) {
        let mut done = Vec::new();
        // The count the device was brought up with: after a failed re-initialisation the driver
        // reports none, and the next attempt still needs every queue's vector.
        let queues = self.ready.len() as u16;
        let driver = &mut self.driver;
        virtio::recover(
            &self.irq,
            queues,
            "virtio-blk",
            |budget, vectors, config| {
                let result = driver.reset_and_reinit(budget, vectors, &mut done);
                match (result, config) {
                    (Ok(()), Some(config)) => driver.set_config_vector(Some(config)),
                    (result, _) => result,
                }
            },
        );
        for c in done {
            self.file(c);
        }
    }
}

impl BlockDevice {
    /// Makes `request` available on `queue` (sector units: a block is
    /// `block_size / 512` sectors). Its completion comes back from [`wait`](Self::wait) or
    /// [`poll`](Self::poll) on the same queue.
    ///
    /// # Errors
    /// The driver's refusal (range, alignment, read-only, queue full, ...), with the request.
    pub fn submit(
        &self,
        queue: u16,
        request: Request<DeviceAlloc>,
    ) -> Result<RequestId, SubmitError<DeviceAlloc>> {
        let mut inner = self.inner.lock();
        let id = inner.driver.submit(queue, request)?;
        inner.record(queue, id);
        Ok(id)
    }

    /// Makes requests available from the front of `requests` with one notification; their ids
    /// are appended to `ids`.
    ///
    /// # Errors
    /// The first refusal; that request and the rest stay in `requests`.
    pub fn submit_batch(
        &self,
        queue: u16,
        requests: &mut VecDeque<Request<DeviceAlloc>>,
        ids: &mut Vec<RequestId>,
    ) -> Result<(), BlockError> {
        let mut inner = self.inner.lock();
        let first = ids.len();
        let result = inner.driver.submit_batch(queue, requests, ids);
        for &id in &ids[first..] {
            inner.record(queue, id);
        }
        result.map_err(BlockError::from)
    }

    /// A completion from `queue` if one is ready; never waits.
    pub fn poll(&self, queue: u16) -> Option<Completion> {
        let mut inner = self.inner.lock();
        inner.service_config();
        inner.take(queue, None)
    }

    /// Requests submitted on `queue` and not yet taken back.
    pub fn in_flight(&self, queue: u16) -> usize {
        let inner = self.inner.lock();
        inner
            .in_flight
            .iter()
            .filter(|f| f.queue == queue && !f.abandoned)
            .count()
            + inner.ready.get(usize::from(queue)).map_or(0, VecDeque::len)
    }

    /// Requests whose waiter timed out and that the device still holds (their buffers are freed
    /// when the device completes them).
    pub fn stalled(&self) -> usize {
        self.inner
            .lock()
            .in_flight
            .iter()
            .filter(|f| f.abandoned)
            .count()
    }

    /// Waits for the next completion on `queue`.
    ///
    /// # Errors
    /// [`BlockError::Timeout`] if none comes within the device's timeout.
    pub fn wait(&self, queue: u16) -> Result<Completion, BlockError> {
        self.wait_until(queue, None)
    }

    /// Waits for `want` (or any completion) on `queue`: sleeps on the queue's MSI-X vector with
    /// notifications enabled only while asleep (looking at the ring at every timer tick, see
    /// [`vireo_virtio::wait`]), or polls.
    pub(super) fn wait_until(
        &self,
        queue: u16,
        want: Option<RequestId>,
    ) -> Result<Completion, BlockError> {
        let (timeout, event) = {
            let inner = self.inner.lock();
            (inner.timeout, inner.irq.queue_event(queue))
        };
        let deadline = crate::time::ticks() + ticks_for(timeout);
        let mut q = QueueWait {
            dev: self,
            queue,
            want,
            seen: event.map_or(0, |e| e.count()),
        };
        match virtio::wait_queue(event, &mut q, deadline)? {
            Waited::Ready(c) => Ok(c),
            Waited::TimedOut => {
                let mut inner = self.inner.lock();
                if let Some(f) = want.and_then(|id| inner.in_flight.iter_mut().find(|f| f.id == id))
                {
                    f.abandoned = true;
                }
                Err(BlockError::Timeout)
            }
        }
    }

    /// Submits `request` on `queue` and waits for it; a full queue is waited out.
    pub(super) fn run(
        &self,
        queue: u16,
        mut request: Request<DeviceAlloc>,
    ) -> Result<Completion, BlockError> {
        loop {
            match self.submit(queue, request) {
                Ok(id) => return self.wait_until(queue, Some(id)),
                Err(SubmitError {
                    error: BlkDriverError::QueueFull,
                    request: r,
                }) => {
                    // Others' requests fill the queue: take one completion out of the way (it
                    // stays ready for its owner) and retry.
                    let c = self.wait_until(queue, None)?;
                    self.inner.lock().ready[usize::from(queue)].push_front(c);
                    request = r;
                }
                Err(e) => return Err(e.error.into()),
            }
        }
    }
}

/// One waiter on one queue of a [`BlockDevice`], for [`wait::wait`]: each step takes the device
/// lock for itself, so nothing holds it while the CPU sleeps.
struct QueueWait<'a> {
    dev: &'a BlockDevice,
    queue: u16,
    want: Option<RequestId>,
    /// The vector's count when the wait began (for the missed wake-up report).
    seen: u64,
}

impl WaitQueue for QueueWait<'_> {
    type Output = Completion;
    type Error = BlockError;

    fn take(&mut self) -> Result<Option<Completion>, BlockError> {
        let mut inner = self.dev.inner.lock();
        inner.service_config();
        Ok(inner.take(self.queue, self.want))
    }

    fn enable_notifications(&mut self) -> Result<bool, BlockError> {
        let mut inner = self.dev.inner.lock();
        Ok(inner.driver.enable_notifications(self.queue)?)
    }

    fn disable_notifications(&mut self) {
        let _ = self
            .dev
            .inner
            .lock()
            .driver
            .disable_notifications(self.queue);
    }

    fn renotify(&mut self) {
        let mut inner = self.dev.inner.lock();
        if inner.driver.renotify(self.queue).is_ok() {
            inner.renotified += 1;
        }
    }

    fn missed_wakeup(&mut self) {
        let mut inner = self.dev.inner.lock();
        inner.missed_wakeups += 1;
        let ring = match inner.driver.ring_state(self.queue) {
            Ok(state) => alloc::format!("{state}"),
            Err(e) => alloc::format!("{e}"),
        };
        virtio::report_missed_wakeup(
            "virtio-blk",
            self.queue,
            inner.missed_wakeups,
            inner.irq.queue_event(self.queue),
            self.seen,
            &ring,
        );
    }

    fn woke_by_interrupt(&mut self) {
        self.dev.inner.lock().interrupts_waited += 1;
    }
}
