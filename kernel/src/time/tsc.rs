//! The time-stamp counter: reading it, its CPUID properties, and calibrating its frequency.

use core::arch::x86_64::{__cpuid, _rdtsc};

use super::pit::{self, PIT_HZ};

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

/// The TSC frequency the CPU or hypervisor reports through CPUID, if any (used as a fallback and
/// a cross-check): the hypervisor timing leaf 0x40000010 (kHz), else leaf 0x15 (crystal ratio).
pub(super) fn cpuid_frequency() -> Option<u64> {
    let hypervisor = __cpuid(1).ecx & (1 << 31) != 0;
    if hypervisor && __cpuid(0x4000_0000).eax >= 0x4000_0010 {
        let khz = u64::from(__cpuid(0x4000_0010).eax);
        if khz != 0 {
            return Some(khz * 1000);
        }
    }
    if __cpuid(0).eax >= 0x15 {
        let leaf = __cpuid(0x15);
        if leaf.eax != 0 && leaf.ebx != 0 && leaf.ecx != 0 {
            return Some(u64::from(leaf.ecx) * u64::from(leaf.ebx) / u64::from(leaf.eax));
        }
    }
    None
}

/// Rounds of PIT calibration; the median is taken.
const ROUNDS: usize = 5;
/// PIT cycles per round: 11_932 cycles ≈ 10 ms.
const WINDOW: u16 = 11_932;
/// No round may take more TSC cycles than this (≈ 8.6 s even at 1 GHz; a round takes 10 ms).
const MAX_ROUND_CYCLES: u64 = 1 << 33;

/// Measures the TSC frequency against PIT channel 2: the median of several 10 ms rounds.
pub(super) fn calibrate_with_pit() -> Option<u64> {
    let mut results = [0u64; ROUNDS];
    for r in &mut results {
        let m = pit::measure(WINDOW, MAX_ROUND_CYCLES, rdtsc)?;
        *r = (u128::from(m.units) * u128::from(PIT_HZ) / u128::from(m.counts)) as u64;
    }
    results.sort_unstable();
    log::debug!("TSC calibration rounds (Hz): {results:?}");
    Some(results[ROUNDS / 2])
}
