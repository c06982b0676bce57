//! A first-fit allocator of naturally aligned ranges inside an address window, around ranges
//! already taken (RAM, firmware reservations, BARs the firmware placed).

use alloc::vec::Vec;

/// Hands out `[start, start + size)` ranges inside `[start, end)`, each aligned to its size.
#[derive(Debug, Clone)]
pub struct AddressWindow {
    start: u64,
    end: u64,
    busy: Vec<(u64, u64)>,
}

impl AddressWindow {
    /// A window `[start, end)` with nothing taken yet (empty if `end <= start`).
    pub fn new(start: u64, end: u64) -> Self {
        Self {
            start,
            end: end.max(start),
            busy: Vec::new(),
        }
    }

    /// The window's bounds.
    pub fn bounds(&self) -> (u64, u64) {
        (self.start, self.end)
    }

    /// Marks `[start, end)` taken (it may reach outside the window).
    pub fn reserve(&mut self, start: u64, end: u64) {
        if start < end {
            self.busy.push((start, end));
        }
    }

    /// Whether `[start, end)` overlaps a taken range (wherever it lies relative to the window).
    pub fn is_taken(&self, start: u64, end: u64) -> bool {
        self.overlap(start, end).is_some()
    }

    fn overlap(&self, start: u64, end: u64) -> Option<u64> {
        self.busy
            .iter()
            .filter(|&&(s, e)| s < end && start < e)
            .map(|&(_, e)| e)
            .max()
    }

    /// Takes the lowest free range of `size` bytes aligned to `size` (a power of two), or `None`.
    pub fn allocate(&mut self, size: u64) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        self.allocate_aligned(size, size)
    }

    /// Takes the lowest free range of `size` bytes aligned to `align` (a power of two), or `None`.
    pub fn allocate_aligned(&mut self, size: u64, align: u64) -> Option<u64> {
        if !align.is_power_of_two() || size == 0 {
            return None;
        }
        let mut at = self.start.checked_next_multiple_of(align)?;
        loop {
            let end = at.checked_add(size)?;
            if end > self.end {
                return None;
            }
            match self.overlap(at, end) {
                // Jump past the furthest overlapping range; `at` strictly grows, so this ends.
                Some(busy_end) => at = busy_end.checked_next_multiple_of(align)?,
                None => {
                    self.busy.push((at, end));
                    return Some(at);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_aligned_to_their_size_and_never_overlap() {
        let mut w = AddressWindow::new(0x1000, 0x10_0000);
        assert_eq!(w.bounds(), (0x1000, 0x10_0000));
        assert_eq!(w.allocate(0x1000), Some(0x1000));
        // 64 KiB aligned: the first 64 KiB boundary above the window's start.
        assert_eq!(w.allocate(0x1_0000), Some(0x1_0000));
        // The hole at 0x2000..0x1_0000 takes smaller ranges, lowest first.
        assert_eq!(w.allocate(0x2000), Some(0x2000));
        assert_eq!(w.allocate(0x1000), Some(0x4000));
        assert_eq!(w.allocate(0x4000), Some(0x8000));
        assert_eq!(w.allocate(0x1000), Some(0x5000));
        assert!(w.is_taken(0x1_0000, 0x1_0001));
        assert!(!w.is_taken(0x6000, 0x8000));
    }

    #[test]
    fn sizes_that_are_not_powers_of_two_are_refused() {
        let mut w = AddressWindow::new(0, 1 << 20);
        assert_eq!(w.allocate(0), None);
        assert_eq!(w.allocate(0x3000), None);
        assert_eq!(w.allocate_aligned(0, 0x1000), None);
        assert_eq!(w.allocate_aligned(0x1000, 0x3000), None);
        // A size that is not a power of two is fine with an explicit alignment.
        assert_eq!(w.allocate_aligned(0x3000, 0x1000), Some(0));
        assert_eq!(w.allocate_aligned(0x1000, 0x1000), Some(0x3000));
    }

    #[test]
    fn reserved_ranges_are_skipped_even_when_they_reach_outside() {
        let mut w = AddressWindow::new(0x10_0000, 0x20_0000);
        w.reserve(0, 0x10_8000);
        w.reserve(0x11_0000, 0x11_0001);
        // An empty reservation reserves nothing.
        w.reserve(0x12_0000, 0x12_0000);
        assert!(!w.is_taken(0x12_0000, 0x12_1000));
        assert_eq!(w.allocate(0x8000), Some(0x10_8000));
        // 0x11_0000 is taken by one byte: the next 64 KiB slot is 0x12_0000.
        assert_eq!(w.allocate(0x1_0000), Some(0x12_0000));
        assert!(w.is_taken(0x0, 0x1));
    }

    #[test]
    fn a_full_window_says_so() {
        let mut w = AddressWindow::new(0xC000, 0x1_0000);
        for i in 0..4 {
            assert_eq!(w.allocate(0x1000), Some(0xC000 + i * 0x1000));
        }
        assert_eq!(w.allocate(0x1000), None);
        assert_eq!(w.allocate(4), None);
        // Larger than the whole window, or aligned past its end.
        let mut w = AddressWindow::new(0xC000, 0x1_0000);
        assert_eq!(w.allocate(0x8000), None);
        assert_eq!(w.allocate_aligned(0x100, 0x2_0000), None);
    }

    #[test]
    fn an_inverted_window_is_empty() {
        let mut w = AddressWindow::new(0x2000, 0x1000);
        assert_eq!(w.bounds(), (0x2000, 0x2000));
        assert_eq!(w.allocate(1), None);
    }

    #[test]
    fn the_top_of_the_address_space_does_not_overflow() {
        let mut w = AddressWindow::new(u64::MAX - 0xFFFF, u64::MAX);
        // The only 64 KiB-aligned slot would end at 2^64.
        assert_eq!(w.allocate(0x1_0000), None);
        assert_eq!(w.allocate(0x1000), Some(u64::MAX - 0xFFFF));
        w.reserve(u64::MAX - 0x1000, u64::MAX);
        assert_eq!(w.allocate_aligned(0x10, 1 << 63), None);
    }

    proptest::proptest! {
        /// Whatever is asked, every range handed out lies inside the window, is aligned, and
        /// overlaps no reservation and no other range.
        #[test]
        fn allocations_are_disjoint(
            reserved in proptest::collection::vec((0u64..0x40_0000, 1u64..0x4_0000), 0..8),
            asks in proptest::collection::vec((0u32..20, proptest::bool::ANY), 1..64),
        ) {
            let mut w = AddressWindow::new(0x10_0000, 0x40_0000);
            for &(start, len) in &reserved {
                w.reserve(start, start + len);
            }
            let mut got: Vec<(u64, u64)> = Vec::new();
            for (shift, aligned_to_size) in asks {
                let size = 1u64 << shift;
                let (at, align) = if aligned_to_size {
                    (w.allocate(size), size)
                } else {
                    (w.allocate_aligned(size * 3, 0x1000), 0x1000)
                };
                let Some(at) = at else { continue };
                let end = at + if aligned_to_size { size } else { size * 3 };
                proptest::prop_assert!(at >= 0x10_0000 && end <= 0x40_0000);
                proptest::prop_assert!(at % align == 0);
                for &(s, l) in &reserved {
                    proptest::prop_assert!(end <= s || s + l <= at, "{at:#x}..{end:#x} in a reservation");
                }
                for &(s, e) in &got {
                    proptest::prop_assert!(end <= s || e <= at, "{at:#x}..{end:#x} overlaps {s:#x}..{e:#x}");
                }
                got.push((at, end));
            }
        }
    }
}
