//! Block devices: every virtio-blk device found on the PCI bus (virtio-pci) or in a virtio-mmio
//! slot (microvm), driven by [`vireo_drivers::blk`].
//!
//! Layer: kernel API (what applications use), above the driver layer (`vireo-drivers`) and the
//! virtqueue core (`vireo-virtio`).
//!
//! Two ways to do I/O, both at the device's logical block granularity:
//!
//! - Blocking calls on a [`BlockDevice`]: [`read`](BlockDevice::read) / [`write`](BlockDevice::write)
//!   copy through device memory and split to the device's request limits;
//!   [`read_buffer`](BlockDevice::read_buffer) / [`write_buffer`](BlockDevice::write_buffer) hand a
//!   [`Buffer`] to the device without copying; [`flush`](BlockDevice::flush),
//!   [`discard`](BlockDevice::discard), [`write_zeroes`](BlockDevice::write_zeroes).
//! - Deep queues: [`submit`](BlockDevice::submit) (or [`submit_batch`](BlockDevice::submit_batch),
//!   one notification for many requests) any number of [`Request`]s up to the queue's capacity,
//!   then take [`Completion`]s back with [`wait`](BlockDevice::wait) or
//!   [`poll`](BlockDevice::poll) — in whatever order the device finishes them.
//!
//! Completions are interrupt-driven (one MSI-X vector per queue, one for configuration changes,
//! notifications suppressed while the driver is not waiting, `VIRTIO_F_EVENT_IDX` when offered) or
//! polled (`vireo.blk.polled=1`, or [`BlockDevice::set_polled`]). Every wait is bounded by the
//! device's timeout ([`BlockDevice::set_timeout`], 10 s by default).
//!
//! Command-line options, read at probe time: `vireo.blk.packed=0` (refuse the packed ring even if
//! offered), `vireo.blk.indirect=0`, `vireo.blk.event_idx=0`, `vireo.blk.queues=N` (request
//! queues wanted, default 4), `vireo.blk.queue_size=N` (default: the device's maximum up to 1024),
//! `vireo.blk.polled=1`.

mod device;
mod error;
mod io;
mod probe;
mod queue;

use alloc::vec::Vec;

use spin::Once;
pub use vireo_drivers::blk::{
    BlkDeviceConfig, BlkDriverError, Output, Request, RequestId, RequestKind, SECTOR_SIZE,
    SectorRange,
};
use vireo_virtio::DmaBuffer;

pub use self::{
    device::{BlockDevice, BlockInfo, BlockStats},
    error::BlockError,
    io::BufferError,
};
use crate::mm::DeviceAlloc;

/// A buffer in device memory, handed to a device without copying.
pub type Buffer = DmaBuffer<DeviceAlloc>;

/// A finished request: its id, the caller's buffers back, and the outcome.
pub type Completion = vireo_drivers::blk::Completion<DeviceAlloc>;

/// A zeroed [`Buffer`] of `len` bytes.
///
/// # Errors
/// [`BlockError::OutOfMemory`] if the device memory pool is exhausted.
pub fn buffer(len: usize) -> Result<Buffer, BlockError> {
    Buffer::new_zeroed_in(len, DeviceAlloc).map_err(|_| BlockError::OutOfMemory)
}

static DEVICES: Once<Vec<BlockDevice>> = Once::new();

/// Every block device brought up at boot, in PCI order (then virtio-mmio devices).
///
/// A device that could not be brought up (a legacy device, a refused feature set, a queue it
/// cannot offer, a device error during set-up) is absent: it was logged once at boot with the
/// reason and what to do about it, and [`crate::virtio::failed_devices`] lists it.
pub fn devices() -> &'static [BlockDevice] {
    DEVICES.get().map_or(&[], Vec::as_slice)
}

/// The block device whose serial number (virtio-blk get-id) is `serial`.
pub fn by_serial(serial: &str) -> Option<&'static BlockDevice> {
    devices().iter().find(|d| d.serial() == serial)
}

/// Finds and initialises every virtio-blk function (called once by the runtime after the PCI scan).
pub(crate) fn init() {
    DEVICES.call_once(probe::probe_all);
}
