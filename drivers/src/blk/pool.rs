//! Reuse of the small blocks every request needs: the 16-byte request header and the status byte
//! (DMA memory), and the element lists of the driver's own parts of a token (heap memory).
//!
//! A request used to cost two DMA allocations and two list allocations on submission and as many
//! frees on completion; with a pool in steady state it costs none. The pool is bounded: beyond
//! [`RequestPool::LIMIT`] spare blocks of a kind, returned blocks are freed.
//!
//! Nothing the device could have written is trusted on reuse: a header is rewritten completely and
//! a status byte reset to `0xff` (not a valid status) every time it is handed out.

use alloc::vec::Vec;

use vireo_virtio::{DmaAllocator, DmaBuffer};

use super::request::dma_copy;

/// Length of `struct virtio_blk_outhdr` (virtio 1.2 §5.2.6).
pub(crate) const HEADER_LEN: usize = 16;
/// What a status byte holds before the device writes it: no valid `VIRTIO_BLK_S_*` value.
pub(crate) const STATUS_UNSET: u8 = 0xff;

/// Where the request headers, status bytes and element lists of submitted requests came from
/// ([`BlkDriver::pool_stats`](super::BlkDriver::pool_stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Headers and status bytes allocated from DMA memory (two per request until the pool has
    /// spares).
    pub allocated: u64,
    /// Headers and status bytes reused from the pool: DMA allocations avoided.
    pub reused: u64,
    /// Element lists of the driver's own parts of a request (header, status byte, id buffer,
    /// ranges) allocated on the heap; reused from the pool like the blocks, so this too stops
    /// growing in steady state.
    pub list_allocations: u64,
}

/// Spare headers, status bytes and element lists.
pub(crate) struct RequestPool<A: DmaAllocator> {
    headers: Vec<DmaBuffer<A>>,
    statuses: Vec<DmaBuffer<A>>,
    lists: Vec<Vec<DmaBuffer<A>>>,
    stats: PoolStats,
}

impl<A: DmaAllocator> RequestPool<A> {
    /// Spare blocks kept of each kind, at most (a queue of 1024 requests in flight and more).
    pub(crate) const LIMIT: usize = 1024;

    pub(crate) const fn new() -> Self {
        Self {
            headers: Vec::new(),
            statuses: Vec::new(),
            lists: Vec::new(),
            stats: PoolStats {
                allocated: 0,
                reused: 0,
                list_allocations: 0,
            },
        }
    }

    /// Headers, status bytes and lists handed out so far, by origin.
    pub(crate) const fn stats(&self) -> PoolStats {
        self.stats
    }

    /// A header block holding `header`: a spare one rewritten, or a new one (`None` if the
    /// allocator fails).
    pub(crate) fn header(&mut self, alloc: &A, header: &[u8; HEADER_LEN]) -> Option<DmaBuffer<A>> {
        if let Some(mut b) = self.headers.pop() {
            b.copy_from_slice(header);
            self.stats.reused += 1;
            return Some(b);
        }
        let b = dma_copy(alloc, header)?;
        self.stats.allocated += 1;
        Some(b)
    }

    /// A status byte set to [`STATUS_UNSET`].
    pub(crate) fn status(&mut self, alloc: &A) -> Option<DmaBuffer<A>> {
        if let Some(mut b) = self.statuses.pop() {
            b[0] = STATUS_UNSET;
            self.stats.reused += 1;
            return Some(b);
        }
        let b = dma_copy(alloc, &[STATUS_UNSET])?;
        self.stats.allocated += 1;
        Some(b)
    }

    /// An empty element list with room for at least two elements.
    pub(crate) fn list(&mut self) -> Vec<DmaBuffer<A>> {
        self.lists.pop().unwrap_or_else(|| {
            self.stats.list_allocations += 1;
            Vec::with_capacity(2)
        })
    }

    /// Takes back a header block (anything that is not a header's size is freed).
    pub(crate) fn put_header(&mut self, b: DmaBuffer<A>) {
        if b.len() == HEADER_LEN && self.headers.len() < Self::LIMIT {
            self.headers.push(b);
        }
    }

    /// Takes back a status byte (anything longer is freed).
    pub(crate) fn put_status(&mut self, b: DmaBuffer<A>) {
        if b.len() == 1 && self.statuses.len() < Self::LIMIT {
            self.statuses.push(b);
        }
    }

    /// Takes back an element list; its elements (if any) are freed.
    pub(crate) fn put_list(&mut self, mut list: Vec<DmaBuffer<A>>) {
        if list.capacity() >= 2 && self.lists.len() < Self::LIMIT {
            list.clear();
            self.lists.push(list);
        }
    }
}
