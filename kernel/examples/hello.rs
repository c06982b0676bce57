//! The default application: a banner with what the kernel found.
//!
//! `cargo xtask run` boots it with a scratch virtio-blk disk and a virtio-net card attached, and
//! `cargo xtask test` boots it too, with the same devices, on q35 and microvm, in 256 MiB and in
//! 16 MiB of RAM (`cargo xtask bench boot` finds the smallest `-m` it runs in):
//!
//! vireo-test: app
//! vireo-test: machines q35 microvm
//! vireo-test: matrix mem=256M,16M
//! vireo-test: qemu -m {mem}
//!
//! vireo-run: qemu -device virtio-blk-pci,drive=scratch,disable-legacy=on,serial=vireo-scratch
//! vireo-run: qemu -drive if=none,id=scratch,format=raw,file={disk:scratch:64M}
//! vireo-run: qemu -device virtio-net-pci,netdev=net0,disable-legacy=on -netdev user,id=net0

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;

use vireo::{
    block::{self, BlockError},
    boot::MemoryKind,
    mm::{self, MemStats},
    net, pci, println, time,
};

vireo::main!(main);

const MIB: u64 = 1 << 20;

fn main() -> Result<(), BlockError> {
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
    println!("block devices:");
    for disk in block::devices() {
        println!("  {disk}");
    }
    println!("network devices:");
    for dev in net::devices() {
        // QEMU's user network answers DHCP at once; a network without a server is not waited for.
        match dev.wait_for_address(core::time::Duration::from_secs(2)) {
            Ok(cidr) => println!("  {dev}: {cidr}"),
            Err(e) => println!("  {dev}: no IPv4 address ({e})"),
        }
    }
    // Only the disk `xtask run` creates for this purpose is written to, never a user's.
    if let Some(disk) = block::by_serial("vireo-scratch") {
        scratch_check(disk)?;
    }
    Ok(())
}

/// Writes a pattern over 1 MiB of the scratch disk, flushes, reads it back and compares.
fn scratch_check(disk: &block::BlockDevice) -> Result<(), BlockError> {
    let info = disk.info();
    let len = (1 << 20).min(info.blocks * u64::from(info.block_size)) as usize;
    let seed = time::ticks();
    let data: alloc::vec::Vec<u8> = (0..len)
        .map(|i| (i as u64 ^ seed).wrapping_mul(0x9e37_79b9) as u8)
        .collect();
    let start = time::Instant::now();
    disk.write(0, &data)?;
    disk.flush()?;
    let mut back = vec![0u8; len];
    disk.read(0, &mut back)?;
    let elapsed = start.elapsed();
    if back != data {
        println!("scratch disk: read-back MISMATCH");
        return Err(BlockError::Driver(block::BlkDriverError::IoError));
    }
    println!(
        "scratch disk: wrote, flushed, read back and verified {} KiB in {elapsed:?}",
        len / 1024
    );
    Ok(())
}
