//! The transport layer's errors.

use core::fmt;

use crate::{FeatureError, QueueError, error::BROKEN_DEVICE_HINT};

/// Why a transport operation or the device initialisation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// The device did not finish (reset, queue reset, ...) within the wait budget.
    Timeout,
    /// A required virtio capability is missing, or one points outside its BAR.
    BadCapability,
    /// The platform could not map a register block.
    MapFailed,
    /// The PCI function (or MMIO window) is not a virtio device this transport can drive.
    NotVirtio,
    /// Feature negotiation failed (e.g. no `VIRTIO_F_VERSION_1`).
    Features(FeatureError),
    /// The device cleared `FEATURES_OK`: it does not accept the features the driver chose.
    FeaturesRejected,
    /// The device set `DEVICE_NEEDS_RESET`, or its status is not what the sequence wrote.
    DeviceNeedsReset,
    /// The device refused an MSI-X vector (read back `VIRTIO_MSI_NO_VECTOR`).
    VectorRejected,
    /// The queue does not exist (size 0), is already enabled, or the size is not usable.
    QueueUnavailable,
    /// A configuration read or write outside the device's configuration space.
    ConfigOutOfRange,
    /// The configuration kept changing while it was read.
    ConfigUnstable,
    /// The device is not of the type the driver asked for.
    WrongDeviceType,
    /// A virtqueue could not be created (allocation, size).
    Queue(QueueError),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("device did not respond within the wait budget"),
            Self::BadCapability => f.write_str("virtio capability missing or out of range"),
            Self::MapFailed => f.write_str("could not map device registers"),
            Self::NotVirtio => f.write_str("not a supported virtio device"),
            Self::Features(e) => write!(f, "feature negotiation failed: {e}"),
            Self::FeaturesRejected => f.write_str("device rejected the negotiated features"),
            Self::DeviceNeedsReset => f.write_str("device needs a reset"),
            Self::VectorRejected => f.write_str("device rejected the MSI-X vector"),
            Self::QueueUnavailable => f.write_str("virtqueue unavailable"),
            Self::ConfigOutOfRange => f.write_str("device configuration access out of range"),
            Self::ConfigUnstable => f.write_str("device configuration kept changing while read"),
            Self::WrongDeviceType => f.write_str("device is not of the expected type"),
            Self::Queue(e) => write!(f, "virtqueue: {e}"),
        }
    }
}

impl core::error::Error for TransportError {}

impl TransportError {
    /// What a user can do about this error, in words for a boot log: the kernel option or QEMU
    /// property to change, or that the device is broken. A driver's error refines it where it
    /// knows the device type (its own options).
    #[must_use]
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            Self::Timeout => {
                "the device did not answer within its budget: on a slow or instruction-emulating \
                 hypervisor try another accelerator (cargo xtask run --accel tcg); otherwise the \
                 device is stuck, report a bug with this log"
            }
            Self::BadCapability => {
                "the PCI function lacks valid virtio 1.0 capabilities: a legacy-only device has \
                 none (QEMU: drop disable-modern=on, add disable-legacy=on); otherwise the \
                 device is broken, report a bug"
            }
            Self::MapFailed => {
                "the kernel could not map the device's registers: a Vireo bug or a BAR outside \
                 the address space it maps; report it with this log"
            }
            Self::NotVirtio | Self::WrongDeviceType => {
                "not a device of the type this driver handles: a Vireo bug, report it"
            }
            Self::Features(e) => return e.hint(),
            Self::FeaturesRejected => {
                "the device insists on a feature Vireo does not implement, such as \
                 VIRTIO_F_ACCESS_PLATFORM (QEMU: drop iommu_platform=on from the -device)"
            }
            Self::DeviceNeedsReset => {
                "the device reported an internal error: check QEMU's messages and the device's \
                 backend (disk image, network backend); then reboot"
            }
            Self::VectorRejected => {
                "the device refused an MSI-X vector: give it more (QEMU: vectors=N on the \
                 -device), or poll instead of interrupts (vireo.blk.polled=on, \
                 vireo.net.polled=on)"
            }
            Self::QueueUnavailable => {
                "the device lacks a queue the driver needs, or offers it with size 0: check the \
                 device's queue properties (QEMU: num-queues=, queue-size=)"
            }
            Self::ConfigOutOfRange | Self::ConfigUnstable => BROKEN_DEVICE_HINT,
            Self::Queue(e) => return e.hint(),
        })
    }
}

impl From<FeatureError> for TransportError {
    fn from(e: FeatureError) -> Self {
        Self::Features(e)
    }
}

impl From<QueueError> for TransportError {
    fn from(e: QueueError) -> Self {
        Self::Queue(e)
    }
}
