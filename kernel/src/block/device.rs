//! [`BlockDevice`]: one virtio-blk device, its state and what it reports; the queued API is in
//! `queue.rs`, the blocking one in `io.rs`.

use alloc::{collections::VecDeque, string::String, vec::Vec};
use core::{fmt, time::Duration};

use spin::{Mutex, Once};
use vireo_drivers::blk::{BlkDriver, BlkDriverError, Output, Request, RequestId, RequestKind};
use vireo_virtio::virtio_spec::F;

use super::{BlockError, Completion};
use crate::{
    mm::DeviceAlloc,
    pci::PciDevice,
    virtio::{Interrupts, KernelTransport, Location},
};

pub(super) type Driver = BlkDriver<KernelTransport, DeviceAlloc>;

/// The time a device gets to complete one request before the wait fails, by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request the copying calls make (their bounce buffer).
pub(super) const COPY_CHUNK: u64 = 256 * 1024;

/// A request the device has not completed, as the kernel tracks it for its waiters (the driver
/// keeps the request's buffers; the virtqueue core keeps its ring slots).
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingRequest {
    pub(super) id: RequestId,
    pub(super) queue: u16,
    /// Its waiter gave up (timeout): drop the completion when it comes.
    pub(super) abandoned: bool,
}

pub(super) struct Inner {
    pub(super) driver: Driver,
    pub(super) irq: Interrupts,
    /// Requests in flight, in no order: a short list (the queue depth) searched linearly, which
    /// costs less than a map's node allocations at every submission and completion.
    pub(super) in_flight: Vec<PendingRequest>,
    /// Completions taken from a queue but not yet claimed, per queue.
    pub(super) ready: Vec<VecDeque<Completion>>,
    pub(super) timeout: Duration,
    pub(super) interrupts_waited: u64,
    pub(super) submitted: u64,
    pub(super) missed_wakeups: u64,
    pub(super) renotified: u64,
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
    /// Completions a sleeping waiter found in the used ring at a timer tick, without their
    /// interrupt (a lost wake-up, logged at `warn` the first time): each cost at most a tick.
    pub missed_wakeups: u64,
    /// Notifications sent again because a waiter saw nothing used for a while (a lost kick
    /// would otherwise stall until the timeout; a slow device just gets a spurious one).
    pub renotified: u64,
}

/// What an application needs to know about a block device (kernel API; built from the driver's
/// [`BlkDeviceConfig`](vireo_drivers::blk::BlkDeviceConfig) and what was negotiated).
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
    /// Data segments one request may carry (see [`max_segment_bytes`](Self::max_segment_bytes)).
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
    location: Location,
    serial: Once<String>,
    pub(super) inner: Mutex<Inner>,
}

impl fmt::Debug for BlockDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockDevice")
            .field("location", &format_args!("{}", self.location))
            .field("serial", &self.serial())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for BlockDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.info();
        write!(
            f,
            "virtio-blk {} serial {:?}: {} blocks of {} bytes{}, {} queue(s), {}{}{}, {}",
            self.location,
            self.serial(),
            i.blocks,
            i.block_size,
            if i.read_only { ", read-only" } else { "" },
            i.queues,
            if i.packed { "packed" } else { "split" },
            if i.indirect { "+indirect" } else { "" },
            if i.event_idx { "+event-idx" } else { "" },
            match (i.interrupts, self.location) {
                (false, _) => "polled",
                (true, Location::Pci(_)) => "MSI-X",
                (true, Location::Mmio(_)) => "IRQ line",
            },
        )
    }
}

impl BlockDevice {
    pub(super) fn new(location: Location, driver: Driver, irq: Interrupts, serial: String) -> Self {
        let queues = usize::from(driver.queue_count());
        let serial_once = Once::new();
        if !serial.is_empty() {
            serial_once.call_once(|| serial);
        }
        Self {
            location,
            serial: serial_once,
            inner: Mutex::new(Inner {
                driver,
                irq,
                in_flight: Vec::new(),
                ready: (0..queues).map(|_| VecDeque::new()).collect(),
                timeout: DEFAULT_TIMEOUT,
                interrupts_waited: 0,
                submitted: 0,
                missed_wakeups: 0,
                renotified: 0,
            }),
        }
    }

    /// Reads the serial number (get-id) into the device's record.
    pub(super) fn read_serial(&self) -> Result<(), BlockError> {
        let id = match self.run(0, Request::GetId)?.result {
            Ok(Output::Id(id)) => String::from(id.as_str()),
            Ok(Output::Done) => String::new(),
            Err(BlkDriverError::DeviceUnsupported) => String::new(),
            Err(e) => return Err(e.into()),
        };
        self.serial.call_once(|| id);
        Ok(())
    }

    /// Where the device was found: a PCI function or a virtio-mmio window.
    pub fn location(&self) -> Location {
        self.location
    }

    /// The PCI function, when the device is one.
    pub fn pci(&self) -> Option<&'static PciDevice> {
        self.location.pci()
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
            interrupts: inner.irq.interrupt_driven(),
        }
    }

    /// Sets how long a wait for one request may last before it fails with
    /// [`BlockError::Timeout`].
    pub fn set_timeout(&self, timeout: Duration) {
        self.inner.lock().timeout = timeout;
    }

    /// Switches between polled (`true`) and interrupt-driven completion (needs MSI-X).
    pub fn set_polled(&self, polled: bool) {
        self.inner.lock().irq.set_polled(polled);
    }

    /// Masks (`true`) or unmasks `queue`'s MSI-X vector, for tests of lost interrupts: while it
    /// is masked the device's completions raise no interrupt, and waits find them at the next
    /// timer tick (counted in [`BlockStats::missed_wakeups`]). No effect when polled.
    #[doc(hidden)]
    pub fn mask_queue_interrupt(&self, queue: u16, masked: bool) {
        self.inner.lock().irq.mask_queue(queue, masked);
    }

    /// How many times a wait has slept until an interrupt (for measurements).
    pub fn interrupts_waited(&self) -> u64 {
        self.inner.lock().interrupts_waited
    }

    /// Submissions, kicks and interrupts so far (for measurements).
    pub fn stats(&self) -> BlockStats {
        let inner = self.inner.lock();
        BlockStats {
            submitted: inner.submitted,
            kicks: inner.driver.kicks(),
            interrupts: inner.irq.queue_interrupts(),
            interrupts_waited: inner.interrupts_waited,
            missed_wakeups: inner.missed_wakeups,
            renotified: inner.renotified,
        }
    }
}
