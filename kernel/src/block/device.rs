//! [`BlockDevice`]: one virtio-blk device, its waiting policy, and the blocking and queued API.

use alloc::{collections::VecDeque, string::String, vec, vec::Vec};
use core::{fmt, time::Duration};

use spin::{Mutex, Once};
use vireo_drivers::blk::{
    BlkDriver, BlkError, Output, Request, RequestId, RequestKind, SECTOR_SIZE, SectorRange,
    SubmitError,
};
use vireo_virtio::{
    transport::{PciTransport, WaitBudget},
    virtio_spec::F,
};

use super::{BlockError, Buffer, Completion, buffer, probe::queue_vectors};
use crate::{
    mm::DeviceAlloc,
    pci::PciDevice,
    virtio::{IrqEvent, KernelClock, KernelPci, MsixVectors, ticks_for},
};

type Driver = BlkDriver<PciTransport<KernelPci>, DeviceAlloc>;

/// The time a device gets to complete one request before the wait fails, by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The time a device gets to reset.
const RESET_BUDGET: Duration = Duration::from_secs(1);
/// The largest request the copying calls make (their bounce buffer).
const COPY_CHUNK: u64 = 256 * 1024;
/// Polled waits look at the clock this often (a clock read can cost a VM exit).
const POLLS_PER_CLOCK_CHECK: u32 = 1024;

/// How completions are waited for.
pub(super) struct Waiting {
    /// MSI-X entries: 0 configuration, 1 + i queue i. `None`: polled.
    pub msix: Option<MsixVectors>,
    /// Poll even though vectors exist.
    pub polled: bool,
}

/// A request the device has not completed.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    id: RequestId,
    queue: u16,
    /// Its waiter gave up (timeout): drop the completion when it comes.
    abandoned: bool,
}

struct Inner {
    driver: Driver,
    waiting: Waiting,
    /// Requests in flight, in no order: a short list (the queue depth) searched linearly, which
    /// costs less than a map's node allocations at every submission and completion.
    in_flight: Vec<InFlight>,
    /// Completions taken from a queue but not yet claimed, per queue.
    ready: Vec<VecDeque<Completion>>,
    timeout: Duration,
    config_seen: u64,
    interrupts_waited: u64,
    submitted: u64,
}

/// Counters of one block device since boot, for measurements (`cargo xtask bench blk`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockStats {
    /// Requests made available to the device.
    pub submitted: u64,
    /// Driver-to-device notifications (queue kicks) sent: each one is an MMIO write, a VM exit.
    pub kicks: u64,
    /// MSI-X interrupts received on the request queues' vectors.
    pub interrupts: u64,
    /// Waits that halted until an interrupt woke them.
    pub interrupts_waited: u64,
}

/// What an application needs to know about a block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    /// Number of logical blocks.
    pub blocks: u64,
    /// Logical block size in bytes (the granularity of every operation).
    pub block_size: u32,
    /// Writes, discards and write-zeroes are refused.
    pub read_only: bool,
    /// The device has a volatile cache that [`BlockDevice::flush`] makes durable.
    pub flush: bool,
    /// [`BlockDevice::discard`] is available.
    pub discard: bool,
    /// [`BlockDevice::write_zeroes`] is available.
    pub write_zeroes: bool,
    /// Request queues in use.
    pub queues: u16,
    /// Data segments one request may carry, and the largest segment in bytes.
    pub max_segments: u32,
    /// The largest segment in bytes.
    pub max_segment_bytes: u32,
    /// The packed ring layout is in use (else split).
    pub packed: bool,
    /// Indirect descriptor tables are in use.
    pub indirect: bool,
    /// `VIRTIO_F_EVENT_IDX` notification suppression is in use.
    pub event_idx: bool,
    /// Completions arrive by MSI-X interrupt (else polled).
    pub interrupts: bool,
}

/// A virtio-blk device. All methods take `&self`: the device is shared, and calls serialise on an
/// internal lock that is never held while waiting.
pub struct BlockDevice {
    pci: &'static PciDevice,
    serial: Once<String>,
    inner: Mutex<Inner>,
}

impl fmt::Debug for BlockDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockDevice")
            .field("pci", &format_args!("{}", self.pci))
            .field("serial", &self.serial())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for BlockDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.info();
        let (bus, dev, func) = self.pci.address();
        write!(
            f,
            "virtio-blk {bus:02x}:{dev:02x}.{func} serial {:?}: {} blocks of {} bytes{}, {} queue(s), {}{}{}, {}",
            self.serial(),
            i.blocks,
            i.block_size,
            if i.read_only { ", read-only" } else { "" },
            i.queues,
            if i.packed { "packed" } else { "split" },
            if i.indirect { "+indirect" } else { "" },
            if i.event_idx { "+event-idx" } else { "" },
            if i.interrupts { "MSI-X" } else { "polled" },
        )
    }
}

impl BlockDevice {
    pub(super) fn new(
        pci: &'static PciDevice,
        driver: Driver,
        waiting: Waiting,
        serial: String,
    ) -> Self {
        let queues = usize::from(driver.queue_count());
        let serial_once = Once::new();
        if !serial.is_empty() {
            serial_once.call_once(|| serial);
        }
        Self {
            pci,
            serial: serial_once,
            inner: Mutex::new(Inner {
                driver,
                waiting,
                in_flight: Vec::new(),
                ready: (0..queues).map(|_| VecDeque::new()).collect(),
                timeout: DEFAULT_TIMEOUT,
                config_seen: 0,
                interrupts_waited: 0,
                submitted: 0,
            }),
        }
    }

    /// Reads the serial number (get-id) into the device's record.
    pub(super) fn read_serial(&self) -> Result<(), BlockError> {
        let id = match self.run(0, Request::GetId)?.result {
            Ok(Output::Id(id)) => String::from(id.as_str()),
            Ok(Output::Done) => String::new(),
            Err(BlkError::DeviceUnsupported) => String::new(),
            Err(e) => return Err(e.into()),
        };
        self.serial.call_once(|| id);
        Ok(())
    }

    /// The PCI function.
    pub fn pci(&self) -> &'static PciDevice {
        self.pci
    }

    /// The serial number the device reports (QEMU `serial=`), empty if it has none.
    pub fn serial(&self) -> &str {
        self.serial.get().map_or("", String::as_str)
    }

    /// Capacity, block size, features and limits (a pending configuration change is applied
    /// first, so a resized disk shows its new capacity).
    pub fn info(&self) -> BlockInfo {
        let mut inner = self.inner.lock();
        inner.service_config();
        let (d, features) = (inner.driver.info(), inner.driver.features());
        BlockInfo {
            blocks: d.capacity / d.sectors_per_block(),
            block_size: d.blk_size,
            read_only: d.read_only,
            flush: d.flush,
            discard: inner.driver.supports(RequestKind::Discard),
            write_zeroes: inner.driver.supports(RequestKind::WriteZeroes),
            queues: inner.driver.queue_count(),
            max_segments: d.max_segments,
            max_segment_bytes: d.max_segment_bytes(),
            packed: features.contains(F::RING_PACKED),
            indirect: features.contains(F::INDIRECT_DESC),
            event_idx: features.contains(F::EVENT_IDX),
            interrupts: inner.waiting.msix.is_some() && !inner.waiting.polled,
        }
    }

    /// Sets how long a wait for one request may last before it fails with
    /// [`BlockError::Timeout`].
    pub fn set_timeout(&self, timeout: Duration) {
        self.inner.lock().timeout = timeout;
    }

    /// Switches between polled (`true`) and interrupt-driven completion (needs MSI-X).
    pub fn set_polled(&self, polled: bool) {
        self.inner.lock().waiting.polled = polled;
    }

    /// How many times a wait has slept until an interrupt (for measurements).
    pub fn interrupts_waited(&self) -> u64 {
        self.inner.lock().interrupts_waited
    }

    /// Submissions, kicks and interrupts so far (for measurements).
    pub fn stats(&self) -> BlockStats {
        let inner = self.inner.lock();
        let interrupts = inner.waiting.msix.as_ref().map_or(0, |m| {
            (1..m.len())
                .filter_map(|entry| m.event(entry))
                .map(|e| e.count())
                .sum()
        });
        BlockStats {
            submitted: inner.submitted,
            kicks: inner.driver.kicks(),
            interrupts,
            interrupts_waited: inner.interrupts_waited,
        }
    }
}

/// A failed [`BlockDevice::read_buffer`] / [`BlockDevice::write_buffer`]: the reason, and the
/// caller's buffer unless the device still holds it (after a timeout it is freed when the device
/// completes the request, or never if the device never does).
#[derive(Debug)]
pub struct BufferError {
    /// Why the request failed.
    pub error: BlockError,
    /// The caller's buffer, when it could be taken back.
    pub buffer: Option<Buffer>,
}

impl Inner {
    fn event(&self, entry: usize) -> Option<IrqEvent> {
        if self.waiting.polled {
            return None;
        }
        self.waiting.msix.as_ref()?.event(entry)
    }

    fn record(&mut self, queue: u16, id: RequestId) {
        self.submitted += 1;
        self.in_flight.push(InFlight {
            id,
            queue,
            abandoned: false,
        });
    }

    /// Files a completion with its queue; drops it if its waiter gave up.
    fn file(&mut self, c: Completion) {
        let found = self.in_flight.iter().position(|f| f.id == c.id);
        match found.map(|i| self.in_flight.swap_remove(i)) {
            Some(InFlight {
                abandoned: true, ..
            }) => {}
            Some(InFlight { queue, .. }) => self.ready[usize::from(queue)].push_back(c),
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
    fn service_config(&mut self) {
        let Some(event) = self.waiting.msix.as_ref().and_then(|m| m.event(0)) else {
            return;
        };
        let count = event.count();
        if count == self.config_seen {
            return;
        }
        self.config_seen = count;
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
        let clock = KernelClock;
        let mut budget = WaitBudget::new(&clock, RESET_BUDGET.as_nanos() as u64);
        let vectors = queue_vectors(self.waiting.msix.as_ref(), self.driver.queue_count());
        let mut done = Vec::new();
        let result = self
            .driver
            .reset_and_reinit(&mut budget, &vectors, &mut done);
        for c in done {
            self.file(c);
        }
        match result {
            Ok(()) if self.waiting.msix.is_some() => {
                if let Err(e) = self.driver.set_config_vector(Some(0)) {
                    log::error!("virtio-blk: after reset: {e}");
                }
            }
            Ok(()) => {}
            Err(e) => log::error!("virtio-blk: re-initialisation failed: {e}"),
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
    /// notifications enabled only while asleep, or polls.
    fn wait_until(&self, queue: u16, want: Option<RequestId>) -> Result<Completion, BlockError> {
        let (timeout, entry) = (self.inner.lock().timeout, usize::from(queue) + 1);
        let deadline = crate::time::ticks() + ticks_for(timeout);
        let mut polls = 0u32;
        loop {
            let sleep = {
                let mut inner = self.inner.lock();
                inner.service_config();
                if let Some(c) = inner.take(queue, want) {
                    return Ok(c);
                }
                polls = polls.wrapping_add(1);
                let event = inner.event(entry);
                if (event.is_some() || polls.is_multiple_of(POLLS_PER_CLOCK_CHECK))
                    && crate::time::ticks() >= deadline
                {
                    if let Some(f) =
                        want.and_then(|id| inner.in_flight.iter_mut().find(|f| f.id == id))
                    {
                        f.abandoned = true;
                    }
                    return Err(BlockError::Timeout);
                }
                match event {
                    Some(event) => {
                        let seen = event.count();
                        // Pending already: poll again instead of sleeping past them.
                        match inner.driver.enable_notifications(queue) {
                            Ok(false) => Some((event, seen)),
                            Ok(true) => None,
                            Err(e) => return Err(e.into()),
                        }
                    }
                    None => None,
                }
            };
            match sleep {
                Some((event, seen)) => {
                    let fired = event.wait_past(seen, deadline);
                    let mut inner = self.inner.lock();
                    inner.interrupts_waited += u64::from(fired);
                    // Suppress interrupts again while the queue is being drained.
                    let _ = inner.driver.disable_notifications(queue);
                }
                None => core::hint::spin_loop(),
            }
        }
    }

    /// Submits `request` on `queue` and waits for it; a full queue is waited out.
    fn run(&self, queue: u16, mut request: Request<DeviceAlloc>) -> Result<Completion, BlockError> {
        loop {
            match self.submit(queue, request) {
                Ok(id) => return self.wait_until(queue, Some(id)),
                Err(SubmitError {
                    error: BlkError::QueueFull,
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

    fn sector_of(&self, block: u64) -> Result<u64, BlockError> {
        let per_block = u64::from(self.info().block_size) / SECTOR_SIZE;
        block
            .checked_mul(per_block)
            .ok_or(BlockError::Driver(BlkError::OutOfRange))
    }

    /// Reads `buf.len()` bytes (a multiple of the block size) from block `block` on, copying
    /// through device memory in requests of up to 256 KiB.
    ///
    /// # Errors
    /// Range and alignment errors before anything reaches the device; the device's errors; timeout.
    pub fn read(&self, block: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let chunk = self.copy_chunk(buf.len())?;
        let mut sector = self.sector_of(block)?;
        for part in buf.chunks_mut(chunk) {
            let c = self.run(
                0,
                Request::Read {
                    sector,
                    buffers: vec![buffer(part.len())?],
                },
            )?;
            c.result?;
            part.copy_from_slice(&c.buffers[0]);
            sector += (part.len() as u64) / SECTOR_SIZE;
        }
        Ok(())
    }

    /// Writes `buf` (a multiple of the block size) from block `block` on, copying through device
    /// memory in requests of up to 256 KiB. Durable after [`flush`](Self::flush) when the device
    /// has a volatile cache ([`BlockInfo::flush`]).
    ///
    /// # Errors
    /// As [`read`](Self::read); read-only devices refuse.
    pub fn write(&self, block: u64, buf: &[u8]) -> Result<(), BlockError> {
        let chunk = self.copy_chunk(buf.len())?;
        let mut sector = self.sector_of(block)?;
        for part in buf.chunks(chunk) {
            let mut dma = buffer(part.len())?;
            dma.copy_from_slice(part);
            self.run(
                0,
                Request::Write {
                    sector,
                    buffers: vec![dma],
                },
            )?
            .result?;
            sector += (part.len() as u64) / SECTOR_SIZE;
        }
        Ok(())
    }

    /// The bounce size for copying `len` bytes: a multiple of the block size within the device's
    /// segment limit.
    fn copy_chunk(&self, len: usize) -> Result<usize, BlockError> {
        let info = self.info();
        let block = u64::from(info.block_size);
        if len == 0 {
            return Err(BlkError::EmptyBuffer.into());
        }
        if !(len as u64).is_multiple_of(block) {
            return Err(BlkError::Misaligned.into());
        }
        let limit = COPY_CHUNK.min(u64::from(info.max_segment_bytes));
        Ok(((limit / block).max(1) * block) as usize)
    }

    /// Reads into `buffer` (one request, no copy) from block `block` on.
    ///
    /// # Errors
    /// See [`BufferError`].
    pub fn read_buffer(&self, block: u64, buffer: Buffer) -> Result<Buffer, BufferError> {
        self.buffer_io(block, buffer, |sector, buffers| Request::Read {
            sector,
            buffers,
        })
    }

    /// Writes `buffer` (one request, no copy) from block `block` on.
    ///
    /// # Errors
    /// See [`BufferError`].
    pub fn write_buffer(&self, block: u64, buffer: Buffer) -> Result<Buffer, BufferError> {
        self.buffer_io(block, buffer, |sector, buffers| Request::Write {
            sector,
            buffers,
        })
    }

    fn buffer_io(
        &self,
        block: u64,
        buffer: Buffer,
        make: impl FnOnce(u64, Vec<Buffer>) -> Request<DeviceAlloc>,
    ) -> Result<Buffer, BufferError> {
        let sector = match self.sector_of(block) {
            Ok(s) => s,
            Err(error) => {
                return Err(BufferError {
                    error,
                    buffer: Some(buffer),
                });
            }
        };
        let mut request = make(sector, vec![buffer]);
        loop {
            match self.submit(0, request) {
                Ok(id) => {
                    return match self.wait_until(0, Some(id)) {
                        Ok(mut c) => match c.result {
                            Ok(_) => Ok(c.buffers.remove(0)),
                            Err(e) => Err(BufferError {
                                error: e.into(),
                                buffer: c.buffers.pop(),
                            }),
                        },
                        Err(error) => Err(BufferError {
                            error,
                            buffer: None,
                        }),
                    };
                }
                Err(SubmitError {
                    error: BlkError::QueueFull,
                    request: r,
                }) => {
                    match self.wait_until(0, None) {
                        Ok(c) => self.inner.lock().ready[0].push_front(c),
                        Err(error) => {
                            return Err(BufferError {
                                error,
                                buffer: r.into_buffers().pop(),
                            });
                        }
                    }
                    request = r;
                }
                Err(e) => {
                    return Err(BufferError {
                        error: e.error.into(),
                        buffer: e.request.into_buffers().pop(),
                    });
                }
            }
        }
    }

    /// Makes every completed write durable (a no-op success on a device without a volatile cache,
    /// which writes through).
    ///
    /// # Errors
    /// The device's error; timeout.
    pub fn flush(&self) -> Result<(), BlockError> {
        if !self.info().flush {
            return Ok(());
        }
        self.run(0, Request::Flush)?.result?;
        Ok(())
    }

    /// Discards `count` blocks from `block` on (they read back as zeroes on QEMU's devices, but
    /// the virtio spec does not promise it: use [`write_zeroes`](Self::write_zeroes) for that).
    ///
    /// # Errors
    /// [`BlkError::Unsupported`] without `VIRTIO_BLK_F_DISCARD`; range errors; the device's error.
    pub fn discard(&self, block: u64, count: u64) -> Result<(), BlockError> {
        let ranges = self.ranges(block, count)?;
        self.run(0, Request::Discard { ranges })?.result?;
        Ok(())
    }

    /// Writes zeroes over `count` blocks from `block` on, letting the device unmap them.
    ///
    /// # Errors
    /// [`BlkError::Unsupported`] without `VIRTIO_BLK_F_WRITE_ZEROES`; range errors; the device's error.
    pub fn write_zeroes(&self, block: u64, count: u64) -> Result<(), BlockError> {
        let ranges = self.ranges(block, count)?;
        self.run(
            0,
            Request::WriteZeroes {
                ranges,
                unmap: true,
            },
        )?
        .result?;
        Ok(())
    }

    fn ranges(&self, block: u64, count: u64) -> Result<Vec<SectorRange>, BlockError> {
        let sector = self.sector_of(block)?;
        let sectors = self.sector_of(count)?;
        let num_sectors =
            u32::try_from(sectors).map_err(|_| BlockError::Driver(BlkError::OutOfRange))?;
        Ok(vec![SectorRange {
            sector,
            num_sectors,
        }])
    }
}
