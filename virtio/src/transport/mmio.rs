//! The virtio-mmio transport, version 2 only (virtio 1.2 §4.2): one register window per device,
//! as QEMU's `microvm` machine provides.

use core::fmt;

use virtio_spec::{DeviceStatus, F};

use super::{
    InterruptCause, RegisterBlock, Transport, TransportError, WaitBudget,
    regs::{read_feature_windows, write_feature_windows},
};
use crate::{Notifier, RingAddresses};

/// `MagicValue`: "virt" in little-endian.
pub const VIRTIO_MMIO_MAGIC: u32 = 0x7472_6976;

/// Register offsets in the window (virtio 1.2 §4.2.2); every register is 32 bits wide.
mod reg {
    pub(super) const MAGIC_VALUE: usize = 0x000;
    pub(super) const VERSION: usize = 0x004;
    pub(super) const DEVICE_ID: usize = 0x008;
    pub(super) const DEVICE_FEATURES: usize = 0x010;
    pub(super) const DEVICE_FEATURES_SEL: usize = 0x014;
    pub(super) const DRIVER_FEATURES: usize = 0x020;
    pub(super) const DRIVER_FEATURES_SEL: usize = 0x024;
    pub(super) const QUEUE_SEL: usize = 0x030;
    pub(super) const QUEUE_NUM_MAX: usize = 0x034;
    pub(super) const QUEUE_NUM: usize = 0x038;
    pub(super) const QUEUE_READY: usize = 0x044;
    pub(super) const QUEUE_NOTIFY: usize = 0x050;
    pub(super) const INTERRUPT_STATUS: usize = 0x060;
    pub(super) const INTERRUPT_ACK: usize = 0x064;
    pub(super) const STATUS: usize = 0x070;
    pub(super) const QUEUE_DESC: usize = 0x080;
    pub(super) const QUEUE_DRIVER: usize = 0x090;
    pub(super) const QUEUE_DEVICE: usize = 0x0a0;
    pub(super) const QUEUE_RESET: usize = 0x0c0;
    pub(super) const CONFIG_GENERATION: usize = 0x0fc;
    /// Start of the device-specific configuration.
    pub(super) const CONFIG: usize = 0x100;
}

/// The only register layout this transport drives (the legacy layout is version 1).
const VERSION_2: u32 = 2;

/// MMIO has no register that counts queues: queues are probed by selecting them, up to this many.
const MAX_QUEUES: u16 = 1024;

/// A virtio device behind a virtio-mmio register window.
///
/// # Example
///
/// Bringing up a device against the register-level fake `vireo_virtio::transport::fake::FakeMmio`
/// (feature `test-utils`): feature negotiation, a configuration read, a queue programmed into
/// the device, a notification and an interrupt.
///
/// ```
/// use vireo_virtio::{
///     AvailBufferToken, BufferType,
///     mock::GuestDma,
///     transport::{
///         Device, MmioTransport, Transport, WaitBudget,
///         fake::{FakeClock, FakeMmio},
///     },
///     virtio_spec::F,
/// };
///
/// const BLOCK: u16 = 2;
/// let offered = F::VERSION_1 | F::EVENT_IDX;
/// // One queue of at most 128 descriptors, 8 bytes of device configuration.
/// let fake = FakeMmio::new(BLOCK, offered.bits().to_ne(), &[128], &[1, 0, 0, 0, 0, 0, 0, 0]);
///
/// // Every wait on the device (here: the reset) has a budget; the fake clock makes it instant.
/// let clock = FakeClock::new(1_000);
/// let mut budget = WaitBudget::new(&clock, 1_000_000);
/// let transport = MmioTransport::new(fake.clone()).unwrap();
/// let mut device = Device::init(transport, BLOCK, F::EVENT_IDX, &mut budget).unwrap();
/// assert_eq!(device.features(), offered);
/// let mut capacity = [0; 8];
/// device.read_config(0, &mut capacity).unwrap();
/// assert_eq!(u64::from_le_bytes(capacity), 1);
///
/// let dma = GuestDma::new(1 << 20);
/// let mut vq = device.create_queue(0, 256, dma.clone(), None).unwrap();
/// assert_eq!(vq.size(), 128, "the device's maximum");
/// let programmed = fake.queue(0);
/// assert_eq!(programmed.desc, vq.ring_addresses().descriptor_area);
/// assert_eq!(programmed.enable, 1);
/// device.driver_ok().unwrap();
///
/// // A dispatch writes the queue index to QueueNotify (offset 0x50).
/// let token = AvailBufferToken::new(vec![dma.buffer(b"hello")], Vec::new());
/// assert!(vq.dispatch(token, BufferType::Direct).unwrap());
/// assert_eq!(fake.take_notifications(), [(0x50, 4, 0)]);
///
/// // A used-buffer interrupt, acknowledged.
/// fake.raise_interrupt(1);
/// let cause = device.transport_mut().ack_interrupt();
/// assert!(cause.queue && !cause.config);
/// ```
pub struct MmioTransport<R: RegisterBlock + Clone> {
    regs: R,
    device_type: u16,
    driver_features: F,
}

impl<R: RegisterBlock + Clone> fmt::Debug for MmioTransport<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmioTransport")
            .field("device_type", &self.device_type)
            .field("window_len", &self.regs.len())
            .finish_non_exhaustive()
    }
}

impl<R: RegisterBlock + Clone> MmioTransport<R> {
    /// Checks the window (at least the 0x100 bytes of registers), the magic value, version 2 and
    /// a non-zero device id (0 marks an empty placeholder slot, §4.2.3.1.1).
    ///
    /// The device configuration is taken to extend to the end of the window.
    ///
    /// # Errors
    /// [`TransportError::NotVirtio`] when any of these does not hold.
    pub fn new(regs: R) -> Result<Self, TransportError> {
        if regs.len() < reg::CONFIG
            || regs.read_u32(reg::MAGIC_VALUE) != VIRTIO_MMIO_MAGIC
            || regs.read_u32(reg::VERSION) != VERSION_2
        {
            return Err(TransportError::NotVirtio);
        }
        let device_type = match u16::try_from(regs.read_u32(reg::DEVICE_ID)) {
            Ok(0) | Err(_) => return Err(TransportError::NotVirtio),
            Ok(id) => id,
        };
        Ok(Self {
            regs,
            device_type,
            driver_features: F::empty(),
        })
    }

    /// The length of the device-specific configuration window.
    pub fn config_len(&self) -> usize {
        self.regs.len() - reg::CONFIG
    }

    fn select_queue(&self, index: u16) {
        self.regs.write_u32(reg::QUEUE_SEL, index.into());
    }

    /// Writes a 64-bit queue address as two 32-bit halves, low first.
    fn write_u64(&self, offset: usize, value: u64) {
        // Truncations intended: the two halves.
        self.regs.write_u32(offset, value as u32);
        self.regs.write_u32(offset + 4, (value >> 32) as u32);
    }

    /// Runs `access(position, width)` over `[offset, offset + len)` of the device configuration
    /// after checking the range, with the widest naturally aligned access that fits at each step.
    fn config_accesses(
        &self,
        offset: usize,
        len: usize,
        mut access: impl FnMut(&R, usize, usize),
    ) -> Result<(), TransportError> {
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= self.config_len())
            .ok_or(TransportError::ConfigOutOfRange)?;
        let mut pos = offset;
        while pos < end {
            let width = match (pos % 4, end - pos) {
                (0, 4..) => 4,
                (0 | 2, 2..) => 2,
                _ => 1,
            };
            access(&self.regs, reg::CONFIG + pos, width);
            pos += width;
        }
        Ok(())
    }
}

impl<R: RegisterBlock + Clone> Transport for MmioTransport<R> {
    type Notifier = MmioNotifier<R>;

    fn device_type(&self) -> u16 {
        self.device_type
    }

    fn status(&self) -> DeviceStatus {
        // Truncation intended: the status is the low byte.
        DeviceStatus::from_bits_retain(self.regs.read_u32(reg::STATUS) as u8)
    }

    fn set_status(&mut self, status: DeviceStatus) {
        if status.is_empty() {
            self.driver_features = F::empty();
        }
        self.regs.write_u32(reg::STATUS, status.bits().into());
    }

    fn device_features(&mut self) -> F {
        read_feature_windows(&self.regs, reg::DEVICE_FEATURES_SEL, reg::DEVICE_FEATURES)
    }

    fn set_driver_features(&mut self, features: F) {
        write_feature_windows(
            &self.regs,
            reg::DRIVER_FEATURES_SEL,
            reg::DRIVER_FEATURES,
            features,
        );
        self.driver_features = features;
    }

    /// MMIO has no queue count: this is the index of the first queue whose `QueueNumMax` reads 0
    /// (at most 1024).
    fn queue_count(&self) -> u16 {
        (0..MAX_QUEUES)
            .find(|&index| {
                self.select_queue(index);
                self.regs.read_u32(reg::QUEUE_NUM_MAX) == 0
            })
            .unwrap_or(MAX_QUEUES)
    }

    /// `QueueNumMax` of the queue, saturated to 16 bits (sizes are 16-bit in virtio 1.2).
    fn max_queue_size(&mut self, index: u16) -> u16 {
        self.select_queue(index);
        u16::try_from(self.regs.read_u32(reg::QUEUE_NUM_MAX)).unwrap_or(u16::MAX)
    }

    /// Programs the queue as virtio 1.2 §4.2.3.2 describes: select it, check it is not ready and
    /// exists, write the size and the three area addresses, then set `QueueReady`.
    ///
    /// MMIO has a single interrupt: asking for an MSI-X vector is refused with
    /// [`TransportError::VectorRejected`].
    fn setup_queue(
        &mut self,
        index: u16,
        size: u16,
        addresses: RingAddresses,
        vector: Option<u16>,
    ) -> Result<(), TransportError> {
        if vector.is_some() {
            return Err(TransportError::VectorRejected);
        }
        self.select_queue(index);
        if self.regs.read_u32(reg::QUEUE_READY) != 0 {
            return Err(TransportError::QueueUnavailable);
        }
        let max = self.regs.read_u32(reg::QUEUE_NUM_MAX);
        if max == 0 || size == 0 || u32::from(size) > max {
            return Err(TransportError::QueueUnavailable);
        }
        self.regs.write_u32(reg::QUEUE_NUM, size.into());
        self.write_u64(reg::QUEUE_DESC, addresses.descriptor_area);
        self.write_u64(reg::QUEUE_DRIVER, addresses.driver_area);
        self.write_u64(reg::QUEUE_DEVICE, addresses.device_area);
        self.regs.write_u32(reg::QUEUE_READY, 1);
        Ok(())
    }

    /// The notifier writes `QueueNotify`, which every queue shares.
    fn notifier(&mut self, index: u16) -> Result<Self::Notifier, TransportError> {
        if self.max_queue_size(index) == 0 {
            return Err(TransportError::QueueUnavailable);
        }
        Ok(MmioNotifier {
            regs: self.regs.clone(),
            queue: index,
            data: self.driver_features.contains(F::NOTIFICATION_DATA),
        })
    }

    /// MMIO has no MSI-X: `None` is accepted, a vector is refused.
    fn set_config_vector(&mut self, vector: Option<u16>) -> Result<(), TransportError> {
        match vector {
            None => Ok(()),
            Some(_) => Err(TransportError::VectorRejected),
        }
    }

    fn config_generation(&self) -> u32 {
        self.regs.read_u32(reg::CONFIG_GENERATION)
    }

    fn read_config_raw(&self, offset: usize, buf: &mut [u8]) -> Result<(), TransportError> {
        self.config_accesses(offset, buf.len(), |regs, at, width| {
            let i = at - reg::CONFIG - offset;
            match width {
                4 => buf[i..i + 4].copy_from_slice(&regs.read_u32(at).to_le_bytes()),
                2 => buf[i..i + 2].copy_from_slice(&regs.read_u16(at).to_le_bytes()),
                _ => buf[i] = regs.read_u8(at),
            }
        })
    }

    fn write_config_raw(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError> {
        self.config_accesses(offset, data.len(), |regs, at, width| {
            let i = at - reg::CONFIG - offset;
            match width {
                4 => regs.write_u32(
                    at,
                    u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]),
                ),
                2 => regs.write_u16(at, u16::from_le_bytes([data[i], data[i + 1]])),
                _ => regs.write_u8(at, data[i]),
            }
        })
    }

    /// Reads `InterruptStatus` and writes the same bits to `InterruptACK` (virtio 1.2 §4.2.3.4).
    fn ack_interrupt(&mut self) -> InterruptCause {
        let status = self.regs.read_u32(reg::INTERRUPT_STATUS);
        if status != 0 {
            self.regs.write_u32(reg::INTERRUPT_ACK, status);
        }
        InterruptCause {
            queue: status & 1 != 0,
            config: status & 2 != 0,
        }
    }

    /// Writes 1 to `QueueReset` and waits until both `QueueReset` and `QueueReady` read 0
    /// (virtio 1.2 §4.2.2). `Ok(false)` unless `VIRTIO_F_RING_RESET` was negotiated.
    fn reset_queue(
        &mut self,
        index: u16,
        budget: &mut WaitBudget<'_>,
    ) -> Result<bool, TransportError> {
        if !self.driver_features.contains(F::RING_RESET) {
            return Ok(false);
        }
        if self.max_queue_size(index) == 0 {
            return Err(TransportError::QueueUnavailable);
        }
        self.regs.write_u32(reg::QUEUE_RESET, 1);
        let regs = &self.regs;
        budget.wait_until(|| {
            regs.read_u32(reg::QUEUE_RESET) == 0 && regs.read_u32(reg::QUEUE_READY) == 0
        })?;
        Ok(true)
    }
}

/// Sends one queue's available-buffer notifications through `QueueNotify`.
#[derive(Clone)]
pub struct MmioNotifier<R: RegisterBlock> {
    regs: R,
    queue: u16,
    data: bool,
}

impl<R: RegisterBlock> fmt::Debug for MmioNotifier<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmioNotifier")
            .field("queue", &self.queue)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

impl<R: RegisterBlock> Notifier for MmioNotifier<R> {
    /// Writes the queue index, or with `VIRTIO_F_NOTIFICATION_DATA` the 32-bit notification data
    /// (virtio 1.2 §4.2.3.3), for the queue this notifier was made for.
    fn notify(&self, _queue_index: u16, notification_data: Option<u32>) {
        let value = match notification_data {
            Some(data) if self.data => (data & 0xffff_0000) | u32::from(self.queue),
            _ => u32::from(self.queue),
        };
        self.regs.write_u32(reg::QUEUE_NOTIFY, value);
    }
}
