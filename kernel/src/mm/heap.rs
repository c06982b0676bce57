//! The kernel heap behind `alloc`: a `linked_list_allocator` first-fit heap over one physically
//! contiguous run of frames, reached through the direct map.
//!
//! The lock is taken with interrupts off, so an interrupt handler that allocates cannot deadlock
//! on a lock its own CPU holds.

use core::{
    alloc::{GlobalAlloc, Layout},
    ptr::{self, NonNull},
};

use linked_list_allocator::Heap;
use spin::Mutex;
use x86_64::instructions::interrupts::without_interrupts;

/// The global allocator: a heap behind an interrupt-safe lock.
struct KernelHeap(Mutex<Heap>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(Mutex::new(Heap::empty()));

// SAFETY: blocks come from `Heap::allocate_first_fit`, which hands out each part of the heap's range
// once until it is given back; before `init` the heap is empty and every request fails.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        without_interrupts(|| self.0.lock().allocate_first_fit(layout))
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(ptr) = NonNull::new(ptr) else {
            return;
        };
        // SAFETY: the caller guarantees `ptr` came from `alloc` with `layout` and is not used any
        // more.
        without_interrupts(|| unsafe { self.0.lock().deallocate(ptr, layout) });
    }
}

/// Gives the heap `[start, start + size)`.
///
/// # Safety
/// The range must be mapped, writable, unused by anything else for the rest of the kernel's life,
/// and this must be called once.
pub(crate) unsafe fn init(start: *mut u8, size: usize) {
    // SAFETY: the caller hands over exclusive use of the range.
    without_interrupts(|| unsafe { HEAP.0.lock().init(start, size) });
}

/// `(size, used)` of the heap in bytes.
pub(crate) fn usage() -> (usize, usize) {
    without_interrupts(|| {
        let heap = HEAP.0.lock();
        (heap.size(), heap.used())
    })
}
