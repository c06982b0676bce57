//! The modern virtio-pci transport (virtio 1.2 §4.1): common configuration, notification, ISR and
//! device configuration structures located through vendor capabilities, reached through register
//! blocks the platform maps.

use core::fmt;

use virtio_spec::{DeviceStatus, F};

use super::{
    ConfigSpace, InterruptCause, RegisterBlock, Transport, TransportError, WaitBudget,
    pci_caps::{self, VirtioCap},
    regs::{read_feature_windows, write_feature_windows},
};
use crate::{Notifier, RingAddresses};

/// `VIRTIO_MSI_NO_VECTOR`: no MSI-X vector, and what the device reads back when it refuses one.
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xffff;

/// Offsets in the common configuration structure (virtio 1.2 §4.1.4.3, `virtio_pci_common_cfg`).
mod common {
    pub(super) const DEVICE_FEATURE_SELECT: usize = 0;
    pub(super) const DEVICE_FEATURE: usize = 4;
    pub(super) const DRIVER_FEATURE_SELECT: usize = 8;
    pub(super) const DRIVER_FEATURE: usize = 12;
    pub(super) const CONFIG_MSIX_VECTOR: usize = 16;
    pub(super) const NUM_QUEUES: usize = 18;
    pub(super) const DEVICE_STATUS: usize = 20;
    pub(super) const CONFIG_GENERATION: usize = 21;
    pub(super) const QUEUE_SELECT: usize = 22;
    pub(super) const QUEUE_SIZE: usize = 24;
    pub(super) const QUEUE_MSIX_VECTOR: usize = 26;
    pub(super) const QUEUE_ENABLE: usize = 28;
    pub(super) const QUEUE_NOTIFY_OFF: usize = 30;
    pub(super) const QUEUE_DESC: usize = 32;
    pub(super) const QUEUE_DRIVER: usize = 40;
    pub(super) const QUEUE_DEVICE: usize = 48;
    pub(super) const QUEUE_NOTIFY_DATA: usize = 56;
    pub(super) const QUEUE_RESET: usize = 58;
    /// Length of the structure including `queue_notify_data` and `queue_reset` (virtio 1.2).
    pub(super) const LEN_WITH_RESET: usize = 60;
}

/// What the kernel lends the PCI transport: the function's configuration space and its BARs.
pub trait PciPlatform {
    /// A mapped range of a BAR (uncached MMIO on the machine).
    type Regs: RegisterBlock + Clone;
    /// The function's configuration space.
    type Config: ConfigSpace;

    /// The function's configuration space.
    fn config(&self) -> &Self::Config;

    /// The size in bytes of memory BAR `bar` (0..=5); `None` if the BAR is not implemented or is
    /// an I/O BAR. For a 64-bit BAR, `bar` is the index of its low half.
    fn bar_size(&self, bar: u8) -> Option<u64>;

    /// Maps `len` bytes of BAR `bar` from `offset`; the transport has checked that the range lies
    /// within [`bar_size`](Self::bar_size). The block returned must be exactly `len` bytes long.
    ///
    /// # Errors
    /// [`TransportError::MapFailed`] if the range cannot be mapped.
    fn map_bar(&self, bar: u8, offset: u64, len: u64) -> Result<Self::Regs, TransportError>;
}

/// A virtio device on PCI, driven through its modern (virtio 1.0+) interface.
///
/// # Example
///
/// Against the register-level fake `vireo_virtio::transport::fake::FakePci` (feature `test-utils`),
/// whose `platform()` gives the transport its configuration
/// space and BARs: a packed queue is negotiated and programmed, a buffer is dispatched (the
/// notification lands at `queue_notify_off × notify_off_multiplier`, virtio 1.2 §4.1.4.4), the
/// device side (`vireo_virtio::mock::PackedDevice`) uses it and raises the ISR, and
/// the driver takes it back.
///
/// ```
/// use vireo_virtio::{
///     AvailBufferToken, BufferType,
///     mock::{GuestDma, PackedDevice},
///     transport::{
///         Device, PciTransport, Transport, WaitBudget,
///         fake::{FakeClock, FakePci, NOTIFY_MULTIPLIER},
///     },
///     virtio_spec::F,
/// };
///
/// const BLOCK: u16 = 2;
/// let offered = F::VERSION_1 | F::RING_PACKED;
/// let fake = FakePci::new(BLOCK, offered.bits().to_ne(), &[64, 64], &[0; 8]);
/// fake.set_queue_notify_off(1, 5);
///
/// let clock = FakeClock::new(1_000);
/// let mut budget = WaitBudget::new(&clock, 1_000_000);
/// let transport = PciTransport::new(fake.platform()).unwrap();
/// let mut device = Device::init(transport, BLOCK, F::RING_PACKED, &mut budget).unwrap();
/// assert_eq!(device.transport().queue_count(), 2);
///
/// let dma = GuestDma::new(1 << 20);
/// let mut vq = device.create_queue(1, 64, dma.clone(), None).unwrap();
/// device.driver_ok().unwrap();
/// let mut ring = PackedDevice::new(dma.mem(), vq.ring_addresses(), vq.size());
///
/// let token = AvailBufferToken::new(vec![dma.buffer(b"read sector 0")], Vec::new()).with_tag(1);
/// assert!(vq.dispatch(token, BufferType::Direct).unwrap());
/// let offset = 5 * NOTIFY_MULTIPLIER as usize;
/// assert_eq!(fake.take_notifications(), [(offset, 2, 1)], "queue 1, 16 bits wide");
///
/// let chain = ring.pop().unwrap();
/// assert_eq!(chain.readable(dma.mem()), b"read sector 0");
/// ring.write_used(chain.id, 0, false, chain.desc_count);
/// fake.raise_isr(1);
/// assert!(device.transport_mut().ack_interrupt().queue);
/// assert_eq!(vq.poll().unwrap().unwrap().tag(), 1);
/// ```
pub struct PciTransport<P: PciPlatform> {
    platform: P,
    device_type: u16,
    common: P::Regs,
    notify: P::Regs,
    notify_off_multiplier: u32,
    isr: P::Regs,
    device: Option<P::Regs>,
    driver_features: F,
}

impl<P: PciPlatform> fmt::Debug for PciTransport<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PciTransport")
            .field("device_type", &self.device_type)
            .field("common_len", &self.common.len())
            .field("notify_len", &self.notify.len())
            .field("notify_off_multiplier", &self.notify_off_multiplier)
            .field("device_cfg_len", &self.device.as_ref().map(|d| d.len()))
            .finish_non_exhaustive()
    }
}

impl<P: PciPlatform> PciTransport<P> {
    /// Identifies the function as a virtio device, finds its common, notify, ISR and (if present)
    /// device configuration capabilities, checks them and maps them.
    ///
    /// # Errors
    /// [`TransportError::NotVirtio`] if the ids are not virtio ones;
    /// [`TransportError::BadCapability`] if the capability list is malformed or a required
    /// capability is missing or points outside its BAR; [`TransportError::MapFailed`] if the
    /// platform cannot map a range.
    pub fn new(platform: P) -> Result<Self, TransportError> {
        let config = platform.config();
        let device_type = pci_caps::pci_device_type(config)?;
        let caps = pci_caps::find_virtio_caps(config, |bar| platform.bar_size(bar))?;
        let (Some(common), Some(notify), Some(isr)) = (caps.common, caps.notify, caps.isr) else {
            return Err(TransportError::BadCapability);
        };
        let common_regs = map(&platform, &common)?;
        let notify_regs = map(&platform, &notify)?;
        let isr_regs = map(&platform, &isr)?;
        let device = match caps.device {
            Some(cap) if cap.length > 0 => Some(map(&platform, &cap)?),
            _ => None,
        };
        Ok(Self {
            platform,
            device_type,
            common: common_regs,
            notify: notify_regs,
            notify_off_multiplier: notify.notify_off_multiplier,
            isr: isr_regs,
            device,
            driver_features: F::empty(),
        })
    }

    /// The platform the transport was built on (e.g. for MSI-X table setup).
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The length of the device-specific configuration (0 when the device has none).
    pub fn config_len(&self) -> usize {
        self.device.as_ref().map_or(0, RegisterBlock::len)
    }

    /// Whether the common configuration has `queue_notify_data` and `queue_reset` (virtio 1.2).
    fn has_queue_reset(&self) -> bool {
        self.common.len() >= common::LEN_WITH_RESET
    }

    fn select_queue(&self, index: u16) {
        self.common.write_u16(common::QUEUE_SELECT, index);
    }

    /// Writes a 64-bit queue address as two 32-bit halves, low first (virtio 1.2 §4.1.3.1).
    fn write_u64(&self, offset: usize, value: u64) {
        // Truncations intended: the two halves.
        self.common.write_u32(offset, value as u32);
        self.common.write_u32(offset + 4, (value >> 32) as u32);
    }

    /// Writes an MSI-X vector register and reads it back: the device answers
    /// `VIRTIO_MSI_NO_VECTOR` when it could not allocate the vector (virtio 1.2 §4.1.5.1.2).
    fn write_vector(&self, offset: usize, vector: Option<u16>) -> Result<(), TransportError> {
        let value = vector.unwrap_or(VIRTIO_MSI_NO_VECTOR);
        self.common.write_u16(offset, value);
        if value != VIRTIO_MSI_NO_VECTOR && self.common.read_u16(offset) != value {
            return Err(TransportError::VectorRejected);
        }
        Ok(())
    }

    /// Runs `access(position, width)` over `[offset, offset + len)` of the device configuration
    /// after checking the range, with the widest naturally aligned access that fits at each step
    /// (so a 1-, 2- or 4-byte field is one access of its width, and 8 bytes are two 32-bit ones).
    fn config_accesses(
        &self,
        offset: usize,
        len: usize,
        mut access: impl FnMut(&P::Regs, usize, usize),
    ) -> Result<(), TransportError> {
        let end = offset
            .checked_add(len)
            .ok_or(TransportError::ConfigOutOfRange)?;
        if end > self.config_len() {
            return Err(TransportError::ConfigOutOfRange);
        }
        let Some(regs) = &self.device else {
            return Ok(()); // len == 0
        };
        let mut pos = offset;
        while pos < end {
            let width = match (pos % 4, end - pos) {
                (0, 4..) => 4,
                (0 | 2, 2..) => 2,
                _ => 1,
            };
            access(regs, pos, width);
            pos += width;
        }
        Ok(())
    }
}

/// Maps the range of one checked capability.
fn map<P: PciPlatform>(platform: &P, cap: &VirtioCap) -> Result<P::Regs, TransportError> {
    let regs = platform.map_bar(cap.bar, cap.offset, cap.length)?;
    if u64::try_from(regs.len()).ok() != Some(cap.length) {
        return Err(TransportError::MapFailed);
    }
    Ok(regs)
}

impl<P: PciPlatform> Transport for PciTransport<P> {
    type Notifier = PciNotifier<P::Regs>;

    fn device_type(&self) -> u16 {
        self.device_type
    }

    fn status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_retain(self.common.read_u8(common::DEVICE_STATUS))
    }

    fn set_status(&mut self, status: DeviceStatus) {
        if status.is_empty() {
            self.driver_features = F::empty();
        }
        self.common.write_u8(common::DEVICE_STATUS, status.bits());
    }

    fn device_features(&mut self) -> F {
        read_feature_windows(
            &self.common,
            common::DEVICE_FEATURE_SELECT,
            common::DEVICE_FEATURE,
        )
    }

    fn set_driver_features(&mut self, features: F) {
        write_feature_windows(
            &self.common,
            common::DRIVER_FEATURE_SELECT,
            common::DRIVER_FEATURE,
            features,
        );
        self.driver_features = features;
    }

    fn queue_count(&self) -> u16 {
        self.common.read_u16(common::NUM_QUEUES)
    }

    fn max_queue_size(&mut self, index: u16) -> u16 {
        if index >= self.queue_count() {
            return 0;
        }
        self.select_queue(index);
        self.common.read_u16(common::QUEUE_SIZE)
    }

    /// Programs the queue as virtio 1.2 §4.1.5.1.3 describes: select it, check it exists and is
    /// disabled, write the size, the three area addresses and the MSI-X vector (read back), then
    /// enable it.
    fn setup_queue(
        &mut self,
        index: u16,
        size: u16,
        addresses: RingAddresses,
        vector: Option<u16>,
    ) -> Result<(), TransportError> {
        if index >= self.queue_count() {
            return Err(TransportError::QueueUnavailable);
        }
        self.select_queue(index);
        let max = self.common.read_u16(common::QUEUE_SIZE);
        if max == 0 || size == 0 || size > max || self.common.read_u16(common::QUEUE_ENABLE) != 0 {
            return Err(TransportError::QueueUnavailable);
        }
        self.common.write_u16(common::QUEUE_SIZE, size);
        self.write_u64(common::QUEUE_DESC, addresses.descriptor_area);
        self.write_u64(common::QUEUE_DRIVER, addresses.driver_area);
        self.write_u64(common::QUEUE_DEVICE, addresses.device_area);
        self.write_vector(common::QUEUE_MSIX_VECTOR, vector)?;
        self.common.write_u16(common::QUEUE_ENABLE, 1);
        Ok(())
    }

    /// The notify address is `cap.offset + queue_notify_off × notify_off_multiplier` (virtio 1.2
    /// §4.1.4.4); the device chooses `queue_notify_off`, so the address is computed with checked
    /// arithmetic and must leave room for the write (2 bytes, 4 with `VIRTIO_F_NOTIFICATION_DATA`)
    /// inside the notification structure, naturally aligned.
    fn notifier(&mut self, index: u16) -> Result<Self::Notifier, TransportError> {
        if index >= self.queue_count() {
            return Err(TransportError::QueueUnavailable);
        }
        self.select_queue(index);
        let notify_off = self.common.read_u16(common::QUEUE_NOTIFY_OFF);
        let wide = self.driver_features.contains(F::NOTIFICATION_DATA);
        let width: usize = if wide { 4 } else { 2 };
        let multiplier = usize::try_from(self.notify_off_multiplier)
            .map_err(|_| TransportError::BadCapability)?;
        let offset = usize::from(notify_off)
            .checked_mul(multiplier)
            .filter(|offset| offset.is_multiple_of(width))
            .filter(|offset| {
                offset
                    .checked_add(width)
                    .is_some_and(|end| end <= self.notify.len())
            })
            .ok_or(TransportError::BadCapability)?;
        // With VIRTIO_F_NOTIF_CONFIG_DATA the device gives the value that identifies the queue.
        let queue_value =
            if self.driver_features.contains(F::NOTIF_CONFIG_DATA) && self.has_queue_reset() {
                self.common.read_u16(common::QUEUE_NOTIFY_DATA)
            } else {
                index
            };
        Ok(PciNotifier {
            regs: self.notify.clone(),
            offset,
            wide,
            queue_value,
        })
    }

    fn set_config_vector(&mut self, vector: Option<u16>) -> Result<(), TransportError> {
        self.write_vector(common::CONFIG_MSIX_VECTOR, vector)
    }

    fn config_generation(&self) -> u32 {
        u32::from(self.common.read_u8(common::CONFIG_GENERATION))
    }

    fn read_config_raw(&self, offset: usize, buf: &mut [u8]) -> Result<(), TransportError> {
        self.config_accesses(offset, buf.len(), |regs, pos, width| {
            let at = pos - offset;
            match width {
                4 => buf[at..at + 4].copy_from_slice(&regs.read_u32(pos).to_le_bytes()),
                2 => buf[at..at + 2].copy_from_slice(&regs.read_u16(pos).to_le_bytes()),
                _ => buf[at] = regs.read_u8(pos),
            }
        })
    }

    fn write_config_raw(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError> {
        self.config_accesses(offset, data.len(), |regs, pos, width| {
            let at = pos - offset;
            match width {
                4 => regs.write_u32(
                    pos,
                    u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]),
                ),
                2 => regs.write_u16(pos, u16::from_le_bytes([data[at], data[at + 1]])),
                _ => regs.write_u8(pos, data[at]),
            }
        })
    }

    /// Reads the ISR status byte, which also clears it (virtio 1.2 §4.1.4.5).
    fn ack_interrupt(&mut self) -> InterruptCause {
        let isr = self.isr.read_u8(0);
        InterruptCause {
            queue: isr & 1 != 0,
            config: isr & 2 != 0,
        }
    }

    /// Writes 1 to `queue_reset` and waits until the device reads back 0 in both `queue_reset`
    /// and `queue_enable` (virtio 1.2 §4.1.4.3.2). Afterwards the queue can be programmed again
    /// with [`setup_queue`](Transport::setup_queue). `Ok(false)` unless `VIRTIO_F_RING_RESET`
    /// was negotiated and the common configuration has the register.
    fn reset_queue(
        &mut self,
        index: u16,
        budget: &mut WaitBudget<'_>,
    ) -> Result<bool, TransportError> {
        if !self.driver_features.contains(F::RING_RESET) || !self.has_queue_reset() {
            return Ok(false);
        }
        if index >= self.queue_count() {
            return Err(TransportError::QueueUnavailable);
        }
        self.select_queue(index);
        self.common.write_u16(common::QUEUE_RESET, 1);
        let regs = &self.common;
        budget.wait_until(|| {
            regs.read_u16(common::QUEUE_RESET) == 0 && regs.read_u16(common::QUEUE_ENABLE) == 0
        })?;
        Ok(true)
    }
}

/// Sends the available-buffer notifications of one queue by writing its notify register.
#[derive(Clone)]
pub struct PciNotifier<R: RegisterBlock> {
    regs: R,
    offset: usize,
    wide: bool,
    queue_value: u16,
}

impl<R: RegisterBlock> fmt::Debug for PciNotifier<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PciNotifier")
            .field("offset", &self.offset)
            .field("wide", &self.wide)
            .field("queue_value", &self.queue_value)
            .finish_non_exhaustive()
    }
}

impl<R: RegisterBlock> PciNotifier<R> {
    /// The offset of the notify register within the notification structure.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl<R: RegisterBlock> Notifier for PciNotifier<R> {
    /// Writes the 16-bit queue identifier, or, with `VIRTIO_F_NOTIFICATION_DATA`, the 32-bit
    /// notification data (virtio 1.2 §4.1.5.2). The queue identifier is the one this notifier was
    /// made for (or the device's `queue_notify_data`), whatever `queue_index` says.
    fn notify(&self, _queue_index: u16, notification_data: Option<u32>) {
        match notification_data {
            Some(data) if self.wide => {
                let data = (data & 0xffff_0000) | u32::from(self.queue_value);
                self.regs.write_u32(self.offset, data);
            }
            _ => self.regs.write_u16(self.offset, self.queue_value),
        }
    }
}
