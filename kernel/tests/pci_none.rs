//! With no virtio devices attached, the scan finds none, finds the q35 chipset, and keeps the
//! invariants every scan must keep; configuration access refuses what it must.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;

use vireo::{
    pci::{self, ConfigError, ConfigSpace, PciAddress, PciConfig, VIRTIO_PCI_VENDOR_ID, regs},
    println,
};

vireo::test_main!(
    finds_no_virtio_devices,
    finds_q35_host_and_isa_bridges,
    addresses_are_unique_and_functions_well_formed,
    decoding_only_with_every_bar_placed,
    config_access_refuses_decoding_registers,
    config_space_trait_reads_like_the_device,
    absent_functions_read_all_ones,
);

fn finds_no_virtio_devices() {
    for dev in pci::devices() {
        println!("found {dev}");
    }
    assert!(!pci::devices().is_empty());
    assert_eq!(
        pci::devices()
            .iter()
            .filter(|d| d.vendor_id() == VIRTIO_PCI_VENDOR_ID)
            .count(),
        0
    );
}

fn finds_q35_host_and_isa_bridges() {
    let host = pci::find(0x8086, 0x29C0).next().expect("q35 host bridge");
    assert_eq!(host.address(), (0, 0, 0));
    assert_eq!(host.class().class, 0x06);
    let isa = pci::find(0x8086, 0x2918)
        .next()
        .expect("ICH9 LPC/ISA bridge");
    assert_eq!(isa.address(), (0, 0x1F, 0));
    assert_eq!((isa.class().class, isa.class().subclass), (0x06, 0x01));
}

fn addresses_are_unique_and_functions_well_formed() {
    let mut seen: Vec<(u8, u8, u8)> = Vec::new();
    for dev in pci::devices() {
        assert!(!seen.contains(&dev.address()), "{dev} listed twice");
        seen.push(dev.address());
        assert_ne!(dev.vendor_id(), 0xFFFF);
        let (bus, device, function) = dev.address();
        if function != 0 {
            assert!(
                seen.contains(&(bus, device, 0)),
                "function 0 of {dev} was found first"
            );
        }
        assert_eq!(dev.read_config_u16(regs::VENDOR_ID), dev.vendor_id());
        assert_eq!(dev.read_config_u16(regs::DEVICE_ID), dev.device_id());
    }
}

fn decoding_only_with_every_bar_placed() {
    for dev in pci::devices() {
        let command = dev.command();
        for bar in dev.bars() {
            println!("{}: {bar}", dev.pci_address());
            let bit = if bar.is_io() {
                regs::COMMAND_IO
            } else {
                regs::COMMAND_MEMORY
            };
            match bar.address() {
                Some(at) => assert_eq!(at % bar.size(), 0),
                None => assert_eq!(command & bit, 0, "{dev}: decoding an unplaced BAR"),
            }
        }
        let mem = dev.bars().filter(|b| b.is_memory()).collect::<Vec<_>>();
        if !mem.is_empty() && mem.iter().all(|b| b.address().is_some()) {
            assert_ne!(
                command & regs::COMMAND_MEMORY,
                0,
                "{dev}: memory decoding on"
            );
        }
    }
}

fn config_access_refuses_decoding_registers() {
    let dev = pci::find(0x8086, 0x2922)
        .next()
        .or_else(|| pci::devices().iter().find(|d| d.bars().next().is_some()))
        .expect("a function with BARs");
    let bar0 = dev.read_config_u32(regs::BAR0);
    assert_eq!(
        dev.write_config_u32(regs::BAR0, 0xDEAD_0000),
        Err(ConfigError::Protected)
    );
    assert_eq!(
        dev.write_config_u8(regs::BAR0 + 4 * 5 + 3, 0xFF),
        Err(ConfigError::Protected)
    );
    assert_eq!(dev.write_config_u32(0x30, 1), Err(ConfigError::Protected));
    assert_eq!(dev.read_config_u32(regs::BAR0), bar0, "BAR untouched");
    assert_eq!(
        dev.write_config_u16(regs::INTERRUPT_LINE + 1, 0),
        Err(ConfigError::BadOffset)
    );
    assert_eq!(dev.write_config_u8(0x100, 0), Err(ConfigError::BadOffset));
    // Decoding the kernel left off cannot be turned on; clearing and restoring bits can.
    let command = dev.command();
    if command & regs::COMMAND_IO != 0 {
        dev.write_config_u16(regs::COMMAND, command & !regs::COMMAND_IO)
            .unwrap();
        assert_eq!(dev.command() & regs::COMMAND_IO, 0);
        assert_eq!(
            dev.write_config_u16(regs::COMMAND, command),
            Err(ConfigError::Protected)
        );
        assert_eq!(dev.command() & regs::COMMAND_IO, 0, "still off");
        // SAFETY: restores the value `pci::init` checked and set.
        unsafe { dev.config().write_u16_raw(regs::COMMAND, command) };
        assert_eq!(dev.command(), command);
    }
    dev.write_config_u16(regs::COMMAND, command).unwrap();
    // Through the trait, a refused write is ignored.
    ConfigSpace::write_u32(dev, regs::BAR0, 0xDEAD_0000);
    assert_eq!(dev.read_config_u32(regs::BAR0), bar0);
    // The interrupt line is plain storage.
    let line = dev.interrupt_line();
    dev.write_config_u8(regs::INTERRUPT_LINE, 0x0B).unwrap();
    assert_eq!(dev.read_config_u8(regs::INTERRUPT_LINE), 0x0B);
    dev.write_config_u8(regs::INTERRUPT_LINE, line).unwrap();
    assert_eq!(dev.read_config_u8(regs::INTERRUPT_LINE), line);
}

/// What a transport crate would write: generic over the trait, no kernel types.
fn vendor_device<C: ConfigSpace + ?Sized>(cfg: &C) -> (u16, u16) {
    let id = cfg.read_u32(0);
    (id as u16, (id >> 16) as u16)
}

fn config_space_trait_reads_like_the_device() {
    for dev in pci::devices() {
        assert_eq!(vendor_device(dev), (dev.vendor_id(), dev.device_id()));
        let dynamic: &dyn ConfigSpace = dev.config();
        assert_eq!(vendor_device(dynamic), (dev.vendor_id(), dev.device_id()));
        assert_eq!(dev.read_config_u8(0), dev.vendor_id() as u8);
        assert_eq!(dev.read_config_u8(1), (dev.vendor_id() >> 8) as u8);
        assert_eq!(dev.read_config_u16(2), dev.device_id());
        // Misaligned or out-of-range reads answer all-ones instead of panicking.
        assert_eq!(dev.read_config_u32(2), u32::MAX);
        assert_eq!(dev.read_config_u16(0x101), u16::MAX);
        assert_eq!(dev.read_config_u8(0x100), u8::MAX);
    }
}

fn absent_functions_read_all_ones() {
    assert!(PciAddress::new(0, 32, 0).is_none());
    assert!(PciAddress::new(0, 0, 8).is_none());
    for device in 0..32 {
        let cfg = PciConfig::new(PciAddress::new(0, device, 0).unwrap());
        let present = pci::devices().iter().any(|d| d.address() == (0, device, 0));
        assert_eq!(
            cfg.read_u16(regs::VENDOR_ID) != 0xFFFF,
            present,
            "00:{device:02x}.0"
        );
    }
    // A bus nothing routes to.
    let far = PciConfig::new(PciAddress::new(0xFE, 0, 0).unwrap());
    assert_eq!(far.read_u32(0), u32::MAX);
}
