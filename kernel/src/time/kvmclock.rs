//! KVM's paravirtual clock (kvmclock; Linux `Documentation/virt/kvm/x86/msr.rst`): the hypervisor
//! publishes the scale that turns TSC cycles into nanoseconds, which is the TSC frequency
//! without any measurement.

use core::{
    arch::x86_64::__cpuid,
    cell::UnsafeCell,
    ptr::{addr_of, read_volatile},
    sync::atomic::{Ordering, fence},
};

use x86_64::registers::model_specific::Msr;

use crate::arch::{Hypervisor, hypervisor};

/// `MSR_KVM_SYSTEM_TIME_NEW` (with `KVM_FEATURE_CLOCKSOURCE2`) and the older `MSR_KVM_SYSTEM_TIME`.
const MSR_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
const MSR_SYSTEM_TIME: u32 = 0x12;
/// CPUID.40000001h:EAX feature bits.
const FEATURE_CLOCKSOURCE: u32 = 1 << 0;
const FEATURE_CLOCKSOURCE2: u32 = 1 << 3;
/// The enable bit of the system-time MSR (the rest is the structure's physical address).
const ENABLE: u64 = 1;
/// Reads of the structure before giving up on a consistent one.
const MAX_READS: u32 = 1000;

/// `struct pvclock_vcpu_time_info`: written by the hypervisor while the MSR points at it. Plain
/// integers, read with volatile loads; it holds no Rust invariant.
#[repr(C, align(32))]
struct TimeInfo {
    /// Odd while the hypervisor updates the rest.
    version: u32,
    pad0: u32,
    tsc_timestamp: u64,
    system_time: u64,
    /// Nanoseconds = ((cycles << tsc_shift) * tsc_to_system_mul) >> 32 (a negative shift is a
    /// right shift).
    tsc_to_system_mul: u32,
    tsc_shift: i8,
    flags: u8,
    pad: [u8; 2],
}

struct Shared(UnsafeCell<TimeInfo>);

// SAFETY: only `frequency` touches the cell, through raw volatile reads, on the one CPU.
unsafe impl Sync for Shared {}

static TIME_INFO: Shared = Shared(UnsafeCell::new(TimeInfo {
    version: 0,
    pad0: 0,
    tsc_timestamp: 0,
    system_time: 0,
    tsc_to_system_mul: 0,
    tsc_shift: 0,
    flags: 0,
    pad: [0; 2],
}));

/// The TSC frequency from kvmclock's scale, under KVM with a kvmclock; `None` otherwise.
pub(super) fn frequency() -> Option<u64> {
    if hypervisor() != Hypervisor::Kvm || __cpuid(0x4000_0000).eax < 0x4000_0001 {
        return None;
    }
    let features = __cpuid(0x4000_0001).eax;
    let msr = if features & FEATURE_CLOCKSOURCE2 != 0 {
        MSR_SYSTEM_TIME_NEW
    } else if features & FEATURE_CLOCKSOURCE != 0 {
        MSR_SYSTEM_TIME
    } else {
        return None;
    };
    let info = TIME_INFO.0.get();
    let phys = crate::mm::translate(info as u64)?;
    let mut msr = Msr::new(msr);
    // SAFETY: the MSR exists (CPUID says so); it makes the hypervisor write the 32-byte
    // structure at `phys`, which is `TIME_INFO` (32-byte aligned, so within one page), a static
    // that nothing else uses.
    unsafe { msr.write(phys | ENABLE) };
    let mut scale = None;
    for _ in 0..MAX_READS {
        // SAFETY: `info` points to the static; volatile reads see the hypervisor's writes.
        let (v1, mul, shift, v2) = unsafe {
            let v1 = read_volatile(addr_of!((*info).version));
            fence(Ordering::Acquire);
            let mul = read_volatile(addr_of!((*info).tsc_to_system_mul));
            let shift = read_volatile(addr_of!((*info).tsc_shift));
            fence(Ordering::Acquire);
            (v1, mul, shift, read_volatile(addr_of!((*info).version)))
        };
        if v1 == v2 && v1 % 2 == 0 && mul != 0 {
            scale = Some((mul, shift));
            break;
        }
        core::hint::spin_loop();
    }
    // SAFETY: writing 0 turns the clock off, so the hypervisor stops writing into the static.
    unsafe { msr.write(0) };
    let (mul, shift) = scale?;
    // cycles * 2^shift * mul / 2^32 = ns, so Hz = 10^9 * 2^32 / (mul * 2^shift).
    let hz = (1_000_000_000u128 << 32) / u128::from(mul);
    let hz = if shift >= 0 {
        hz >> shift
    } else {
        hz << shift.unsigned_abs()
    };
    u64::try_from(hz).ok().filter(|&hz| hz != 0)
}
