//! The physical frame allocator: the bitmap of `vireo_kcore::frames` over RAM the kernel reserves
//! for it, one bit per 4 KiB frame up to the end of the highest RAM range of the memory map.

pub use vireo_kcore::frames::FRAME_SIZE;

/// The kernel's bitmap: its words live in RAM the allocator reserves for itself.
pub(crate) type FrameBitmap = vireo_kcore::frames::FrameBitmap<BitmapWords>;

/// The bitmap's storage: `len` words at a raw address, reached through the identity map before the
/// switch to the kernel's page tables and through the direct map after.
#[derive(Debug)]
pub(crate) struct BitmapWords {
    words: *mut u64,
    len: usize,
}

// SAFETY: the storage is owned exclusively by the bitmap, which is only ever used behind the
// memory lock.
unsafe impl Send for BitmapWords {}

impl BitmapWords {
    /// `len` words at `words`.
    ///
    /// # Safety
    /// `words` must be valid for reads and writes of `len` words, 8-byte aligned, and used by
    /// nothing else for as long as the bitmap lives there.
    pub(crate) unsafe fn new(words: *mut u64, len: usize) -> Self {
        Self { words, len }
    }

    /// Moves the storage pointer to a new mapping of the same memory.
    ///
    /// # Safety
    /// `words` must map the same physical memory as the current pointer (with the same guarantees
    /// as [`new`](Self::new)).
    pub(crate) unsafe fn relocate(&mut self, words: *mut u64) {
        self.words = words;
    }
}

impl AsRef<[u64]> for BitmapWords {
    fn as_ref(&self) -> &[u64] {
        // SAFETY: `words` is valid for `len` words and used by nothing else (see `new`).
        unsafe { core::slice::from_raw_parts(self.words, self.len) }
    }
}

impl AsMut<[u64]> for BitmapWords {
    fn as_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in `as_ref`; `&mut self` gives exclusive access.
        unsafe { core::slice::from_raw_parts_mut(self.words, self.len) }
    }
}

/// Takes one free 4 KiB frame of RAM; returns its physical address.
pub fn alloc_frame() -> Option<u64> {
    super::space::with(|m| m.frames.alloc(usize::MAX)).map(|f| f as u64 * FRAME_SIZE)
}

/// Takes `count` physically contiguous free frames whose first physical address is a multiple of
/// `align` bytes (a power of two; anything below [`FRAME_SIZE`] means frame alignment); returns the
/// first frame's physical address.
///
/// # Panics
/// If `align` is not a power of two.
pub fn alloc_frames(count: usize, align: u64) -> Option<u64> {
    assert!(
        align.is_power_of_two(),
        "frame alignment must be a power of two"
    );
    if count == 0 {
        return None;
    }
    let align = (align / FRAME_SIZE).max(1) as usize;
    super::space::with(|m| m.frames.alloc_run(count, align, usize::MAX))
        .map(|f| f as u64 * FRAME_SIZE)
}

/// Gives back `count` frames starting at physical `phys`, taken earlier from [`alloc_frame`] or
/// [`alloc_frames`].
///
/// # Panics
/// If `phys` is not frame-aligned, or a frame is already free (a double free), or a frame is not
/// one the allocator manages (outside RAM, low memory, the image, the allocator's own bitmap).
///
/// # Safety
/// Nothing may use the frames any more: no mapping other than the direct map may point at them and
/// no reference into them may be live.
pub unsafe fn free_frames(phys: u64, count: usize) {
    assert!(
        phys.is_multiple_of(FRAME_SIZE),
        "freeing an unaligned frame"
    );
    let end = phys + count as u64 * FRAME_SIZE;
    let info = crate::boot_info();
    assert!(
        super::space::ram_ranges(info).any(|r| r.start <= phys && end <= r.end),
        "freeing frames {phys:#x}..{end:#x} outside RAM"
    );
    let image = vireo_boot::image_layout().range();
    super::space::with(|m| {
        let start_info = m.start_info_page..m.start_info_page + FRAME_SIZE;
        for r in [
            0..super::space::LOW_RESERVED,
            image,
            m.bitmap_phys.clone(),
            start_info,
        ] {
            assert!(
                end <= r.start || r.end <= phys,
                "freeing frames {phys:#x}..{end:#x} the kernel reserves"
            );
        }
        m.frames.free_run((phys / FRAME_SIZE) as usize, count);
    });
}
