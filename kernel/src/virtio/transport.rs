//! One transport type for the kernel's drivers: modern virtio-pci or virtio-mmio, chosen by where
//! the device was found ([`Location`]), so `block` and `net` hold one driver type either way.

use core::fmt;

use vireo_virtio::{
    Notifier, RingAddresses,
    transport::{
        InterruptCause, MmioNotifier, MmioTransport, PciNotifier, PciTransport, Transport,
        TransportError, WaitBudget,
    },
    virtio_spec::{DeviceStatus, F},
};

use super::{KernelPci, MmioRegs, mmio::MmioDevice};
use crate::pci::PciDevice;

/// Where a virtio device was found.
#[derive(Debug, Clone, Copy)]
pub enum Location {
    /// A PCI function.
    Pci(&'static PciDevice),
    /// A virtio-mmio window.
    Mmio(&'static MmioDevice),
}

impl Location {
    /// The PCI function, if the device is one.
    pub fn pci(&self) -> Option<&'static PciDevice> {
        match self {
            Self::Pci(d) => Some(d),
            Self::Mmio(_) => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pci(d) => {
                let (bus, dev, func) = d.address();
                write!(f, "{bus:02x}:{dev:02x}.{func}")
            }
            Self::Mmio(d) => write!(f, "{d}"),
        }
    }
}

/// A virtio transport over PCI or MMIO.
#[derive(Debug)]
pub enum KernelTransport {
    /// Modern virtio-pci (virtio 1.2 §4.1).
    Pci(PciTransport<KernelPci>),
    /// virtio-mmio version 2 (§4.2).
    Mmio(MmioTransport<MmioRegs>),
}

impl KernelTransport {
    /// The transport for the device at `location`.
    ///
    /// # Errors
    /// The transport's checks of the device.
    pub fn new(location: Location) -> Result<Self, TransportError> {
        Ok(match location {
            Location::Pci(d) => Self::Pci(PciTransport::new(KernelPci::new(d))?),
            Location::Mmio(d) => Self::Mmio(MmioTransport::new(d.regs())?),
        })
    }
}

/// A queue's notifier over either transport.
#[derive(Debug)]
pub enum KernelNotifier {
    /// virtio-pci.
    Pci(PciNotifier<MmioRegs>),
    /// virtio-mmio.
    Mmio(MmioNotifier<MmioRegs>),
}

impl Notifier for KernelNotifier {
    fn notify(&self, queue_index: u16, notification_data: Option<u32>) {
        match self {
            Self::Pci(n) => n.notify(queue_index, notification_data),
            Self::Mmio(n) => n.notify(queue_index, notification_data),
        }
    }
}

/// Runs `$body` with `$t` bound to the transport inside, whichever it is.
macro_rules! each {
    ($self:expr, $t:ident => $body:expr) => {
        match $self {
            KernelTransport::Pci($t) => $body,
            KernelTransport::Mmio($t) => $body,
        }
    };
}

impl Transport for KernelTransport {
    type Notifier = KernelNotifier;

    fn device_type(&self) -> u16 {
        each!(self, t => t.device_type())
    }

    fn status(&self) -> DeviceStatus {
        each!(self, t => t.status())
    }

    fn set_status(&mut self, status: DeviceStatus) {
        each!(self, t => t.set_status(status))
    }

    fn device_features(&mut self) -> F {
        each!(self, t => t.device_features())
    }

    fn set_driver_features(&mut self, features: F) {
        each!(self, t => t.set_driver_features(features))
    }

    fn queue_count(&self) -> u16 {
        each!(self, t => t.queue_count())
    }

    fn max_queue_size(&mut self, index: u16) -> u16 {
        each!(self, t => t.max_queue_size(index))
    }

    fn setup_queue(
        &mut self,
        index: u16,
        size: u16,
        addresses: RingAddresses,
        vector: Option<u16>,
    ) -> Result<(), TransportError> {
        each!(self, t => t.setup_queue(index, size, addresses, vector))
    }

    fn notifier(&mut self, index: u16) -> Result<KernelNotifier, TransportError> {
        match self {
            Self::Pci(t) => t.notifier(index).map(KernelNotifier::Pci),
            Self::Mmio(t) => t.notifier(index).map(KernelNotifier::Mmio),
        }
    }

    fn set_config_vector(&mut self, vector: Option<u16>) -> Result<(), TransportError> {
        each!(self, t => t.set_config_vector(vector))
    }

    fn config_generation(&self) -> u32 {
        each!(self, t => t.config_generation())
    }

    fn read_config_raw(&self, offset: usize, buf: &mut [u8]) -> Result<(), TransportError> {
        each!(self, t => t.read_config_raw(offset, buf))
    }

    fn write_config_raw(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError> {
        each!(self, t => t.write_config_raw(offset, data))
    }

    fn ack_interrupt(&mut self) -> InterruptCause {
        each!(self, t => t.ack_interrupt())
    }

    fn reset_queue(
        &mut self,
        index: u16,
        budget: &mut WaitBudget<'_>,
    ) -> Result<bool, TransportError> {
        each!(self, t => t.reset_queue(index, budget))
    }
}
