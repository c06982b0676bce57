//! virtio-mmio devices (virtio 1.2 §4.2) on machines without PCI, such as QEMU's `microvm`:
//! found from the command line's `virtio_mmio.device=` words and, on a machine without a PCI
//! bus, from ACPI (`LNRO0005` devices in the DSDT), each window mapped and checked (magic value,
//! version 2, device id) once, at the first call of [`devices`]. A legacy (version 1) device is
//! reported then, once, with what to set instead, and listed by [`super::failed_devices`].

use alloc::{boxed::Box, sync::Arc, vec::Vec};
use core::fmt;

use spin::Once;
use vireo_virtio::transport::{
    RegisterBlock, VIRTIO_MMIO_MAGIC,
    mmio_slot::{self, MmioSlot},
};

use super::{FailedDevice, Location, MmioRegs, device::report_failed};
use crate::{interrupts::ioapic::Trigger, mm::map_mmio};

/// Register offsets read here (virtio 1.2 §4.2.2).
const MAGIC_VALUE: usize = 0x000;
const VERSION: usize = 0x004;
const DEVICE_ID: usize = 0x008;
/// The registers before the device configuration: a smaller window cannot be a device.
const REGISTERS_LEN: u64 = 0x100;
/// A window larger than this is refused (virtio-mmio windows are a few hundred bytes).
const MAX_WINDOW: u64 = 1 << 20;

/// Where a slot was named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A `virtio_mmio.device=` word of the kernel command line.
    CommandLine,
    /// A `LNRO0005` device in the ACPI DSDT.
    Acpi,
}

/// A virtio-mmio device with a driver-facing register window (non-zero device id): version 2 in
/// [`devices`]; a legacy (version 1) one only as a [`FailedDevice`]'s location.
pub struct MmioDevice {
    slot: MmioSlot,
    source: Source,
    device_type: u16,
    regs: MmioRegs,
}

impl fmt::Debug for MmioDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmioDevice")
            .field("slot", &self.slot)
            .field("source", &self.source)
            .field("device_type", &self.device_type)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for MmioDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "virtio-mmio {:#x} (GSI {})",
            self.slot.base, self.slot.irq
        )
    }
}

impl MmioDevice {
    /// The window and interrupt line.
    pub fn slot(&self) -> MmioSlot {
        self.slot
    }

    /// Where the slot was named.
    pub fn source(&self) -> Source {
        self.source
    }

    /// The virtio device type (virtio 1.2 §5).
    pub fn device_type(&self) -> u16 {
        self.device_type
    }

    /// The register window, for a transport.
    pub fn regs(&self) -> MmioRegs {
        self.regs.clone()
    }

    /// How the line signals.
    pub fn trigger(&self) -> Trigger {
        match (self.slot.level, self.slot.active_low) {
            (false, false) => Trigger::EdgeHigh,
            (false, true) => Trigger::EdgeLow,
            (true, false) => Trigger::LevelHigh,
            (true, true) => Trigger::LevelLow,
        }
    }
}

static DEVICES: Once<Vec<MmioDevice>> = Once::new();

/// Every virtio-mmio device found (in the order the command line, then ACPI, names them);
/// empty on a machine with none.
pub fn devices() -> &'static [MmioDevice] {
    DEVICES.call_once(discover)
}

/// A device type's name for the log.
fn type_name(device_type: u16) -> &'static str {
    match device_type {
        1 => "network",
        2 => "block",
        3 => "console",
        4 => "entropy",
        5 => "memory balloon",
        9 => "9P transport",
        16 => "GPU",
        18 => "input",
        19 => "vsock",
        26 => "file system",
        _ => "unknown",
    }
}

fn discover() -> Vec<MmioDevice> {
    let mut slots: Vec<(MmioSlot, Source)> = Vec::new();
    for found in mmio_slot::cmdline_slots(crate::boot_info().cmdline()) {
        match found {
            Ok(slot) => slots.push((slot, Source::CommandLine)),
            Err(word) => log::warn!("virtio-mmio: `{word}` is not SIZE@BASE:IRQ[:ID]; ignored"),
        }
    }
    // ACPI is read only where there is no PCI bus (microvm): QEMU puts virtio-mmio devices in the
    // DSDT nowhere else, and scanning a q35 DSDT costs milliseconds under TCG and far more under
    // an instruction-emulating hypervisor.
    if let Some(rsdp) = crate::boot_info().rsdp()
        && crate::pci::devices().is_empty()
    {
        match crate::interrupts::read_dsdt(Some(rsdp)) {
            Ok(dsdt) => slots.extend(
                mmio_slot::dsdt_slots(&dsdt)
                    .into_iter()
                    .map(|s| (s, Source::Acpi)),
            ),
            Err(e) => log::debug!("virtio-mmio: no DSDT to look in: {e}"),
        }
    }
    let mut devices: Vec<MmioDevice> = Vec::new();
    for (slot, source) in slots {
        if devices.iter().any(|d| d.slot.base == slot.base) {
            continue;
        }
        match probe(slot, source) {
            Ok(Probed::Device(d)) => {
                log::info!(
                    "{d}: {} device (type {}), from the {}",
                    type_name(d.device_type),
                    d.device_type,
                    match source {
                        Source::CommandLine => "command line",
                        Source::Acpi => "ACPI DSDT",
                    }
                );
                devices.push(d);
            }
            Ok(Probed::Legacy(d)) => report_legacy(d),
            Ok(Probed::Empty) => log::debug!("virtio-mmio {:#x}: an empty slot", slot.base),
            Err(why) => log::warn!("virtio-mmio {:#x}: {why}; left alone", slot.base),
        }
    }
    devices
}

/// What a slot holds.
enum Probed {
    /// No device (device id 0).
    Empty,
    /// A version-2 device, for a driver.
    Device(MmioDevice),
    /// A legacy (version 1) device, which Vireo does not drive.
    Legacy(MmioDevice),
}

/// Reports a legacy device once: as a failed device ([`super::failed_devices`]) when Vireo has
/// a driver for its type, in the log only otherwise.
fn report_legacy(d: MmioDevice) {
    const REASON: &str = "a legacy (version 1) virtio-mmio device: Vireo drives version 2 only";
    const HINT: &str = "in QEMU, -global virtio-mmio.force-legacy=false (its virtio-mmio \
                        devices are legacy unless told otherwise)";
    let kind = match d.device_type {
        1 => "virtio-net",
        2 => "virtio-blk",
        other => {
            let name = type_name(other);
            log::warn!("{d}: a {name} device: {REASON}; left alone; hint: {HINT}");
            return;
        }
    };
    // Found once, at the first `devices()`: one small allocation per legacy device, for good.
    let location = Location::Mmio(Box::leak(Box::new(d)));
    report_failed(FailedDevice {
        kind,
        location,
        reason: REASON.into(),
        hint: Some(HINT),
    });
}

/// Maps `slot` and reads what it holds: a device of version 2 or 1 (legacy), or nothing.
fn probe(slot: MmioSlot, source: Source) -> Result<Probed, &'static str> {
    if !(REGISTERS_LEN..=MAX_WINDOW).contains(&slot.size) {
        return Err("a window smaller than the registers or larger than 1 MiB");
    }
    let len = slot.size as usize;
    // SAFETY: the window was named by the platform (command line or ACPI) as a virtio-mmio
    // register block; reading its identification registers has no side effects, and a virtio
    // device starts no DMA until a driver sets it up.
    let mmio = unsafe { map_mmio(slot.base, len) }.map_err(|_| "cannot map the window")?;
    let regs = MmioRegs::new(Arc::new(mmio), 0, len).ok_or("cannot map the window")?;
    if regs.read_u32(MAGIC_VALUE) != VIRTIO_MMIO_MAGIC {
        return Err("no virtio-mmio magic value");
    }
    // The device id sits at the same offset in both versions (§4.2.2, §4.2.4).
    let device_type = match u16::try_from(regs.read_u32(DEVICE_ID)) {
        Ok(0) => return Ok(Probed::Empty),
        Ok(t) => t,
        Err(_) => return Err("a device id beyond 16 bits"),
    };
    let version = regs.read_u32(VERSION);
    let device = MmioDevice {
        slot,
        source,
        device_type,
        regs,
    };
    match version {
        2 => Ok(Probed::Device(device)),
        1 => Ok(Probed::Legacy(device)),
        _ => Err("an unknown virtio-mmio version"),
    }
}
