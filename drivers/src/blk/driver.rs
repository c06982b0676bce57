//! [`BlkDriver`]: initialisation, submission, completion and recovery.

use alloc::{boxed::Box, collections::VecDeque, vec::Vec};
use core::fmt;

use vireo_virtio::{
    BufferType, DmaAllocator, QueueError, RingState, Virtq,
    transport::{Device, InterruptCause, Transport, WaitBudget},
    virtio_spec::F,
};

use super::{
    completion::Completion,
    config::{BlkDeviceConfig, BlkOptions, DISCARD, MQ, WRITE_ZEROES},
    error::{BlkDriverError, SubmitError},
    pool::{PoolStats, RequestPool},
    request::{Request, RequestId, RequestKind},
};
use crate::lifecycle::{BringUp, DeviceMemory, reset_for_teardown};

/// The virtio device type of a block device (virtio 1.2 §5).
const DEVICE_TYPE_BLOCK: u16 = 2;
/// Chains of at most this many descriptors (header, up to two data segments, status) go direct
/// while the ring has room, even with `VIRTIO_F_INDIRECT_DESC` (see [`chain_layout`]).
const DIRECT_MAX_CHAIN: usize = 4;

/// How to lay out `chains` new chains of `descriptors` descriptors in all, the longest
/// `longest`, on a ring of `size` descriptors with `free` free: `preferred` (what was
/// negotiated) unless that is indirect and every chain is short and all of them still leave
/// half the ring free. A short chain costs both sides less as direct descriptors: no indirect
/// table to allocate, fill and free, and no table for the device to map and walk; the half ring
/// kept free lets a deep queue still get one descriptor per request from the indirect layout.
fn chain_layout(
    preferred: BufferType,
    longest: usize,
    descriptors: usize,
    size: u16,
    free: u16,
) -> BufferType {
    let fits = usize::from(free)
        .checked_sub(descriptors)
        .is_some_and(|room| room >= usize::from(size) / 2);
    if preferred == BufferType::Indirect && longest <= DIRECT_MAX_CHAIN && fits {
        BufferType::Direct
    } else {
        preferred
    }
}

/// A virtio-blk device driver, generic over the transport and the DMA allocator.
///
/// It has no waiting policy: [`submit`](Self::submit) and [`poll`](Self::poll) never block, and
/// the kernel chooses between interrupts ([`enable_notifications`](Self::enable_notifications),
/// MSI-X vectors given at initialisation) and polling.
///
/// The device owns its rings and the requests in flight until it has been reset: a driver that
/// is dropped, or whose bring-up fails once queues were handed to the device, resets the device
/// first and frees that memory only if the reset is confirmed; otherwise it leaks it.
///
/// # Example
///
/// A one-sector read from a virtio-blk device played by the test doubles of `vireo-virtio`
/// (feature `test-utils`): the register-level `vireo_virtio::transport::fake::FakeMmio`
/// holds the configuration (`capacity` at offset 0, virtio 1.2 §5.2.4) and the queue registers,
/// and `vireo_virtio::mock::PackedDevice` runs the device side of the packed ring
/// the driver programmed into them. The device answers the request (§5.2.6: header, data,
/// status byte) by hand.
///
/// ```
/// use vireo_drivers::blk::{BlkDriver, BlkOptions, Output, Request, RequestKind};
/// use vireo_virtio::{
///     RingAddresses,
///     mock::{GuestDma, PackedDevice},
///     transport::{
///         MmioTransport, WaitBudget,
///         fake::{FakeClock, FakeMmio},
///     },
///     virtio_spec::F,
/// };
/// use vm_memory::Bytes;
///
/// let mut config = [0; 60];
/// config[..8].copy_from_slice(&16u64.to_le_bytes()); // 16 sectors
/// let offered = F::VERSION_1 | F::RING_PACKED;
/// let fake = FakeMmio::new(2, offered.bits().to_ne(), &[32], &config);
///
/// let dma = GuestDma::new(1 << 20);
/// let clock = FakeClock::new(1_000);
/// let mut budget = WaitBudget::new(&clock, 1_000_000);
/// let options = BlkOptions { packed: true, ..BlkOptions::default() };
/// let transport = MmioTransport::new(fake.clone()).unwrap();
/// let mut blk = BlkDriver::new(transport, dma.clone(), options, &[], &mut budget).unwrap();
/// assert_eq!(blk.info().capacity, 16);
/// assert_eq!(blk.info().capacity_bytes(), 16 * 512);
///
/// let buffers = vec![dma.buffer(&[0; 512])];
/// let id = blk.submit(0, Request::Read { sector: 3, buffers }).unwrap();
///
/// // The device: find the ring through the queue registers and take the request.
/// let q = fake.queue(0);
/// let addrs = RingAddresses {
///     descriptor_area: q.desc,
///     driver_area: q.driver,
///     device_area: q.device,
/// };
/// let mut ring = PackedDevice::new(dma.mem(), addrs, q.size);
/// let chain = ring.pop().expect("the read request");
/// let header = chain.readable(dma.mem());
/// assert_eq!(header[..4], 0u32.to_le_bytes(), "VIRTIO_BLK_T_IN");
/// assert_eq!(header[8..16], 3u64.to_le_bytes(), "sector");
/// let writable: Vec<_> = chain.writable().collect();
/// let [(data, 512), (status, 1)] = writable[..] else { panic!("{writable:?}") };
/// dma.mem().write_slice(&[0xab; 512], data).unwrap();
/// dma.mem().write_obj(0u8, status).unwrap(); // VIRTIO_BLK_S_OK
/// ring.write_used(chain.id, 513, true, chain.desc_count);
///
/// let done = blk.poll(0).unwrap().expect("a completion");
/// assert_eq!((done.id, done.kind), (id, RequestKind::Read));
/// assert_eq!(done.result, Ok(Output::Done));
/// assert!(done.buffers[0].iter().all(|&b| b == 0xab), "the caller's buffer, filled");
/// ```
pub struct BlkDriver<T: Transport, A: DmaAllocator + 'static> {
    device: Device<T>,
    alloc: A,
    options: BlkOptions,
    info: BlkDeviceConfig,
    /// Empty while the driver is not operational (after a failed re-initialisation). The
    /// requests in flight are inside.
    queues: DeviceMemory<Vec<Box<dyn Virtq<A> + Send>>>,
    buffer_type: BufferType,
    /// Most data segments the smallest queue can carry (its size minus header and status).
    queue_segment_limit: u32,
    next_id: u64,
    /// Driver-to-device notifications sent (for measurements).
    kicks: u64,
    /// Spare request headers, status bytes and element lists.
    pool: RequestPool<A>,
}

impl<T: Transport, A: DmaAllocator + 'static> fmt::Debug for BlkDriver<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlkDriver")
            .field("options", &self.options)
            .field("info", &self.info)
            .field("queues", &self.queues.len())
            .field("buffer_type", &self.buffer_type)
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

impl<T: Transport<Notifier: Send + 'static>, A: DmaAllocator + Send + 'static> BlkDriver<T, A> {
    /// Initialises the device (virtio 1.2 §3.1.1): reset, feature negotiation for `options`,
    /// configuration read and check, one queue per request queue — queue `i` gets MSI-X vector
    /// `vectors[i]` (`None` or missing: no vector) — and `DRIVER_OK`.
    ///
    /// # Errors
    /// [`BlkDriverError::Transport`] (wrong device type, timeout, features rejected, queue setup,
    /// `DEVICE_NEEDS_RESET` at `DRIVER_OK`), [`BlkDriverError::BadCapacity`]. Queues already handed
    /// to the device are freed only after a confirmed reset (within `budget`, or else
    /// [`BlkOptions::drop_reset_polls`] status reads), leaked otherwise; the device is left
    /// `FAILED`.
    pub fn new(
        transport: T,
        alloc: A,
        options: BlkOptions,
        vectors: &[Option<u16>],
        budget: &mut WaitBudget<'_>,
    ) -> Result<Self, BlkDriverError> {
        let device = Device::init(transport, DEVICE_TYPE_BLOCK, options.wanted(), budget)?;
        let buffer_type = if device.features().contains(F::INDIRECT_DESC) {
            BufferType::Indirect
        } else {
            BufferType::Direct
        };
        let mut driver = Self {
            device,
            alloc,
            options,
            info: BlkDeviceConfig::empty(),
            queues: DeviceMemory::new(),
            buffer_type,
            queue_segment_limit: 0,
            next_id: 0,
            kicks: 0,
            pool: RequestPool::new(),
        };
        driver.bring_up(vectors, budget)?;
        Ok(driver)
    }

    /// Reads the configuration, creates the queues and sets `DRIVER_OK` (the driver's steps of
    /// [`BringUp::bring_up`], which tears down and sets `FAILED` on failure).
    fn try_configure(&mut self, vectors: &[Option<u16>]) -> Result<(), BlkDriverError> {
        let mut info = BlkDeviceConfig::read(&self.device)?;
        let count = if self.device.features().contains(MQ) {
            info.num_queues.min(self.options.queues.max(1))
        } else {
            1
        };
        // Each queue is held by the driver from the moment the device knows it.
        for index in 0..count {
            let vector = vectors.get(usize::from(index)).copied().flatten();
            self.queues.create_queue(
                &mut self.device,
                index,
                self.options.queue_size,
                self.alloc.clone(),
                vector,
            )?;
        }
        let smallest = self.queues.iter().map(|q| q.size()).min().unwrap_or(0);
        // Header and status take two descriptors of the chain; a chain, indirect or not, may not
        // be longer than the queue size (§2.7.5.3.1, §2.8.18).
        self.queue_segment_limit = u32::from(smallest).saturating_sub(2);
        info.max_segments = info.seg_max.min(self.queue_segment_limit);
        info.queues = count;
        self.device.driver_ok()?;
        self.info = info;
        Ok(())
    }

    /// Whether the device can carry out requests of `kind` (writes: not on a read-only device;
    /// flush, discard and write-zeroes: only when negotiated).
    #[must_use]
    pub fn supports(&self, kind: RequestKind) -> bool {
        let features = self.device.features();
        match kind {
            RequestKind::Read | RequestKind::GetId => true,
            RequestKind::Write => !self.info.read_only,
            RequestKind::Flush => self.info.flush,
            RequestKind::Discard => !self.info.read_only && features.contains(DISCARD),
            RequestKind::WriteZeroes => !self.info.read_only && features.contains(WRITE_ZEROES),
        }
    }

    /// Routes configuration-change notifications to MSI-X table entry `vector` (`None`: none).
    /// A device reset forgets it: set it again after [`reset_and_reinit`](Self::reset_and_reinit).
    ///
    /// # Errors
    /// [`BlkDriverError::Transport`] if the device refuses the vector.
    pub fn set_config_vector(&mut self, vector: Option<u16>) -> Result<(), BlkDriverError> {
        Ok(self.device.transport_mut().set_config_vector(vector)?)
    }

    /// What the driver knows about the disk and the limits requests are checked against.
    #[must_use]
    pub fn info(&self) -> &BlkDeviceConfig {
        &self.info
    }

    /// The negotiated features.
    #[must_use]
    pub fn features(&self) -> F {
        self.device.features()
    }

    /// Number of request queues (0 while not operational).
    #[must_use]
    pub fn queue_count(&self) -> u16 {
        self.queues.len() as u16
    }

    fn queue(&mut self, queue: u16) -> Result<&mut Box<dyn Virtq<A> + Send>, BlkDriverError> {
        if self.queues.is_empty() {
            return Err(BlkDriverError::NotReady);
        }
        self.queues
            .get_mut(usize::from(queue))
            .ok_or(BlkDriverError::NoSuchQueue)
    }

    /// Checks `request` and makes it available on `queue`, notifying the device if it asked.
    /// Completes later through [`poll`](Self::poll), with the returned id.
    ///
    /// With `VIRTIO_F_INDIRECT_DESC` negotiated, a request's chain uses one indirect table
    /// unless it is short (at most 4 descriptors) and leaves half the ring free, in which case
    /// it goes direct (cheaper for driver and device); without it, always a direct chain.
    ///
    /// # Errors
    /// Nothing reaches the device, and the request comes back with its buffers: validation
    /// errors (see [`BlkDriverError`]), [`BlkDriverError::QueueFull`], [`BlkDriverError::AllocFailed`],
    /// [`BlkDriverError::NoSuchQueue`], [`BlkDriverError::NotReady`].
    pub fn submit(&mut self, queue: u16, request: Request<A>) -> Result<RequestId, SubmitError<A>> {
        let id = RequestId(self.next_id);
        let refuse = |error, request| SubmitError { error, request };
        if let Err(error) = self.queue(queue) {
            return Err(refuse(error, request));
        }
        if let Err(error) = request.validate(&self.info) {
            return Err(refuse(error, request));
        }
        let token = request
            .into_token(id, &self.alloc, &mut self.pool)
            .map_err(|(error, request)| refuse(error, request))?;
        let vq = &mut self.queues[usize::from(queue)];
        let count = token.element_count();
        let buffer_type = chain_layout(
            self.buffer_type,
            count,
            count,
            vq.size(),
            vq.free_descriptors(),
        );
        match vq.dispatch(token, buffer_type) {
            Ok(notified) => {
                self.kicks += u64::from(notified);
                self.next_id += 1;
                Ok(id)
            }
            Err(e) => Err(refuse(queue_error(e.error), Request::from_token(e.token))),
        }
    }

    /// Submits requests from the front of `requests` on `queue` and notifies the device once
    /// for all of them (if it asked). The id of each submitted request is pushed onto `ids`, in
    /// order, and the request is removed from `requests`. Direct or indirect is decided as in
    /// [`submit`](Self::submit), once for the whole batch.
    ///
    /// # Errors
    /// At the first request that cannot be submitted (the same reasons as
    /// [`submit`](Self::submit)): the requests before it are submitted, and it and the rest
    /// stay in `requests`, intact, the failing one at the front.
    pub fn submit_batch(
        &mut self,
        queue: u16,
        requests: &mut VecDeque<Request<A>>,
        ids: &mut Vec<RequestId>,
    ) -> Result<(), BlkDriverError> {
        self.queue(queue)?;
        let mut tokens = VecDeque::with_capacity(requests.len());
        let mut first_id = self.next_id;
        let mut refused = None;
        while let Some(request) = requests.pop_front() {
            if let Err(e) = request.validate(&self.info) {
                requests.push_front(request);
                refused = Some(e);
                break;
            }
            let id = RequestId(first_id + tokens.len() as u64);
            match request.into_token(id, &self.alloc, &mut self.pool) {
                Ok(token) => tokens.push_back(token),
                Err((e, request)) => {
                    requests.push_front(request);
                    refused = Some(e);
                    break;
                }
            }
        }
        let total = tokens.len();
        let vq = &mut self.queues[usize::from(queue)];
        let dispatched = if total == 0 {
            Ok(false)
        } else {
            let longest = tokens.iter().map(|t| t.element_count()).max();
            let descriptors = tokens.iter().map(|t| t.element_count()).sum();
            let buffer_type = chain_layout(
                self.buffer_type,
                longest.unwrap_or(0),
                descriptors,
                vq.size(),
                vq.free_descriptors(),
            );
            vq.dispatch_batch(&mut tokens, buffer_type)
        };
        let submitted = total - tokens.len();
        for _ in 0..submitted {
            ids.push(RequestId(first_id));
            first_id += 1;
        }
        self.next_id = first_id;
        // Give back what was not made available, in order, in front of the refused rest.
        while let Some(token) = tokens.pop_back() {
            requests.push_front(Request::from_token(token));
        }
        if let Ok(true) = dispatched {
            self.kicks += 1;
        }
        match (dispatched, refused) {
            (Err(e), _) => Err(queue_error(e)),
            (Ok(_), Some(e)) => Err(e),
            (Ok(_), None) => Ok(()),
        }
    }

    /// Takes the next request the device finished on `queue`, if any (any order).
    ///
    /// The device's answer is checked: status byte, used length and (get-id) the id string;
    /// a bad answer is an error in [`Completion::result`], with the buffers.
    ///
    /// # Errors
    /// [`BlkDriverError::Queue`] when the device broke the ring protocol (nothing is lost: call
    /// [`reset_and_reinit`](Self::reset_and_reinit), which completes every request in flight);
    /// [`BlkDriverError::NoSuchQueue`], [`BlkDriverError::NotReady`].
    pub fn poll(&mut self, queue: u16) -> Result<Option<Completion<A>>, BlkDriverError> {
        let used = self.queue(queue)?.poll().map_err(BlkDriverError::Queue)?;
        Ok(used.map(|u| Completion::from_used(u, &mut self.pool)))
    }

    /// Asks the device for used-buffer notifications on `queue` (interrupt-driven completion).
    ///
    /// Returns `true` if completions are already pending: poll before waiting for an interrupt.
    ///
    /// # Errors
    /// [`BlkDriverError::NoSuchQueue`], [`BlkDriverError::NotReady`].
    pub fn enable_notifications(&mut self, queue: u16) -> Result<bool, BlkDriverError> {
        Ok(self.queue(queue)?.enable_notifications())
    }

    /// Asks the device not to send used-buffer notifications on `queue` (polling; a hint).
    ///
    /// # Errors
    /// [`BlkDriverError::NoSuchQueue`], [`BlkDriverError::NotReady`].
    pub fn disable_notifications(&mut self, queue: u16) -> Result<(), BlkDriverError> {
        self.queue(queue)?.disable_notifications();
        Ok(())
    }

    /// Notifies the device of `queue` again, whatever its suppression state says (a kick that
    /// may have been lost; not counted in [`kicks`](Self::kicks)).
    ///
    /// # Errors
    /// [`BlkDriverError::NoSuchQueue`], [`BlkDriverError::NotReady`].
    pub fn renotify(&mut self, queue: u16) -> Result<(), BlkDriverError> {
        self.queue(queue)?.notify();
        Ok(())
    }

    /// The notification state of `queue`'s ring, for diagnostics.
    ///
    /// # Errors
    /// [`BlkDriverError::NoSuchQueue`], [`BlkDriverError::NotReady`].
    pub fn ring_state(&self, queue: u16) -> Result<RingState, BlkDriverError> {
        if self.queues.is_empty() {
            return Err(BlkDriverError::NotReady);
        }
        let q = self.queues.get(usize::from(queue));
        q.map(|q| q.ring_state()).ok_or(BlkDriverError::NoSuchQueue)
    }

    /// How many driver-to-device notifications (queue kicks) submissions have sent so far, on all
    /// queues: with `VIRTIO_F_EVENT_IDX` or `NO_NOTIFY` the device suppresses most of them.
    #[must_use]
    pub fn kicks(&self) -> u64 {
        self.kicks
    }

    /// Where the request headers and status bytes of the requests submitted so far came from
    /// (DMA allocations, or blocks of finished requests reused from the driver's pool), and how
    /// many element lists the driver allocated for them. In steady state every request reuses
    /// its header, status byte and lists, and allocates none.
    #[must_use]
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Requests submitted on `queue` and not yet completed (0 for a queue that does not exist).
    #[must_use]
    pub fn in_flight(&self, queue: u16) -> usize {
        self.queues
            .get(usize::from(queue))
            .map_or(0, |q| q.in_flight())
    }

    /// Whether the device reports `DEVICE_NEEDS_RESET`.
    #[must_use]
    pub fn needs_reset(&self) -> bool {
        self.device.needs_reset()
    }

    /// Reads and acknowledges the interrupt status (INTx or polling).
    pub fn ack_interrupt(&mut self) -> InterruptCause {
        self.device.transport_mut().ack_interrupt()
    }

    /// Handles a configuration-change notification: re-reads the configuration (a resized disk
    /// shows in [`BlkDeviceConfig::capacity`]). Returns whether the capacity changed.
    ///
    /// # Errors
    /// [`BlkDriverError::NeedsReset`] if the notification meant the device needs a reset;
    /// [`BlkDriverError::Transport`], [`BlkDriverError::BadCapacity`] (the old information is kept).
    pub fn config_changed(&mut self) -> Result<bool, BlkDriverError> {
        if self.device.needs_reset() {
            return Err(BlkDriverError::NeedsReset);
        }
        let mut info = BlkDeviceConfig::read(&self.device)?;
        info.queues = self.info.queues;
        info.max_segments = info.seg_max.min(self.queue_segment_limit);
        let changed = info.capacity != self.info.capacity;
        self.info = info;
        Ok(changed)
    }

    /// Recovers from `DEVICE_NEEDS_RESET` or a queue protocol error: resets the device, completes
    /// every request that was in flight (pushed onto `completed` with their buffers, whether or
    /// not re-initialisation then succeeds: those the device had already finished with their
    /// result, the others with [`BlkDriverError::DeviceReset`]), renegotiates the same
    /// features, re-reads the configuration and re-creates the queues with the MSI-X `vectors`
    /// (as in [`new`](Self::new)).
    ///
    /// # Errors
    /// - [`BlkDriverError::Transport`] with
    ///   [`TransportError::Timeout`](vireo_virtio::transport::TransportError::Timeout) if the
    ///   device does not finish its reset: it may still access the buffers, so they stay with
    ///   the queues and nothing is completed; call again (or give up on the device).
    /// - Any re-initialisation failure: the device is reset again (queues it was given are
    ///   freed only if that reset is confirmed, as in [`new`](Self::new)), left `FAILED`, and
    ///   the driver is not operational ([`BlkDriverError::NotReady`]) until a later call succeeds.
    pub fn reset_and_reinit(
        &mut self,
        budget: &mut WaitBudget<'_>,
        vectors: &[Option<u16>],
        completed: &mut Vec<Completion<A>>,
    ) -> Result<(), BlkDriverError> {
        // The device has stopped using the rings: the buffers are ours again. Requests it had
        // already finished keep their real (checked) result; the rest end with `DeviceReset`.
        // A protocol error stops the harvest of that queue, and its remaining requests end
        // with `DeviceReset` too.
        self.reset_and_bring_up(vectors, budget, |driver, confirmed| {
            for mut vq in driver.queues.reclaim(confirmed) {
                while let Ok(Some(used)) = vq.poll() {
                    completed.push(Completion::from_used(used, &mut driver.pool));
                }
                completed.extend(vq.reset().into_iter().map(Completion::from_reset));
            }
        })
    }
}

impl<T: Transport<Notifier: Send + 'static>, A: DmaAllocator + Send + 'static> BringUp
    for BlkDriver<T, A>
{
    type Transport = T;
    type Error = BlkDriverError;

    fn device_mut(&mut self) -> &mut Device<T> {
        &mut self.device
    }

    fn try_bring_up(
        &mut self,
        vectors: &[Option<u16>],
        _budget: &mut WaitBudget<'_>,
    ) -> Result<(), BlkDriverError> {
        self.try_configure(vectors)
    }

    fn teardown(&mut self, budget: Option<&mut WaitBudget<'_>>) {
        Self::teardown(self, budget);
    }
}

impl<T: Transport, A: DmaAllocator + 'static> BlkDriver<T, A> {
    /// Resets the device and frees the queues, with the requests in flight, if the reset is
    /// confirmed (within `budget`, or else [`BlkOptions::drop_reset_polls`] status reads);
    /// leaks them otherwise, since the device may still write into them.
    fn teardown(&mut self, budget: Option<&mut WaitBudget<'_>>) {
        if self.queues.is_empty() {
            return;
        }
        let confirmed = reset_for_teardown(&mut self.device, budget, self.options.drop_reset_polls);
        self.queues.release(confirmed.as_ref());
    }
}

impl<T: Transport, A: DmaAllocator + 'static> Drop for BlkDriver<T, A> {
    /// Resets the device before its rings and the buffers of requests in flight go back to the
    /// allocator; if the reset is not confirmed within [`BlkOptions::drop_reset_polls`] status
    /// reads, they are leaked.
    fn drop(&mut self) {
        self.teardown(None);
    }
}

fn queue_error(e: QueueError) -> BlkDriverError {
    match e {
        QueueError::QueueFull => BlkDriverError::QueueFull,
        QueueError::AllocFailed => BlkDriverError::AllocFailed,
        other => BlkDriverError::Queue(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_chains_go_direct_while_half_the_ring_is_free() {
        use BufferType::{Direct, Indirect};
        // One 3-descriptor request on an empty ring of 256.
        assert_eq!(chain_layout(Indirect, 3, 3, 256, 256), Direct);
        // A batch of 32 such requests still leaves half the ring free.
        assert_eq!(chain_layout(Indirect, 3, 96, 256, 256), Direct);
        // Not once the ring is half used.
        assert_eq!(chain_layout(Indirect, 3, 3, 256, 129), Indirect);
        assert_eq!(chain_layout(Indirect, 3, 3, 256, 131), Direct);
        // Long chains stay indirect.
        assert_eq!(chain_layout(Indirect, 5, 5, 256, 256), Indirect);
        // Tiny rings: never more descriptors than are free.
        assert_eq!(chain_layout(Indirect, 3, 3, 1, 1), Indirect);
        assert_eq!(chain_layout(Indirect, 2, 2, 4, 4), Direct);
        assert_eq!(chain_layout(Indirect, 3, 3, 2, 2), Indirect);
        // Without INDIRECT_DESC everything is direct.
        assert_eq!(chain_layout(Direct, 9, 9, 16, 16), Direct);
    }
}
