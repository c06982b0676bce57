//! [`BlockError`]: what a block call can fail with.
//!
//! Layer: kernel API (what applications see). The driver's own refusals and the device's answers
//! arrive as [`BlockError::Driver`] with a [`BlkDriverError`] (layer below, `vireo-drivers`).

use core::fmt;

use vireo_drivers::blk::BlkDriverError;

/// Why a block operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// The driver refused the request or the device failed it (range, alignment, read-only,
    /// unsupported operation, I/O error, protocol violation, ...).
    Driver(BlkDriverError),
    /// The device did not complete the request within the device's time budget. The request stays
    /// with the device; its buffers are freed if it ever completes.
    Timeout,
    /// No device memory was left for a buffer.
    OutOfMemory,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Driver(e) => write!(f, "{e}"),
            Self::Timeout => f.write_str("the device did not complete the request in time"),
            Self::OutOfMemory => f.write_str("out of device memory"),
        }
    }
}

impl core::error::Error for BlockError {}

impl BlockError {
    /// What a user can do about this error, in words for a boot log (`None`: the message says
    /// it all); the driver's errors give [`BlkDriverError::hint`].
    #[must_use]
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Driver(e) => e.hint(),
            Self::Timeout => Some(
                "the device did not answer in time: on a slow or instruction-emulating \
                 hypervisor try another accelerator (cargo xtask run --accel tcg); if it \
                 persists, check QEMU's messages and the disk image",
            ),
            Self::OutOfMemory => Some(
                "out of device memory: give the machine more RAM (QEMU: -m) or use smaller \
                 buffers or queues (vireo.blk.queue_size=)",
            ),
        }
    }
}

impl From<BlkDriverError> for BlockError {
    fn from(e: BlkDriverError) -> Self {
        Self::Driver(e)
    }
}
