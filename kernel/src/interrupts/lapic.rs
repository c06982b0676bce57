//! The boot CPU's local APIC: x2APIC (MSRs) when the CPU has it, else xAPIC (MMIO).
//!
//! Register offsets are the xAPIC ones (Intel SDM vol. 3, table 12-1); in x2APIC mode the MSR is
//! `0x800 + offset / 16` (table 12-6).

use core::{
    arch::x86_64::__cpuid,
    sync::atomic::{AtomicU32, Ordering},
};

use spin::Once;
use x86_64::registers::model_specific::Msr;

use super::vectors::{APIC_ERROR_VECTOR, SPURIOUS_VECTOR, VectorError, set_fixed_handler};
use crate::mm::{Mmio, map_mmio};

/// `IA32_APIC_BASE`.
const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

const REG_ID: usize = 0x20;
const REG_VERSION: usize = 0x30;
const REG_TPR: usize = 0x80;
const REG_EOI: usize = 0xb0;
const REG_SVR: usize = 0xf0;
const REG_ESR: usize = 0x280;
const REG_ICR_LOW: usize = 0x300;
const REG_ICR_HIGH: usize = 0x310;
const REG_LVT_TIMER: usize = 0x320;
const REG_LVT_LINT0: usize = 0x350;
const REG_LVT_LINT1: usize = 0x360;
const REG_LVT_ERROR: usize = 0x370;
const REG_TIMER_INITIAL: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3e0;

const LVT_MASKED: u32 = 1 << 16;
const LVT_TIMER_PERIODIC: u32 = 0b01 << 17;
const LVT_TIMER_TSC_DEADLINE: u32 = 0b10 << 17;
/// `IA32_TSC_DEADLINE`.
const IA32_TSC_DEADLINE: u32 = 0x6e0;
const LVT_DELIVERY_NMI: u32 = 0b100 << 8;
const SVR_ENABLE: u32 = 1 << 8;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_SHORTHAND_SELF: u32 = 0b01 << 18;
/// Timer divide configuration value for "divide by 16".
pub(crate) const TIMER_DIVIDE_16: u32 = 0b0011;
/// Timer divide configuration value for "divide by 1".
pub(crate) const TIMER_DIVIDE_1: u32 = 0b1011;

enum Access {
    X2Apic,
    XApic(Mmio),
}

struct LocalApic {
    access: Access,
}

static LAPIC: Once<LocalApic> = Once::new();
static BOOT_APIC_ID: AtomicU32 = AtomicU32::new(0);

impl LocalApic {
    fn read(&self, reg: usize) -> u32 {
        match &self.access {
            // SAFETY: in x2APIC mode every APIC register in 0x800..=0x83f is readable without side
            // effects on memory; `reg` is one of the constants above, all readable.
            Access::X2Apic => unsafe { Msr::new(0x800 + (reg as u32 >> 4)).read() as u32 },
            Access::XApic(mmio) => mmio.read_u32(reg),
        }
    }

    fn write(&self, reg: usize, value: u32) {
        match &self.access {
            // SAFETY: the x2APIC register MSRs affect only interrupt delivery, never memory.
            Access::X2Apic => unsafe {
                Msr::new(0x800 + (reg as u32 >> 4)).write(u64::from(value))
            },
            Access::XApic(mmio) => mmio.write_u32(reg, value),
        }
    }

    /// Sends an IPI: `low` is the ICR's low word, `dest` the destination APIC ID.
    fn send_ipi(&self, dest: u32, low: u32) {
        match &self.access {
            // SAFETY: writing the x2APIC ICR (MSR 0x830) sends an IPI; it affects no memory.
            Access::X2Apic => unsafe {
                Msr::new(0x830).write((u64::from(dest) << 32) | u64::from(low))
            },
            Access::XApic(mmio) => {
                mmio.write_u32(REG_ICR_HIGH, dest << 24);
                mmio.write_u32(REG_ICR_LOW, low);
                // Bounded wait for the send to leave the APIC (real xAPICs need it; QEMU's is
                // instantaneous).
                for _ in 0..100_000 {
                    if mmio.read_u32(REG_ICR_LOW) & ICR_DELIVERY_PENDING == 0 {
                        break;
                    }
                    core::hint::spin_loop();
                }
            }
        }
    }
}

/// Whether CPUID reports an x2APIC.
fn has_x2apic() -> bool {
    // CPUID.1:ECX bit 21 (x2APIC).
    __cpuid(1).ecx & (1 << 21) != 0
}

/// Why the local APIC could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicError {
    /// CPUID reports no local APIC.
    NoApic,
    /// The xAPIC registers could not be mapped.
    Map(crate::mm::MapError),
}

impl core::fmt::Display for ApicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoApic => f.write_str("the CPU has no local APIC"),
            Self::Map(e) => write!(f, "cannot map the local APIC: {e}"),
        }
    }
}

/// Enables the local APIC in x2APIC mode if available, else xAPIC mode; sets the spurious vector,
/// masks LINT0 (the PIC is not used), routes LINT1 to NMI and APIC errors to their vector.
pub(super) fn init() -> Result<(), ApicError> {
    if __cpuid(1).edx & (1 << 9) == 0 {
        return Err(ApicError::NoApic);
    }
    let x2 = has_x2apic();
    let mut base_msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (checked above); setting the enable
    // bits (xAPIC first, then x2APIC, the order the SDM §12.12.5 requires) changes only how the
    // APIC is addressed; the base address is kept.
    let base = unsafe {
        let base = base_msr.read();
        base_msr.write(base | APIC_BASE_ENABLE);
        if x2 {
            base_msr.write(base | APIC_BASE_ENABLE | APIC_BASE_X2APIC);
        }
        base
    };
    let access = if x2 {
        Access::X2Apic
    } else {
        let phys = base & 0x000f_ffff_ffff_f000;
        // SAFETY: `phys` is the local APIC's register page (IA32_APIC_BASE); its registers control
        // interrupt delivery only and never cause memory accesses.
        Access::XApic(unsafe { map_mmio(phys, 0x1000) }.map_err(ApicError::Map)?)
    };
    let apic = LAPIC.call_once(|| LocalApic { access });
    let id = apic.read(REG_ID);
    let id = if x2 { id } else { id >> 24 };
    BOOT_APIC_ID.store(id, Ordering::Relaxed);

    set_fixed_handler(APIC_ERROR_VECTOR, apic_error);
    apic.write(REG_TPR, 0);
    apic.write(REG_LVT_TIMER, LVT_MASKED);
    apic.write(REG_LVT_LINT0, LVT_MASKED);
    apic.write(REG_LVT_LINT1, LVT_DELIVERY_NMI);
    apic.write(REG_LVT_ERROR, u32::from(APIC_ERROR_VECTOR));
    apic.write(REG_ESR, 0);
    apic.write(REG_ESR, 0);
    apic.write(REG_SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
    log::debug!(
        "local APIC: {} mode, id {id}, version {:#x}",
        if x2 { "x2APIC" } else { "xAPIC" },
        apic.read(REG_VERSION) & 0xff
    );
    Ok(())
}

fn apic_error(_vector: u8) {
    if let Some(apic) = LAPIC.get() {
        apic.write(REG_ESR, 0);
        log::warn!("local APIC error, ESR {:#x}", apic.read(REG_ESR));
    }
}

/// Whether the local APIC runs in x2APIC mode (`None` before it is brought up).
pub fn is_x2apic() -> Option<bool> {
    LAPIC.get().map(|a| matches!(a.access, Access::X2Apic))
}

/// The boot CPU's APIC ID.
pub fn boot_apic_id() -> u32 {
    BOOT_APIC_ID.load(Ordering::Relaxed)
}

/// Signals the end of the interrupt being handled. Does nothing before the APIC is up.
pub(super) fn eoi() {
    if let Some(apic) = LAPIC.get() {
        apic.write(REG_EOI, 0);
    }
}

/// Raises `vector` on this CPU through an IPI to itself (fixed delivery, edge).
///
/// The handler runs as soon as interrupts are enabled.
pub fn send_self_ipi(vector: u8) -> Result<(), VectorError> {
    if vector < 32 {
        return Err(VectorError::Reserved(vector));
    }
    if let Some(apic) = LAPIC.get() {
        // The xAPIC ICR is two registers: no interrupt handler may send between the writes.
        x86_64::instructions::interrupts::without_interrupts(|| {
            apic.send_ipi(
                boot_apic_id(),
                u32::from(vector) | ICR_LEVEL_ASSERT | ICR_SHORTHAND_SELF,
            );
        });
    }
    Ok(())
}

/// Starts the timer counting down from `initial` with `divide`, masked and one-shot (for
/// calibration).
pub(crate) fn timer_start_masked(divide: u32, initial: u32) {
    if let Some(apic) = LAPIC.get() {
        apic.write(REG_LVT_TIMER, LVT_MASKED);
        apic.write(REG_TIMER_DIVIDE, divide);
        apic.write(REG_TIMER_INITIAL, initial);
    }
}

/// The timer's current count (0 before the APIC is up).
pub(crate) fn timer_current() -> u32 {
    LAPIC.get().map_or(0, |a| a.read(REG_TIMER_CURRENT))
}

/// Runs the timer periodically: `vector` every `initial` counts at `divide`.
pub(crate) fn timer_start_periodic(vector: u8, divide: u32, initial: u32) {
    if let Some(apic) = LAPIC.get() {
        apic.write(REG_TIMER_DIVIDE, divide);
        apic.write(REG_LVT_TIMER, u32::from(vector) | LVT_TIMER_PERIODIC);
        apic.write(REG_TIMER_INITIAL, initial);
    }
}

/// Whether CPUID offers the TSC-deadline timer mode (CPUID.1:ECX bit 24).
pub(crate) fn has_tsc_deadline() -> bool {
    __cpuid(1).ecx & (1 << 24) != 0
}

/// Puts the timer in TSC-deadline mode raising `vector`; nothing fires until
/// [`set_tsc_deadline`] arms it.
pub(crate) fn timer_start_tsc_deadline(vector: u8) {
    if let Some(apic) = LAPIC.get() {
        apic.write(REG_LVT_TIMER, u32::from(vector) | LVT_TIMER_TSC_DEADLINE);
        // The LVT write must reach the APIC before the deadline MSR is written (SDM §12.5.4.1).
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }
}

/// Arms the TSC-deadline timer to fire when the TSC reaches `tsc` (0 disarms it).
pub(crate) fn set_tsc_deadline(tsc: u64) {
    debug_assert!(has_tsc_deadline());
    // SAFETY: IA32_TSC_DEADLINE exists when CPUID reports TSC-deadline mode (the caller chose this
    // mode only then); writing it only schedules a timer interrupt.
    unsafe { Msr::new(IA32_TSC_DEADLINE).write(tsc) };
}
