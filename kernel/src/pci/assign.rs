//! BAR assignment: keep what the firmware placed if it is sound, place the rest, turn decoding on.
//!
//! Windows (q35 layout, checked against the e820 map):
//! - 32-bit memory: `0xC000_0000..0xFEC0_0000`, above the MMCONFIG window `0xB000_0000..0xC000_0000`
//!   and below the IOAPIC/HPET/LAPIC/flash range.
//! - 64-bit memory: from 512 GiB (`0x80_0000_0000`) up to the CPU's physical address width (CPUID
//!   0x80000008), lowered to half the width on CPUs with fewer than 40 bits.
//! - I/O: `0xC000..0x1_0000`.
//!
//! Every e820 range (RAM or reserved) is kept out of every window. Largest BARs are placed first,
//! each aligned to its size. Subtrees behind bus-0 bridges are placed as a whole with their
//! bridge windows when the firmware placed nothing in them (see `bridge`), and kept as the
//! firmware left them otherwise.

use alloc::vec::Vec;

use vireo_boot::{MemoryKind, MemoryRegion};

use super::{
    bar::{self, Bar, BarKind},
    bridge,
    device::PciDevice,
    regs,
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
const LEGACY_IO: &[(u64, u64)] = &[
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

/// The three windows, with every fixed range kept out of them.
pub(super) struct Windows {
    pub(super) mem32: AddressWindow,
    pub(super) mem64: AddressWindow,
    pub(super) io: AddressWindow,
    phys_limit: u64,
}

impl Windows {
    fn new(memory_map: &[MemoryRegion], phys_bits: u8) -> Self {
        let phys_limit = 1u64 << phys_bits;
        let ram_top = memory_map
            .iter()
            .filter(|r| r.kind == MemoryKind::Ram)
            .map(|r| r.end)
            .max()
            .unwrap_or(0);
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
        for r in memory_map {
            w.reserve_memory(r.start, r.end);
        }
        for &(start, end) in LEGACY_IO {
            w.io.reserve(start, end);
        }
        w
    }

    /// Keeps `[start, end)` out of both memory windows.
    pub(super) fn reserve_memory(&mut self, start: u64, end: u64) {
        self.mem32.reserve(start, end);
        self.mem64.reserve(start, end);
    }

    /// Whether the firmware's placement of `bar` is sound: aligned, addressable, clear of RAM,
    /// reserved ranges and every BAR kept so far. Kept BARs are reserved.
    fn keep(&mut self, bar: &Bar) -> bool {
        let Some(range) = bar.range() else {
            return false;
        };
        if !range.start.is_multiple_of(bar.size) {
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

    /// Places `bar`: 64-bit BARs above 4 GiB (or in the 32-bit window if that is full).
    fn place(&mut self, bar: &Bar) -> Option<u64> {
        let at = match bar.kind {
            BarKind::Io => return self.io.allocate(bar.size),
            BarKind::Memory64 => self
                .mem64
                .allocate(bar.size)
                .or_else(|| self.mem32.allocate(bar.size)),
            BarKind::Memory32 => self.mem32.allocate(bar.size),
        }?;
        // Keep the other memory window clear of it as well.
        self.reserve_memory(at, at + bar.size);
        Some(at)
    }
}

/// Keeps sound firmware placements, places the rest, and enables decoding and bus mastering.
pub(super) fn assign(devices: &mut [PciDevice], memory_map: &[MemoryRegion], phys_bits: u8) {
    let mut windows = Windows::new(memory_map, phys_bits);
    let (lo, hi) = windows.mem64.bounds();
    log::debug!(
        "pci: windows mem32 {MEM32_START:#x}..{MEM32_END:#x} mem64 {lo:#x}..{hi:#x} \
         io {IO_START:#x}..{IO_END:#x} ({phys_bits} physical address bits)"
    );
    // Pass 1: keep what the firmware placed soundly; forget the rest.
    for dev in devices.iter_mut() {
        let here = dev.config.address();
        for bar in dev.bars.iter_mut().flatten() {
            if bar.address.is_some() && !windows.keep(bar) {
                log::warn!("pci {here}: firmware placement of {bar} rejected");
                bar.address = None;
            }
        }
    }
    // Pass 2: place unassigned BARs of bus-0 functions, largest first.
    let mut todo: Vec<(usize, usize)> = Vec::new();
    for (d, dev) in devices.iter().enumerate() {
        for (b, bar) in dev.bars.iter().enumerate() {
            if let Some(bar) = bar
                && bar.address.is_none()
                && dev.config.address().bus() == 0
            {
                todo.push((d, b));
            }
        }
    }
    todo.sort_by_key(|&(d, b)| core::cmp::Reverse(devices[d].bars[b].map_or(0, |bar| bar.size)));
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
        bar.address = Some(at);
        bar.assigned_by_kernel = true;
    }
    // Pass 3: subtrees of bus-0 bridges that the firmware left unassigned.
    bridge::place_bridges(devices, &mut windows);
    for dev in devices.iter() {
        for bar in dev.bars().filter(|b| b.address.is_none()) {
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
                .all(|b| b.address.is_some())
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
