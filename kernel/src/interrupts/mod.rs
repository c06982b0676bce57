//! CPU tables and interrupts: GDT/TSS, IDT and exception handlers, local APIC, IOAPIC, vectors.
//!
//! - [`init_cpu`] loads the GDT (with a TSS whose IST stacks serve double faults, NMIs and machine
//!   checks) and an IDT whose 256 gates all lead to one dispatcher. An exception without a hook
//!   ([`set_exception_hook`]) is reported on the console and ends QEMU with the failure code.
//! - [`init_apic`] brings up the local APIC (x2APIC when available), masks the 8259 PIC and every
//!   IOAPIC input. Devices then get vectors from [`alloc_vector`] and program them as MSI
//!   ([`Vector::msi_message`]) or through the IOAPIC ([`ioapic::route_gsi`]).

mod acpi;
mod exceptions;
mod gdt;
mod idt;
pub mod ioapic;
mod lapic;
mod vectors;

use core::sync::atomic::{AtomicBool, Ordering};

pub use acpi::{AcpiError, IoApicEntry, IsaOverride, Madt, hpet_address, read_dsdt, read_madt};
pub use exceptions::{
    DIVIDE_ERROR, DOUBLE_FAULT, ExceptionHook, GENERAL_PROTECTION, INVALID_OPCODE, PAGE_FAULT,
    exception_name, set_exception_hook,
};
pub use idt::InterruptFrame;
pub use lapic::{ApicError, boot_apic_id, is_x2apic, send_self_ipi};
pub(crate) use lapic::{
    TIMER_DIVIDE_1, TIMER_DIVIDE_16, has_tsc_deadline, set_tsc_deadline, timer_current,
    timer_start_masked, timer_start_periodic, timer_start_tsc_deadline,
};
pub(crate) use vectors::set_fixed_handler;
pub use vectors::{
    APIC_ERROR_VECTOR, FIRST_DYNAMIC, InterruptHandler, LAST_DYNAMIC, MsiMessage, PIC_VECTOR_BASE,
    SPURIOUS_VECTOR, TIMER_VECTOR, Vector, VectorError, alloc_vector, free_vector, msi_message,
    spurious_interrupts, unexpected_interrupts,
};

static CPU_READY: AtomicBool = AtomicBool::new(false);

/// Installs the GDT, TSS and IDT (before memory is set up: faults must be reported from the start).
///
/// Runs once; later calls do nothing.
pub fn init_cpu() {
    if CPU_READY.swap(true, Ordering::AcqRel) {
        return;
    }
    gdt::init();
    idt::init();
}

/// Brings up the local APIC and IOAPIC (after memory: their registers are mapped MMIO).
///
/// Interrupts stay disabled; [`time::init`](crate::time::init) enables them once the timer runs.
///
/// # Panics
/// If the CPU has no local APIC or its registers cannot be mapped.
pub fn init_apic() {
    if let Err(e) = lapic::init() {
        panic!("{e}");
    }
    let madt = match read_madt(crate::boot_info().rsdp()) {
        Ok(m) => {
            log::debug!(
                "MADT: local APIC {:#x}, 8259 {}, IOAPICs {:?}, overrides {:?}",
                m.local_apic,
                m.has_8259,
                m.ioapics(),
                m.overrides()
            );
            Some(m)
        }
        Err(e) => {
            log::warn!(
                "{e}; assuming an IOAPIC at {:#x}",
                ioapic::DEFAULT_IOAPIC_ADDRESS
            );
            None
        }
    };
    if let Err(e) = ioapic::init(madt.as_ref()) {
        log::warn!("IOAPIC unavailable: {e}");
    }
}

/// Enables interrupts on this CPU.
pub fn enable() {
    x86_64::instructions::interrupts::enable();
}

/// Disables interrupts on this CPU.
pub fn disable() {
    x86_64::instructions::interrupts::disable();
}

/// Runs `f` with interrupts disabled on this CPU, restoring the previous state afterwards.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    x86_64::instructions::interrupts::without_interrupts(f)
}

/// Whether interrupts are enabled on this CPU.
pub fn are_enabled() -> bool {
    x86_64::instructions::interrupts::are_enabled()
}
