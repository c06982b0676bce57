//! CPU tables and interrupts: GDT/TSS, IDT and exception handlers, local APIC, IOAPIC, vectors.

/// Installs the GDT, TSS and IDT (before memory is set up: faults must be reported from the start).
pub fn init_cpu() {}

/// Brings up the local APIC and IOAPIC (after memory: their registers are mapped MMIO).
pub fn init_apic() {}
