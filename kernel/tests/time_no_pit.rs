//! On a machine with no PIT, PIC, RTC, HPET or ACPI, and no PCI bus (QEMU `microvm` with all of
//! them off), the clock still finds the TSC frequency, says where from, and the timer ticks.
//!
//! vireo-test: qemu -machine microvm,pit=off,pic=off,rtc=off,acpi=off

#![no_std]
#![no_main]

#[path = "support/time.rs"]
mod time_support;

use time_support::{sleep_takes, ticks_wake_a_halted_cpu};
use vireo::{
    arch::{Hypervisor, hypervisor},
    time::{self, TscReference},
};

vireo::test_main!(
    a_source_without_the_pit_or_hpet,
    no_pci_bus,
    ticks_wake_a_halted_cpu,
    sleep_waits_long_enough,
);

fn a_source_without_the_pit_or_hpet() {
    let used = time::tsc_reference().expect("the clock is calibrated");
    let hz = time::tsc_frequency();
    vireo::println!("TSC {hz} Hz from {used}");
    assert!(!matches!(used, TscReference::Pit | TscReference::Hpet));
    assert_eq!(time::measure_tsc_frequency(TscReference::Pit), None);
    assert_eq!(time::measure_tsc_frequency(TscReference::Hpet), None);
    match hypervisor() {
        // TCG offers no CPUID frequency leaf and no kvmclock: the APIC timer is what is left.
        Hypervisor::Tcg => assert_eq!(used, TscReference::QemuApicTimer),
        Hypervisor::Kvm => assert_ne!(used, TscReference::QemuApicTimer),
        _ => {}
    }
    assert!(
        (100_000_000..20_000_000_000).contains(&hz),
        "TSC at {hz} Hz"
    );
}

fn no_pci_bus() {
    assert!(vireo::pci::devices().is_empty());
}

fn sleep_waits_long_enough() {
    sleep_takes(30);
}
