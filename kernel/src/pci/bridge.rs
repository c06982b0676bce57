//! Bridge windows (PCI-PCI Bridge 1.2 §3.2.5) for subtrees the firmware left unassigned.
//!
//! For a bridge on bus 0 whose whole subtree has no BAR placed (qboot numbers buses but places
//! nothing), each bus's needs are packed bottom-up: the BARs of its functions and the windows of
//! its bridges, largest alignment first; a window is rounded to 1 MiB (memory) or 4 KiB (I/O).
//! The top window comes from the global windows, then addresses are handed out top-down and every
//! bridge's windows are programmed. 64-bit prefetchable BARs go to the prefetchable window (above
//! 4 GiB when the bridge decodes 64 bits); all other memory BARs to the 32-bit memory window.
//!
//! The arithmetic (which window a BAR needs, how large a bus's window is, the base/limit register
//! values) is `vireo_kcore::pci::bridge`, tested on the host; this module walks the buses and
//! reads and writes the registers.

use alloc::vec::Vec;
use core::cmp::Reverse;

use vireo_kcore::pci::bridge::{Space, WindowRegs, window_need};

use super::{assign::Windows, bar, config::PciConfig, device::PciDevice, regs};

/// Deepest nesting handled below a bus-0 bridge.
const MAX_DEPTH: usize = 16;

/// Type-1 header: I/O base and limit (u8 each), their upper halves (u16 each).
const IO_BASE: u16 = 0x1C;
const IO_LIMIT: u16 = 0x1D;
const IO_BASE_UPPER: u16 = 0x30;
const IO_LIMIT_UPPER: u16 = 0x32;
/// Type-1 header: memory base and limit (u16 each).
const MEMORY_BASE: u16 = 0x20;
const MEMORY_LIMIT: u16 = 0x22;
/// Type-1 header: prefetchable base and limit (u16 each) and their upper 32 bits.
const PREF_BASE: u16 = 0x24;
const PREF_LIMIT: u16 = 0x26;
const PREF_BASE_UPPER: u16 = 0x28;
const PREF_LIMIT_UPPER: u16 = 0x2C;

/// Something to place on a bus: a function's BAR or a bridge's window.
#[derive(Debug, Clone, Copy)]
enum Item {
    Bar { dev: usize, slot: usize },
    Window { dev: usize, secondary: u8 },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    item: Item,
    size: u64,
    align: u64,
}

/// The secondary bus of a bridge, if it is numbered below it.
fn secondary(dev: &PciDevice) -> Option<u8> {
    if dev.header_type != regs::HEADER_TYPE_BRIDGE {
        return None;
    }
    let bus = dev.config.address().bus();
    let secondary = dev.config.read_u8(regs::SECONDARY_BUS);
    // Strictly increasing bus numbers make every descent finite.
    (secondary > bus).then_some(secondary)
}

/// What bus `bus` needs in `space`, largest alignment first.
fn entries(devices: &[PciDevice], bus: u8, space: Space, depth: usize) -> Vec<Entry> {
    let mut out = Vec::new();
    if depth > MAX_DEPTH {
        return out;
    }
    for (dev, d) in devices.iter().enumerate() {
        if d.config.address().bus() != bus {
            continue;
        }
        for (slot, b) in d.bars.iter().enumerate() {
            if let Some(b) = b
                && Space::of(b) == space
            {
                out.push(Entry {
                    item: Item::Bar { dev, slot },
                    size: b.size(),
                    align: b.size(),
                });
            }
        }
        if let Some(secondary) = secondary(d)
            && let Some((size, align)) = need(devices, secondary, space, depth + 1)
        {
            out.push(Entry {
                item: Item::Window { dev, secondary },
                size,
                align,
            });
        }
    }
    out.sort_by_key(|e| Reverse(e.align));
    out
}

/// The window (size, alignment) a bridge to `bus` needs in `space`; `None` if none.
fn need(devices: &[PciDevice], bus: u8, space: Space, depth: usize) -> Option<(u64, u64)> {
    let entries: Vec<(u64, u64)> = entries(devices, bus, space, depth)
        .iter()
        .map(|e| (e.size, e.align))
        .collect();
    window_need(space, &entries)
}

/// Places bus `bus`'s needs in `space` from `base` on, programming BARs and bridge windows.
fn place(devices: &mut [PciDevice], bus: u8, space: Space, base: u64, depth: usize) {
    let mut at = base;
    for e in entries(devices, bus, space, depth) {
        at = at.next_multiple_of(e.align);
        match e.item {
            Item::Bar { dev, slot } => {
                let d = &mut devices[dev];
                let cfg = d.config;
                if let Some(b) = d.bars[slot].as_mut() {
                    // Decoding stays off for a subtree being placed until `assign`'s last pass.
                    // SAFETY: 1. decoding is off; 2. `[at, at + size)` is inside the bridge window,
                    // carved from a global window that keeps RAM, firmware and other BARs out.
                    unsafe { bar::program_bar(&cfg, b, at) };
                    b.set_kernel_address(at);
                }
            }
            Item::Window { dev, secondary } => {
                set_window(&devices[dev].config, space, Some((at, at + e.size)));
                place(devices, secondary, space, at, depth + 1);
            }
        }
        at += e.size;
    }
}

/// Programs (or, with `None`, closes) a bridge's `space` window to `[start, end)`.
fn set_window(cfg: &PciConfig, space: Space, range: Option<(u64, u64)>) {
    let regs = WindowRegs::encode(space, range.map(|(start, end)| start..end));
    // SAFETY: the bridge's decoding is off while its subtree is placed (see `place_subtree`), so
    // the window forwards nothing until `assign`'s last pass turns decoding on; an open window
    // was carved from a global window that keeps RAM, firmware ranges and other BARs out.
    unsafe {
        match regs {
            WindowRegs::Mem { base, limit } => {
                cfg.write_u16_raw(MEMORY_BASE, base);
                cfg.write_u16_raw(MEMORY_LIMIT, limit);
            }
            WindowRegs::Pref {
                base,
                limit,
                base_upper,
                limit_upper,
            } => {
                cfg.write_u16_raw(PREF_BASE, base);
                cfg.write_u16_raw(PREF_LIMIT, limit);
                cfg.write_u32_raw(PREF_BASE_UPPER, base_upper);
                cfg.write_u32_raw(PREF_LIMIT_UPPER, limit_upper);
            }
            WindowRegs::Io {
                base,
                limit,
                base_upper,
                limit_upper,
            } => {
                cfg.write_u8_raw(IO_BASE, base);
                cfg.write_u8_raw(IO_LIMIT, limit);
                cfg.write_u16_raw(IO_BASE_UPPER, base_upper);
                cfg.write_u16_raw(IO_LIMIT_UPPER, limit_upper);
            }
        }
    }
}

/// The bridge's window in `space` as its registers hold it.
fn window_regs(cfg: &PciConfig, space: Space) -> WindowRegs {
    match space {
        Space::Mem => WindowRegs::Mem {
            base: cfg.read_u16(MEMORY_BASE),
            limit: cfg.read_u16(MEMORY_LIMIT),
        },
        Space::Pref => WindowRegs::Pref {
            base: cfg.read_u16(PREF_BASE),
            limit: cfg.read_u16(PREF_LIMIT),
            base_upper: cfg.read_u32(PREF_BASE_UPPER),
            limit_upper: cfg.read_u32(PREF_LIMIT_UPPER),
        },
        Space::Io => WindowRegs::Io {
            base: cfg.read_u8(IO_BASE),
            limit: cfg.read_u8(IO_LIMIT),
            base_upper: cfg.read_u16(IO_BASE_UPPER),
            limit_upper: cfg.read_u16(IO_LIMIT_UPPER),
        },
    }
}

/// Whether the bridge has an open window of any memory kind, or of I/O (see
/// [`WindowRegs::decode`] for what counts as open).
pub(super) fn windows_open(cfg: &PciConfig) -> (bool, bool) {
    let open = |space| window_regs(cfg, space).decode().is_some();
    (open(Space::Mem) || open(Space::Pref), open(Space::Io))
}

/// The functions below `bus` (its bridges' subtrees included), as indices.
fn subtree(devices: &[PciDevice], bus: u8, depth: usize, out: &mut Vec<usize>) {
    if depth > MAX_DEPTH {
        return;
    }
    for (i, d) in devices.iter().enumerate() {
        if d.config.address().bus() == bus {
            out.push(i);
            if let Some(secondary) = secondary(d) {
                subtree(devices, secondary, depth + 1, out);
            }
        }
    }
}

/// Places the subtrees of bus-0 bridges in which the firmware placed nothing.
pub(super) fn place_bridges(devices: &mut [PciDevice], windows: &mut Windows) {
    let roots: Vec<(usize, u8)> = devices
        .iter()
        .enumerate()
        .filter(|(_, d)| d.config.address().bus() == 0)
        .filter_map(|(i, d)| secondary(d).map(|s| (i, s)))
        .collect();
    for (root, secondary) in roots {
        let mut below = Vec::new();
        subtree(devices, secondary, 1, &mut below);
        let here = devices[root].config.address();
        if below
            .iter()
            .any(|&i| devices[i].bars().any(|b| b.address().is_some()))
        {
            log::debug!("pci {here}: the firmware set up this bridge; kept");
            continue;
        }
        place_subtree(devices, windows, root, secondary, &below);
    }
}

fn place_subtree(
    devices: &mut [PciDevice],
    windows: &mut Windows,
    root: usize,
    secondary: u8,
    below: &[usize],
) {
    let here = devices[root].config.address();
    // Everything below, and the root, stops decoding and forwarding; every window starts closed.
    for &i in below.iter().chain(core::iter::once(&root)) {
        let cfg = devices[i].config;
        let command = cfg.read_u16(regs::COMMAND);
        // SAFETY: turning decoding off only stops the function answering addresses.
        unsafe {
            cfg.write_u16_raw(
                regs::COMMAND,
                command & !(regs::COMMAND_IO | regs::COMMAND_MEMORY),
            )
        };
        if devices[i].header_type == regs::HEADER_TYPE_BRIDGE {
            for space in Space::ALL {
                set_window(&cfg, space, None);
            }
        }
    }
    // The prefetchable window goes above 4 GiB only if every bridge on the way decodes 64 bits.
    let pref64 = below
        .iter()
        .chain(core::iter::once(&root))
        .filter(|&&i| devices[i].header_type == regs::HEADER_TYPE_BRIDGE)
        .all(|&i| devices[i].config.read_u16(PREF_BASE) & 0xF == 1);
    for space in Space::ALL {
        let Some((size, align)) = need(devices, secondary, space, 1) else {
            continue;
        };
        let at = match space {
            Space::Io => windows.io.allocate_aligned(size, align),
            Space::Mem => windows.mem32.allocate_aligned(size, align),
            Space::Pref if pref64 => windows
                .mem64
                .allocate_aligned(size, align)
                .or_else(|| windows.mem32.allocate_aligned(size, align)),
            Space::Pref => windows.mem32.allocate_aligned(size, align),
        };
        let Some(at) = at else {
            log::warn!("pci {here}: no room for a {size:#x}-byte {space:?} window");
            continue;
        };
        if space != Space::Io {
            windows.reserve_memory(at, at + size);
        }
        log::debug!("pci {here}: {space:?} window {at:#x}+{size:#x}");
        set_window(&devices[root].config, space, Some((at, at + size)));
        place(devices, secondary, space, at, 1);
    }
}
