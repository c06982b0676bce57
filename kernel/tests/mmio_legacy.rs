//! A legacy (version 1) virtio-mmio device is refused with a message, never driven: Vireo
//! implements the version 2 register layout only.
//!
//! vireo-test: machines microvm
//! vireo-test: qemu -global virtio-mmio.force-legacy=true
//! vireo-test: qemu -device virtio-blk-pci,drive=d0
//! vireo-test: qemu -drive if=none,id=d0,format=raw,file={disk:d0:1M}

#![no_std]
#![no_main]

vireo::test_main!(legacy_devices_are_left_alone);

fn legacy_devices_are_left_alone() {
    assert!(vireo::virtio::mmio::devices().is_empty());
    assert!(vireo::block::devices().is_empty());
}
