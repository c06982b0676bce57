//! Indirect descriptor tables (virtio 1.2 §2.7.5.3 split, §2.8.19 packed), allocated in DMA
//! memory for one token and freed when the token comes back.

use core::alloc::Layout;

use allocator_api2::alloc::AllocError;

use crate::{
    dma::DmaAllocator,
    dma::DmaRegion,
    token::{AvailBufferToken, element_addr},
};

/// Both layouts use 16-byte descriptors.
const DESC_SIZE: usize = 16;
/// `VIRTQ_DESC_F_NEXT` and `VIRTQ_DESC_F_WRITE`.
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;

fn new_table<A: DmaAllocator>(alloc: &A, count: u16) -> Result<DmaRegion<A>, AllocError> {
    let layout =
        Layout::from_size_align(DESC_SIZE * usize::from(count), 16).map_err(|_| AllocError)?;
    DmaRegion::new_zeroed(alloc, layout)
}

/// A split-ring indirect table: `struct virtq_desc` entries chained with NEXT/`next`
/// (§2.7.5.3.1: entries may not themselves be INDIRECT).
pub(crate) fn split_table<A: DmaAllocator>(
    alloc: &A,
    token: &AvailBufferToken<A>,
    count: u16,
) -> Result<DmaRegion<A>, AllocError> {
    let mut table = new_table(alloc, count)?;
    for (n, (buffer, writable)) in token.elements().enumerate() {
        let (addr, len) = element_addr(buffer);
        let last = n + 1 == usize::from(count);
        let mut flags = if writable { DESC_F_WRITE } else { 0 };
        let mut next = 0;
        if !last {
            flags |= DESC_F_NEXT;
            // n + 1 < count <= u16::MAX.
            next = (n + 1) as u16;
        }
        // n < count <= u16::MAX.
        table.write_desc(n as u16, addr, len, flags, Some(next));
    }
    Ok(table)
}

/// A packed-ring indirect table: `struct pvirtq_desc` entries read in order; WRITE is the only
/// valid flag and the Buffer ID is reserved (§2.8.19).
pub(crate) fn packed_table<A: DmaAllocator>(
    alloc: &A,
    token: &AvailBufferToken<A>,
    count: u16,
) -> Result<DmaRegion<A>, AllocError> {
    let mut table = new_table(alloc, count)?;
    for (n, (buffer, writable)) in token.elements().enumerate() {
        let (addr, len) = element_addr(buffer);
        let flags = if writable { DESC_F_WRITE } else { 0 };
        // n < count <= u16::MAX.
        table.write_desc(n as u16, addr, len, 0, Some(flags));
    }
    Ok(table)
}
