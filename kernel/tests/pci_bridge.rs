//! Functions behind PCIe root ports and a PCI bridge are found, and their BARs are placed inside
//! their bridges' windows (by the kernel under qboot, kept from SeaBIOS otherwise) and decode.
//!
//! vireo-test: qemu -device pcie-root-port,id=rp0,bus=pcie.0,chassis=1,addr=0x5 -device virtio-rng-pci,bus=rp0,disable-legacy=on
//! vireo-test: qemu -device pcie-root-port,id=rp1,bus=pcie.0,chassis=2,addr=0x6 -device pcie-pci-bridge,id=pb0,bus=rp1 -device virtio-net-pci,bus=pb0,addr=0x3,netdev=n0,disable-legacy=on -netdev user,id=n0

#![no_std]
#![no_main]

extern crate alloc;

use core::ops::Range;

use vireo::{
    pci::{self, PciDevice, regs},
    println,
};

vireo::test_main!(
    finds_functions_behind_bridges,
    bars_sit_inside_their_bridge_windows,
    decoding_is_on_along_the_path,
    msix_table_answers_through_the_bridges,
);

fn bridge_to(bus: u8) -> &'static PciDevice {
    pci::devices()
        .iter()
        .find(|d| d.header_type() == 1 && d.read_config_u8(regs::SECONDARY_BUS) == bus)
        .unwrap_or_else(|| panic!("no bridge leads to bus {bus:02x}"))
}

/// A bridge's memory and prefetchable windows (empty ranges when closed).
fn windows(bridge: &PciDevice) -> (Range<u64>, Range<u64>) {
    let mem_base = u64::from(bridge.read_config_u16(0x20) & 0xFFF0) << 16;
    let mem_limit = (u64::from(bridge.read_config_u16(0x22) & 0xFFF0) << 16) | 0xF_FFFF;
    let pref_base = (u64::from(bridge.read_config_u32(0x28)) << 32)
        | u64::from(bridge.read_config_u16(0x24) & 0xFFF0) << 16;
    let pref_limit = (u64::from(bridge.read_config_u32(0x2C)) << 32)
        | (u64::from(bridge.read_config_u16(0x26) & 0xFFF0) << 16)
        | 0xF_FFFF;
    (mem_base..mem_limit + 1, pref_base..pref_limit + 1)
}

fn inside(inner: &Range<u64>, outer: &Range<u64>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

fn finds_functions_behind_bridges() {
    for dev in pci::devices() {
        println!("found {dev}");
    }
    let rng = pci::find(0x1AF4, 0x1044).next().expect("virtio-rng");
    let net = pci::find(0x1AF4, 0x1041).next().expect("virtio-net");
    assert_ne!(rng.address().0, 0, "behind a root port");
    assert_ne!(net.address().0, 0, "behind a root port and a bridge");
    assert_eq!(bridge_to(rng.address().0).address().0, 0);
    let pci_bridge = bridge_to(net.address().0);
    assert_eq!(
        (pci_bridge.vendor_id(), pci_bridge.device_id()),
        (0x1B36, 0x000E)
    );
    assert_eq!(bridge_to(pci_bridge.address().0).address().0, 0);
}

fn bars_sit_inside_their_bridge_windows() {
    for dev in pci::devices().iter().filter(|d| d.address().0 != 0) {
        let parent = bridge_to(dev.address().0);
        let (mem, pref) = windows(parent);
        println!(
            "{dev}: behind {} mem {mem:#x?} pref {pref:#x?}",
            parent.pci_address()
        );
        for bar in dev.bars() {
            println!("  {bar}");
            let range = bar.range().expect("assigned");
            assert_eq!(range.start % bar.size(), 0);
            assert!(
                inside(&range, &mem) || (bar.is_prefetchable() && inside(&range, &pref)),
                "{bar} outside its bridge's windows"
            );
        }
        if dev.header_type() == 1 {
            let (inner_mem, inner_pref) = windows(dev);
            assert!(inner_mem.is_empty() || inside(&inner_mem, &mem));
            assert!(inner_pref.is_empty() || inside(&inner_pref, &pref));
        }
    }
}

fn decoding_is_on_along_the_path() {
    for id in [0x1044, 0x1041] {
        let mut dev = pci::find(0x1AF4, id).next().unwrap();
        loop {
            let command = dev.command();
            assert_ne!(command & regs::COMMAND_MEMORY, 0, "{dev}: memory decoding");
            assert_ne!(
                command & regs::COMMAND_BUS_MASTER,
                0,
                "{dev}: bus mastering"
            );
            if dev.address().0 == 0 {
                break;
            }
            dev = bridge_to(dev.address().0);
        }
    }
}

fn msix_table_answers_through_the_bridges() {
    for id in [0x1044, 0x1041] {
        let dev = pci::find(0x1AF4, id).next().unwrap();
        let msix = dev.msix().expect("MSI-X").expect("well-formed");
        let bar = dev.bar(msix.table_bar).unwrap();
        let at = bar.address().unwrap();
        assert!(
            at + bar.size() <= 1 << 32,
            "non-prefetchable BAR in the 32-bit window"
        );
        // SAFETY: the BAR is the device's, placed by the firmware or `pci::init`; the MSI-X table
        // is plain storage while its entries are masked, and only read where a driver uses it.
        let mmio = unsafe { vireo::mm::map_mmio(at, bar.size() as usize) }.expect("map");
        let entry = msix.table_offset as usize;
        if vireo::net::devices()
            .iter()
            .any(|n| n.pci().is_some_and(|p| core::ptr::eq(p, dev)))
        {
            // The network layer programmed entry 0 (configuration changes): its message address
            // reads back through the bridges as the local APIC's.
            assert_eq!(
                mmio.read_u32(entry) & 0xfff0_0000,
                0xfee0_0000,
                "{dev}: table answers at {at:#x}"
            );
            continue;
        }
        let data = entry + 8;
        assert_eq!(mmio.read_u32(data + 4) & 1, 1, "entry 0 masked");
        mmio.write_u32(data, 0xA5A5);
        assert_eq!(
            mmio.read_u32(data),
            0xA5A5,
            "{dev}: table answers at {at:#x}"
        );
        mmio.write_u32(data, 0);
    }
}
