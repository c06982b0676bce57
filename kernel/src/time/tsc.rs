//! The time-stamp counter: reading it, and the frequencies CPUID reports for it.

use core::arch::x86_64::{__cpuid, _rdtsc};

/// Reads the TSC.
#[inline]
pub(super) fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads a counter (CR4.TSD is clear: the kernel runs in ring 0 anyway).
    unsafe { _rdtsc() }
}

/// Whether CPUID reports an invariant TSC (constant rate in every power state).
pub(super) fn is_invariant() -> bool {
    // CPUID.80000007h:EDX bit 8, if that leaf exists.
    __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
}

/// The hypervisor timing leaf (VMware's, which QEMU offers with `vmware-cpuid-freq`).
pub(super) const LEAF_HYPERVISOR_TIMING: u32 = 0x4000_0010;
/// Time stamp counter and core crystal clock.
pub(super) const LEAF_CRYSTAL: u32 = 0x15;
/// Processor frequency information.
pub(super) const LEAF_FREQUENCY: u32 = 0x16;

/// The TSC frequency CPUID `leaf` reports, if the CPU offers that leaf and fills it in:
///
/// - [`LEAF_HYPERVISOR_TIMING`]: EAX is the TSC frequency in kHz;
/// - [`LEAF_CRYSTAL`]: the crystal frequency ECX times the ratio EBX / EAX (Intel SDM vol. 2A,
///   CPUID leaf 15H);
/// - [`LEAF_FREQUENCY`]: EAX is the base frequency in MHz, which the TSC runs at on the Intel
///   processors that have the leaf (coarse: 1 MHz steps).
pub(super) fn cpuid_frequency(leaf: u32) -> Option<u64> {
    let offered = if leaf >= 0x4000_0000 {
        __cpuid(1).ecx & (1 << 31) != 0 && __cpuid(0x4000_0000).eax >= leaf
    } else {
        __cpuid(0).eax >= leaf
    };
    if !offered {
        return None;
    }
    let r = __cpuid(leaf);
    let hz = match leaf {
        LEAF_HYPERVISOR_TIMING => u64::from(r.eax) * 1000,
        LEAF_CRYSTAL if r.eax != 0 => u64::from(r.ecx) * u64::from(r.ebx) / u64::from(r.eax),
        LEAF_FREQUENCY => u64::from(r.eax & 0xffff) * 1_000_000,
        _ => 0,
    };
    (hz != 0).then_some(hz)
}
