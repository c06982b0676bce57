//! The three windows BARs are placed in, with every fixed range kept out of them.
//!
//! Windows (q35 layout, checked against the e820 map):
//! - 32-bit memory: `0xC000_0000..0xFEC0_0000`, above the MMCONFIG window `0xB000_0000..0xC000_0000`
//!   and below the IOAPIC/HPET/LAPIC/flash range.
//! - 64-bit memory: from 512 GiB (`0x80_0000_0000`) up to the CPU's physical address width,
//!   lowered to half the width on CPUs with fewer than 40 bits, and kept above RAM and 4 GiB.
//! - I/O: `0xC000..0x1_0000`, around the motherboard's fixed ports.
//!
//! Every memory-map range (RAM or reserved) is kept out of every window.

use super::{
    bar::{Bar, BarKind},
    window::AddressWindow,
};

/// Start of the 32-bit memory window.
pub const MEM32_START: u64 = 0xC000_0000;
/// End of the 32-bit memory window (the IOAPIC is at 0xFEC0_0000).
pub const MEM32_END: u64 = 0xFEC0_0000;
/// Preferred start of the 64-bit memory window (512 GiB).
pub const MEM64_START: u64 = 0x80_0000_0000;
/// The PCIe MMCONFIG (ECAM) window of QEMU's q35.
pub const MMCONFIG: (u64, u64) = (0xB000_0000, 0xC000_0000);
/// Start of the I/O window.
pub const IO_START: u64 = 0xC000;
/// End of the I/O window.
pub const IO_END: u64 = 0x1_0000;

/// I/O ports a firmware-placed BAR may not overlap: motherboard devices at fixed ports.
pub const LEGACY_IO: &[(u64, u64)] = &[
    (0x0000, 0x0100), // DMA, PIC, PIT, keyboard, RTC, POST, debug-exit (0xF4)
    (0x0170, 0x0178), // secondary IDE
    (0x01F0, 0x01F8), // primary IDE
    (0x02F8, 0x0300), // COM2
    (0x03B0, 0x03E0), // VGA
    (0x03F8, 0x0400), // COM1
    (0x0402, 0x0403), // QEMU debug console
    (0x0510, 0x051C), // QEMU fw_cfg
    (0x0600, 0x0680), // q35 ACPI PM block (PMBASE)
    (0x0CF8, 0x0D00), // PCI configuration mechanism #1
];

/// The 32-bit, 64-bit and I/O windows, with every fixed range kept out of them.
#[derive(Debug, Clone)]
pub struct Windows {
    /// 32-bit memory.
    pub mem32: AddressWindow,
    /// 64-bit memory.
    pub mem64: AddressWindow,
    /// I/O ports.
    pub io: AddressWindow,
    phys_limit: u64,
}

impl Windows {
    /// The windows of a CPU with `phys_bits` physical address bits (32..=52) whose memory map holds
    /// `memory` (`[start, end)` of every range, RAM or reserved) with RAM ending at `ram_top`.
    pub fn new(phys_bits: u8, ram_top: u64, memory: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let phys_limit = 1u64 << phys_bits.clamp(32, 52);
        let mem64_start = MEM64_START
            .min(phys_limit / 2)
            .max(ram_top.next_multiple_of(1 << 30))
            .max(1 << 32);
        let mut w = Self {
            mem32: AddressWindow::new(MEM32_START, MEM32_END),
            mem64: AddressWindow::new(mem64_start, phys_limit),
            io: AddressWindow::new(IO_START, IO_END),
            phys_limit,
        };
        // Below 1 MiB (legacy VGA and BIOS areas), MMCONFIG, and the chipset's 0xFEC0_0000..4 GiB.
        w.reserve_memory(0, 1 << 20);
        w.reserve_memory(MMCONFIG.0, MMCONFIG.1);
        w.reserve_memory(MEM32_END, 1 << 32);
        for (start, end) in memory {
            w.reserve_memory(start, end);
        }
        for &(start, end) in LEGACY_IO {
            w.io.reserve(start, end);
        }
        w
    }

    /// One past the highest physical address the CPU decodes.
    pub fn phys_limit(&self) -> u64 {
        self.phys_limit
    }

    /// Keeps `[start, end)` out of both memory windows.
    pub fn reserve_memory(&mut self, start: u64, end: u64) {
        self.mem32.reserve(start, end);
        self.mem64.reserve(start, end);
    }

    /// Whether the firmware's placement of `bar` is sound: aligned, addressable, clear of RAM,
    /// reserved ranges and every BAR kept so far. Kept BARs are reserved.
    pub fn keep(&mut self, bar: &Bar) -> bool {
        let Some(range) = bar.range() else {
            return false;
        };
        if !range.start.is_multiple_of(bar.size()) {
            return false;
        }
        if bar.is_io() {
            let fine = range.end <= IO_END && !self.io.is_taken(range.start, range.end);
            if fine {
                self.io.reserve(range.start, range.end);
            }
            return fine;
        }
        let fine = range.end <= self.phys_limit
            && !self.mem32.is_taken(range.start, range.end)
            && !self.mem64.is_taken(range.start, range.end);
        if fine {
            self.reserve_memory(range.start, range.end);
        }
        fine
    }

    /// Places `bar`: 64-bit BARs above 4 GiB (or in the 32-bit window if that is full); returns
    /// the address, which is then reserved.
    pub fn place(&mut self, bar: &Bar) -> Option<u64> {
        let size = bar.size();
        let at = match bar.kind() {
            BarKind::Io => return self.io.allocate(size),
            BarKind::Memory64 => self
                .mem64
                .allocate(size)
                .or_else(|| self.mem32.allocate(size)),
            BarKind::Memory32 => self.mem32.allocate(size),
        }?;
        // Keep the other memory window clear of it as well.
        self.reserve_memory(at, at + size);
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BAR as a sizing probe would decode it: `kind`, `size`, at `address` (0 for none).
    fn bar(kind: BarKind, size: u64, address: u64) -> Bar {
        let mask = !(size - 1);
        let (original, probe_mask, upper) = match kind {
            BarKind::Io => (address as u32 | 1, mask as u32 | 1, None),
            BarKind::Memory32 => (address as u32, mask as u32, None),
            BarKind::Memory64 => (
                address as u32 | 0x4,
                mask as u32 | 0x4,
                Some(((address >> 32) as u32, (mask >> 32) as u32)),
            ),
        };
        Bar::from_probe(0, original, probe_mask, upper)
            .unwrap()
            .unwrap()
    }

    /// 2 GiB of RAM below the 32-bit hole, 1 GiB above 4 GiB, a reserved range at the top of the
    /// 32-bit space (firmware), on a CPU with 46 physical address bits.
    fn q35() -> Windows {
        let memory = [
            (0, 0x9_FC00),
            (0x10_0000, 0x8000_0000),
            (0xFEFF_C000, 0xFF00_0000),
            (1 << 32, (1 << 32) + (1 << 30)),
        ];
        Windows::new(46, (1 << 32) + (1 << 30), memory)
    }

    #[test]
    fn windows_follow_the_q35_layout() {
        let w = q35();
        assert_eq!(w.mem32.bounds(), (MEM32_START, MEM32_END));
        assert_eq!(w.mem64.bounds(), (MEM64_START, 1 << 46));
        assert_eq!(w.io.bounds(), (IO_START, IO_END));
        assert_eq!(w.phys_limit(), 1 << 46);
        // Below 1 MiB, MMCONFIG, RAM and the chipset range are all taken.
        for (s, e) in [
            (0xA_0000, 0xA_1000),
            (MMCONFIG.0, MMCONFIG.0 + 1),
            (0x1000_0000, 0x1000_1000),
            (0xFEE0_0000, 0xFEE0_1000),
            (0x1_0000_0000, 0x1_0000_1000),
        ] {
            assert!(w.mem32.is_taken(s, e) && w.mem64.is_taken(s, e), "{s:#x}");
        }
    }

    #[test]
    fn the_64_bit_window_shrinks_with_the_cpu_and_stays_above_ram() {
        // 36 bits: 64 GiB of address space, the window from half of it.
        let w = Windows::new(36, 0x8000_0000, []);
        assert_eq!(w.mem64.bounds(), (32 << 30, 64 << 30));
        // RAM up to 40.5 GiB pushes it to the next GiB above RAM.
        let w = Windows::new(36, (40 << 30) + (512 << 20), []);
        assert_eq!(w.mem64.bounds(), (41 << 30, 64 << 30));
        // 32 bits: no 64-bit window at all.
        let w = Windows::new(32, 0x8000_0000, []);
        let (lo, hi) = w.mem64.bounds();
        assert_eq!(lo, hi);
        // Out-of-range widths are clamped rather than overflowing the shift.
        assert_eq!(Windows::new(64, 0, []).phys_limit(), 1 << 52);
    }

    #[test]
    fn sound_firmware_placements_are_kept_and_reserved() {
        let mut w = q35();
        let mmio = bar(BarKind::Memory32, 0x1000, 0xC000_0000);
        assert!(w.keep(&mmio));
        // Kept means taken: the same range again is refused, in either memory window.
        assert!(!w.keep(&mmio));
        assert!(w.mem64.is_taken(0xC000_0000, 0xC000_1000));
        let high = bar(BarKind::Memory64, 0x4000, 0x80_0000_0000);
        assert!(w.keep(&high));
        let io = bar(BarKind::Io, 0x20, 0xC040);
        assert!(w.keep(&io));
        assert!(!w.keep(&bar(BarKind::Io, 0x40, 0xC040)));
        // The placements are not handed out again.
        assert_eq!(
            w.place(&bar(BarKind::Memory32, 0x1000, 0)),
            Some(0xC000_1000)
        );
        assert_eq!(w.place(&bar(BarKind::Io, 0x20, 0)), Some(0xC000));
        assert_eq!(w.place(&bar(BarKind::Io, 0x20, 0)), Some(0xC020));
        assert_eq!(w.place(&bar(BarKind::Io, 0x20, 0)), Some(0xC060));
    }

    #[test]
    fn unsound_firmware_placements_are_refused() {
        let mut w = q35();
        // Unassigned.
        assert!(!w.keep(&bar(BarKind::Memory32, 0x1000, 0)));
        // Over RAM, MMCONFIG, the chipset range, the firmware's reserved range.
        for at in [
            0x4000_0000,
            MMCONFIG.0,
            0xFEC0_0000,
            0xFEFF_C000,
            0x1_0000_0000,
        ] {
            assert!(!w.keep(&bar(BarKind::Memory32, 0x1000, at)), "{at:#x}");
        }
        // Beyond what the CPU can address.
        assert!(!w.keep(&bar(BarKind::Memory64, 0x1000, 1 << 46)));
        // On a fixed I/O port (COM1, the PCI configuration ports, the debug-exit port).
        for at in [0x3F8, 0xCF8, 0xF0] {
            assert!(!w.keep(&bar(BarKind::Io, 8, at)), "{at:#x}");
        }
        // Not a multiple of its size (a hostile device can report any low bits).
        let mut misaligned = bar(BarKind::Memory32, 0x2000, 0);
        misaligned.set_kernel_address(0xC000_1000);
        assert!(!w.keep(&misaligned));
        // An I/O range past 64 Ki ports.
        let mut high_io = bar(BarKind::Io, 0x100, 0);
        high_io.set_kernel_address(0x1_0000);
        assert!(!w.keep(&high_io));
        // An I/O port outside the window but clear of every fixed port is fine.
        assert!(w.keep(&bar(BarKind::Io, 0x10, 0x1000)));
    }

    #[test]
    fn placements_are_aligned_and_64_bit_bars_go_high() {
        let mut w = q35();
        assert_eq!(
            w.place(&bar(BarKind::Memory64, 0x4000, 0)),
            Some(MEM64_START)
        );
        assert_eq!(
            w.place(&bar(BarKind::Memory64, 1 << 30, 0)),
            Some(MEM64_START + (1 << 30))
        );
        assert_eq!(w.place(&bar(BarKind::Memory32, 0x10, 0)), Some(MEM32_START));
        assert_eq!(
            w.place(&bar(BarKind::Memory32, 1 << 20, 0)),
            Some(MEM32_START + (1 << 20))
        );
        assert_eq!(
            w.place(&bar(BarKind::Memory32, 0x10, 0)),
            Some(MEM32_START + 0x10)
        );
    }

    #[test]
    fn a_64_bit_bar_falls_back_to_the_32_bit_window() {
        // A 32-bit CPU leaves no 64-bit window.
        let mut w = Windows::new(32, 0x8000_0000, []);
        let at = w.place(&bar(BarKind::Memory64, 0x4000, 0));
        assert_eq!(at, Some(MEM32_START));
        // And it is taken in both windows.
        assert!(w.mem32.is_taken(MEM32_START, MEM32_START + 1));
        assert!(w.mem64.is_taken(MEM32_START, MEM32_START + 1));
    }

    #[test]
    fn full_windows_say_so() {
        let mut w = q35();
        // The 32-bit window holds 1004 MiB: one 512 MiB BAR, not two.
        assert_eq!(
            w.place(&bar(BarKind::Memory32, 512 << 20, 0)),
            Some(MEM32_START)
        );
        assert_eq!(w.place(&bar(BarKind::Memory32, 512 << 20, 0)), None);
        // A 1 GiB 32-bit BAR never fits.
        assert_eq!(w.place(&bar(BarKind::Memory32, 1 << 30, 0)), None);
        // 16 Ki ports of I/O window: one 16 Ki BAR fills it.
        assert_eq!(w.place(&bar(BarKind::Io, 0x4000, 0)), Some(0xC000));
        assert_eq!(w.place(&bar(BarKind::Io, 4, 0)), None);
    }
}
