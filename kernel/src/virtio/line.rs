//! A virtio-mmio device's interrupt line (virtio 1.2 §4.2.3.4): one GSI per device, routed
//! through the IOAPIC to a vector of its own. The handler reads `InterruptStatus`, acknowledges
//! what it read (before the end of interrupt, so a level-triggered line drops), and counts used
//! buffers on the vector's event and configuration changes apart.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use spin::Mutex;
use vireo_virtio::transport::RegisterBlock;

use super::{IrqEvent, mmio::MmioDevice, msix::count_event};
use crate::interrupts::{Vector, alloc_vector, free_vector, ioapic};

const INTERRUPT_STATUS: usize = 0x060;
const INTERRUPT_ACK: usize = 0x064;
const USED_BUFFER: u32 = 1;
const CONFIG_CHANGE: u32 = 2;

/// The device (index + 1 into [`super::mmio::devices`]) behind each vector; 0 for none.
static DEVICE_OF: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
/// Configuration-change interrupts by vector.
static CONFIG_EVENTS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
/// GSIs routed to a line, so two devices never take the same one over from each other.
static ROUTED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn line_interrupt(vector: u8) {
    let Some(device) = DEVICE_OF[usize::from(vector)]
        .load(Ordering::Acquire)
        .checked_sub(1)
        .and_then(|i| super::mmio::devices().get(i))
    else {
        return;
    };
    let regs = device.regs();
    let status = regs.read_u32(INTERRUPT_STATUS);
    if status != 0 {
        regs.write_u32(INTERRUPT_ACK, status);
    }
    if status & USED_BUFFER != 0 {
        count_event(vector);
    }
    if status & CONFIG_CHANGE != 0 {
        CONFIG_EVENTS[usize::from(vector)].fetch_add(1, Ordering::Release);
    }
}

/// Why a line could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// No vector was free.
    NoVector,
    /// Another device already uses the GSI (shared lines are not supported).
    Shared(u32),
    /// The IOAPIC refused the route (no IOAPIC input serves the GSI, say).
    Route(ioapic::IoApicError),
}

impl core::fmt::Display for LineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoVector => f.write_str("no interrupt vector free"),
            Self::Shared(g) => write!(f, "GSI {g} is already another device's"),
            Self::Route(e) => write!(f, "{e}"),
        }
    }
}

/// A device's routed line; dropping it masks the GSI and frees the vector.
#[derive(Debug)]
pub struct IrqLine {
    /// Always `Some` until dropped.
    vector: Option<Vector>,
    number: u8,
    gsi: u32,
    trigger: ioapic::Trigger,
}

impl IrqLine {
    /// Routes `device`'s line to a new vector, as the platform says it signals.
    ///
    /// # Errors
    /// See [`LineError`]; nothing stays allocated on error.
    pub fn route(device: &'static MmioDevice) -> Result<Self, LineError> {
        let index = super::mmio::devices()
            .iter()
            .position(|d| core::ptr::eq(d, device))
            .ok_or(LineError::NoVector)?;
        let gsi = device.slot().irq;
        {
            let mut routed = ROUTED.lock();
            if routed.contains(&gsi) {
                return Err(LineError::Shared(gsi));
            }
            routed.push(gsi);
        }
        let release = || ROUTED.lock().retain(|g| *g != gsi);
        let vector = match alloc_vector(line_interrupt) {
            Ok(v) => v,
            Err(_) => {
                release();
                return Err(LineError::NoVector);
            }
        };
        DEVICE_OF[usize::from(vector.number())].store(index + 1, Ordering::Release);
        if let Err(e) = ioapic::route_gsi(gsi, vector.number(), device.trigger()) {
            DEVICE_OF[usize::from(vector.number())].store(0, Ordering::Release);
            free_vector(vector);
            release();
            return Err(LineError::Route(e));
        }
        Ok(Self {
            number: vector.number(),
            vector: Some(vector),
            gsi,
            trigger: device.trigger(),
        })
    }

    /// The event that counts used-buffer interrupts (every queue of the device shares it).
    pub fn event(&self) -> IrqEvent {
        IrqEvent::of(self.number)
    }

    /// Configuration-change interrupts so far.
    pub fn config_count(&self) -> u64 {
        CONFIG_EVENTS[usize::from(self.number)].load(Ordering::Acquire)
    }

    /// Masks or unmasks the line at the IOAPIC (tests take interrupts away with it).
    pub fn set_masked(&self, masked: bool) {
        let _ = if masked {
            ioapic::mask_gsi(self.gsi)
        } else {
            ioapic::route_gsi(self.gsi, self.number, self.trigger)
        };
    }
}

impl Drop for IrqLine {
    fn drop(&mut self) {
        let _ = ioapic::mask_gsi(self.gsi);
        DEVICE_OF[usize::from(self.number)].store(0, Ordering::Release);
        if let Some(v) = self.vector.take() {
            free_vector(v);
        }
        ROUTED.lock().retain(|g| *g != self.gsi);
    }
}
