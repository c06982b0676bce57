//! Memory types: making RAM write-back when the firmware left the MTRRs off.
//!
//! QEMU's minimal firmware (qboot) leaves `IA32_MTRR_DEF_TYPE` at 0: MTRRs disabled, so every
//! access is uncacheable. TCG does not model caches, but under KVM the guest then really runs with
//! uncached RAM and is many times slower. When the MTRRs are off, this turns them on with
//! write-back as the default type and no ranges. Device memory stays uncached because every
//! mapping of it ([`map_mmio`](super::map_mmio)) carries `PCD | PWT`, which selects the PAT's UC
//! entry, and UC wins over the MTRRs' WB (Intel SDM vol. 3A §12.5.2.2, "Selecting Memory Types
//! for Pentium III and More Recent Processor Families"). No cacheable alias of device memory
//! exists: the direct map covers only RAM and ACPI ranges, and this runs after the switch away
//! from the boot identity map.

use core::arch::asm;

use x86_64::{
    instructions::interrupts::without_interrupts,
    registers::{
        control::{Cr0, Cr0Flags, Cr3},
        model_specific::Msr,
    },
};

/// `IA32_MTRR_DEF_TYPE`.
const MTRR_DEF_TYPE: u32 = 0x2ff;
/// `IA32_MTRR_DEF_TYPE.E`: MTRRs enabled.
const MTRR_ENABLE: u64 = 1 << 11;
/// Memory type write-back.
const TYPE_WB: u64 = 6;

fn cpu_has_mtrr() -> bool {
    // CPUID.01H:EDX.MTRR[bit 12].
    core::arch::x86_64::__cpuid(1).edx & (1 << 12) != 0
}

fn wbinvd_and_flush_tlb() {
    // SAFETY: `wbinvd` writes back and invalidates the caches; it has no memory-safety effect.
    unsafe { asm!("wbinvd", options(nostack, preserves_flags)) };
    let (frame, flags) = Cr3::read();
    // SAFETY: reloading CR3 with its current value only flushes the TLB.
    unsafe { Cr3::write(frame, flags) };
}

/// Enables the MTRRs with write-back default if the firmware left them disabled; returns whether
/// it did.
///
/// # Safety
/// No cacheable mapping of device memory may exist.
pub(crate) unsafe fn enable_write_back() -> bool {
    if !cpu_has_mtrr() {
        return false;
    }
    let mut def = Msr::new(MTRR_DEF_TYPE);
    // SAFETY: the MSR exists when CPUID reports MTRRs; reading it has no side effect.
    let old = unsafe { def.read() };
    if old & MTRR_ENABLE != 0 {
        return false;
    }
    // The procedure of Intel SDM vol. 3A §12.11.7.2 "MemTypeSet() Function": caches off, flush,
    // change, flush, caches on.
    without_interrupts(|| {
        let cr0 = Cr0::read();
        // SAFETY: 1. disabling the cache (CD=1, NW=0) only slows memory down; 2. the MSR write sets
        // the default type to WB with no fixed or variable ranges, which makes RAM cacheable; the
        // caller guarantees no device memory is mapped with a cacheable type; 3. CR0 is restored.
        unsafe {
            Cr0::write((cr0 | Cr0Flags::CACHE_DISABLE) - Cr0Flags::NOT_WRITE_THROUGH);
            wbinvd_and_flush_tlb();
            def.write((old & !0xcff) | MTRR_ENABLE | TYPE_WB);
            wbinvd_and_flush_tlb();
            Cr0::write(cr0);
        }
    });
    true
}
