//! Enumeration: every function on every bus reachable from bus 0 through PCI-PCI bridges.
//!
//! Bridges the firmware left unnumbered (qboot numbers none) get bus numbers here, depth first,
//! so the functions behind them are found; their windows are not programmed (see `assign`).

use alloc::vec::Vec;

use super::{
    bar::{self, Bar},
    config::{PciAddress, PciConfig},
    device::{ClassCode, PciDevice},
    regs,
};

/// Deepest bridge nesting followed (PCIe topologies are far shallower; this bounds recursion).
const MAX_DEPTH: usize = 16;

struct Scan {
    devices: Vec<PciDevice>,
    /// Buses already scanned: each is scanned once even if bridges claim it twice.
    visited: [bool; 256],
    /// The next bus number free for an unnumbered bridge.
    next_bus: u16,
}

/// Finds every function reachable from bus 0, sizing BARs on the way.
pub(super) fn scan() -> Vec<PciDevice> {
    let mut scan = Scan {
        devices: Vec::new(),
        visited: [false; 256],
        next_bus: 1,
    };
    scan.bus(0, 0);
    scan.devices
}

impl Scan {
    fn bus(&mut self, bus: u8, depth: usize) {
        if self.visited[usize::from(bus)] {
            log::warn!("pci: bus {bus:02x} claimed twice; scanned once");
            return;
        }
        self.visited[usize::from(bus)] = true;
        for device in 0..32 {
            let Some(cfg) = PciAddress::new(bus, device, 0).map(PciConfig::new) else {
                continue;
            };
            if cfg.read_u16(regs::VENDOR_ID) == 0xFFFF {
                continue;
            }
            let multifunction = cfg.read_u8(regs::HEADER_TYPE) & 0x80 != 0;
            let functions = if multifunction { 8 } else { 1 };
            for function in 0..functions {
                let Some(cfg) = PciAddress::new(bus, device, function).map(PciConfig::new) else {
                    continue;
                };
                if cfg.read_u16(regs::VENDOR_ID) == 0xFFFF {
                    continue;
                }
                let dev = probe(cfg, multifunction);
                let is_bridge = dev.header_type == regs::HEADER_TYPE_BRIDGE;
                self.devices.push(dev);
                if is_bridge {
                    self.bridge(cfg, depth);
                }
            }
        }
    }

    fn bridge(&mut self, cfg: PciConfig, depth: usize) {
        let here = cfg.address();
        if depth + 1 > MAX_DEPTH {
            log::warn!("pci {here}: bridges nested deeper than {MAX_DEPTH}; not followed");
            return;
        }
        let bus = here.bus();
        let secondary = cfg.read_u8(regs::SECONDARY_BUS);
        let subordinate = cfg.read_u8(regs::SUBORDINATE_BUS);
        if secondary > bus && subordinate >= secondary {
            // Numbered by the firmware: keep its numbers.
            self.next_bus = self.next_bus.max(u16::from(subordinate) + 1);
            self.bus(secondary, depth + 1);
            return;
        }
        if secondary != 0 {
            log::warn!("pci {here}: bridge has bad bus numbers {secondary}..={subordinate}");
            return;
        }
        let Ok(new) = u8::try_from(self.next_bus) else {
            log::warn!("pci {here}: no bus number left for the bridge");
            return;
        };
        self.next_bus += 1;
        // SAFETY: bus-number registers route configuration cycles only; they change no memory or
        // I/O decoding. The subordinate number is opened to 0xFF while the subtree is scanned
        // and closed to the last number used afterwards.
        unsafe {
            cfg.write_u8_raw(regs::PRIMARY_BUS, bus);
            cfg.write_u8_raw(regs::SECONDARY_BUS, new);
            cfg.write_u8_raw(regs::SUBORDINATE_BUS, 0xFF);
        }
        self.bus(new, depth + 1);
        let last = (self.next_bus - 1).min(255) as u8;
        // SAFETY: as above.
        unsafe { cfg.write_u8_raw(regs::SUBORDINATE_BUS, last) };
        log::debug!("pci {here}: numbered bridge buses {new:02x}..={last:02x}");
    }
}

/// Reads a present function's identity and sizes its BARs.
fn probe(cfg: PciConfig, multifunction: bool) -> PciDevice {
    let class_rev = cfg.read_u32(regs::REVISION);
    let class = ClassCode {
        class: (class_rev >> 24) as u8,
        subclass: (class_rev >> 16) as u8,
        prog_if: (class_rev >> 8) as u8,
    };
    let header_type = cfg.read_u8(regs::HEADER_TYPE) & 0x7F;
    let bar_count = match header_type {
        regs::HEADER_TYPE_NORMAL => 6,
        regs::HEADER_TYPE_BRIDGE => 2,
        _ => 0,
    };
    let mut bars: [Option<Bar>; 6] = [None; 6];
    // Host bridges are left alone (as Linux does): turning their decoding off could cut the path
    // to memory itself, and q35's has no BARs.
    let host_bridge = class.class == 0x06 && class.subclass == 0x00;
    if bar_count > 0 && !host_bridge {
        let command = cfg.read_u16(regs::COMMAND);
        // SAFETY: turning decoding off only stops the function answering its BARs' addresses;
        // nothing of the kernel's lives there while it is being probed.
        unsafe {
            cfg.write_u16_raw(
                regs::COMMAND,
                command & !(regs::COMMAND_IO | regs::COMMAND_MEMORY),
            )
        };
        // SAFETY: decoding is off (just above).
        let probed = unsafe { bar::probe_bars(&cfg, bar_count) };
        // SAFETY: restores the firmware's command value; the BARs hold their original values.
        unsafe { cfg.write_u16_raw(regs::COMMAND, command) };
        for (slot, result) in bars.iter_mut().zip(probed) {
            match result {
                Some(Ok(b)) => *slot = Some(b),
                Some(Err(e)) => log::warn!("pci {}: BAR ignored: {e}", cfg.address()),
                None => {}
            }
        }
    }
    PciDevice {
        config: cfg,
        vendor_id: cfg.read_u16(regs::VENDOR_ID),
        device_id: cfg.read_u16(regs::DEVICE_ID),
        class,
        revision: class_rev as u8,
        header_type,
        multifunction,
        interrupt_line: cfg.read_u8(regs::INTERRUPT_LINE),
        interrupt_pin: cfg.read_u8(regs::INTERRUPT_PIN),
        bars,
    }
}
