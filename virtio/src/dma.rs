//! DMA memory: the contract the kernel's allocator fulfils, and the device-shared regions built
//! on it. This is the crate's only module allowed `unsafe`.
//!
//! A [`DmaRegion`] is a zeroed block from a [`DmaAllocator`] that the device may read or write at
//! any time. It is therefore never turned into a Rust reference: every access is a volatile,
//! little-endian load or store at an offset that is bounds- and alignment-checked.

use core::{alloc::Layout, ptr::NonNull};

use allocator_api2::alloc::{AllocError, Allocator};

use crate::layout::{DESC_SIZE, Field, packed, split};

/// A little-endian integer of ring memory that [`DmaRegion`] loads and stores. Sealed: only
/// integer types, valid for every bit pattern a device may write, implement it.
pub(crate) trait Word: Copy + sealed::Sealed {
    /// Converts a value loaded from memory (little-endian) to native order.
    fn le_to_ne(self) -> Self;
    /// Converts a native value to little-endian for storing.
    fn ne_to_le(self) -> Self;
}

mod sealed {
    /// Keeps [`Word`](super::Word) to the integer types below.
    pub trait Sealed {}
}

macro_rules! word {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Word for $t {
            #[inline(always)]
            fn le_to_ne(self) -> Self {
                <$t>::from_le(self)
            }
            #[inline(always)]
            fn ne_to_le(self) -> Self {
                <$t>::to_le(self)
            }
        }
    )*};
}
word!(u16, u32, u64);

/// An allocator of memory that a device may read and write (DMA), with address translation.
///
/// Buffer tokens hold their elements as [`DmaBuffer<A>`] blocks from it, and the queues allocate
/// their rings and indirect descriptor tables from it, so everything the device sees lives in this
/// memory.
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
pub struct DmaRegion<A: DmaAllocator> {
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
        // At least 8-byte alignment (more than any ring needs, §2.7 / §2.8.10.1), so that an
        // access is aligned exactly when its offset is a multiple of its alignment: `at` then checks
        // the offset, which the compiler can usually prove, instead of the pointer.
        let layout = Layout::from_size_align(layout.size().max(1), layout.align().max(8))
            .map_err(|_| AllocError)?;
        let ptr = alloc.allocate_zeroed(layout)?.cast::<u8>();
        Ok(Self {
            ptr,
            layout,
            alloc: alloc.clone(),
        })
    }

    /// The device-visible address of the first byte.
    #[inline]
    pub(crate) fn phys(&self) -> u64 {
        self.alloc.virt_to_phys(self.ptr)
    }

    /// A pointer to a `T` at byte `offset`, after checking that it is in bounds and aligned.
    /// Offsets are computed by the driver from its own indices, never taken from the device,
    /// so a failure here is a bug in this crate, not device misbehaviour.
    ///
    /// The base is at least 8-byte aligned (`new_zeroed`) and so is every `T` used here, so an
    /// offset that is a multiple of `T`'s alignment gives an aligned pointer.
    #[inline(always)]
    fn at<T>(&self, offset: usize) -> *mut T {
        const { assert!(align_of::<T>() <= 8) };
        assert!(
            offset <= self.layout.size().wrapping_sub(size_of::<T>())
                && size_of::<T>() <= self.layout.size(),
            "ring access out of bounds"
        );
        assert!(
            offset.is_multiple_of(align_of::<T>()),
            "misaligned ring access"
        );
        self.ptr.as_ptr().wrapping_add(offset).cast::<T>()
    }

    /// Volatile little-endian load of `field`.
    #[inline(always)]
    pub(crate) fn read<T: Word>(&self, field: Field<T>) -> T {
        let ptr = self.at::<T>(field.offset());
        // SAFETY: `at` checked that `ptr` is aligned and inside the live block this region owns;
        // `Word` is sealed to integer types, for which any bit pattern the device wrote is valid.
        unsafe { ptr.read_volatile() }.le_to_ne()
    }

    /// Volatile little-endian store of `value` into `field`.
    #[inline(always)]
    pub(crate) fn write<T: Word>(&mut self, field: Field<T>, value: T) {
        let ptr = self.at::<T>(field.offset());
        // SAFETY: `at` checked that `ptr` is aligned and inside the live block this region owns;
        // `&mut self` rules out a concurrent store through this region.
        unsafe { ptr.write_volatile(value.ne_to_le()) }
    }

    /// A pointer to the 16-byte descriptor at byte `offset`, checked once for the whole
    /// descriptor instead of once per field; 8-byte aligned, so every field is aligned.
    #[inline(always)]
    fn desc_at(&self, offset: usize) -> *mut u8 {
        const { assert!(size_of::<[u64; 2]>() == DESC_SIZE) };
        self.at::<[u64; 2]>(offset).cast::<u8>()
    }

    /// Writes split descriptor `index` of a descriptor table (`struct virtq_desc`, §2.7.5).
    #[inline(always)]
    pub(crate) fn write_split_desc(&mut self, index: u16, desc: split::Desc) {
        let base = self.desc_at(split::desc(index));
        // The 16 bytes at `base` were checked by `desc_at`; the fields' offsets come from `layout`.
        // SAFETY: those bytes are inside the live block this region owns and 8-byte aligned, so
        // each naturally aligned field of `virtq_desc` is in bounds and aligned; `&mut self` rules
        // out a concurrent store through this region.
        unsafe {
            let field = |offset| base.add(offset);
            field(split::DESC_ADDR)
                .cast::<u64>()
                .write_volatile(desc.addr.to_le());
            field(split::DESC_LEN)
                .cast::<u32>()
                .write_volatile(desc.len.to_le());
            field(split::DESC_FLAGS)
                .cast::<u16>()
                .write_volatile(desc.flags.to_le());
            field(split::DESC_NEXT)
                .cast::<u16>()
                .write_volatile(desc.next.to_le());
        }
    }

    /// Writes `addr`, `len` and `id` of the packed descriptor at ring position `pos`
    /// (`struct pvirtq_desc`, §2.8.13), and its `flags` when given. With `flags` `None` they are
    /// left for the caller to write later: a packed head's flags make the chain available and
    /// must be written after the rest of it (§2.8.21.1).
    #[inline(always)]
    pub(crate) fn write_packed_desc(&mut self, pos: u16, desc: packed::Desc, flags: Option<u16>) {
        let base = self.desc_at(packed::desc(pos));
        // SAFETY: as in `write_split_desc`, for the fields of `pvirtq_desc`.
        unsafe {
            let field = |offset| base.add(offset);
            field(packed::DESC_ADDR)
                .cast::<u64>()
                .write_volatile(desc.addr.to_le());
            field(packed::DESC_LEN)
                .cast::<u32>()
                .write_volatile(desc.len.to_le());
            field(packed::DESC_ID)
                .cast::<u16>()
                .write_volatile(desc.id.to_le());
            if let Some(flags) = flags {
                field(packed::DESC_FLAGS)
                    .cast::<u16>()
                    .write_volatile(flags.to_le());
            }
        }
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
            .field("phys", &format_args!("{:#x}", self.phys()))
            .field("len", &self.layout.size())
            .finish()
    }
}

/// One buffer element: bytes in [`DmaAllocator`] memory that the device reads or writes while
/// the token is in flight.
///
/// It is deliberately not a `Box<[u8], A>`: a `Box` asserts unique access for as long as it
/// lives, but the device writes into the buffer while the token is in flight. `DmaBuffer` keeps
/// only a raw pointer and creates a Rust reference to the bytes solely when the driver asks
/// for one, which it can do only while it holds the buffer (not while the device does).
pub struct DmaBuffer<A: DmaAllocator> {
    ptr: NonNull<u8>,
    /// The bytes the buffer shows (and a descriptor for it describes); at most `capacity`.
    len: usize,
    /// The bytes allocated (and zeroed) in `new_zeroed_in`.
    capacity: usize,
    alloc: A,
}

// SAFETY: the buffer exclusively owns its block, like a `Box<[u8], A>`.
unsafe impl<A: DmaAllocator + Send> Send for DmaBuffer<A> {}
// SAFETY: `&DmaBuffer` only gives out `&[u8]`.
unsafe impl<A: DmaAllocator + Sync> Sync for DmaBuffer<A> {}

impl<A: DmaAllocator> DmaBuffer<A> {
    /// A zeroed buffer of `len` bytes.
    ///
    /// # Errors
    ///
    /// [`AllocError`] if `alloc` cannot provide the memory.
    pub fn new_zeroed_in(len: usize, alloc: A) -> Result<Self, AllocError> {
        if len == 0 {
            let ptr = NonNull::dangling();
            let capacity = 0;
            return Ok(Self {
                ptr,
                len,
                capacity,
                alloc,
            });
        }
        let layout = Layout::array::<u8>(len).map_err(|_| AllocError)?;
        let ptr = alloc.allocate_zeroed(layout)?.cast::<u8>();
        let capacity = len;
        Ok(Self {
            ptr,
            len,
            capacity,
            alloc,
        })
    }

    /// The bytes allocated: the largest length [`set_len`](Self::set_len) accepts.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Shows only the first `len` bytes of the allocation (a descriptor for the buffer then
    /// describes `len` bytes), or all of them again; no reallocation. Returns `false` and
    /// changes nothing when `len` exceeds the [`capacity`](Self::capacity).
    ///
    /// This lets a driver reuse one fixed-size buffer for frames or commands of varying length.
    pub fn set_len(&mut self, len: usize) -> bool {
        if len > self.capacity {
            return false;
        }
        self.len = len;
        true
    }

    /// A buffer holding a copy of `data`.
    ///
    /// # Errors
    ///
    /// [`AllocError`] if `alloc` cannot provide the memory.
    pub fn from_slice_in(data: &[u8], alloc: A) -> Result<Self, AllocError> {
        let mut buffer = Self::new_zeroed_in(data.len(), alloc)?;
        buffer.copy_from_slice(data);
        Ok(buffer)
    }

    /// The allocator that owns the memory.
    #[must_use]
    pub fn allocator(&self) -> &A {
        &self.alloc
    }

    /// The device-visible address of the first byte; `None` for an empty buffer, which has no
    /// memory.
    #[inline]
    pub(crate) fn phys(&self) -> Option<u64> {
        (self.len > 0).then(|| self.alloc.virt_to_phys(self.ptr))
    }
}

impl<A: DmaAllocator> core::ops::Deref for DmaBuffer<A> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        // A well-behaved device writes only while the queue holds the buffer (no `&self` then); a
        // misbehaving one can only change plain bytes, which have no invariants. SAFETY: `ptr` is
        // valid for `capacity >= len` initialised bytes (zeroed in `new_zeroed_in`, or dangling
        // with capacity 0).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<A: DmaAllocator> core::ops::DerefMut for DmaBuffer<A> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes the reference unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<A: DmaAllocator> Drop for DmaBuffer<A> {
    fn drop(&mut self) {
        // A non-empty buffer was allocated with exactly this (then valid) layout.
        if let (true, Ok(layout)) = (self.capacity > 0, Layout::array::<u8>(self.capacity)) {
            // SAFETY: `ptr` was allocated by `alloc` in `new_zeroed_in` with `layout` and is
            // deallocated only here, once.
            unsafe { self.alloc.deallocate(self.ptr, layout) }
        }
    }
}

impl<A: DmaAllocator> core::fmt::Debug for DmaBuffer<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DmaBuffer")
            .field("virt", &self.ptr)
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// The test DMA allocators' `Allocator` and `DmaAllocator` impls (feature `test-utils`); their
/// logic is safe code in [`mock`](crate::mock).
#[cfg(feature = "test-utils")]
mod test_utils {
    extern crate std;

    use core::{
        alloc::Layout,
        ptr::NonNull,
        sync::atomic::{AtomicU64, Ordering},
    };
    use std::alloc::{GlobalAlloc, System};

    use allocator_api2::alloc::{AllocError, Allocator};

    use super::DmaAllocator;
    use crate::mock::GuestDma;

    // SAFETY: `allocate_block` hands out disjoint ranges of the arena, each aligned to its
    // power-of-two class (at least the layout's size and alignment, up to 4096), valid until
    // `deallocate_block`; clones share the arena through an `Arc`.
    unsafe impl Allocator for GuestDma {
        fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            self.allocate_block(layout)
        }

        // SAFETY (of the caller, by the trait's contract): `ptr` came from `allocate` with
        // `layout`; `deallocate_block` checks both against the arena anyway.
        unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
            self.deallocate_block(ptr, layout);
        }
    }

    // SAFETY: the arena is one contiguous guest region, so guest address = GUEST_BASE + offset
    // (what `guest_addr` returns) is the device's address of every byte, and it is contiguous
    // within each block.
    unsafe impl DmaAllocator for GuestDma {
        fn virt_to_phys(&self, ptr: NonNull<u8>) -> u64 {
            self.guest_addr(ptr)
        }
    }

    static HOST_DMA_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

    /// Identity-mapped DMA memory from the host's `System` allocator (physical = virtual), for
    /// benchmarks and fuzz targets in which this process plays the device through the ring
    /// addresses. Counts its allocations process-wide.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct HostDma;

    impl HostDma {
        /// Allocations made by every `HostDma` of the process so far.
        #[must_use]
        pub fn allocations() -> u64 {
            HOST_DMA_ALLOCATIONS.load(Ordering::Relaxed)
        }
    }

    // SAFETY: forwards to `System`, whose blocks are valid until deallocated.
    unsafe impl Allocator for HostDma {
        #[inline]
        fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            HOST_DMA_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            if layout.size() == 0 {
                return Ok(NonNull::slice_from_raw_parts(NonNull::dangling(), 0));
            }
            // SAFETY: `layout` has non-zero size (checked above).
            let ptr = NonNull::new(unsafe { System.alloc_zeroed(layout) }).ok_or(AllocError)?;
            Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
        }

        #[inline]
        // SAFETY (of the caller, by the trait's contract): `ptr` came from `allocate` with
        // `layout`.
        unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
            if layout.size() != 0 {
                // SAFETY: `ptr` came from `allocate` with `layout`, which for a non-zero size
                // got it from `System`.
                unsafe { System.dealloc(ptr.as_ptr(), layout) }
            }
        }
    }

    // SAFETY: host memory stands in for device memory and the "device" is this process, so
    // the virtual address is the address it uses.
    unsafe impl DmaAllocator for HostDma {
        // Inlined across crates like the benchmark's own allocator was: it is on every
        // dispatch's path.
        #[inline]
        fn virt_to_phys(&self, ptr: NonNull<u8>) -> u64 {
            ptr.as_ptr() as u64
        }
    }
}

#[cfg(feature = "test-utils")]
pub use self::test_utils::HostDma;
