//! The block API's errors.

use core::fmt;

use vireo_drivers::blk::BlkError;

/// Why a block operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// The driver refused the request or the device failed it (range, alignment, read-only,
    /// unsupported operation, I/O error, protocol violation, ...).
    Driver(BlkError),
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

impl From<BlkError> for BlockError {
    fn from(e: BlkError) -> Self {
        Self::Driver(e)
    }
}
