//! The virtio-blk driver (virtio 1.2 §5.2).
//!
//! Layer: driver, between the virtqueue core (`vireo-virtio`) and the kernel's block API
//! (`vireo::block`), which adds waiting, timeouts and device memory.
//!
//! [`BlkDriver`] initialises a block device over any
//! [`Transport`](vireo_virtio::transport::Transport), reads its configuration into a [`BlkDeviceConfig`],
//! creates one virtqueue per requested queue (several with `VIRTIO_BLK_F_MQ`) and then takes
//! [`Request`]s: [`submit`](BlkDriver::submit) makes a request available and returns its
//! [`RequestId`]; [`poll`](BlkDriver::poll) hands back [`Completion`]s, in whatever order the
//! device finishes them.
//!
//! # Buffer ownership
//!
//! The caller's data buffers ([`DmaBuffer`](vireo_virtio::DmaBuffer)s from the kernel's DMA
//! allocator) move into the request and come back: in the [`Completion`] when the device is done,
//! inside a [`SubmitError`] when the request is refused, or in a [`Completion`] carrying
//! [`BlkDriverError::DeviceReset`] when the device is reset with the request in flight. The driver drops
//! them only when it is itself dropped with the request in flight: then they go with the queues,
//! freed after the device confirmed a reset and leaked otherwise (see [`BlkDriver`]). The request header and status byte are small DMA blocks the driver
//! owns: allocated for the first requests, then reused from a bounded pool.
//!
//! # Request size limits: no splitting
//!
//! One [`Request::Read`]/[`Request::Write`] is one virtio-blk request; each caller buffer is one
//! data segment (one descriptor). The driver never splits or copies: a request with more segments
//! than [`BlkDeviceConfig::max_segments`] or a segment longer than [`BlkDeviceConfig::max_segment_bytes`] is
//! refused before it reaches the device ([`BlkDriverError::TooManySegments`],
//! [`BlkDriverError::SegmentTooLarge`]). The kernel chunks its I/O to [`BlkDeviceConfig::max_request_bytes`]
//! (buffers of at most `max_segment_bytes` each).

mod completion;
mod config;
mod driver;
mod error;
mod pool;
mod request;

pub use self::{
    completion::{Completion, DeviceId, Output},
    config::{BlkDeviceConfig, BlkOptions, Geometry, SECTOR_SIZE, Topology},
    driver::BlkDriver,
    error::{BlkDriverError, SubmitError},
    pool::PoolStats,
    request::{Request, RequestId, RequestKind, SectorRange},
};
