//! The modern virtio-pci transport (virtio 1.2 §4.1): common configuration, notification, ISR and
//! device configuration structures located through vendor capabilities, reached through register
//! blocks the platform maps.

use core::fmt;

use virtio_spec::F;

use super::{
    ConfigSpace, RegisterBlock, TransportError,
    common::{Bus, Common, Layout, Reg},
    pci_caps::{self, VirtioCap},
};
use crate::Notifier;

/// `VIRTIO_MSI_NO_VECTOR`: no MSI-X vector, and what the device reads back when it refuses one.
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xffff;

/// The registers of the common configuration structure (virtio 1.2 §4.1.4.3,
/// `virtio_pci_common_cfg`) that MMIO has too.
const LAYOUT: Layout = Layout {
    device_feature_select: 0,
    device_feature: 4,
    driver_feature_select: 8,
    driver_feature: 12,
    status: Reg::u8(20),
    config_generation: Reg::u8(21),
    queue_select: Reg::u16(22),
    // `queue_size` reads the maximum until the driver writes a smaller size.
    queue_size_max: Reg::u16(24),
    queue_size: Reg::u16(24),
    queue_enable: Reg::u16(28),
    queue_reset: Reg::u16(58),
    queue_desc: 32,
    queue_driver: 40,
    queue_device: 48,
};

/// Offsets of the registers only PCI has, in the same structure.
mod common {
    pub(super) const CONFIG_MSIX_VECTOR: usize = 16;
    pub(super) const NUM_QUEUES: usize = 18;
    pub(super) const QUEUE_MSIX_VECTOR: usize = 26;
    pub(super) const QUEUE_NOTIFY_OFF: usize = 30;
    pub(super) const QUEUE_NOTIFY_DATA: usize = 56;
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
    common: Common<P::Regs>,
    notify: P::Regs,
    notify_off_multiplier: u32,
    isr: P::Regs,
    device: Option<P::Regs>,
}

impl<P: PciPlatform> fmt::Debug for PciTransport<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PciTransport")
            .field("device_type", &self.common.device_type)
            .field("common_len", &self.common.regs.len())
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
            common: Common::new(common_regs, device_type),
            notify: notify_regs,
            notify_off_multiplier: notify.notify_off_multiplier,
            isr: isr_regs,
            device,
        })
    }

    /// The platform the transport was built on (e.g. for MSI-X table setup).
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The length of the device-specific configuration (0 when the device has none).
    pub fn config_len(&self) -> usize {
        self.device_config_len()
    }

    /// Writes an MSI-X vector register and reads it back: the device answers
    /// `VIRTIO_MSI_NO_VECTOR` when it could not allocate the vector (virtio 1.2 §4.1.5.1.2).
    fn write_vector(&self, offset: usize, vector: Option<u16>) -> Result<(), TransportError> {
        let regs = &self.common.regs;
        let value = vector.unwrap_or(VIRTIO_MSI_NO_VECTOR);
        regs.write_u16(offset, value);
        if value != VIRTIO_MSI_NO_VECTOR && regs.read_u16(offset) != value {
            return Err(TransportError::VectorRejected);
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

impl<P: PciPlatform> Bus for PciTransport<P> {
    type Regs = P::Regs;
    type Notifier = PciNotifier<P::Regs>;

    const LAYOUT: Layout = LAYOUT;

    fn common(&self) -> &Common<P::Regs> {
        &self.common
    }

    fn common_mut(&mut self) -> &mut Common<P::Regs> {
        &mut self.common
    }

    fn device_config(&self) -> Option<(&P::Regs, usize)> {
        self.device.as_ref().map(|regs| (regs, 0))
    }

    fn queue_count(&self) -> u16 {
        self.common.regs.read_u16(common::NUM_QUEUES)
    }

    fn queue_in_range(&self, index: u16) -> bool {
        index < Bus::queue_count(self)
    }

    /// Writes `queue_msix_vector` and reads it back.
    fn set_queue_vector(&self, vector: Option<u16>) -> Result<(), TransportError> {
        self.write_vector(common::QUEUE_MSIX_VECTOR, vector)
    }

    fn config_vector(&mut self, vector: Option<u16>) -> Result<(), TransportError> {
        self.write_vector(common::CONFIG_MSIX_VECTOR, vector)
    }

    /// The notify address is `cap.offset + queue_notify_off × notify_off_multiplier` (virtio 1.2
    /// §4.1.4.4); the device chooses `queue_notify_off`, so the address is computed with checked
    /// arithmetic and must leave room for the write (2 bytes, 4 with `VIRTIO_F_NOTIFICATION_DATA`)
    /// inside the notification structure, naturally aligned.
    fn queue_notifier(&mut self, index: u16) -> Result<Self::Notifier, TransportError> {
        if !self.queue_in_range(index) {
            return Err(TransportError::QueueUnavailable);
        }
        self.select_queue(index);
        let regs = &self.common.regs;
        let features = self.common.driver_features;
        let notify_off = regs.read_u16(common::QUEUE_NOTIFY_OFF);
        let wide = features.contains(F::NOTIFICATION_DATA);
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
        let queue_value = if features.contains(F::NOTIF_CONFIG_DATA) && self.has_queue_reset() {
            regs.read_u16(common::QUEUE_NOTIFY_DATA)
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

    /// Reads the ISR status byte, which also clears it (virtio 1.2 §4.1.4.5).
    fn interrupt_status(&mut self) -> u32 {
        self.isr.read_u8(0).into()
    }

    /// Whether the common configuration has `queue_notify_data` and `queue_reset` (virtio 1.2).
    fn has_queue_reset(&self) -> bool {
        self.common.regs.len() >= common::LEN_WITH_RESET
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
