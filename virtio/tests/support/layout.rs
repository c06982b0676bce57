//! One face for the two ring layouts' simulators, so that a behaviour both layouts must have is
//! written once (`scenarios.rs`) and run against each: the split ring against rust-vmm's
//! `virtio-queue` (`vmm_device.rs`), the packed ring against `vireo_virtio::mock::PackedDevice`
//! (`packed_device.rs`).

use vireo_virtio::{PackedVq, SplitVq, Virtq, negotiate, virtio_spec::F};
use vm_memory::{Bytes, GuestAddress};

use super::{CountingNotifier, GuestDma, packed_device::PackedDevice, vmm_device::VmmDevice};

/// What the device side of a ring does (implemented next to each simulator).
pub trait SimDevice {
    /// A buffer the device took from the ring.
    type Popped;

    /// Takes every available buffer.
    fn pop_all(&mut self) -> Vec<Self::Popped>;
    /// Performs the service for `p` and marks it used.
    fn complete(&mut self, p: &Self::Popped);
    /// `VIRTIO_F_IN_ORDER`: serves a run of buffers and marks them used with one entry.
    fn complete_in_order_batch(&mut self, batch: &[Self::Popped]);
    /// Whether the device should notify the driver now.
    fn needs_notification(&mut self) -> bool;
    /// Asks the driver for notifications again (with `VIRTIO_F_EVENT_IDX`: when it makes the
    /// next buffer available); whether a buffer is available already.
    fn enable_kicks(&mut self, event_idx: bool) -> bool;
    /// Asks the driver not to notify.
    fn disable_kicks(&mut self);
    /// The device-readable bytes of `p`.
    fn readable(p: &Self::Popped) -> &[u8];
    /// How many device-writable descriptors `p` has.
    fn writable_count(p: &Self::Popped) -> usize;
}

/// A ring layout with its driver side and its simulated device.
pub trait Layout {
    /// The driver's queue.
    type Vq: Virtq<GuestDma> + std::fmt::Debug;
    /// The simulated device.
    type Dev: SimDevice;
    /// The queue index the tests create the queue with.
    const QUEUE: u16;
    /// Offset, in the driver area, of the driver's used-buffer notification flags (split:
    /// `avail.flags`; packed: the driver event suppression `flags`). Both layouts write 1 to
    /// suppress notifications and 0 to enable them.
    const DRIVER_FLAGS_OFFSET: u64;
    /// Whether the device's `needs_notification` honours those flags (rust-vmm's
    /// `virtio-queue` ignores `VIRTQ_AVAIL_F_NO_INTERRUPT`).
    const DEVICE_HONOURS_DRIVER_FLAGS: bool;
    /// The name the queue's `Debug` output gives the driver's next available position, and
    /// whether it counts descriptors (packed: ring slots) rather than buffers (split: `avail.idx`).
    const AVAIL_POSITION: (&'static str, bool);

    /// The sizes of `wanted` the layout allows (split: rounded up to a power of two), without
    /// repeats.
    fn sizes(wanted: &[u16]) -> Vec<u16>;

    /// A queue of `size` with `features` negotiated.
    fn queue(dma: &GuestDma, size: u16, features: F, notifier: CountingNotifier) -> Self::Vq;
    /// A fresh device for the rings of `vq`.
    fn device(dma: &GuestDma, vq: &Self::Vq, event_idx: bool) -> Self::Dev;

    /// An allocator, a queue of `size` with `features`, its device and its notifier.
    fn setup(size: u16, features: F) -> (GuestDma, Self::Vq, Self::Dev, CountingNotifier) {
        let dma = GuestDma::new(8 << 20);
        let notifier = CountingNotifier::default();
        let vq = Self::queue(&dma, size, features, notifier.clone());
        let dev = Self::device(&dma, &vq, features.contains(F::EVENT_IDX));
        (dma, vq, dev, notifier)
    }

    /// The driver's used-buffer notification flags, read as a device would.
    fn driver_flags(dma: &GuestDma, vq: &Self::Vq) -> u16 {
        let at = vq.ring_addresses().driver_area + Self::DRIVER_FLAGS_OFFSET;
        dma.mem().read_obj(GuestAddress(at)).expect("driver area")
    }
}

/// The split ring against rust-vmm's `virtio-queue`.
pub struct Split;

impl Layout for Split {
    type Vq = SplitVq<GuestDma, CountingNotifier>;
    type Dev = VmmDevice;
    const QUEUE: u16 = 3;
    const DRIVER_FLAGS_OFFSET: u64 = 0;
    const DEVICE_HONOURS_DRIVER_FLAGS: bool = false;
    const AVAIL_POSITION: (&'static str, bool) = ("avail_idx", false);

    fn sizes(wanted: &[u16]) -> Vec<u16> {
        let mut sizes: Vec<u16> = wanted.iter().map(|s| s.next_power_of_two()).collect();
        sizes.dedup();
        sizes
    }

    fn queue(dma: &GuestDma, size: u16, features: F, notifier: CountingNotifier) -> Self::Vq {
        let negotiated = negotiate(features | F::VERSION_1, features).unwrap();
        SplitVq::new(Self::QUEUE, size, negotiated, dma.clone(), notifier).unwrap()
    }

    fn device(dma: &GuestDma, vq: &Self::Vq, event_idx: bool) -> VmmDevice {
        VmmDevice::new(dma, vq.ring_addresses(), vq.size(), event_idx)
    }
}

/// The packed ring against `vireo_virtio::mock::PackedDevice`.
pub struct Packed;

impl Layout for Packed {
    type Vq = PackedVq<GuestDma, CountingNotifier>;
    type Dev = PackedDevice;
    const QUEUE: u16 = 2;
    const DRIVER_FLAGS_OFFSET: u64 = 2;
    const DEVICE_HONOURS_DRIVER_FLAGS: bool = true;
    const AVAIL_POSITION: (&'static str, bool) = ("next_avail", true);

    fn sizes(wanted: &[u16]) -> Vec<u16> {
        wanted.to_vec()
    }

    fn queue(dma: &GuestDma, size: u16, features: F, notifier: CountingNotifier) -> Self::Vq {
        let wanted = features | F::RING_PACKED;
        let negotiated = negotiate(wanted | F::VERSION_1, wanted).unwrap();
        PackedVq::new(Self::QUEUE, size, negotiated, dma.clone(), notifier).unwrap()
    }

    fn device(dma: &GuestDma, vq: &Self::Vq, _event_idx: bool) -> PackedDevice {
        PackedDevice::new(dma.mem(), vq.ring_addresses(), vq.size())
    }
}
