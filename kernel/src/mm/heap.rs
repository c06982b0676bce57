//! The kernel heap behind `alloc`: a `linked_list_allocator` over one physically contiguous run
//! of frames, reached through the direct map.

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Gives the heap `[start, start + size)`.
///
/// # Safety
/// The range must be mapped, writable, unused by anything else for the rest of the kernel's life,
/// and this must be called once.
pub(crate) unsafe fn init(start: *mut u8, size: usize) {
    // SAFETY: the caller hands over exclusive use of the range.
    unsafe { HEAP.lock().init(start, size) };
}

/// `(size, used)` of the heap in bytes.
pub(crate) fn usage() -> (usize, usize) {
    let heap = HEAP.lock();
    (heap.size(), heap.used())
}
