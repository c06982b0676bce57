//! The physical frame bitmap: one bit per 4 KiB frame, from frame 0 up.
//!
//! A set bit is a free frame. Every bit starts clear ("in use"); the kernel then sets the RAM
//! ranges of the memory map and clears its reserved parts again (the first MiB, the kernel image,
//! the bitmap itself, the `hvm_start_info` page), so nothing outside usable RAM can ever be handed
//! out, and a frame is handed out at most once until it is freed.
//!
//! The bitmap works over any `[u64]` storage: the kernel's is RAM it reserves for the bitmap (see
//! `vireo::mm`), host tests use a `Vec`.
//!
//! Searches go a 64-bit word at a time: a single-frame allocation starts at a hint below which every
//! word is known to be full, so thousands of allocations in a row cost O(1) each; a contiguous run
//! skips whole full words and jumps past every used frame it meets.

use core::ops::Range;

/// The size of a frame and of a small page.
pub const FRAME_SIZE: u64 = 4096;

/// The bitmap, over storage `S` of at least [`storage_words`](Self::storage_words) words.
#[derive(Debug)]
pub struct FrameBitmap<S> {
    /// The words (bit `f % 64` of word `f / 64` is frame `f`).
    words: S,
    /// Number of words in use.
    len: usize,
    /// Number of frames the bitmap covers (`len * 64` rounded down to the memory map's end).
    frames: usize,
    /// Free frames right now.
    free: usize,
    /// Every word below this index is zero (no free frame).
    hint: usize,
}

impl<S: AsRef<[u64]> + AsMut<[u64]>> FrameBitmap<S> {
    /// Words of storage a bitmap for `frames` frames needs.
    pub fn storage_words(frames: usize) -> usize {
        frames.div_ceil(64)
    }

    /// Bytes of storage a bitmap for `frames` frames needs.
    pub fn storage_bytes(frames: usize) -> usize {
        Self::storage_words(frames) * 8
    }

    /// A bitmap of `frames` frames, every one in use, kept in `words`.
    ///
    /// # Panics
    /// If `words` holds fewer than [`storage_words`](Self::storage_words)`(frames)` words.
    pub fn new(mut words: S, frames: usize) -> Self {
        let len = Self::storage_words(frames);
        words.as_mut()[..len].fill(0);
        Self {
            words,
            len,
            frames,
            free: 0,
            hint: 0,
        }
    }

    /// The storage (the kernel moves its pointer to the direct map once that exists).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.words
    }

    fn word(&self, i: usize) -> u64 {
        self.words.as_ref()[..self.len][i]
    }

    fn set_word(&mut self, i: usize, value: u64) {
        self.words.as_mut()[..self.len][i] = value;
    }

    /// Number of frames covered.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Free frames right now.
    pub fn free_count(&self) -> usize {
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
    pub fn set_range(&mut self, start: usize, end: usize, free: bool) {
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
    pub fn alloc(&mut self, limit: usize) -> Option<usize> {
        let frame = self.next_free(self.hint * 64, limit)?;
        let w = frame / 64;
        self.set_word(w, self.word(w) & !(1 << (frame % 64)));
        self.free -= 1;
        // Every word before `w` was zero (the hint's invariant, and the search found none free).
        self.hint = w;
        Some(frame)
    }

    /// Takes `count` contiguous free frames whose first frame number is a multiple of `align`
    /// (a power of two), all below frame number `limit`. `None` if there is no such run, `count`
    /// is zero or `align` is not a power of two.
    pub fn alloc_run(&mut self, count: usize, align: usize, limit: usize) -> Option<usize> {
        if count == 0 || !align.is_power_of_two() {
            return None;
        }
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
    pub fn free_run(&mut self, start: usize, count: usize) {
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

/// The whole frames of the memory-map range `[start, end)`: its start rounded up and its end
/// rounded down to [`FRAME_SIZE`]; `None` if that leaves no frame.
pub fn whole_frames(start: u64, end: u64) -> Option<Range<u64>> {
    let start = start.checked_next_multiple_of(FRAME_SIZE)?;
    let end = end & !(FRAME_SIZE - 1);
    (start < end).then_some(start..end)
}

/// Where to keep `bytes` of bitmap: in the first of the `ram` ranges (whole frames) that has
/// room, at its start or right after the kernel `image`, frame-aligned, at or above `low` (memory
/// the kernel never hands out), ending at or below `limit` (what the boot page tables map), and
/// clear of the image.
pub fn bitmap_home(
    ram: impl IntoIterator<Item = Range<u64>>,
    bytes: u64,
    image: &Range<u64>,
    low: u64,
    limit: u64,
) -> Option<u64> {
    ram.into_iter().find_map(|r| {
        [r.start.max(low), image.end]
            .into_iter()
            .filter_map(|s| s.checked_next_multiple_of(FRAME_SIZE))
            .find(|&s| {
                let Some(end) = s.checked_add(bytes) else {
                    return false;
                };
                s >= r.start
                    && s >= low
                    && end <= r.end
                    && end <= limit
                    && (end <= image.start || image.end <= s)
            })
    })
}

#[cfg(test)]
mod tests {
    use alloc::{vec, vec::Vec};

    use super::*;

    /// A bitmap of `frames` frames with `free` ranges free.
    fn bitmap(frames: usize, free: &[(usize, usize)]) -> FrameBitmap<Vec<u64>> {
        let mut b = FrameBitmap::new(
            vec![u64::MAX; FrameBitmap::<Vec<u64>>::storage_words(frames)],
            frames,
        );
        for &(s, e) in free {
            b.set_range(s, e, true);
        }
        b
    }

    #[test]
    fn storage_is_one_bit_per_frame_in_whole_words() {
        type B = FrameBitmap<Vec<u64>>;
        assert_eq!((B::storage_words(0), B::storage_bytes(0)), (0, 0));
        assert_eq!((B::storage_words(1), B::storage_bytes(1)), (1, 8));
        assert_eq!((B::storage_words(64), B::storage_bytes(64)), (1, 8));
        assert_eq!((B::storage_words(65), B::storage_bytes(65)), (2, 16));
        // 4 GiB of frames: 128 KiB of bitmap.
        assert_eq!(B::storage_bytes((4 << 30) / FRAME_SIZE as usize), 128 << 10);
    }

    #[test]
    #[should_panic]
    fn storage_too_small_is_refused() {
        let _ = FrameBitmap::new(vec![0u64; 1], 65);
    }

    #[test]
    fn everything_starts_in_use_whatever_the_storage_held() {
        let mut b = bitmap(200, &[]);
        assert_eq!((b.frames(), b.free_count()), (200, 0));
        assert_eq!(b.alloc(usize::MAX), None);
        assert_eq!(b.alloc_run(1, 1, usize::MAX), None);
    }

    #[test]
    fn single_frames_come_lowest_first_and_once() {
        let mut b = bitmap(300, &[(3, 5), (100, 103)]);
        assert_eq!(b.free_count(), 5);
        let got: Vec<_> = core::iter::from_fn(|| b.alloc(usize::MAX)).collect();
        assert_eq!(got, [3, 4, 100, 101, 102]);
        assert_eq!(b.free_count(), 0);
    }

    #[test]
    fn the_limit_is_respected() {
        let mut b = bitmap(300, &[(10, 12), (200, 300)]);
        assert_eq!(b.alloc(12), Some(10));
        assert_eq!(b.alloc(12), Some(11));
        assert_eq!(b.alloc(12), None, "frames 200.. are above the limit");
        assert_eq!(b.alloc(201), Some(200));
        assert_eq!(b.alloc_run(4, 1, 205), Some(201));
        assert_eq!(b.alloc_run(4, 1, 205), None);
    }

    #[test]
    fn set_range_counts_only_changes_and_stops_at_the_end() {
        let mut b = bitmap(100, &[(0, 10)]);
        b.set_range(5, 20, true);
        assert_eq!(b.free_count(), 20);
        b.set_range(50, 1000, true);
        assert_eq!(b.free_count(), 70, "frames past the end are not counted");
        b.set_range(0, 60, false);
        assert_eq!(b.free_count(), 40);
        assert_eq!(b.alloc(usize::MAX), Some(60));
    }

    #[test]
    fn runs_are_contiguous_aligned_and_skip_used_frames() {
        // Free: 1..9, 16..17, 20..200; used elsewhere.
        let mut b = bitmap(256, &[(1, 9), (16, 17), (20, 200)]);
        assert_eq!(b.alloc_run(8, 1, usize::MAX), Some(1));
        // 8 frames aligned to 8: 16 is free but 17.. is not; next aligned start in 20.. is 24.
        assert_eq!(b.alloc_run(8, 8, usize::MAX), Some(24));
        // 64 aligned to 64: 64..128.
        assert_eq!(b.alloc_run(64, 64, usize::MAX), Some(64));
        // 70 frames aligned to 64: 128..198 is free only up to 200, so 128..198 fits.
        assert_eq!(b.alloc_run(70, 64, usize::MAX), Some(128));
        // What is left: 16, 20..24, 32..64, 198..200.
        assert_eq!(b.free_count(), 1 + 4 + 32 + 2);
        assert_eq!(b.alloc_run(33, 1, usize::MAX), None);
        assert_eq!(b.alloc_run(32, 32, usize::MAX), Some(32));
        assert_eq!(b.alloc_run(4, 1, usize::MAX), Some(20));
        assert_eq!(b.alloc_run(2, 2, usize::MAX), Some(198));
        assert_eq!(b.alloc_run(1, 1, usize::MAX), Some(16));
        assert_eq!(b.free_count(), 0);
        assert_eq!(b.alloc_run(1, 1, usize::MAX), None);
    }

    #[test]
    fn bad_run_requests_are_refused() {
        let mut b = bitmap(128, &[(0, 128)]);
        assert_eq!(b.alloc_run(0, 1, usize::MAX), None);
        assert_eq!(b.alloc_run(1, 3, usize::MAX), None);
        assert_eq!(b.alloc_run(129, 1, usize::MAX), None);
        assert_eq!(b.alloc_run(usize::MAX, 1, usize::MAX), None);
        assert_eq!(b.free_count(), 128);
    }

    #[test]
    fn freed_frames_come_back_first() {
        let mut b = bitmap(256, &[(0, 256)]);
        let all: Vec<_> = core::iter::from_fn(|| b.alloc(usize::MAX)).collect();
        assert_eq!(all.len(), 256);
        b.free_run(130, 1);
        b.free_run(7, 2);
        assert_eq!(b.free_count(), 3);
        assert_eq!(b.alloc(usize::MAX), Some(7));
        assert_eq!(b.alloc(usize::MAX), Some(8));
        assert_eq!(b.alloc(usize::MAX), Some(130));
        b.free_run(60, 10);
        assert_eq!(
            b.alloc_run(10, 8, usize::MAX),
            None,
            "60..70 holds no run of 10 aligned to 8"
        );
        assert_eq!(b.alloc_run(8, 4, usize::MAX), Some(60));
    }

    #[test]
    #[should_panic(expected = "double free of physical frame 0x4000")]
    fn a_double_free_panics_with_the_address() {
        let mut b = bitmap(64, &[(0, 64)]);
        assert_eq!(b.alloc_run(4, 1, usize::MAX), Some(0));
        b.free_run(0, 6);
    }

    #[test]
    #[should_panic(expected = "beyond physical memory")]
    fn freeing_past_the_end_panics() {
        let mut b = bitmap(64, &[]);
        b.free_run(60, 5);
    }

    #[test]
    #[should_panic(expected = "beyond physical memory")]
    fn freeing_an_overflowing_range_panics() {
        let mut b = bitmap(64, &[]);
        b.free_run(1, usize::MAX);
    }

    #[test]
    fn a_refused_free_changes_nothing() {
        let mut b = bitmap(64, &[(0, 64)]);
        assert_eq!(b.alloc_run(4, 1, usize::MAX), Some(0));
        let result = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| b.free_run(2, 4)));
        assert!(result.is_err());
        // Frames 2 and 3 are still in use: the whole free was refused before any bit changed.
        assert_eq!(b.free_count(), 60);
        assert_eq!(b.alloc(usize::MAX), Some(4));
    }

    proptest::proptest! {
        /// Against a model (one bool per frame): every allocation is free, in range, aligned and
        /// the lowest that fits; frees return exactly what was taken; the count always matches.
        #[test]
        fn matches_a_model(
            frames in 1usize..400,
            free in proptest::collection::vec((0usize..400, 0usize..100), 0..6),
            ops in proptest::collection::vec((0u8..3, 1usize..20, 0u32..4, 0usize..400), 1..120),
        ) {
            let mut b = bitmap(frames, &[]);
            let mut model = vec![false; frames];
            for &(s, len) in &free {
                b.set_range(s, s + len, true);
                for f in model.iter_mut().take((s + len).min(frames)).skip(s) {
                    *f = true;
                }
            }
            let mut taken: Vec<(usize, usize)> = Vec::new();
            for (op, count, align_log, limit) in ops {
                match op {
                    0 => {
                        let want = (0..frames.min(limit)).find(|&f| model[f]);
                        let got = b.alloc(limit);
                        proptest::prop_assert_eq!(got, want);
                        if let Some(f) = got {
                            model[f] = false;
                            taken.push((f, 1));
                        }
                    }
                    1 => {
                        let align = 1 << align_log;
                        let end = frames.min(limit);
                        let want = (0..end)
                            .step_by(align)
                            .find(|&s| s + count <= end && model[s..s + count].iter().all(|&f| f));
                        let got = b.alloc_run(count, align, limit);
                        proptest::prop_assert_eq!(got, want);
                        if let Some(s) = got {
                            model[s..s + count].iter_mut().for_each(|f| *f = false);
                            taken.push((s, count));
                        }
                    }
                    _ => {
                        if !taken.is_empty() {
                            let (s, n) = taken.swap_remove(count % taken.len());
                            b.free_run(s, n);
                            model[s..s + n].iter_mut().for_each(|f| *f = true);
                        }
                    }
                }
                proptest::prop_assert_eq!(b.free_count(), model.iter().filter(|&&f| f).count());
            }
        }
    }

    #[test]
    fn ram_ranges_shrink_to_whole_frames() {
        assert_eq!(whole_frames(0, 0x9_FC00), Some(0..0x9_F000));
        assert_eq!(
            whole_frames(0x10_0001, 0x20_0000),
            Some(0x10_1000..0x20_0000)
        );
        assert_eq!(whole_frames(0x1001, 0x1FFF), None, "less than a frame");
        assert_eq!(whole_frames(0x2000, 0x1000), None, "inverted");
        assert_eq!(
            whole_frames(u64::MAX - 10, u64::MAX),
            None,
            "no frame start below 2^64"
        );
    }

    #[test]
    fn the_bitmap_finds_a_home_clear_of_low_memory_and_the_image() {
        const MIB: u64 = 1 << 20;
        let image = MIB..3 * MIB;
        let ram = || [0..0x9_F000, MIB..512 * MIB];
        // Not in the low range (below `low`), not over the image: right after it.
        assert_eq!(
            bitmap_home(ram(), 0x4000, &image, MIB, 4 << 30),
            Some(3 * MIB)
        );
        // An image elsewhere leaves the start of RAM above `low` free.
        let high_image = 16 * MIB..18 * MIB;
        assert_eq!(
            bitmap_home(ram(), 0x4000, &high_image, MIB, 4 << 30),
            Some(MIB)
        );
        // Too big for the room before a high image: after it.
        assert_eq!(
            bitmap_home(ram(), 15 * MIB + 1, &high_image, MIB, 4 << 30),
            Some(18 * MIB)
        );
        // An unaligned image end is rounded up to a frame.
        let odd_image = MIB..2 * MIB + 5;
        assert_eq!(
            bitmap_home(ram(), 0x1000, &odd_image, MIB, 4 << 30),
            Some(2 * MIB + 0x1000)
        );
        // Past the identity-mapped limit, or bigger than RAM: nowhere.
        assert_eq!(
            bitmap_home(ram(), 0x4000, &image, MIB, 3 * MIB + 0x3000),
            None
        );
        assert_eq!(bitmap_home(ram(), 512 * MIB, &image, MIB, 4 << 30), None);
        assert_eq!(bitmap_home(ram(), u64::MAX, &image, MIB, u64::MAX), None);
        // The first range with room wins; a later range is used when the first is too small.
        let split = [MIB..4 * MIB, 8 * MIB..64 * MIB];
        assert_eq!(
            bitmap_home(split.clone(), 2 * MIB, &image, MIB, 4 << 30),
            Some(8 * MIB)
        );
        assert_eq!(bitmap_home(split, MIB, &image, MIB, 4 << 30), Some(3 * MIB));
    }
}
