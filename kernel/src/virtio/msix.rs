//! MSI-X for virtio devices: vectors from the kernel's allocator, the device's table programmed,
//! and an event counter per vector that waiting code can sleep on.

use alloc::{sync::Arc, vec::Vec};
use core::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use crate::{
    interrupts::{self, Vector, VectorError, alloc_vector, free_vector},
    mm::{Mmio, map_mmio},
    pci::{MsixCapability, PciDevice},
};

/// How many times each vector has fired.
static EVENTS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

/// Counts one interrupt on `vector` (the handler of MSI-X vectors; lines count used buffers).
pub(super) fn count_event(vector: u8) {
    EVENTS[usize::from(vector)].fetch_add(1, Ordering::Release);
}

/// One interrupt vector's event count: lets a thread of control sleep until the vector fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqEvent {
    vector: u8,
}

impl IrqEvent {
    /// The event of `vector`.
    pub(super) fn of(vector: u8) -> Self {
        Self { vector }
    }

    /// The vector.
    pub fn vector(&self) -> u8 {
        self.vector
    }

    /// How many times the vector has fired so far.
    pub fn count(&self) -> u64 {
        EVENTS[usize::from(self.vector)].load(Ordering::Acquire)
    }

    /// Halts until the vector fires after `seen` (a value from [`count`](Self::count)), or until
    /// the timer tick count reaches `deadline_tick`; returns whether it fired. The deadline is in
    /// ticks ([`time::ticks`](crate::time::ticks)) rather than clock time because reading the TSC
    /// can cost a VM exit, and a wait should cost none beyond the interrupt it waits for.
    pub fn wait_past(&self, seen: u64, deadline_tick: u64) -> bool {
        loop {
            // Interrupts off between the check and `hlt`: `sti; hlt` cannot lose a wake-up.
            interrupts::disable();
            if self.count() != seen {
                interrupts::enable();
                return true;
            }
            if crate::time::ticks() >= deadline_tick {
                interrupts::enable();
                return false;
            }
            x86_64::instructions::interrupts::enable_and_hlt();
        }
    }
}

/// Why MSI-X could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsixError {
    /// The function has no (usable) MSI-X capability.
    NoCapability,
    /// The table has fewer entries than needed.
    TooFewEntries {
        /// Entries needed.
        needed: usize,
        /// Entries the function has.
        available: u16,
    },
    /// The BAR holding the table is not assigned or could not be mapped.
    TableUnmapped,
    /// No interrupt vector was free.
    Vector(VectorError),
}

impl fmt::Display for MsixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCapability => f.write_str("no usable MSI-X capability"),
            Self::TooFewEntries { needed, available } => {
                write!(f, "MSI-X table has {available} entries, {needed} needed")
            }
            Self::TableUnmapped => f.write_str("MSI-X table BAR unassigned or unmappable"),
            Self::Vector(e) => write!(f, "interrupt vector: {e}"),
        }
    }
}

/// A function's MSI-X vectors: table entries `0..n`, each routed to its own CPU vector.
///
/// Dropping it masks the entries, disables MSI-X and frees the CPU vectors.
pub struct MsixVectors {
    device: &'static PciDevice,
    cap: MsixCapability,
    table: Arc<Mmio>,
    vectors: Vec<Vector>,
}

impl fmt::Debug for MsixVectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsixVectors")
            .field("device", &format_args!("{}", self.device))
            .field("count", &self.vectors.len())
            .finish()
    }
}

/// Table entry layout (PCI Local Bus 3.0 §6.8.2.7): address low, address high, data, control.
const ENTRY_ADDR_LO: usize = 0;
const ENTRY_ADDR_HI: usize = 4;
const ENTRY_DATA: usize = 8;
const ENTRY_CONTROL: usize = 12;
const ENTRY_MASKED: u32 = 1;

impl MsixVectors {
    /// Allocates `count` CPU vectors, programs table entries `0..count` with them, and enables
    /// MSI-X on `device`. Each vector counts its interrupts for [`event`](Self::event).
    ///
    /// # Errors
    /// See [`MsixError`]; on error nothing stays allocated or enabled.
    pub fn enable(device: &'static PciDevice, count: usize) -> Result<Self, MsixError> {
        let cap = device
            .msix()
            .ok_or(MsixError::NoCapability)?
            .map_err(|_| MsixError::NoCapability)?;
        if count > usize::from(cap.table_size) {
            return Err(MsixError::TooFewEntries {
                needed: count,
                available: cap.table_size,
            });
        }
        let bar = device
            .bar(cap.table_bar)
            .and_then(|b| b.address())
            .ok_or(MsixError::TableUnmapped)?;
        let phys = bar + u64::from(cap.table_offset);
        // SAFETY: the range is the function's MSI-X table (its capability, checked against the
        // BAR); its entries only describe interrupt messages, which cannot write kernel memory
        // outside the interrupt address range.
        let table = unsafe { map_mmio(phys, cap.table_len() as usize) }
            .map_err(|_| MsixError::TableUnmapped)?;
        let mut this = Self {
            device,
            cap,
            table: Arc::new(table),
            vectors: Vec::new(),
        };
        cap.set_function_mask(device, true);
        cap.set_enabled(device, true);
        for entry in 0..count {
            let vector = alloc_vector(count_event).map_err(MsixError::Vector)?;
            let msg = vector.msi_message().map_err(MsixError::Vector)?;
            let at = entry * MsixCapability::ENTRY_SIZE as usize;
            this.table.write_u32(at + ENTRY_CONTROL, ENTRY_MASKED);
            this.table.write_u32(at + ENTRY_ADDR_LO, msg.address as u32);
            this.table
                .write_u32(at + ENTRY_ADDR_HI, (msg.address >> 32) as u32);
            this.table.write_u32(at + ENTRY_DATA, msg.data);
            this.table.write_u32(at + ENTRY_CONTROL, 0);
            this.vectors.push(vector);
        }
        cap.set_function_mask(device, false);
        Ok(this)
    }

    /// The number of entries in use.
    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    /// Whether no entry is in use.
    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// Masks or unmasks table entry `entry` (PCI Local Bus 3.0 §6.8.2.9): while masked, the
    /// device sets the entry's pending bit instead of sending the message, and sends it when
    /// unmasked. Tests use it to take an interrupt away; an entry out of range is ignored.
    pub fn set_masked(&self, entry: usize, masked: bool) {
        if entry < self.vectors.len() {
            let control = if masked { ENTRY_MASKED } else { 0 };
            self.table.write_u32(
                entry * MsixCapability::ENTRY_SIZE as usize + ENTRY_CONTROL,
                control,
            );
        }
    }

    /// The event of table entry `entry`.
    pub fn event(&self, entry: usize) -> Option<IrqEvent> {
        self.vectors
            .get(entry)
            .map(|v| IrqEvent { vector: v.number() })
    }
}

impl Drop for MsixVectors {
    fn drop(&mut self) {
        for entry in 0..self.vectors.len() {
            self.table.write_u32(
                entry * MsixCapability::ENTRY_SIZE as usize + ENTRY_CONTROL,
                ENTRY_MASKED,
            );
        }
        self.cap.set_enabled(self.device, false);
        for v in self.vectors.drain(..) {
            free_vector(v);
        }
    }
}

/// Timer ticks that cover `d`, plus one for the tick in progress.
pub fn ticks_for(d: Duration) -> u64 {
    let per_tick = 1_000_000_000 / u64::from(crate::time::TICK_HZ);
    (d.as_nanos() / u128::from(per_tick)) as u64 + 1
}
