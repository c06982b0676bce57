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

/// Rounds of PIT calibration whose median is taken.
const ROUNDS: usize = 5;
/// Most rounds tried to collect [`ROUNDS`] precise ones.
const MAX_ATTEMPTS: usize = 15;
/// PIT cycles per round: 17_898 cycles ≈ 15 ms.
const WINDOW: u16 = 17_898;
/// No round may take more TSC cycles than this (≈ 8.6 s even at 1 GHz; a round takes 15 ms).
const MAX_ROUND_CYCLES: u64 = 1 << 33;
/// A round is precise if its reads' brackets add up to less than 1/`PRECISION` of the round.
const PRECISION: u64 = 400;

/// Measures the TSC frequency against PIT channel 2: the median of several 15 ms rounds, each
/// kept only if its endpoints were read precisely (a host that deschedules the vCPU in the middle
/// of a read would otherwise skew it). If too few rounds are precise, all rounds count.
pub(super) fn calibrate_with_pit() -> Option<u64> {
    let mut precise = [0u64; ROUNDS];
    let mut n_precise = 0;
    let mut any = [0u64; MAX_ATTEMPTS];
    let mut n_any = 0;
    while n_precise < ROUNDS && n_any < MAX_ATTEMPTS {
        let m = pit::measure(WINDOW, MAX_ROUND_CYCLES, rdtsc)?;
        let hz = (u128::from(m.units) * u128::from(PIT_HZ) / u128::from(m.counts)) as u64;
        any[n_any] = hz;
        n_any += 1;
        if m.uncertainty * PRECISION < m.units {
            precise[n_precise] = hz;
            n_precise += 1;
        }
    }
    let rounds = if n_precise >= 3 {
        &mut precise[..n_precise]
    } else {
        log::warn!("TSC calibration: only {n_precise} of {n_any} rounds were precise");
        &mut any[..n_any]
    };
    rounds.sort_unstable();
    log::debug!("TSC calibration rounds (Hz): {rounds:?} ({n_any} tried)");
    Some(rounds[rounds.len() / 2])
}
