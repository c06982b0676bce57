//! The virtio-mmio transport, version 2 only (virtio 1.2 §4.2): one register window per device,
//! as QEMU's `microvm` machine provides.

use core::fmt;

use virtio_spec::F;

use super::{
    RegisterBlock, Transport, TransportError,
    common::{Bus, Common, Layout, Reg},
};
use crate::Notifier;

/// `MagicValue`: "virt" in little-endian.
pub const VIRTIO_MMIO_MAGIC: u32 = 0x7472_6976;

/// The registers of the window (virtio 1.2 §4.2.2) that PCI has too; every register is 32 bits.
const LAYOUT: Layout = Layout {
    device_feature_select: 0x014,
    device_feature: 0x010,
    driver_feature_select: 0x024,
    driver_feature: 0x020,
    status: Reg::u32(0x070),
    config_generation: Reg::u32(0x0fc),
    queue_select: Reg::u32(0x030),
    queue_size_max: Reg::u32(0x034),
    queue_size: Reg::u32(0x038),
    queue_enable: Reg::u32(0x044),
    queue_reset: Reg::u32(0x0c0),
    queue_desc: 0x080,
    queue_driver: 0x090,
    queue_device: 0x0a0,
};

/// Offsets of the registers only MMIO has.
mod reg {
    pub(super) const MAGIC_VALUE: usize = 0x000;
    pub(super) const VERSION: usize = 0x004;
    pub(super) const DEVICE_ID: usize = 0x008;
    pub(super) const QUEUE_NOTIFY: usize = 0x050;
    pub(super) const INTERRUPT_STATUS: usize = 0x060;
    pub(super) const INTERRUPT_ACK: usize = 0x064;
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
    common: Common<R>,
}

impl<R: RegisterBlock + Clone> fmt::Debug for MmioTransport<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmioTransport")
            .field("device_type", &self.common.device_type)
            .field("window_len", &self.common.regs.len())
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
            common: Common::new(regs, device_type),
        })
    }

    /// The length of the device-specific configuration window.
    pub fn config_len(&self) -> usize {
        self.device_config_len()
    }
}

impl<R: RegisterBlock + Clone> Bus for MmioTransport<R> {
    type Regs = R;
    type Notifier = MmioNotifier<R>;

    const LAYOUT: Layout = LAYOUT;

    fn common(&self) -> &Common<R> {
        &self.common
    }

    fn common_mut(&mut self) -> &mut Common<R> {
        &mut self.common
    }

    /// The configuration extends from 0x100 to the end of the window.
    fn device_config(&self) -> Option<(&R, usize)> {
        Some((&self.common.regs, reg::CONFIG))
    }

    /// MMIO has no queue count: this is the index of the first queue whose `QueueNumMax` reads 0
    /// (at most 1024).
    fn queue_count(&self) -> u16 {
        (0..MAX_QUEUES)
            .find(|&index| {
                self.select_queue(index);
                LAYOUT.queue_size_max.read(&self.common.regs) == 0
            })
            .unwrap_or(MAX_QUEUES)
    }

    /// Any queue may exist: a queue that does not reads 0 in `QueueNumMax`.
    fn queue_in_range(&self, _index: u16) -> bool {
        true
    }

    /// A vector is refused: the queue stays disabled.
    fn set_queue_vector(&self, vector: Option<u16>) -> Result<(), TransportError> {
        refuse_vector(vector)
    }

    /// `None` is accepted, a vector is refused.
    fn config_vector(&mut self, vector: Option<u16>) -> Result<(), TransportError> {
        refuse_vector(vector)
    }

    /// The notifier writes `QueueNotify`, which every queue shares.
    fn queue_notifier(&mut self, index: u16) -> Result<Self::Notifier, TransportError> {
        if Transport::max_queue_size(self, index) == 0 {
            return Err(TransportError::QueueUnavailable);
        }
        Ok(MmioNotifier {
            regs: self.common.regs.clone(),
            queue: index,
            data: self.common.driver_features.contains(F::NOTIFICATION_DATA),
        })
    }

    /// Reads `InterruptStatus` and writes the same bits to `InterruptACK` (virtio 1.2 §4.2.3.4).
    fn interrupt_status(&mut self) -> u32 {
        let regs = &self.common.regs;
        let status = regs.read_u32(reg::INTERRUPT_STATUS);
        if status != 0 {
            regs.write_u32(reg::INTERRUPT_ACK, status);
        }
        status
    }
}

/// MMIO has a single interrupt and no MSI-X: `None` is accepted, a vector refused.
fn refuse_vector(vector: Option<u16>) -> Result<(), TransportError> {
    match vector {
        None => Ok(()),
        Some(_) => Err(TransportError::VectorRejected),
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
