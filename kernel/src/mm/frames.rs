//! The physical frame allocator: one bit per 4 KiB frame, from physical 0 to the end of the highest
//! RAM range of the memory map.
//!
//! A set bit is a free frame. Every bit starts clear ("in use"); only RAM ranges of the memory map
//! are then set, and the reserved parts (the first MiB, the kernel image, the bitmap itself, the
//! `hvm_start_info` page) cleared again, so nothing outside usable RAM can ever be handed out, and a
//! frame is handed out at most once until it is freed.
//!
//! Searches go a 64-bit word at a time: a single-frame allocation starts at a hint below which every
//! word is known to be full, so thousands of allocations in a row cost O(1) each; a contiguous run
//! skips whole full words and jumps past every used frame it meets.

/// The size of a frame and of a small page.
pub const FRAME_SIZE: u64 = 4096;

/// The bitmap (its storage lives in RAM the allocator reserves for itself).
#[derive(Debug)]
pub(crate) struct FrameBitmap {
    /// Where the bitmap words can be reached right now (identity before the switch to the kernel's
    /// page tables, the direct map after).
    words: *mut u64,
    /// Number of words.
    len: usize,
    /// Number of frames the bitmap covers (`len * 64` rounded down to the memory map's end).
    frames: usize,
    /// Free frames right now.
    free: usize,
    /// Every word below this index is zero (no free frame).
    hint: usize,
}

// SAFETY: the bitmap owns its storage exclusively; it is only ever used behind the memory lock.
unsafe impl Send for FrameBitmap {}

impl FrameBitmap {
    /// Bytes of storage a bitmap for `frames` frames needs.
    pub(crate) fn storage_bytes(frames: usize) -> usize {
        frames.div_ceil(64) * 8
    }

    /// An allocator with every frame in use, its words at `words`.
    ///
    /// # Safety
    /// `words` must be valid for reads and writes of [`storage_bytes`](Self::storage_bytes)`(frames)`
    /// bytes, 8-byte aligned, and used by nothing else for as long as the bitmap lives there.
    pub(crate) unsafe fn new(words: *mut u64, frames: usize) -> Self {
        let len = frames.div_ceil(64);
        // SAFETY: the caller hands over `len` writable words at `words`.
        unsafe { core::ptr::write_bytes(words, 0, len) };
        Self {
            words,
            len,
            frames,
            free: 0,
            hint: 0,
        }
    }

    /// Moves the bitmap's storage pointer to a new mapping of the same memory.
    ///
    /// # Safety
    /// `words` must map the same physical memory as the current pointer (with the same guarantees
    /// as [`new`](Self::new)).
    pub(crate) unsafe fn relocate(&mut self, words: *mut u64) {
        self.words = words;
    }

    fn word(&self, i: usize) -> u64 {
        debug_assert!(i < self.len);
        // SAFETY: `i < len` and the storage holds `len` words (see `new`).
        unsafe { self.words.add(i).read() }
    }

    fn set_word(&mut self, i: usize, value: u64) {
        debug_assert!(i < self.len);
        // SAFETY: as in `word`; `&mut self` gives exclusive access.
        unsafe { self.words.add(i).write(value) }
    }

    /// Number of frames covered.
    pub(crate) fn frames(&self) -> usize {
        self.frames
    }

    /// Free frames right now.
    pub(crate) fn free_count(&self) -> usize {
        self.free
    }

    /// Calls `f(word index, mask)` for each word `[start, end)` touches, with the mask of the
    /// frames of the range in that word.
    fn for_each_word(start: usize, end: usize, mut f: impl FnMut(usize, u64)) {
        let mut frame = start;
        while frame < end {
            let w = frame / 64;
            let lo = frame % 64;
            let hi = (end - w * 64).min(64);
            let mask = if hi == 64 { !0u64 } else { (1u64 << hi) - 1 } & (!0u64 << lo);
            f(w, mask);
            frame = (w + 1) * 64;
        }
    }

    /// Marks the frames of `[start, end)` free or used, whatever they were (setting up only).
    pub(crate) fn set_range(&mut self, start: usize, end: usize, free: bool) {
        let end = end.min(self.frames);
        Self::for_each_word(start, end, |w, mask| {
            let old = self.word(w);
            let new = if free { old | mask } else { old & !mask };
            self.set_word(w, new);
            let changed = (old ^ new).count_ones() as usize;
            if free {
                self.free += changed;
            } else {
                self.free -= changed;
            }
        });
        self.hint = (0..self.len)
            .find(|&w| self.word(w) != 0)
            .unwrap_or(self.len);
    }

    /// The first free frame at or after `from`, below `limit`.
    fn next_free(&self, from: usize, limit: usize) -> Option<usize> {
        let limit = limit.min(self.frames);
        let mut frame = from;
        while frame < limit {
            let w = frame / 64;
            let bits = self.word(w) & (!0u64 << (frame % 64));
            if bits != 0 {
                let found = w * 64 + bits.trailing_zeros() as usize;
                return (found < limit).then_some(found);
            }
            frame = (w + 1) * 64;
        }
        None
    }

    /// The first used frame in `[start, end)`, if any (`end <= frames`).
    fn first_used(&self, start: usize, end: usize) -> Option<usize> {
        let mut found = None;
        Self::for_each_word(start, end, |w, mask| {
            let used = !self.word(w) & mask;
            if found.is_none() && used != 0 {
                found = Some(w * 64 + used.trailing_zeros() as usize);
            }
        });
        found
    }

    /// Takes one free frame below frame number `limit`.
    pub(crate) fn alloc(&mut self, limit: usize) -> Option<usize> {
        let frame = self.next_free(self.hint * 64, limit)?;
        let w = frame / 64;
        self.set_word(w, self.word(w) & !(1 << (frame % 64)));
        self.free -= 1;
        // Every word before `w` was zero (the hint's invariant, and the search found none free).
        self.hint = w;
        Some(frame)
    }

    /// Takes `count` contiguous free frames whose first frame number is a multiple of `align`
    /// (a power of two), all below frame number `limit`.
    pub(crate) fn alloc_run(&mut self, count: usize, align: usize, limit: usize) -> Option<usize> {
        debug_assert!(align.is_power_of_two() && count > 0);
        let limit = limit.min(self.frames);
        let mut start = (self.hint * 64).next_multiple_of(align);
        loop {
            let end = start.checked_add(count)?;
            if end > limit {
                return None;
            }
            match self.first_used(start, end) {
                None => break,
                Some(used) => {
                    let free = self.next_free(used + 1, limit)?;
                    start = free.next_multiple_of(align);
                }
            }
        }
        Self::for_each_word(start, start + count, |w, mask| {
            self.set_word(w, self.word(w) & !mask);
        });
        self.free -= count;
        Some(start)
    }

    /// Returns `[start, start + count)` to the free pool.
    ///
    /// # Panics
    /// If any of the frames is already free (a double free) or beyond the bitmap.
    pub(crate) fn free_run(&mut self, start: usize, count: usize) {
        assert!(
            start
                .checked_add(count)
                .is_some_and(|end| end <= self.frames),
            "freeing frames beyond physical memory"
        );
        Self::for_each_word(start, start + count, |w, mask| {
            let free = self.word(w) & mask;
            assert!(
                free == 0,
                "double free of physical frame {:#x}",
                (w * 64 + free.trailing_zeros() as usize) as u64 * FRAME_SIZE
            );
        });
        Self::for_each_word(start, start + count, |w, mask| {
            self.set_word(w, self.word(w) | mask);
        });
        self.free += count;
        self.hint = self.hint.min(start / 64);
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
