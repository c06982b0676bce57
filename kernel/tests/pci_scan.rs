//! PCI enumeration finds exactly the virtio devices QEMU was given, with sound BARs, the virtio
//! capabilities inside their BARs, and MSI-X; and the q35 chipset functions.
//!
//! vireo-test: qemu -device virtio-blk-pci,drive=d0,disable-legacy=on -drive if=none,id=d0,format=raw,file={disk:pci-scan:1M} -device virtio-net-pci,netdev=n0,disable-legacy=on -netdev user,id=n0

#![no_std]
#![no_main]

extern crate alloc;

use alloc::{format, vec::Vec};

use vireo::{
    pci::{self, BarKind, PciDevice, VIRTIO_PCI_VENDOR_ID, VirtioCapKind, regs},
    println,
};

vireo::test_main!(
    finds_exactly_the_virtio_devices,
    virtio_bars_are_assigned_aligned_and_enabled,
    no_two_bars_overlap,
    virtio_capabilities_fit_their_bars,
    msix_capability_is_located,
    msix_table_decodes_at_the_assigned_address,
    common_config_answers_in_the_64bit_bar,
    q35_chipset_is_found,
    device_line_format,
);

fn virtio() -> Vec<&'static PciDevice> {
    pci::devices()
        .iter()
        .filter(|d| d.vendor_id() == VIRTIO_PCI_VENDOR_ID)
        .collect()
}

fn finds_exactly_the_virtio_devices() {
    for dev in pci::devices() {
        println!("found {dev}");
    }
    let mut ids: Vec<u16> = virtio().iter().map(|d| d.device_id()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [0x1041, 0x1042],
        "virtio-net and virtio-blk, nothing else"
    );
    let blk = pci::find(0x1AF4, 0x1042).next().expect("virtio-blk");
    assert_eq!(blk.class().class, 0x01, "mass storage");
    let net = pci::find(0x1AF4, 0x1041).next().expect("virtio-net");
    assert_eq!(net.class().class, 0x02, "network");
    for dev in virtio() {
        assert_eq!(dev.header_type(), 0);
        assert!(
            dev.revision() >= 1,
            "modern virtio devices have revision >= 1"
        );
        assert!((1..=4).contains(&dev.interrupt_pin()), "INTx pin");
    }
}

fn virtio_bars_are_assigned_aligned_and_enabled() {
    let phys_limit = 1u64 << pci::physical_address_bits();
    for dev in virtio() {
        let command = dev.command();
        println!("{dev}: command {command:#06x}");
        assert_ne!(command & regs::COMMAND_MEMORY, 0, "memory decoding on");
        assert_ne!(command & regs::COMMAND_BUS_MASTER, 0, "bus mastering on");
        assert!(dev.bars().next().is_some());
        for bar in dev.bars() {
            println!("  {bar}");
            let at = bar.address().expect("assigned");
            assert_ne!(at, 0);
            assert!(bar.size().is_power_of_two());
            assert_eq!(at % bar.size(), 0, "naturally aligned");
            assert!(at + bar.size() <= phys_limit);
            if bar.is_64bit() && bar.assigned_by_kernel() {
                assert!(at >= 1 << 32, "64-bit BAR placed above 4 GiB");
            }
            if bar.kind() == BarKind::Memory32 {
                assert!(at + bar.size() <= 1 << 32);
            }
        }
        let bar4 = dev.bar(4).expect("virtio-pci modern BAR 4");
        assert!(bar4.is_64bit() && bar4.is_prefetchable());
        assert!(dev.bar(5).is_none(), "slot 5 is BAR 4's upper half");
    }
}

fn no_two_bars_overlap() {
    let mut ranges = Vec::new();
    for dev in pci::devices() {
        for bar in dev.bars() {
            if let Some(r) = bar.range() {
                ranges.push((bar.is_io(), r));
            }
        }
    }
    for (i, (io_a, a)) in ranges.iter().enumerate() {
        for (io_b, b) in &ranges[i + 1..] {
            assert!(
                io_a != io_b || a.end <= b.start || b.end <= a.start,
                "{a:#x?} overlaps {b:#x?}"
            );
        }
    }
    // And none overlaps a memory-map range (RAM or reserved).
    for (io, r) in &ranges {
        if *io {
            continue;
        }
        for m in vireo::boot_info().memory_map() {
            assert!(
                r.end <= m.start || m.end <= r.start,
                "{r:#x?} overlaps {m:?}"
            );
        }
    }
}

fn virtio_capabilities_fit_their_bars() {
    for dev in virtio() {
        let mut kinds = Vec::new();
        for cap in dev.virtio_capabilities() {
            let cap = cap.expect("well-formed virtio capability inside its BAR");
            println!("{}: {cap}", dev.pci_address());
            kinds.push(cap.kind);
            if cap.kind == VirtioCapKind::PciCfg {
                continue;
            }
            let bar = dev.bar(cap.bar).expect("named BAR exists");
            assert!(u64::from(cap.offset) + u64::from(cap.length) <= bar.size());
            if cap.kind == VirtioCapKind::Notify {
                assert!(cap.notify_off_multiplier.is_some());
            }
        }
        for want in [
            VirtioCapKind::Common,
            VirtioCapKind::Notify,
            VirtioCapKind::Isr,
            VirtioCapKind::Device,
            VirtioCapKind::PciCfg,
        ] {
            assert!(kinds.contains(&want), "{dev} lacks the {want} capability");
        }
        // The raw walk sees them as vendor capabilities, at or above 0x40.
        let vendor = dev
            .capabilities()
            .filter(|c| c.id == pci::CAP_ID_VENDOR)
            .count();
        assert_eq!(vendor, kinds.len());
        let mut walk = dev.capabilities();
        for c in walk.by_ref() {
            assert!(c.offset >= 0x40 && c.offset % 4 == 0);
        }
        assert_eq!(walk.error(), None, "the list ends cleanly");
    }
}

fn msix_capability_is_located() {
    for dev in virtio() {
        let msix = dev
            .msix()
            .expect("virtio-pci has MSI-X")
            .expect("well-formed");
        println!(
            "{}: MSI-X {} entries, table BAR{}+{:#x}, PBA BAR{}+{:#x}",
            dev.pci_address(),
            msix.table_size,
            msix.table_bar,
            msix.table_offset,
            msix.pba_bar,
            msix.pba_offset
        );
        assert!(msix.table_size > 0);
        let table_bar = dev.bar(msix.table_bar).expect("table BAR");
        assert!(u64::from(msix.table_offset) + msix.table_len() <= table_bar.size());
        let driven = driven(dev);
        assert_eq!(
            msix.is_enabled(dev),
            driven,
            "MSI-X is enabled exactly where a driver runs"
        );
        if !driven {
            // Enable and disable round-trip through the control register (masked: nothing fires).
            msix.set_function_mask(dev, true);
            msix.set_enabled(dev, true);
            assert!(msix.is_enabled(dev));
            msix.set_enabled(dev, false);
            msix.set_function_mask(dev, false);
            assert!(!msix.is_enabled(dev));
        }
    }
}

/// Whether the block or network layer drives `dev` (with MSI-X).
fn driven(dev: &vireo::pci::PciDevice) -> bool {
    vireo::block::devices()
        .iter()
        .any(|b| b.pci().is_some_and(|p| core::ptr::eq(p, dev)))
        || vireo::net::devices()
            .iter()
            .any(|n| n.pci().is_some_and(|p| core::ptr::eq(p, dev)))
}

fn msix_table_decodes_at_the_assigned_address() {
    for dev in virtio() {
        let msix = dev.msix().unwrap().unwrap();
        let bar = dev.bar(msix.table_bar).unwrap();
        let at = bar.address().unwrap();
        if at + bar.size() > 1 << 32 {
            println!(
                "{}: table BAR above 4 GiB, not mapped yet",
                dev.pci_address()
            );
            continue;
        }
        // SAFETY: the BAR is the device's, assigned by `pci::init`; reading the MSI-X table has no
        // side effects.
        let mmio = unsafe { vireo::mm::map_mmio(at, bar.size() as usize) }.expect("map BAR");
        let base = msix.table_offset as usize;
        if driven(dev) {
            // Driven by the block or network layer: every entry unmasked, aimed at the local
            // APIC, with a vector from the dynamic range.
            for entry in 0..usize::from(msix.table_size) {
                let e = base + entry * 16;
                assert_eq!(mmio.read_u32(e + 12) & 1, 0, "entry {entry} unmasked");
                assert_eq!(
                    mmio.read_u32(e) & 0xfff0_0000,
                    0xfee0_0000,
                    "entry {entry} address"
                );
                assert!(
                    (0x30..=0xdf).contains(&mmio.read_u32(e + 8)),
                    "entry {entry} vector"
                );
            }
            continue;
        }
        for entry in 0..usize::from(msix.table_size) {
            let e = base + entry * 16;
            // Vector control: every entry is masked after reset (PCI 3.0 §6.8.2.9); the message
            // data is zero (an unclaimed address would read all-ones).
            assert_eq!(mmio.read_u32(e + 12) & 1, 1, "entry {entry} masked");
            assert_eq!(mmio.read_u32(e + 8), 0, "entry {entry} data");
        }
        // A masked entry's message data is plain read/write storage in the device.
        mmio.write_u32(base + 8, 0x5a5a);
        assert_eq!(
            mmio.read_u32(base + 8),
            0x5a5a,
            "the table answers at the BAR"
        );
        mmio.write_u32(base + 8, 0);
        println!(
            "{}: {} MSI-X entries read at {at:#x}, all masked",
            dev.pci_address(),
            msix.table_size
        );
    }
}

fn q35_chipset_is_found() {
    let host = pci::find(0x8086, 0x29C0).next().expect("q35 host bridge");
    assert_eq!(host.address(), (0, 0, 0));
    assert_eq!((host.class().class, host.class().subclass), (0x06, 0x00));
    let isa = pci::devices()
        .iter()
        .find(|d| d.class().class == 0x06 && d.class().subclass == 0x01)
        .expect("ISA bridge");
    assert_eq!((isa.vendor_id(), isa.device_id()), (0x8086, 0x2918));
    assert_eq!(isa.address(), (0, 0x1F, 0));
    assert!(
        isa.is_multifunction(),
        "ICH9 has AHCI and SMBus at 1f.2 and 1f.3"
    );
}

fn device_line_format() {
    let blk = pci::find(0x1AF4, 0x1042).next().unwrap();
    let (bus, device, function) = blk.address();
    assert_eq!(
        format!("{blk}"),
        format!("{bus:02x}:{device:02x}.{function} 1af4:1042 class 01.00.00 virtio-blk")
    );
}

fn common_config_answers_in_the_64bit_bar() {
    for dev in virtio() {
        let common = dev
            .virtio_capabilities()
            .flatten()
            .find(|c| c.kind == VirtioCapKind::Common)
            .expect("common capability");
        let bar = dev.bar(common.bar).expect("its BAR");
        let at = bar.address().unwrap() + u64::from(common.offset);
        // SAFETY: the common configuration structure of a device no driver owns yet; selecting a
        // feature word and reading it has no side effects, and the select is restored.
        let mmio = match unsafe { vireo::mm::map_mmio(at, common.length as usize) } {
            Ok(m) => m,
            Err(e) => {
                println!(
                    "{}: common config at {at:#x} not mappable yet: {e}",
                    dev.pci_address()
                );
                continue;
            }
        };
        // virtio 1.2 §4.1.4.3: device_feature_select at 0, device_feature at 4, num_queues at
        // 0x12, device_status at 0x14.
        mmio.write_u32(0, 1);
        assert_eq!(mmio.read_u32(0), 1);
        assert_eq!(mmio.read_u32(4) & 1, 1, "VIRTIO_F_VERSION_1 offered");
        mmio.write_u32(0, 0);
        assert!(mmio.read_u16(0x12) >= 1, "at least one queue");
        // Zero unless the firmware drove the device (SeaBIOS boots from virtio-blk).
        assert_ne!(mmio.read_u8(0x14), 0xFF, "device_status answers");
        println!(
            "{}: common config answers at {at:#x} ({} queues)",
            dev.pci_address(),
            mmio.read_u16(0x12)
        );
    }
}
