//! Indirect descriptor tables (virtio 1.2 §2.7.5.3 split, §2.8.19 packed), allocated in DMA
//! memory for one token and freed when the token comes back.

use allocator_api2::alloc::AllocError;

use crate::{
    dma::DmaAllocator,
    dma::DmaRegion,
    layout::{desc_f, desc_table, packed, split},
    token::{AvailBufferToken, element_addr},
};

fn new_table<A: DmaAllocator>(alloc: &A, count: u16) -> Result<DmaRegion<A>, AllocError> {
    DmaRegion::new_zeroed(alloc, desc_table(count).map_err(|_| AllocError)?)
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
        let mut flags = if writable { desc_f::WRITE } else { 0 };
        let mut next = 0;
        if !last {
            flags |= desc_f::NEXT;
            // n + 1 < count <= u16::MAX.
            next = (n + 1) as u16;
        }
        let desc = split::Desc {
            addr,
            len,
            flags,
            next,
        };
        // n < count <= u16::MAX.
        table.write_split_desc(n as u16, desc);
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
        let flags = if writable { desc_f::WRITE } else { 0 };
        // §2.8.19: the Buffer ID of an indirect table entry is reserved (0).
        let desc = packed::Desc { addr, len, id: 0 };
        // n < count <= u16::MAX.
        table.write_packed_desc(n as u16, desc, Some(flags));
    }
    Ok(table)
}
