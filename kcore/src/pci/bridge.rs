//! Bridge window arithmetic (PCI-PCI Bridge 1.2 §3.2.5): which window a BAR goes through, how
//! large a window a bus needs, and the base/limit register values of a window.
//!
//! The kernel's `pci::bridge` walks the buses and reads and writes the registers.

use core::ops::{Range, RangeInclusive};

use super::bar::Bar;

/// The three kinds of window a bridge forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// 32-bit non-prefetchable memory.
    Mem,
    /// Prefetchable memory (64-bit capable).
    Pref,
    /// I/O ports.
    Io,
}

impl Space {
    /// The three spaces.
    pub const ALL: [Space; 3] = [Space::Mem, Space::Pref, Space::Io];

    /// The granularity of this space's window: 1 MiB for memory, 4 KiB for I/O (§3.2.5.6,
    /// §3.2.5.8, §3.2.5.9).
    pub fn granule(self) -> u64 {
        match self {
            Space::Io => 1 << 12,
            Space::Mem | Space::Pref => 1 << 20,
        }
    }

    /// The window `bar` is reached through: 64-bit prefetchable BARs through the prefetchable one,
    /// other memory BARs through the 32-bit memory one (a 32-bit prefetchable BAR may sit above
    /// 4 GiB in a 64-bit prefetchable window, which its register cannot hold).
    pub fn of(bar: &Bar) -> Self {
        if bar.is_io() {
            Space::Io
        } else if bar.is_64bit() && bar.is_prefetchable() {
            Space::Pref
        } else {
            Space::Mem
        }
    }
}

/// The window a bus needs in `space` for `entries` (`(size, alignment)` of each BAR and each
/// bridge window on it), laid out in the order given, each at the next multiple of its
/// alignment; give the largest alignment first (then no gap is left but at the end).
///
/// Returns `(size, alignment)`: the size rounded up to the space's granule, the alignment the
/// first entry's or the granule, whichever is larger; `None` without entries or if the sum
/// overflows.
pub fn window_need(space: Space, entries: &[(u64, u64)]) -> Option<(u64, u64)> {
    let &(_, first_align) = entries.first()?;
    let mut end = 0u64;
    for &(size, align) in entries {
        end = end.checked_next_multiple_of(align)?.checked_add(size)?;
    }
    let granule = space.granule();
    Some((
        end.checked_next_multiple_of(granule)?,
        first_align.max(granule),
    ))
}

/// The values of one bridge window's base and limit registers (PCI-PCI Bridge 1.2 §3.2.5.6–9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowRegs {
    /// Memory base and limit (0x20, 0x22): address bits 31:20 in bits 15:4.
    Mem {
        /// Memory base.
        base: u16,
        /// Memory limit.
        limit: u16,
    },
    /// Prefetchable base and limit (0x24, 0x26) and their upper 32 bits (0x28, 0x2C); bits 3:0 of
    /// the base read 1 when the bridge decodes 64-bit addresses.
    Pref {
        /// Prefetchable memory base.
        base: u16,
        /// Prefetchable memory limit.
        limit: u16,
        /// Prefetchable base, upper 32 bits.
        base_upper: u32,
        /// Prefetchable limit, upper 32 bits.
        limit_upper: u32,
    },
    /// I/O base and limit (0x1C, 0x1D): address bits 15:12 in bits 7:4; their upper 16 bits (0x30,
    /// 0x32), used when bits 3:0 of the base read 1 (32-bit I/O).
    Io {
        /// I/O base.
        base: u8,
        /// I/O limit.
        limit: u8,
        /// I/O base, upper 16 bits.
        base_upper: u16,
        /// I/O limit, upper 16 bits.
        limit_upper: u16,
    },
}

impl WindowRegs {
    /// The register values that open a `space` window on `[start, end)` (`start` and `end` on
    /// the space's granule), or close it (`None`: base above limit).
    pub fn encode(space: Space, range: Option<Range<u64>>) -> Self {
        let (base, limit) = range
            .as_ref()
            .map_or((u64::MAX, 0), |r| (r.start, r.end - 1));
        match space {
            Space::Mem => Self::Mem {
                base: ((base >> 16) as u16) & 0xFFF0,
                limit: ((limit >> 16) as u16) & 0xFFF0,
            },
            Space::Pref => Self::Pref {
                base: ((base >> 16) as u16) & 0xFFF0,
                limit: ((limit >> 16) as u16) & 0xFFF0,
                base_upper: (base >> 32) as u32,
                limit_upper: (limit >> 32) as u32,
            },
            Space::Io => Self::Io {
                base: ((base >> 8) as u8) & 0xF0,
                limit: ((limit >> 8) as u8) & 0xF0,
                // A closed window leaves the upper halves zero.
                base_upper: (base >> 16) as u16 & u16::from(range.is_some()),
                limit_upper: 0,
            },
        }
    }

    /// The addresses the window forwards, `None` if it is closed. Base and limit both zero (the reset
    /// value, which would forward `[0, 1 MiB)` or `[0, 4 KiB)`) counts as closed: no firmware puts
    /// a window there. The upper halves count only where bits 3:0 of the base say the bridge
    /// decodes them.
    pub fn decode(self) -> Option<RangeInclusive<u64>> {
        // (base, limit, the limit's low bits that are always ones)
        let (base, limit, low_ones) = match self {
            Self::Mem { base, limit } => (
                u64::from(base & 0xFFF0) << 16,
                u64::from(limit & 0xFFF0) << 16,
                0xF_FFFF,
            ),
            Self::Pref {
                base,
                limit,
                base_upper,
                limit_upper,
            } => {
                let upper = |u: u32| {
                    if base & 0xF == 1 {
                        u64::from(u) << 32
                    } else {
                        0
                    }
                };
                (
                    upper(base_upper) | u64::from(base & 0xFFF0) << 16,
                    upper(limit_upper) | u64::from(limit & 0xFFF0) << 16,
                    0xF_FFFF,
                )
            }
            Self::Io {
                base,
                limit,
                base_upper,
                limit_upper,
            } => {
                let upper = |u: u16| {
                    if base & 0xF == 1 {
                        u64::from(u) << 16
                    } else {
                        0
                    }
                };
                (
                    upper(base_upper) | u64::from(base & 0xF0) << 8,
                    upper(limit_upper) | u64::from(limit & 0xF0) << 8,
                    0xFFF,
                )
            }
        };
        (base <= limit && (base, limit) != (0, 0)).then_some(base..=limit | low_ones)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::bar::BarKind;

    const MIB: u64 = 1 << 20;

    #[test]
    fn bars_go_through_the_window_of_their_kind() {
        let of = |original, mask, upper| {
            Space::of(&Bar::from_probe(0, original, mask, upper).unwrap().unwrap())
        };
        assert_eq!(of(0xC, 0xFFFF_F00C, Some((0, u32::MAX))), Space::Pref);
        assert_eq!(of(0x4, 0xFFFF_F004, Some((0, u32::MAX))), Space::Mem);
        assert_eq!(
            of(0x8, 0xFFFF_F008, None),
            Space::Mem,
            "32-bit prefetchable"
        );
        assert_eq!(of(0x0, 0xFFFF_F000, None), Space::Mem);
        assert_eq!(of(0x1, 0xFFFF_FFE1, None), Space::Io);
        let io = Bar::from_probe(0, 1, 0xFFFF_FFE1, None).unwrap().unwrap();
        assert_eq!(io.kind(), BarKind::Io);
        assert_eq!(
            Space::ALL.map(Space::granule),
            [MIB, MIB, 4096],
            "memory windows have 1 MiB granularity, I/O 4 KiB"
        );
    }

    #[test]
    fn a_bus_needs_its_entries_rounded_to_the_granule() {
        assert_eq!(window_need(Space::Mem, &[]), None);
        assert_eq!(
            window_need(
                Space::Mem,
                &[(0x4000, 0x4000), (0x1000, 0x1000), (0x10, 0x10)]
            ),
            Some((MIB, MIB))
        );
        assert_eq!(
            window_need(Space::Io, &[(0x20, 0x20), (0x8, 0x8)]),
            Some((0x1000, 0x1000))
        );
        // A BAR aligned beyond the granule sets the window's alignment.
        assert_eq!(
            window_need(Space::Pref, &[(4 * MIB, 4 * MIB), (0x1000, 0x1000)]),
            Some((5 * MIB, 4 * MIB))
        );
        // Largest alignment first leaves no hole; the other way round, each entry is still
        // aligned and the window grows to hold the hole.
        assert_eq!(
            window_need(Space::Mem, &[(2 * MIB, 2 * MIB), (MIB, MIB)]),
            Some((3 * MIB, 2 * MIB))
        );
        assert_eq!(
            window_need(Space::Mem, &[(MIB, MIB), (2 * MIB, 2 * MIB)]),
            Some((4 * MIB, MIB))
        );
        // Sizes a hostile device reports cannot overflow the sum.
        let half = 1 << 63;
        assert_eq!(
            window_need(Space::Pref, &[(half, half), (half, half)]),
            None
        );
        assert_eq!(window_need(Space::Pref, &[(u64::MAX, 1)]), None);
    }

    /// What the registers read back: the encoded values with the bridge's read-only capability
    /// bits (`wide`: decodes upper halves) in bits 3:0 of the base.
    fn read_back(regs: WindowRegs, wide: bool) -> WindowRegs {
        match regs {
            WindowRegs::Mem { .. } => regs,
            WindowRegs::Pref {
                base,
                limit,
                base_upper,
                limit_upper,
            } => WindowRegs::Pref {
                base: base | u16::from(wide),
                limit: limit | u16::from(wide),
                base_upper,
                limit_upper,
            },
            WindowRegs::Io {
                base,
                limit,
                base_upper,
                limit_upper,
            } => WindowRegs::Io {
                base: base | u8::from(wide),
                limit: limit | u8::from(wide),
                base_upper,
                limit_upper,
            },
        }
    }

    #[test]
    fn windows_encode_as_the_bridge_spec_says() {
        assert_eq!(
            WindowRegs::encode(Space::Mem, Some(0xC000_0000..0xC020_0000)),
            WindowRegs::Mem {
                base: 0xC000,
                limit: 0xC010
            }
        );
        assert_eq!(
            WindowRegs::encode(Space::Pref, Some(0x80_0000_0000..0x80_4000_0000)),
            WindowRegs::Pref {
                base: 0,
                limit: 0x3FF0,
                base_upper: 0x80,
                limit_upper: 0x80
            }
        );
        assert_eq!(
            WindowRegs::encode(Space::Io, Some(0xC000..0xE000)),
            WindowRegs::Io {
                base: 0xC0,
                limit: 0xD0,
                base_upper: 0,
                limit_upper: 0
            }
        );
    }

    #[test]
    fn open_windows_decode_to_what_was_encoded() {
        let cases = [
            (Space::Mem, 0xC000_0000..0xC020_0000, false),
            (Space::Mem, MIB..2 * MIB, false),
            (Space::Pref, 0xE000_0000..0xF000_0000, false),
            (Space::Pref, 0x80_0000_0000..0x80_0010_0000, true),
            (Space::Pref, 0xFFFF_FFFF_FFF0_0000..u64::MAX, true),
            (Space::Io, 0xC000..0xD000, false),
            (Space::Io, 0x1000..0x1_0000, true),
        ];
        for (space, range, wide) in cases {
            let last = range.end - 1;
            // The top megabyte of the space: `end` is 2^64, one past `u64::MAX`.
            let last = if range.end == u64::MAX {
                u64::MAX
            } else {
                last
            };
            let regs = read_back(WindowRegs::encode(space, Some(range.clone())), wide);
            assert_eq!(
                regs.decode(),
                Some(range.start..=last),
                "{space:?} {range:#x?}"
            );
        }
    }

    #[test]
    fn upper_halves_count_only_on_bridges_that_decode_them() {
        let regs = WindowRegs::encode(Space::Pref, Some(0x80_0000_0000..0x80_0010_0000));
        assert_eq!(
            read_back(regs, false).decode(),
            None,
            "base and limit read zero"
        );
        let regs = WindowRegs::encode(Space::Pref, Some(0x80_0010_0000..0x80_0020_0000));
        assert_eq!(read_back(regs, false).decode(), Some(0x10_0000..=0x1F_FFFF));
    }

    #[test]
    fn closed_and_reset_windows_forward_nothing() {
        for space in Space::ALL {
            for wide in [false, true] {
                let closed = read_back(WindowRegs::encode(space, None), wide);
                assert_eq!(closed.decode(), None, "{space:?} wide {wide}");
            }
        }
        let reset = [
            WindowRegs::Mem { base: 0, limit: 0 },
            WindowRegs::Pref {
                base: 1,
                limit: 1,
                base_upper: 0,
                limit_upper: 0,
            },
            WindowRegs::Io {
                base: 0,
                limit: 0,
                base_upper: 0,
                limit_upper: 0,
            },
        ];
        for regs in reset {
            assert_eq!(regs.decode(), None, "{regs:?}");
        }
        // Base above limit is closed whatever the values.
        let inverted = WindowRegs::Mem {
            base: 0xD000,
            limit: 0xC000,
        };
        assert_eq!(inverted.decode(), None);
    }
}
