//! [`Device`]: the initialisation sequence of virtio 1.2 §3.1.1 over any [`Transport`], with every
//! wait bounded and every device answer checked.

use alloc::boxed::Box;

use virtio_spec::{DeviceStatus, F};

use super::{Clock, Transport, TransportError};
use crate::{DmaAllocator, PackedVq, SplitVq, Virtq, features::negotiate};

/// How many times a configuration read is retried while the generation counter keeps changing.
const CONFIG_READ_ATTEMPTS: usize = 64;

/// A deadline for waiting on a device, from a [`Clock`].
pub struct WaitBudget<'a> {
    clock: &'a dyn Clock,
    deadline_ns: u64,
}

impl core::fmt::Debug for WaitBudget<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WaitBudget")
            .field("deadline_ns", &self.deadline_ns)
            .finish()
    }
}

impl<'a> WaitBudget<'a> {
    /// A budget that ends `budget_ns` nanoseconds from now.
    pub fn new(clock: &'a dyn Clock, budget_ns: u64) -> Self {
        Self {
            clock,
            deadline_ns: clock.now_ns().saturating_add(budget_ns),
        }
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.clock.now_ns() >= self.deadline_ns
    }

    /// Polls `done` until it returns true or the deadline passes.
    ///
    /// # Errors
    /// [`TransportError::Timeout`] when the deadline passes first.
    pub fn wait_until(&mut self, mut done: impl FnMut() -> bool) -> Result<(), TransportError> {
        loop {
            if done() {
                return Ok(());
            }
            if self.expired() {
                return Err(TransportError::Timeout);
            }
            self.clock.relax();
        }
    }
}

/// A virtio device being initialised or driven: its transport and the negotiated features.
#[derive(Debug)]
pub struct Device<T: Transport> {
    transport: T,
    features: F,
}

impl<T: Transport> Device<T> {
    /// Runs steps 1–6 of virtio 1.2 §3.1.1: reset (waiting for the device to finish it),
    /// ACKNOWLEDGE, DRIVER, feature negotiation (the device's offer ∩ `wanted` ∩ what the core
    /// implements), FEATURES_OK, and the re-read that tells whether the device accepted them.
    ///
    /// On failure the device is left with `FAILED` set (except on a type mismatch, where it is
    /// left untouched).
    ///
    /// # Errors
    /// [`TransportError::WrongDeviceType`], [`TransportError::Timeout`] (reset never finished),
    /// [`TransportError::Features`], [`TransportError::FeaturesRejected`].
    pub fn init(
        transport: T,
        device_type: u16,
        wanted: F,
        budget: &mut WaitBudget<'_>,
    ) -> Result<Self, TransportError> {
        Self::init_with(transport, device_type, wanted, |f| f, budget)
    }

    /// [`init`](Self::init) for a driver whose features depend on each other: `settle` gets the
    /// features about to be accepted (the device's offer ∩ `wanted` ∩ what the core
    /// implements) and returns those the driver accepts, dropping any whose requirements are
    /// missing (virtio 1.2 §2.2.1: the driver must not accept a feature that requires one it did
    /// not accept). Bits it adds are ignored; `VIRTIO_F_VERSION_1` is kept.
    ///
    /// # Errors
    /// As [`init`](Self::init).
    pub fn init_with(
        transport: T,
        device_type: u16,
        wanted: F,
        settle: impl FnOnce(F) -> F,
        budget: &mut WaitBudget<'_>,
    ) -> Result<Self, TransportError> {
        if transport.device_type() != device_type {
            return Err(TransportError::WrongDeviceType);
        }
        let mut device = Self {
            transport,
            features: F::empty(),
        };
        let result = device.negotiate(wanted, settle, budget);
        if result.is_err() {
            device.fail();
        }
        result.map(|()| device)
    }

    fn negotiate(
        &mut self,
        wanted: F,
        settle: impl FnOnce(F) -> F,
        budget: &mut WaitBudget<'_>,
    ) -> Result<(), TransportError> {
        self.reset(budget)?;
        let t = &mut self.transport;
        // Steps 2 to 5 of §3.1.1, each setting one more bit (§2.1.2: none is ever cleared).
        let mut status = DeviceStatus::ACKNOWLEDGE;
        t.set_status(status);
        status |= DeviceStatus::DRIVER;
        t.set_status(status);
        let offered = negotiate(t.device_features(), wanted)?;
        let features = (settle(offered) & offered) | F::VERSION_1;
        t.set_driver_features(features);
        status |= DeviceStatus::FEATURES_OK;
        t.set_status(status);
        if !t.status().contains(DeviceStatus::FEATURES_OK) {
            return Err(TransportError::FeaturesRejected);
        }
        self.features = features;
        Ok(())
    }

    /// Resets the device: writes 0 and waits until the status reads 0 (virtio 1.2 §4.1.4.3.2).
    ///
    /// # Errors
    /// [`TransportError::Timeout`] if the device does not finish within the budget.
    pub fn reset(&mut self, budget: &mut WaitBudget<'_>) -> Result<(), TransportError> {
        self.transport.set_status(DeviceStatus::empty());
        let t = &self.transport;
        budget.wait_until(|| t.status().is_empty())
    }

    /// Step 8 of §3.1.1: tells the device the driver is ready; queues are live from here on.
    ///
    /// # Errors
    /// [`TransportError::DeviceNeedsReset`] if the device reports it needs a reset (or dropped
    /// FEATURES_OK) right away.
    pub fn driver_ok(&mut self) -> Result<(), TransportError> {
        let status = DeviceStatus::ACKNOWLEDGE
            | DeviceStatus::DRIVER
            | DeviceStatus::FEATURES_OK
            | DeviceStatus::DRIVER_OK;
        self.transport.set_status(status);
        let now = self.transport.status();
        if now.contains(DeviceStatus::DEVICE_NEEDS_RESET) || !now.contains(status) {
            return Err(TransportError::DeviceNeedsReset);
        }
        Ok(())
    }

    /// Sets `FAILED`: the driver gives up on the device.
    pub fn fail(&mut self) {
        let status = self.transport.status();
        self.transport.set_status(status | DeviceStatus::FAILED);
    }

    /// Whether the device reports `DEVICE_NEEDS_RESET` (virtio 1.2 §2.1.1).
    pub fn needs_reset(&self) -> bool {
        self.transport
            .status()
            .contains(DeviceStatus::DEVICE_NEEDS_RESET)
    }

    /// The negotiated features.
    pub fn features(&self) -> F {
        self.features
    }

    /// The transport, for device-specific register access.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, mutably.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Reads device-specific configuration consistently: retried while the generation counter
    /// changes across the read (virtio 1.2 §2.5.1), a bounded number of times.
    ///
    /// # Errors
    /// [`TransportError::ConfigOutOfRange`], or [`TransportError::ConfigUnstable`] if the
    /// generation never holds still.
    pub fn read_config(&self, offset: usize, buf: &mut [u8]) -> Result<(), TransportError> {
        for _ in 0..CONFIG_READ_ATTEMPTS {
            let before = self.transport.config_generation();
            self.transport.read_config_raw(offset, buf)?;
            if self.transport.config_generation() == before {
                return Ok(());
            }
        }
        Err(TransportError::ConfigUnstable)
    }

    /// Creates virtqueue `index` with at most `max_size` descriptors (the device's maximum if it is
    /// smaller), packed when `VIRTIO_F_RING_PACKED` was negotiated and split otherwise, and
    /// programs it into the device with MSI-X `vector`.
    ///
    /// A split queue's size is rounded down to a power of two, as §2.7 requires.
    ///
    /// # Errors
    /// [`TransportError::QueueUnavailable`] if the device has no such queue,
    /// [`TransportError::Queue`] if the rings cannot be allocated, or what
    /// [`Transport::setup_queue`] reports.
    pub fn create_queue<A: DmaAllocator + Send + 'static>(
        &mut self,
        index: u16,
        max_size: u16,
        alloc: A,
        vector: Option<u16>,
    ) -> Result<Box<dyn Virtq<A> + Send>, TransportError>
    where
        T::Notifier: Send + 'static,
    {
        if index >= self.transport.queue_count() {
            return Err(TransportError::QueueUnavailable);
        }
        let device_max = self.transport.max_queue_size(index);
        let mut size = device_max.min(max_size);
        if size == 0 {
            return Err(TransportError::QueueUnavailable);
        }
        let notifier = self.transport.notifier(index)?;
        let vq: Box<dyn Virtq<A> + Send> = if self.features.contains(F::RING_PACKED) {
            Box::new(PackedVq::new(index, size, self.features, alloc, notifier)?)
        } else {
            size = 1 << (15 - size.leading_zeros().min(15));
            Box::new(SplitVq::new(index, size, self.features, alloc, notifier)?)
        };
        self.transport
            .setup_queue(index, vq.size(), vq.ring_addresses(), vector)?;
        Ok(vq)
    }
}
