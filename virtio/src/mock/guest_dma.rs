//! [`GuestDma`]: a [`DmaAllocator`](crate::DmaAllocator) over one `vm-memory` region. Guest
//! ("physical") addresses start at [`GUEST_BASE`], far from the host addresses the driver sees,
//! so a driver that hands the device a virtual address makes the device fault. Freed blocks are
//! poisoned.
//!
//! Everything here is safe code; the `Allocator` and `DmaAllocator` impls that forward to it
//! live in `dma.rs`, the one module of the crate where the trait contracts may be promised.

use alloc::{sync::Arc, vec, vec::Vec};
use core::{alloc::Layout, ptr::NonNull};
extern crate std;

use std::sync::Mutex;

use allocator_api2::alloc::AllocError;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::DmaBuffer;

/// Guest address of the first byte of the arena.
pub const GUEST_BASE: u64 = 0x7_4000_0000;

struct State {
    bump: usize,
    /// Free blocks by size class (power of two).
    free: Vec<Vec<usize>>,
    live: usize,
    /// Allocations ever made.
    total: usize,
}

struct Inner {
    mem: GuestMemoryMmap,
    /// The host address of the arena's first byte, its provenance exposed (so that block
    /// pointers can be made from it in safe code, with no raw pointer that is not `Send`).
    host: usize,
    size: usize,
    state: Mutex<State>,
}

/// The test DMA allocator; clones share one arena.
#[derive(Clone)]
pub struct GuestDma(Arc<Inner>);

impl core::fmt::Debug for GuestDma {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GuestDma")
            .field("size", &self.0.size)
            .finish()
    }
}

impl GuestDma {
    /// An arena of `size` bytes of guest memory at [`GUEST_BASE`].
    ///
    /// # Panics
    ///
    /// If the memory cannot be mapped.
    #[must_use]
    pub fn new(size: usize) -> Self {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(GUEST_BASE), size)])
            .expect("guest memory");
        let host = mem
            .get_host_address(GuestAddress(GUEST_BASE))
            .expect("host address")
            .expose_provenance();
        let state = State {
            bump: 0,
            free: vec![Vec::new(); 64],
            live: 0,
            total: 0,
        };
        Self(Arc::new(Inner {
            mem,
            host,
            size,
            state: Mutex::new(state),
        }))
    }

    /// The guest memory, as the device sees it.
    #[must_use]
    pub fn mem(&self) -> &GuestMemoryMmap {
        &self.0.mem
    }

    /// A DMA buffer holding `data`.
    ///
    /// # Panics
    ///
    /// If the arena is exhausted.
    #[must_use]
    pub fn buffer(&self, data: &[u8]) -> DmaBuffer<GuestDma> {
        DmaBuffer::from_slice_in(data, self.clone()).expect("DMA arena exhausted")
    }

    /// Number of live allocations (to check that indirect tables are freed).
    #[must_use]
    pub fn live(&self) -> usize {
        self.0.state.lock().unwrap().live
    }

    /// Number of allocations ever made (to check that steady-state requests allocate nothing).
    #[must_use]
    pub fn allocations(&self) -> usize {
        self.0.state.lock().unwrap().total
    }

    fn class(layout: Layout) -> usize {
        layout
            .size()
            .max(layout.align())
            .max(16)
            .next_power_of_two()
            .trailing_zeros() as usize
    }

    /// Allocates a block for `layout`: a disjoint range of the arena aligned to its power-of-two
    /// class (at least the layout's size and alignment, up to 4096). `Allocator::allocate`.
    pub(crate) fn allocate_block(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let class = Self::class(layout);
        let mut state = self.0.state.lock().unwrap();
        let offset = match state.free[class].pop() {
            Some(offset) => offset,
            None => {
                let align = (1usize << class).min(4096);
                let offset = state.bump.next_multiple_of(align);
                let end = offset + (1 << class);
                if end > self.0.size {
                    return Err(AllocError);
                }
                state.bump = end;
                offset
            }
        };
        state.live += 1;
        state.total += 1;
        let ptr = NonNull::new(core::ptr::with_exposed_provenance_mut::<u8>(
            self.0.host + offset,
        ))
        .ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
    }

    /// Poisons and frees a block that `allocate_block` returned for `layout`.
    /// `Allocator::deallocate`.
    ///
    /// # Panics
    ///
    /// If `ptr` is not in the arena: every block this allocator hands out is, even for a
    /// zero-sized layout, so such a pointer was never allocated here (`Allocator::deallocate`
    /// requires one that was). An empty `DmaBuffer` holds a dangling pointer and must never
    /// come here.
    pub(crate) fn deallocate_block(&self, ptr: NonNull<u8>, layout: Layout) {
        let offset = ptr.as_ptr().addr().wrapping_sub(self.0.host);
        assert!(
            offset < self.0.size,
            "deallocate of memory outside the DMA arena (never allocated here)"
        );
        let poison = vec![0xA5; 1 << Self::class(layout)];
        self.0
            .mem
            .write_slice(&poison, GuestAddress(GUEST_BASE + offset as u64))
            .expect("poison");
        let mut state = self.0.state.lock().unwrap();
        state.live -= 1;
        state.free[Self::class(layout)].push(offset);
    }

    /// The guest address of `ptr`, which points into the arena: `GUEST_BASE` + its offset, so
    /// contiguous within each block. `DmaAllocator::virt_to_phys`.
    ///
    /// # Panics
    ///
    /// If `ptr` is outside the arena.
    pub(crate) fn guest_addr(&self, ptr: NonNull<u8>) -> u64 {
        let offset = ptr.as_ptr().addr().wrapping_sub(self.0.host);
        assert!(
            offset < self.0.size,
            "virt_to_phys of memory outside the DMA arena"
        );
        GUEST_BASE + offset as u64
    }
}
