//! A first-fit allocator of naturally aligned ranges inside an address window, around ranges
//! already taken (RAM, firmware reservations, BARs the firmware placed).

use alloc::vec::Vec;

/// Hands out `[start, start + size)` ranges inside `[start, end)`, each aligned to its size.
#[derive(Debug, Clone)]
pub(super) struct AddressWindow {
    start: u64,
    end: u64,
    busy: Vec<(u64, u64)>,
}

impl AddressWindow {
    /// A window `[start, end)` with nothing taken yet (empty if `end <= start`).
    pub(super) fn new(start: u64, end: u64) -> Self {
        Self {
            start,
            end: end.max(start),
            busy: Vec::new(),
        }
    }

    /// The window's bounds.
    pub(super) fn bounds(&self) -> (u64, u64) {
        (self.start, self.end)
    }

    /// Marks `[start, end)` taken (it may reach outside the window).
    pub(super) fn reserve(&mut self, start: u64, end: u64) {
        if start < end {
            self.busy.push((start, end));
        }
    }

    /// Whether `[start, end)` overlaps a taken range (wherever it lies relative to the window).
    pub(super) fn is_taken(&self, start: u64, end: u64) -> bool {
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
    pub(super) fn allocate(&mut self, size: u64) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        self.allocate_aligned(size, size)
    }

    /// Takes the lowest free range of `size` bytes aligned to `align` (a power of two), or `None`.
    pub(super) fn allocate_aligned(&mut self, size: u64, align: u64) -> Option<u64> {
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
