//! When the 32-bit window cannot hold every BAR, the ones left over stay unassigned and their
//! function does not decode memory; everything else is still placed and enabled.
//!
//! Boots qboot explicitly: SeaBIOS fails its own placement of this configuration and never starts
//! the kernel.
//!
//! vireo-test: qemu -bios /usr/share/qemu/qboot.rom -vga none -device VGA,vgamem_mb=512 -device secondary-vga,vgamem_mb=512

#![no_std]
#![no_main]

use vireo::{
    pci::{self, regs},
    println,
};

vireo::test_main!(an_unplaceable_bar_leaves_decoding_off);

fn an_unplaceable_bar_leaves_decoding_off() {
    let mut placed = 0;
    let mut unplaced = 0;
    for dev in pci::devices().iter().filter(|d| d.vendor_id() == 0x1234) {
        let bar0 = dev.bar(0).expect("VRAM BAR");
        println!("{dev}: {bar0}, command {:#06x}", dev.command());
        assert_eq!(bar0.size(), 512 << 20);
        assert!(
            !bar0.is_64bit(),
            "a 32-bit BAR: only the 32-bit window can hold it"
        );
        match bar0.address() {
            Some(at) => {
                placed += 1;
                assert_eq!(at % bar0.size(), 0);
                assert_ne!(dev.command() & regs::COMMAND_MEMORY, 0);
            }
            None => {
                unplaced += 1;
                assert_eq!(dev.command() & regs::COMMAND_MEMORY, 0, "no decoding at 0");
                assert_eq!(dev.read_config_u32(regs::BAR0) & !0xF, 0);
            }
        }
    }
    // 0xC000_0000..0xFEC0_0000 holds one 512 MiB aligned block, not two.
    assert_eq!((placed, unplaced), (1, 1));
}
