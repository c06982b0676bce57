//! virtio-mmio discovery on QEMU's `microvm`: with ACPI the devices come from the DSDT, without
//! it from the `virtio_mmio.device=` words QEMU appends to the command line. A device type
//! nobody drives (an entropy source) is listed and left alone; the disk works through its one
//! interrupt line.
//!
//! vireo-test: machines microvm
//! vireo-test: matrix acpi=on,off
//! vireo-test: qemu -machine acpi={acpi}
//! vireo-test: qemu -device virtio-rng-pci
//! vireo-test: qemu -device virtio-blk-pci,drive=d0,serial=mmio-disk
//! vireo-test: qemu -drive if=none,id=d0,format=raw,file={disk:d0:1M}
//! vireo-test: append expect.acpi={acpi}

#![no_std]
#![no_main]

extern crate alloc;

use vireo::{
    block,
    virtio::{Location, mmio},
};

vireo::test_main!(
    devices_are_found_where_the_platform_says,
    the_disk_works_on_its_line
);

fn devices_are_found_where_the_platform_says() {
    let acpi = vireo::boot_info().cmdline().contains("expect.acpi=on");
    let found = mmio::devices();
    let mut types: alloc::vec::Vec<u16> = found.iter().map(|d| d.device_type()).collect();
    types.sort_unstable();
    assert_eq!(types, [2, 4], "a disk and an entropy source: {found:?}");
    let want = if acpi {
        mmio::Source::Acpi
    } else {
        mmio::Source::CommandLine
    };
    for d in found {
        assert_eq!(d.source(), want, "{d}");
        assert!(d.slot().size >= 0x100, "{d}");
    }
    assert!(vireo::pci::devices().is_empty(), "microvm has no PCI bus");
    assert!(vireo::net::devices().is_empty());
}

fn the_disk_works_on_its_line() {
    let disks = block::devices();
    assert_eq!(disks.len(), 1);
    let disk = &disks[0];
    assert!(matches!(disk.location(), Location::Mmio(_)), "{disk}");
    assert!(disk.pci().is_none());
    assert_eq!(disk.serial(), "mmio-disk");
    let info = disk.info();
    assert!(
        info.interrupts,
        "completions come on the device's line: {disk}"
    );
    let block_size = info.block_size as usize;
    let mut data = alloc::vec![0u8; 64 * 1024];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    disk.write(8, &data).expect("write");
    let mut back = alloc::vec![0u8; data.len()];
    disk.read(8, &mut back).expect("read");
    assert!(back == data, "read back what was written");
    let before = disk.stats();
    for i in 0..200u64 {
        disk.read(i % 64, &mut back[..block_size]).expect("read");
    }
    let after = disk.stats();
    // The device may finish before a wait sleeps; the line must still have fired.
    assert!(
        after.interrupts > before.interrupts,
        "interrupts came on the line: {before:?} -> {after:?}"
    );
}
