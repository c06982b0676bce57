//! A legacy (version 1) virtio-mmio device is refused with a message, never driven: Vireo
//! implements the version 2 register layout only. The refusal names the QEMU option that fixes
//! it, and the application finds the device among the failed ones.
//!
//! vireo-test: machines microvm
//! vireo-test: qemu -global virtio-mmio.force-legacy=true
//! vireo-test: qemu -device virtio-blk-pci,drive=d0
//! vireo-test: qemu -drive if=none,id=d0,format=raw,file={disk:d0:1M}

#![no_std]
#![no_main]

use vireo::virtio::Location;

vireo::test_main!(
    legacy_devices_are_left_alone,
    legacy_devices_are_reported_with_the_fix
);

fn legacy_devices_are_left_alone() {
    assert!(vireo::virtio::mmio::devices().is_empty());
    assert!(vireo::block::devices().is_empty());
}

fn legacy_devices_are_reported_with_the_fix() {
    let failed = vireo::virtio::failed_devices();
    // The empty legacy slots of the machine are not devices: only the disk is reported.
    assert_eq!(failed.len(), 1, "{failed:?}");
    let disk = &failed[0];
    assert_eq!(disk.kind, "virtio-blk");
    let Location::Mmio(window) = disk.location else {
        panic!("{disk}");
    };
    assert_eq!(window.device_type(), 2);
    assert!(disk.reason.contains("legacy (version 1)"), "{disk}");
    let hint = disk.hint.expect("a hint");
    assert!(
        hint.contains("-global virtio-mmio.force-legacy=false"),
        "{hint}"
    );
    vireo::println!("{disk}");
}
