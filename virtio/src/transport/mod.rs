//! Transports: how a driver reaches a device's registers (virtio 1.2 §4), and the device
//! initialisation sequence every driver follows (§3.1), written once over the [`Transport`] trait.
//!
//! Like the rings, a transport never touches the machine itself: the platform gives it register
//! blocks ([`RegisterBlock`]), PCI configuration space ([`ConfigSpace`]) and time ([`Clock`]).
//! Everything read from a device is checked, and every wait on one is bounded.
//!
//! Two transports: [`PciTransport`] (modern virtio-pci, §4.1, over a [`PciPlatform`] that maps
//! BAR ranges) and [`MmioTransport`] (virtio-mmio version 2, §4.2, over one register window).
//! With the `test-utils` feature, `fake` holds register-level fakes of both for host tests.

mod common;
mod device;
mod error;
#[cfg(any(test, feature = "test-utils"))]
pub mod fake;
mod mmio;
pub mod mmio_slot;
mod pci;
mod pci_caps;
mod regs;

pub use device::{Device, WaitBudget};
pub use error::TransportError;
pub use mmio::{MmioNotifier, MmioTransport, VIRTIO_MMIO_MAGIC};
pub use pci::{PciNotifier, PciPlatform, PciTransport, VIRTIO_MSI_NO_VECTOR};
pub use pci_caps::{
    VIRTIO_PCI_VENDOR_ID, VirtioCap, VirtioCapKind, VirtioCaps, VirtioPciCap, find_virtio_caps,
    pci_device_type,
};
pub use regs::{Clock, ConfigSpace, RegisterBlock};
use virtio_spec::{DeviceStatus, F};

use crate::{Notifier, RingAddresses};

/// What a device's interrupt status says happened (virtio 1.2 §4.1.4.5 for PCI's ISR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterruptCause {
    /// A virtqueue may have used buffers.
    pub queue: bool,
    /// The device configuration changed (or the device needs a reset: check the status).
    pub config: bool,
}

/// The registers of one virtio device, whatever the bus: [`PciTransport`] and [`MmioTransport`]
/// implement it (their shared body is written once, in `common.rs`).
///
/// Drivers use it through [`Device`], which runs the initialisation sequence; the methods here are
/// the individual register operations. Values read from the device are returned as they are and
/// checked by the caller where they are used ([`Device`] does).
pub trait Transport {
    /// Sends the notifications of one queue; owned by that queue.
    type Notifier: Notifier;

    /// The virtio device type (virtio 1.2 §5: 1 network, 2 block, ...).
    fn device_type(&self) -> u16;

    /// Reads the device status register.
    fn status(&self) -> DeviceStatus;

    /// Writes the device status register (writing 0 starts a reset).
    fn set_status(&mut self, status: DeviceStatus);

    /// Reads all 128 feature bits the device offers.
    fn device_features(&mut self) -> F;

    /// Writes the features the driver accepts.
    fn set_driver_features(&mut self, features: F);

    /// The number of virtqueues the device has.
    fn queue_count(&self) -> u16;

    /// The largest size the device supports for queue `index` (0: the queue does not exist).
    fn max_queue_size(&mut self, index: u16) -> u16;

    /// Programs queue `index` with `size` descriptors at `addresses`, routes its used-buffer
    /// notifications to MSI-X `vector` (`None`: no vector, e.g. polled mode or INTx), and enables it.
    ///
    /// # Errors
    /// [`TransportError::VectorRejected`] if the device refuses the vector;
    /// [`TransportError::QueueUnavailable`] if the queue does not exist or is already enabled.
    fn setup_queue(
        &mut self,
        index: u16,
        size: u16,
        addresses: RingAddresses,
        vector: Option<u16>,
    ) -> Result<(), TransportError>;

    /// The notifier for queue `index`, after feature negotiation (the notification width depends
    /// on `VIRTIO_F_NOTIFICATION_DATA`); before or after [`setup_queue`](Self::setup_queue).
    ///
    /// # Errors
    /// [`TransportError::BadCapability`] if the device's notification offset is out of range;
    /// [`TransportError::QueueUnavailable`] if the queue does not exist.
    fn notifier(&mut self, index: u16) -> Result<Self::Notifier, TransportError>;

    /// Routes configuration-change notifications to MSI-X `vector` (`None`: none).
    ///
    /// # Errors
    /// [`TransportError::VectorRejected`] if the device refuses the vector.
    fn set_config_vector(&mut self, vector: Option<u16>) -> Result<(), TransportError>;

    /// The configuration generation counter (virtio 1.2 §2.5.1).
    fn config_generation(&self) -> u32;

    /// Reads `buf.len()` bytes of device-specific configuration at `offset`, once (no generation
    /// check: [`Device::read_config`] wraps this in the retry loop).
    ///
    /// # Errors
    /// [`TransportError::ConfigOutOfRange`] if the range is outside the device's configuration.
    fn read_config_raw(&self, offset: usize, buf: &mut [u8]) -> Result<(), TransportError>;

    /// Writes device-specific configuration at `offset`.
    ///
    /// # Errors
    /// [`TransportError::ConfigOutOfRange`] if the range is outside the device's configuration.
    fn write_config_raw(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError>;

    /// Reads and acknowledges the interrupt status (for INTx and polling; with MSI-X each vector
    /// already says which queue or the configuration).
    fn ack_interrupt(&mut self) -> InterruptCause;

    /// Resets queue `index` alone (`VIRTIO_F_RING_RESET`, virtio 1.2 §2.6.1); `Ok(false)` when
    /// the transport cannot.
    ///
    /// # Errors
    /// [`TransportError::Timeout`] if the device does not finish within the budget.
    fn reset_queue(
        &mut self,
        index: u16,
        budget: &mut WaitBudget<'_>,
    ) -> Result<bool, TransportError>;
}
