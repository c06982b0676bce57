//! DMA memory: the contract the kernel's allocator fulfils, and the device-shared regions built
//! on it. This is the crate's only module allowed `unsafe`.
//!
//! A [`DmaRegion`] is a zeroed block from a [`DmaAllocator`] that the device may read or write at
//! any time. It is therefore never turned into a Rust reference: every access is a volatile,
//! little-endian load or store at an offset that is bounds- and alignment-checked.

use core::{alloc::Layout, ptr::NonNull};

use allocator_api2::alloc::{AllocError, Allocator};

/// An allocator of memory that a device may read and write (DMA), with address translation.
///
/// Buffer tokens hold their elements as `Box<[u8], A>` and the queues allocate their rings and
/// indirect descriptor tables from it, so everything the device sees lives in this memory.
///
/// # Implementation safety
///
/// An implementer must guarantee that:
/// 1. every block returned by the [`Allocator`] methods is physically contiguous, may be read and
///    written by the device, and stays so until it is deallocated;
/// 2. for every address `p` inside a live block allocated by this allocator (or a clone of it),
///    [`virt_to_phys`](Self::virt_to_phys) returns the address the device uses to reach `p`, and
///    within one block `virt_to_phys(p + k) == virt_to_phys(p) + k`;
/// 3. clones share one memory pool: a block allocated through one clone may be deallocated
///    through another (as [`Allocator`] already requires of `Clone` implementations).
///
/// The queues write device-visible addresses computed by this method into rings the device
/// trusts; a wrong translation lets the device read or write arbitrary memory.
pub unsafe trait DmaAllocator: Allocator + Clone {
    /// Returns the device-visible (physical or IOVA) address of `ptr`, which points into a live
    /// block allocated by this allocator.
    fn virt_to_phys(&self, ptr: NonNull<u8>) -> u64;
}

/// Sends a driver→device notification ("kick") for one virtqueue (virtio 1.2 §2.9).
pub trait Notifier {
    /// Notifies the device that queue `queue_index` has new available buffers.
    ///
    /// `notification_data` is `Some` exactly when `VIRTIO_F_NOTIFICATION_DATA` was negotiated;
    /// it then holds the complete 32-bit value of virtio 1.2 §2.9 that the transport writes to
    /// the notify register: `vqn` in bits 0..16, `next_off` in bits 16..31 and `next_wrap` in
    /// bit 31.
    fn notify(&self, queue_index: u16, notification_data: Option<u32>);
}

/// A block of device-shared memory accessed only through checked volatile accesses.
pub(crate) struct DmaRegion<A: DmaAllocator> {
    ptr: NonNull<u8>,
    layout: Layout,
    alloc: A,
}

// SAFETY: the region exclusively owns its block (like a `Box`); moving it to another thread moves
// that ownership along with the allocator, which must itself be `Send`.
unsafe impl<A: DmaAllocator + Send> Send for DmaRegion<A> {}
// SAFETY: through `&DmaRegion` only volatile loads are possible; all stores need `&mut`.
unsafe impl<A: DmaAllocator + Sync> Sync for DmaRegion<A> {}

impl<A: DmaAllocator> DmaRegion<A> {
    /// Allocates a zeroed region of `layout` (at least one byte) from `alloc`.
    pub(crate) fn new_zeroed(alloc: &A, layout: Layout) -> Result<Self, AllocError> {
        let layout = Layout::from_size_align(layout.size().max(1), layout.align())
            .map_err(|_| AllocError)?;
        let ptr = alloc.allocate_zeroed(layout)?.cast::<u8>();
        Ok(Self {
            ptr,
            layout,
            alloc: alloc.clone(),
        })
    }

    /// The device-visible address of the first byte.
    pub(crate) fn phys(&self) -> u64 {
        self.alloc.virt_to_phys(self.ptr)
    }

    /// A pointer to a `T` at byte `offset`, after checking that it is in bounds and aligned.
    /// Offsets are computed by the driver from its own indices, never taken from the device,
    /// so a failure here is a bug in this crate, not device misbehaviour.
    fn at<T>(&self, offset: usize) -> *mut T {
        let end = offset.checked_add(size_of::<T>());
        assert!(
            end.is_some_and(|end| end <= self.layout.size()),
            "ring access out of bounds"
        );
        let ptr = self.ptr.as_ptr().wrapping_add(offset).cast::<T>();
        assert!(ptr.is_aligned(), "misaligned ring access");
        ptr
    }

    /// Volatile little-endian `u16` load at `offset`.
    pub(crate) fn read_u16(&self, offset: usize) -> u16 {
        let ptr = self.at::<u16>(offset);
        // SAFETY: `at` checked that `ptr` is aligned and inside the live block this region owns;
        // any bit pattern is a valid `u16`, whatever the device wrote.
        u16::from_le(unsafe { ptr.read_volatile() })
    }

    /// Volatile little-endian `u32` load at `offset`.
    pub(crate) fn read_u32(&self, offset: usize) -> u32 {
        let ptr = self.at::<u32>(offset);
        // SAFETY: as in `read_u16`.
        u32::from_le(unsafe { ptr.read_volatile() })
    }

    /// Volatile little-endian `u16` store at `offset`.
    pub(crate) fn write_u16(&mut self, offset: usize, value: u16) {
        let ptr = self.at::<u16>(offset);
        // SAFETY: `at` checked that `ptr` is aligned and inside the live block this region owns;
        // `&mut self` rules out a concurrent store through this region.
        unsafe { ptr.write_volatile(value.to_le()) }
    }

    /// Volatile little-endian `u32` store at `offset`.
    pub(crate) fn write_u32(&mut self, offset: usize, value: u32) {
        let ptr = self.at::<u32>(offset);
        // SAFETY: as in `write_u16`.
        unsafe { ptr.write_volatile(value.to_le()) }
    }

    /// Volatile little-endian `u64` store at `offset`.
    pub(crate) fn write_u64(&mut self, offset: usize, value: u64) {
        let ptr = self.at::<u64>(offset);
        // SAFETY: as in `write_u16`.
        unsafe { ptr.write_volatile(value.to_le()) }
    }

    /// Zeroes the whole region (queue reset).
    pub(crate) fn zero(&mut self) {
        for offset in 0..self.layout.size() {
            let ptr = self.at::<u8>(offset);
            // SAFETY: as in `write_u16`.
            unsafe { ptr.write_volatile(0) }
        }
    }
}

impl<A: DmaAllocator> Drop for DmaRegion<A> {
    fn drop(&mut self) {
        // SAFETY: `ptr` was allocated by `alloc` (or a clone sharing its pool) with exactly
        // `layout` in `new_zeroed`, and is deallocated only here, once.
        unsafe { allocator_api2::alloc::Allocator::deallocate(&self.alloc, self.ptr, self.layout) }
    }
}

impl<A: DmaAllocator> core::fmt::Debug for DmaRegion<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DmaRegion")
            .field("virt", &self.ptr)
            .field("phys", &self.phys())
            .field("len", &self.layout.size())
            .finish()
    }
}
