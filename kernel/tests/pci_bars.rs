//! BAR sizing probes, as a device might answer them, well-formed and hostile: sizes, kinds and
//! addresses decode, and malformed masks are refused rather than trusted.

#![no_std]
#![no_main]

use vireo::pci::{Bar, BarError, BarKind};

vireo::test_main!(
    unimplemented_slots_are_empty,
    io_bars_of_16_and_32_bits,
    memory32_bars,
    memory64_bars_span_two_slots,
    hostile_masks_are_refused,
    real_bars_match_their_probe,
);

fn probe(original: u32, mask: u32, upper: Option<(u32, u32)>) -> Result<Option<Bar>, BarError> {
    Bar::from_probe(0, original, mask, upper)
}

fn unimplemented_slots_are_empty() {
    assert_eq!(probe(0, 0, None), Ok(None));
    assert_eq!(probe(1, 1, None), Ok(None), "I/O type bit only");
    assert_eq!(probe(0x8, 0x8, None), Ok(None), "flag bits only");
    assert_eq!(
        probe(0x4, 0x4, Some((0, 0))),
        Ok(None),
        "64-bit, nothing writable"
    );
}

fn io_bars_of_16_and_32_bits() {
    let bar = probe(0xC041, 0xFFFF_FFE1, None).unwrap().unwrap();
    assert_eq!(bar.kind(), BarKind::Io);
    assert_eq!((bar.size(), bar.address()), (0x20, Some(0xC040)));
    assert!(!bar.is_prefetchable() && bar.is_io() && !bar.is_memory());
    // A decoder of 16 bits reads back zeros above bit 15.
    let bar = probe(0x1, 0x0000_FFC1, None).unwrap().unwrap();
    assert_eq!((bar.size(), bar.address()), (0x40, None));
}

fn memory32_bars() {
    let bar = probe(0xC100_0000, 0xFFFF_F000, None).unwrap().unwrap();
    assert_eq!(bar.kind(), BarKind::Memory32);
    assert_eq!((bar.size(), bar.address()), (0x1000, Some(0xC100_0000)));
    assert_eq!(bar.range(), Some(0xC100_0000..0xC100_1000));
    let bar = probe(0x8, 0xFF00_0008, None).unwrap().unwrap();
    assert!(bar.is_prefetchable());
    assert_eq!((bar.size(), bar.address()), (16 << 20, None));
    // The legacy "below 1 MiB" type decodes as 32-bit.
    let bar = probe(0x2, 0xFFFF_FFF2, None).unwrap().unwrap();
    assert_eq!((bar.kind(), bar.size()), (BarKind::Memory32, 16));
    // The largest: 2 GiB.
    let bar = probe(0, 0x8000_0000, None).unwrap().unwrap();
    assert_eq!(bar.size(), 1 << 31);
}

fn memory64_bars_span_two_slots() {
    assert!(Bar::probe_needs_upper(0xC));
    assert!(!Bar::probe_needs_upper(0x8));
    assert!(
        !Bar::probe_needs_upper(0x5),
        "I/O with bit 2 set is not 64-bit"
    );
    let bar = probe(0xC, 0xFFFF_C00C, Some((0x80, 0xFFFF_FFFF)))
        .unwrap()
        .unwrap();
    assert_eq!(bar.kind(), BarKind::Memory64);
    assert!(bar.is_64bit() && bar.is_prefetchable());
    assert_eq!((bar.size(), bar.address()), (0x4000, Some(0x80_0000_0000)));
    // 8 GiB: the size lives in the upper slot.
    let bar = probe(0x4, 0x0000_0004, Some((0, 0xFFFF_FFFE)))
        .unwrap()
        .unwrap();
    assert_eq!(bar.size(), 8 << 30);
}

fn hostile_masks_are_refused() {
    // Writable bits with a hole: not a power-of-two size.
    assert_eq!(probe(0, 0xFF0F_F000, None), Err(BarError::BadSizeMask));
    assert_eq!(probe(0, 0x0000_F000, None), Err(BarError::BadSizeMask));
    assert_eq!(probe(1, 0xFF00_FFF1, None), Err(BarError::BadSizeMask));
    assert_eq!(
        probe(0x4, 0xFFFF_F004, Some((0, 0x7FFF_FFFF))),
        Err(BarError::BadSizeMask)
    );
    // A 64-bit BAR with no slot for its upper half, and the reserved type.
    assert_eq!(probe(0x4, 0xFFFF_F004, None), Err(BarError::NoUpperSlot));
    assert_eq!(probe(0x6, 0xFFFF_F006, None), Err(BarError::ReservedType));
}

fn real_bars_match_their_probe() {
    // Every BAR the scan found is a power of two at least as large as its kind's minimum.
    for dev in vireo::pci::devices() {
        for bar in dev.bars() {
            assert!(bar.size().is_power_of_two());
            assert!(bar.size() >= if bar.is_io() { 4 } else { 16 });
        }
    }
}
