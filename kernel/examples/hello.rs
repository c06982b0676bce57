//! The default application: a banner with what the kernel found.
//!
//! `cargo xtask run` boots it with a scratch virtio-blk disk and a virtio-net card attached:
//!
//! vireo-run: qemu -device virtio-blk-pci,drive=scratch,disable-legacy=on,serial=vireo-scratch
//! vireo-run: qemu -drive if=none,id=scratch,format=raw,file={disk:scratch:64M}
//! vireo-run: qemu -device virtio-net-pci,netdev=net0,disable-legacy=on -netdev user,id=net0

#![no_std]
#![no_main]

use vireo::{
    boot::MemoryKind,
    mm::{self, MemStats},
    pci, println, time,
};

vireo::main!(main);

const MIB: u64 = 1 << 20;

fn main() {
    println!("Vireo is up.");
    let boot = vireo::boot_info();
    println!("command line: {:?}", boot.cmdline());
    println!("memory map:");
    for region in boot.memory_map() {
        let kind = match region.kind {
            MemoryKind::Ram => "RAM",
            MemoryKind::Reserved => "reserved",
            MemoryKind::AcpiReclaimable => "ACPI tables",
            MemoryKind::AcpiNvs => "ACPI NVS",
            MemoryKind::Unusable => "unusable",
            MemoryKind::Other(_) => "other",
        };
        println!(
            "  {:#014x}..{:#014x} {:>9} KiB  {kind}",
            region.start,
            region.end,
            (region.end - region.start) / 1024
        );
    }
    let MemStats {
        ram_bytes,
        heap_bytes,
        heap_used,
        device_pool_bytes,
        device_pool_used,
        free_frames,
    } = mm::stats();
    println!(
        "RAM {} MiB; heap {} MiB ({} KiB used); DeviceAlloc pool {} MiB ({} KiB used); {} free frames",
        ram_bytes / MIB,
        heap_bytes as u64 / MIB,
        heap_used / 1024,
        device_pool_bytes as u64 / MIB,
        device_pool_used / 1024,
        free_frames
    );
    println!(
        "TSC {} MHz; uptime {:?}",
        time::tsc_frequency() / 1_000_000,
        time::uptime()
    );
    println!("PCI devices:");
    for device in pci::devices() {
        println!("  {device}");
    }
}
