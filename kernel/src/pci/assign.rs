//! BAR assignment: keep what the firmware placed if it is sound, place the rest, turn decoding on.
//!
//! The windows BARs go in (q35 layout, the CPU's physical address width from CPUID 0x80000008,
//! every e820 range kept out) and the soundness rules are `vireo_kcore::pci::windows`, tested on
//! the host; this module walks the devices and programs them. Largest BARs are placed first,
//! each aligned to its size. Subtrees behind bus-0 bridges are placed as a whole with their
//! bridge windows when the firmware placed nothing in them (see `bridge`), and kept as the
//! firmware left them otherwise.

use alloc::vec::Vec;

use vireo_boot::{MemoryKind, MemoryRegion};
pub use vireo_kcore::pci::windows::{
    IO_END, IO_START, MEM32_END, MEM32_START, MEM64_START, MMCONFIG, Windows,
};

use super::{bar, bridge, device::PciDevice, regs};

/// Physical address bits of this CPU (CPUID 0x80000008 `EAX[7:0]`; 36 if the leaf is missing).
pub fn physical_address_bits() -> u8 {
    let max_extended = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    if max_extended >= 0x8000_0008 {
        let bits = core::arch::x86_64::__cpuid(0x8000_0008).eax as u8;
        if (32..=52).contains(&bits) {
            return bits;
        }
    }
    36
}

/// The windows for a CPU with `phys_bits` physical address bits and this memory map.
fn windows(memory_map: &[MemoryRegion], phys_bits: u8) -> Windows {
    let ram_top = memory_map
        .iter()
        .filter(|r| r.kind == MemoryKind::Ram)
        .map(|r| r.end)
        .max()
        .unwrap_or(0);
    Windows::new(
        phys_bits,
        ram_top,
        memory_map.iter().map(|r| (r.start, r.end)),
    )
}

/// Keeps sound firmware placements, places the rest, and enables decoding and bus mastering.
pub(super) fn assign(devices: &mut [PciDevice], memory_map: &[MemoryRegion], phys_bits: u8) {
    let mut windows = windows(memory_map, phys_bits);
    let (lo, hi) = windows.mem64.bounds();
    log::debug!(
        "pci: windows mem32 {MEM32_START:#x}..{MEM32_END:#x} mem64 {lo:#x}..{hi:#x} \
         io {IO_START:#x}..{IO_END:#x} ({phys_bits} physical address bits)"
    );
    // Pass 1: keep what the firmware placed soundly; forget the rest.
    for dev in devices.iter_mut() {
        let here = dev.config.address();
        for bar in dev.bars.iter_mut().flatten() {
            if bar.address().is_some() && !windows.keep(bar) {
                log::warn!("pci {here}: firmware placement of {bar} rejected");
                bar.forget_address();
            }
        }
    }
    // Pass 2: place unassigned BARs of bus-0 functions, largest first.
    let mut todo: Vec<(usize, usize)> = Vec::new();
    for (d, dev) in devices.iter().enumerate() {
        for (b, bar) in dev.bars.iter().enumerate() {
            if let Some(bar) = bar
                && bar.address().is_none()
                && dev.config.address().bus() == 0
            {
                todo.push((d, b));
            }
        }
    }
    todo.sort_by_key(|&(d, b)| core::cmp::Reverse(devices[d].bars[b].map_or(0, |bar| bar.size())));
    for (d, b) in todo {
        let dev = &mut devices[d];
        let Some(bar) = dev.bars[b].as_mut() else {
            continue;
        };
        let Some(at) = windows.place(bar) else {
            log::warn!("pci {}: no room for {bar}", dev.config.address());
            continue;
        };
        let cfg = dev.config;
        let command = cfg.read_u16(regs::COMMAND);
        // SAFETY: 1. decoding is turned off around the update, so a half-written 64-bit address
        // decodes nothing; 2. `[at, at + size)` comes from a window with RAM, firmware ranges and
        // every other BAR reserved, so no RAM or other device answers there.
        unsafe {
            cfg.write_u16_raw(
                regs::COMMAND,
                command & !(regs::COMMAND_IO | regs::COMMAND_MEMORY),
            );
            bar::program_bar(&cfg, bar, at);
            cfg.write_u16_raw(regs::COMMAND, command);
        }
        bar.set_kernel_address(at);
    }
    // Pass 3: subtrees of bus-0 bridges that the firmware left unassigned.
    bridge::place_bridges(devices, &mut windows);
    for dev in devices.iter() {
        for bar in dev.bars().filter(|b| b.address().is_none()) {
            log::warn!("pci {}: {bar} left unassigned", dev.config.address());
        }
    }
    // Pass 4: decoding on for each space whose BARs all have sound addresses (off otherwise)
    // and, on bridges, for each space with an open window; bus mastering for functions with
    // BARs and for bridges.
    for dev in devices.iter() {
        let has = |io: bool| dev.bars().any(|b| b.is_io() == io);
        let all_placed = |io: bool| {
            dev.bars()
                .filter(|b| b.is_io() == io)
                .all(|b| b.address().is_some())
        };
        let mut enable = 0;
        let mut disable = 0;
        let (window_mem, window_io) = if dev.header_type == regs::HEADER_TYPE_BRIDGE {
            bridge::windows_open(&dev.config)
        } else {
            (false, false)
        };
        if !all_placed(false) {
            disable |= regs::COMMAND_MEMORY;
        } else if has(false) || window_mem {
            enable |= regs::COMMAND_MEMORY;
        }
        if !all_placed(true) {
            disable |= regs::COMMAND_IO;
        } else if has(true) || window_io {
            enable |= regs::COMMAND_IO;
        }
        if dev.bars().next().is_some() || dev.header_type == regs::HEADER_TYPE_BRIDGE {
            enable |= regs::COMMAND_BUS_MASTER;
        }
        if enable == 0 && disable == 0 {
            continue;
        }
        let cfg = dev.config;
        let command = cfg.read_u16(regs::COMMAND);
        // SAFETY: decoding is enabled only for spaces whose every BAR holds an address checked
        // (kept) or chosen (placed) to overlap no RAM and no other device, and turned off for a
        // space with a BAR left without a sound address.
        unsafe { cfg.write_u16_raw(regs::COMMAND, (command & !disable) | enable) };
    }
}
