//! Devices that cannot be brought up are left out of their type's list, reported once with the
//! reason and what to do, and listed by `failed_devices()`: a legacy-only disk
//! (`disable-modern=on`), a disk and a network card behind `iommu_platform=on` (a feature Vireo
//! does not implement). A good disk next to them still comes up.
//!
//! vireo-test: qemu -device virtio-blk-pci,drive=good,disable-legacy=on,serial=good
//! vireo-test: qemu -drive if=none,id=good,format=raw,file={disk:good:1M}
//! vireo-test: qemu -device virtio-blk-pci,drive=legacy,addr=5,disable-modern=on,disable-legacy=off
//! vireo-test: qemu -drive if=none,id=legacy,format=raw,file={disk:legacy:1M}
//! vireo-test: qemu -device virtio-blk-pci,drive=iommu,addr=6,disable-legacy=on,iommu_platform=on
//! vireo-test: qemu -drive if=none,id=iommu,format=raw,file={disk:iommu:1M}
//! vireo-test: qemu -device virtio-net-pci,netdev=n0,addr=7,disable-legacy=on,iommu_platform=on
//! vireo-test: qemu -netdev user,id=n0

#![no_std]
#![no_main]

extern crate alloc;

use alloc::{format, vec::Vec};

use vireo::virtio::FailedDevice;

vireo::test_main!(
    failed_devices_are_absent,
    each_failure_says_why_and_what_to_do
);

fn failed_devices_are_absent() {
    let disks: Vec<_> = vireo::block::devices().iter().map(|d| d.serial()).collect();
    assert_eq!(disks, ["good"]);
    assert!(vireo::net::devices().is_empty());
}

/// The failed device of `kind` at PCI device number `slot`.
fn at(failed: &[FailedDevice], kind: &str, slot: u8) -> FailedDevice {
    failed
        .iter()
        .find(|f| f.kind == kind && f.location.pci().is_some_and(|p| p.address().1 == slot))
        .unwrap_or_else(|| panic!("no {kind} at slot {slot}: {failed:?}"))
        .clone()
}

fn each_failure_says_why_and_what_to_do() {
    let failed = vireo::virtio::failed_devices();
    assert_eq!(failed.len(), 3, "{failed:?}");
    let legacy = at(&failed, "virtio-blk", 5);
    assert!(legacy.reason.contains("virtio capability"), "{legacy}");
    let hint = legacy.hint.expect("a hint");
    assert!(hint.contains("disable-modern=on"), "{hint}");

    for device in [at(&failed, "virtio-blk", 6), at(&failed, "virtio-net", 7)] {
        assert!(
            device.reason.contains("rejected the negotiated features"),
            "{device}"
        );
        let hint = device.hint.expect("a hint");
        assert!(hint.contains("iommu_platform=on"), "{hint}");
    }
    // The log line carries the reason and the hint together.
    let line = format!("{legacy}");
    assert!(
        line.contains(&format!("{}; hint: {}", legacy.reason, hint)),
        "{line}"
    );
    for device in &failed {
        vireo::println!("{device}");
    }
}
