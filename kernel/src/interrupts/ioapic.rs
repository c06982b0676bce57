//! The IOAPICs (Intel 82093AA datasheet) and the legacy 8259 PIC, which is remapped and masked.

use core::fmt;

use spin::Mutex;

use super::{
    acpi::{IsaOverride, MAX_IOAPICS, MAX_OVERRIDES, Madt},
    lapic,
    vectors::{PIC_VECTOR_BASE, VectorError},
};
use crate::{
    arch::port::Port,
    mm::{MapError, Mmio, map_mmio},
};

/// Where QEMU's (and most chipsets') IOAPIC sits when no MADT says otherwise.
pub const DEFAULT_IOAPIC_ADDRESS: u64 = 0xfec0_0000;

const IOREGSEL: usize = 0x00;
const IOWIN: usize = 0x10;
const REG_ID: u32 = 0x00;
const REG_VERSION: u32 = 0x01;
const REG_REDIRECTION: u32 = 0x10;
const ENTRY_MASKED: u64 = 1 << 16;
const ENTRY_LEVEL: u64 = 1 << 15;
const ENTRY_ACTIVE_LOW: u64 = 1 << 13;

/// How an interrupt line signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Edge-triggered, active high (ISA default).
    EdgeHigh,
    /// Edge-triggered, active low.
    EdgeLow,
    /// Level-triggered, active high.
    LevelHigh,
    /// Level-triggered, active low (PCI INTx).
    LevelLow,
}

/// Why an IOAPIC operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoApicError {
    /// The IOAPIC is not set up yet.
    NotReady,
    /// No IOAPIC serves this GSI.
    NoSuchGsi(u32),
    /// The IOAPIC's registers could not be mapped.
    Map(MapError),
    /// The vector cannot be used.
    Vector(VectorError),
}

impl fmt::Display for IoApicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReady => f.write_str("the IOAPIC is not initialised"),
            Self::NoSuchGsi(g) => write!(f, "no IOAPIC input serves GSI {g}"),
            Self::Map(e) => write!(f, "cannot map the IOAPIC: {e}"),
            Self::Vector(e) => write!(f, "{e}"),
        }
    }
}

struct IoApic {
    regs: Mmio,
    gsi_base: u32,
    inputs: u32,
}

impl IoApic {
    fn read(&self, reg: u32) -> u32 {
        self.regs.write_u32(IOREGSEL, reg);
        self.regs.read_u32(IOWIN)
    }

    fn write(&self, reg: u32, value: u32) {
        self.regs.write_u32(IOREGSEL, reg);
        self.regs.write_u32(IOWIN, value);
    }

    fn set_entry(&self, input: u32, entry: u64) {
        let reg = REG_REDIRECTION + 2 * input;
        // Mask first so the line is never live with half an entry written.
        self.write(reg, (entry as u32) | ENTRY_MASKED as u32);
        self.write(reg + 1, (entry >> 32) as u32);
        self.write(reg, entry as u32);
    }
}

/// Every IOAPIC the MADT lists (QEMU's `microvm` has two), and the ISA overrides.
struct IoApics {
    apics: [Option<IoApic>; MAX_IOAPICS],
    overrides: [IsaOverride; MAX_OVERRIDES],
    override_count: usize,
}

impl IoApics {
    /// The IOAPIC serving `gsi`, and the input number there.
    fn serving(&self, gsi: u32) -> Result<(&IoApic, u32), IoApicError> {
        self.apics
            .iter()
            .flatten()
            .find_map(|a| {
                let input = gsi.checked_sub(a.gsi_base).filter(|i| *i < a.inputs)?;
                Some((a, input))
            })
            .ok_or(IoApicError::NoSuchGsi(gsi))
    }
}

static IOAPICS: Mutex<Option<IoApics>> = Mutex::new(None);

/// Remaps the 8259 PICs to vectors 0x20..=0x2F and masks every line.
fn disable_pic() {
    // SAFETY: 0x20/0x21 and 0xA0/0xA1 are the 8259 command/data ports and 0x80 the POST port;
    // programming the PICs only changes which vectors they would raise.
    let (mut cmd1, mut data1, mut cmd2, mut data2, mut delay) = unsafe {
        (
            Port::<u8>::new(0x20),
            Port::<u8>::new(0x21),
            Port::<u8>::new(0xa0),
            Port::<u8>::new(0xa1),
            Port::<u8>::new(0x80),
        )
    };
    let mut w = |port: &mut Port<u8>, v: u8| {
        port.write(v);
        delay.write(0);
    };
    w(&mut cmd1, 0x11); // ICW1: init, ICW4 follows
    w(&mut cmd2, 0x11);
    w(&mut data1, PIC_VECTOR_BASE); // ICW2: vector base
    w(&mut data2, PIC_VECTOR_BASE + 8);
    w(&mut data1, 0x04); // ICW3: slave on IRQ 2
    w(&mut data2, 0x02); // ICW3: slave identity 2
    w(&mut data1, 0x01); // ICW4: 8086 mode
    w(&mut data2, 0x01);
    w(&mut data1, 0xff); // mask everything
    w(&mut data2, 0xff);
}

/// Masks the PIC (when there is one), maps every IOAPIC the MADT names (or the PC default one
/// without a MADT) and masks all their inputs.
pub(super) fn init(madt: Option<&Madt>) -> Result<(), IoApicError> {
    if madt.is_none_or(|m| m.has_8259) {
        disable_pic();
    }
    let default = [super::IoApicEntry {
        id: 0,
        address: DEFAULT_IOAPIC_ADDRESS as u32,
        gsi_base: 0,
    }];
    let entries = match madt {
        Some(m) if !m.ioapics().is_empty() => m.ioapics(),
        _ => &default,
    };
    let mut all = IoApics {
        apics: [const { None }; MAX_IOAPICS],
        overrides: [IsaOverride::default(); MAX_OVERRIDES],
        override_count: 0,
    };
    for (slot, e) in all.apics.iter_mut().zip(entries) {
        let address = u64::from(e.address);
        // SAFETY: `address` is an IOAPIC's register window (from the MADT or the PC default);
        // its registers steer interrupts and never access memory.
        let regs = unsafe { map_mmio(address, 0x20) }.map_err(IoApicError::Map)?;
        let mut apic = IoApic {
            regs,
            gsi_base: e.gsi_base,
            inputs: 0,
        };
        apic.inputs = ((apic.read(REG_VERSION) >> 16) & 0xff) + 1;
        for input in 0..apic.inputs {
            apic.set_entry(input, ENTRY_MASKED);
        }
        log::debug!(
            "IOAPIC at {address:#x}: id {}, GSIs {}..{}",
            apic.read(REG_ID) >> 24,
            e.gsi_base,
            e.gsi_base + apic.inputs
        );
        *slot = Some(apic);
    }
    if let Some(m) = madt {
        all.override_count = m.overrides().len();
        all.overrides[..all.override_count].copy_from_slice(m.overrides());
    }
    *IOAPICS.lock() = Some(all);
    Ok(())
}

/// Routes global system interrupt `gsi` to `vector` on the boot CPU and unmasks it.
pub fn route_gsi(gsi: u32, vector: u8, trigger: Trigger) -> Result<(), IoApicError> {
    if vector < 32 {
        return Err(IoApicError::Vector(VectorError::Reserved(vector)));
    }
    x86_64::instructions::interrupts::without_interrupts(|| {
        let guard = IOAPICS.lock();
        let (apic, input) = guard.as_ref().ok_or(IoApicError::NotReady)?.serving(gsi)?;
        let mut entry = u64::from(vector) | (u64::from(lapic::boot_apic_id() & 0xff) << 56);
        if matches!(trigger, Trigger::LevelHigh | Trigger::LevelLow) {
            entry |= ENTRY_LEVEL;
        }
        if matches!(trigger, Trigger::EdgeLow | Trigger::LevelLow) {
            entry |= ENTRY_ACTIVE_LOW;
        }
        apic.set_entry(input, entry);
        Ok(())
    })
}

/// Masks global system interrupt `gsi`.
pub fn mask_gsi(gsi: u32) -> Result<(), IoApicError> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let guard = IOAPICS.lock();
        let (apic, input) = guard.as_ref().ok_or(IoApicError::NotReady)?.serving(gsi)?;
        apic.set_entry(input, ENTRY_MASKED);
        Ok(())
    })
}

/// The GSI and signalling of ISA IRQ `irq`, after the MADT's interrupt source overrides.
pub fn isa_irq_gsi(irq: u8) -> (u32, Trigger) {
    let found = x86_64::instructions::interrupts::without_interrupts(|| {
        let guard = IOAPICS.lock();
        guard.as_ref().and_then(|a| {
            a.overrides[..a.override_count]
                .iter()
                .find(|o| o.irq == irq)
                .copied()
        })
    });
    match found {
        None => (u32::from(irq), Trigger::EdgeHigh),
        Some(o) => {
            let low = o.flags & 0b11 == 0b11;
            let level = (o.flags >> 2) & 0b11 == 0b11;
            let trigger = match (level, low) {
                (false, false) => Trigger::EdgeHigh,
                (false, true) => Trigger::EdgeLow,
                (true, false) => Trigger::LevelHigh,
                (true, true) => Trigger::LevelLow,
            };
            (o.gsi, trigger)
        }
    }
}

/// Routes ISA IRQ `irq` (after overrides) to `vector` and unmasks it; returns the GSI used.
pub fn route_isa_irq(irq: u8, vector: u8) -> Result<u32, IoApicError> {
    let (gsi, trigger) = isa_irq_gsi(irq);
    route_gsi(gsi, vector, trigger)?;
    Ok(gsi)
}
