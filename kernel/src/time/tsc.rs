//! The time-stamp counter: reading it, its CPUID properties, and calibrating its frequency.

use core::arch::x86_64::{__cpuid, _rdtsc};

use super::{
    hpet::Hpet,
    pit::{self, PIT_HZ},
};

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

/// Calibration rounds whose median is taken.
const ROUNDS: usize = 5;
/// Most rounds tried to collect [`ROUNDS`] precise ones.
const MAX_ATTEMPTS: usize = 15;
/// Length of one round: 15 ms.
const WINDOW_NS: u64 = 15_000_000;
/// No round may take more TSC cycles than this (≈ 8.6 s even at 1 GHz; a round takes 15 ms).
const MAX_ROUND_CYCLES: u64 = 1 << 33;
/// A round is precise if its reads' brackets add up to less than 1/`PRECISION` of the round.
const PRECISION: u64 = 400;

/// One calibration round: TSC cycles, reference nanoseconds, uncertainty in TSC cycles.
type Round = (u64, u64, u64);

/// The median of several rounds, each kept only if its endpoints were read precisely (a host
/// that deschedules the vCPU in the middle of a read would otherwise skew it). If too few rounds
/// are precise, all rounds count. `None` if a round fails.
fn calibrate(name: &str, mut round: impl FnMut() -> Option<Round>) -> Option<u64> {
    let mut precise = [0u64; ROUNDS];
    let mut n_precise = 0;
    let mut any = [0u64; MAX_ATTEMPTS];
    let mut n_any = 0;
    while n_precise < ROUNDS && n_any < MAX_ATTEMPTS {
        let (cycles, ns, uncertainty) = round()?;
        if ns == 0 {
            return None;
        }
        let hz = (u128::from(cycles) * 1_000_000_000 / u128::from(ns)) as u64;
        any[n_any] = hz;
        n_any += 1;
        if uncertainty * PRECISION < cycles {
            precise[n_precise] = hz;
            n_precise += 1;
        }
    }
    let rounds = if n_precise >= 3 {
        &mut precise[..n_precise]
    } else {
        log::warn!("TSC calibration ({name}): only {n_precise} of {n_any} rounds were precise");
        &mut any[..n_any]
    };
    rounds.sort_unstable();
    log::debug!("TSC calibration rounds against the {name} (Hz): {rounds:?} ({n_any} tried)");
    Some(rounds[rounds.len() / 2])
}

/// Measures the TSC frequency against PIT channel 2.
pub(super) fn calibrate_with_pit() -> Option<u64> {
    let window = (WINDOW_NS * PIT_HZ / 1_000_000_000) as u16;
    calibrate("PIT", || {
        let m = pit::measure(window, MAX_ROUND_CYCLES, rdtsc)?;
        Some((m.units, m.counts * 1_000_000_000 / PIT_HZ, m.uncertainty))
    })
}

/// Measures the TSC frequency against the HPET at physical address `phys`.
pub(super) fn calibrate_with_hpet(phys: u64) -> Option<u64> {
    let hpet = Hpet::start(phys)?;
    calibrate("HPET", || hpet.measure(WINDOW_NS, MAX_ROUND_CYCLES, rdtsc))
}
