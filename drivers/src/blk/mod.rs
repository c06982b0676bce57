//! The virtio-blk driver (virtio 1.2 §5.2).
//!
//! [`BlkDriver`] initialises a block device over any
//! [`Transport`](vireo_virtio::transport::Transport), reads its configuration into a [`BlkInfo`],
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
//! [`BlkError::DeviceReset`] when the device is reset with the request in flight. The driver drops
//! them only when it is itself dropped with the request in flight: then they go with the queues,
//! freed after the device confirmed a reset and leaked otherwise (see [`BlkDriver`]). The request header and status byte are small DMA blocks the driver
//! owns: allocated for the first requests, then reused from a bounded pool.
//!
//! # Request size limits: no splitting
//!
//! One [`Request::Read`]/[`Request::Write`] is one virtio-blk request; each caller buffer is one
//! data segment (one descriptor). The driver never splits or copies: a request with more segments
//! than [`BlkInfo::max_segments`] or a segment longer than [`BlkInfo::max_segment_bytes`] is
//! refused before it reaches the device ([`BlkError::TooManySegments`],
//! [`BlkError::SegmentTooLarge`]). The kernel chunks its I/O to [`BlkInfo::max_request_bytes`]
//! (buffers of at most `max_segment_bytes` each).

mod completion;
mod config;
mod driver;
mod error;
mod pool;
mod request;

pub use self::{
    completion::{Completion, DeviceId, Output},
    config::{BlkInfo, BlkOptions, Geometry, SECTOR_SIZE, Topology},
    driver::BlkDriver,
    error::{BlkError, SubmitError},
    pool::PoolStats,
    request::{Request, RequestId, RequestKind, SectorRange},
};
