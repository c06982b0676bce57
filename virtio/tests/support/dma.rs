//! A [`DmaAllocator`] over one `vm-memory` region (shared with the drivers' tests, which include
//! this file): guest ("physical") addresses start at
//! [`GUEST_BASE`], far from the host addresses the driver sees, so a driver that hands the
//! device a virtual address makes the device fault. Freed blocks are poisoned.

use std::{
    ptr::NonNull,
    sync::{Arc, Mutex},
};

use vireo_virtio::{
    DmaAllocator, DmaBuffer,
    allocator_api2::alloc::{AllocError, Allocator, Layout},
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

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
    host: *mut u8,
    size: usize,
    state: Mutex<State>,
}

// SAFETY: `host` points into the mapping owned by `mem`, which lives as long as `Inner`; all
// mutable state is behind the mutex.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

/// The test DMA allocator; clones share one arena.
#[derive(Clone)]
pub struct GuestDma(Arc<Inner>);

impl std::fmt::Debug for GuestDma {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestDma")
            .field("size", &self.0.size)
            .finish()
    }
}

impl GuestDma {
    pub fn new(size: usize) -> Self {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(GUEST_BASE), size)])
            .expect("guest memory");
        let host = mem
            .get_host_address(GuestAddress(GUEST_BASE))
            .expect("host address");
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
    pub fn mem(&self) -> &GuestMemoryMmap {
        &self.0.mem
    }

    /// A DMA buffer holding `data`.
    pub fn buffer(&self, data: &[u8]) -> DmaBuffer<GuestDma> {
        DmaBuffer::from_slice_in(data, self.clone()).expect("DMA arena exhausted")
    }

    /// Number of live allocations (to check that indirect tables are freed).
    pub fn live(&self) -> usize {
        self.0.state.lock().unwrap().live
    }

    /// Number of allocations ever made (to check that steady-state requests allocate nothing).
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
}

// SAFETY: blocks are disjoint ranges of the arena, each aligned to its power-of-two class (at
// least the layout's size and alignment, up to 4096), valid until deallocated; clones share the
// arena through the `Arc`.
unsafe impl Allocator for GuestDma {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
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
        let ptr = NonNull::new(self.0.host.wrapping_add(offset)).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // Empty blocks hold a dangling pointer that was never allocated here.
        let inside = (ptr.as_ptr() as usize).wrapping_sub(self.0.host as usize) < self.0.size;
        if layout.size() == 0 && !inside {
            return;
        }
        let offset = ptr.as_ptr() as usize - self.0.host as usize;
        let poison = vec![0xA5; 1 << Self::class(layout)];
        self.0
            .mem
            .write_slice(&poison, GuestAddress(GUEST_BASE + offset as u64))
            .expect("poison");
        let mut state = self.0.state.lock().unwrap();
        state.live -= 1;
        state.free[Self::class(layout)].push(offset);
    }
}

// SAFETY: the arena is one contiguous guest region, so guest address = GUEST_BASE + offset is
// the device's address of every byte, and it is contiguous within each block.
unsafe impl DmaAllocator for GuestDma {
    fn virt_to_phys(&self, ptr: NonNull<u8>) -> u64 {
        let offset = (ptr.as_ptr() as usize).wrapping_sub(self.0.host as usize);
        assert!(
            offset < self.0.size,
            "virt_to_phys of memory outside the DMA arena"
        );
        GUEST_BASE + offset as u64
    }
}
