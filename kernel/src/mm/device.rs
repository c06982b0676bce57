//! [`DeviceAlloc`]: physically contiguous memory a device may read and write.

use core::{alloc::Layout, ops::Range, ptr::NonNull};

use allocator_api2::alloc::{AllocError, Allocator};
use linked_list_allocator::Heap;
use spin::{Mutex, Once};
use x86_64::instructions::interrupts::without_interrupts;

use super::PHYS_OFFSET;

/// The pool: one physically contiguous run of frames, reached through the direct map.
static POOL: Mutex<Heap> = Mutex::new(Heap::empty());
/// The pool's physical range, set once by `init`.
static POOL_PHYS: Once<Range<u64>> = Once::new();

/// Hands `[phys, phys + size)` to the pool.
///
/// # Safety
/// The range must be RAM in the direct map, owned by nothing else for the rest of the kernel's
/// life, and this must be called once.
pub(crate) unsafe fn init(phys: u64, size: usize) {
    POOL_PHYS.call_once(|| phys..phys + size as u64);
    // SAFETY: the caller hands over exclusive use of the range, which the direct map maps writable.
    without_interrupts(|| unsafe { POOL.lock().init((PHYS_OFFSET + phys) as *mut u8, size) });
}

/// `(size, used)` of the pool in bytes.
pub(crate) fn usage() -> (usize, usize) {
    without_interrupts(|| {
        let pool = POOL.lock();
        (pool.size(), pool.used())
    })
}

/// The allocator for memory a device may touch (rings, buffers).
///
/// Design: at boot the kernel takes one physically contiguous run of frames (an eighth of RAM,
/// between 2 MiB and 256 MiB, see [`stats`](super::stats)) and runs a first-fit linked-list heap
/// over it, reached through the direct map. So every allocation, of any size or alignment, is
/// physically contiguous; its physical address is `virt - PHYS_OFFSET`, and a page-aligned request
/// is page-aligned physically too. The memory is ordinary write-back RAM (coherent on x86 for PCI
/// devices).
///
/// Use it with `allocator-api2`: `Vec<u8, DeviceAlloc>`, `Box<T, DeviceAlloc>`. Zero-sized requests
/// get a dangling pointer that is not in the pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceAlloc;

impl DeviceAlloc {
    /// The pool's physical range (empty before `mm::init`).
    pub fn pool() -> Range<u64> {
        POOL_PHYS.get().cloned().unwrap_or(0..0)
    }

    /// The physical address of `ptr`, which must point into memory from this allocator.
    ///
    /// # Panics
    /// If `ptr` is not inside the pool (e.g. a heap pointer, or a physical address passed by
    /// mistake): such a mix-up would otherwise hand a device a wrong address. The check is two
    /// comparisons, so it stays on in release builds.
    pub fn virt_to_phys<T: ?Sized>(ptr: *const T) -> u64 {
        let virt = ptr.cast::<u8>() as u64;
        let phys = virt.wrapping_sub(PHYS_OFFSET);
        assert!(
            Self::pool().contains(&phys),
            "DeviceAlloc::virt_to_phys({virt:#x}): not a DeviceAlloc pointer"
        );
        phys
    }

    /// The virtual address of the pool's physical address `phys`.
    ///
    /// # Panics
    /// If `phys` is not inside the pool (e.g. a virtual address passed by mistake).
    pub fn phys_to_virt(phys: u64) -> *mut u8 {
        assert!(
            Self::pool().contains(&phys),
            "DeviceAlloc::phys_to_virt({phys:#x}): not in the DeviceAlloc pool"
        );
        (PHYS_OFFSET + phys) as *mut u8
    }
}

// SAFETY: memory returned by `allocate` is a block of the pool handed out by the heap exactly once,
// valid until it is deallocated; `Copy` clones share the single global pool, so memory allocated
// through one may be freed through another.
unsafe impl Allocator for DeviceAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            let dangling = NonNull::new(core::ptr::without_provenance_mut::<u8>(layout.align()))
                .ok_or(AllocError)?;
            return Ok(NonNull::slice_from_raw_parts(dangling, 0));
        }
        let ptr = without_interrupts(|| POOL.lock().allocate_first_fit(layout))
            .map_err(|()| AllocError)?;
        Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        // SAFETY: the caller guarantees `ptr` was allocated here with `layout` and is not used any
        // more.
        without_interrupts(|| unsafe { POOL.lock().deallocate(ptr, layout) });
    }
}
