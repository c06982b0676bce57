//! The capability walk and the capability parsers against a fake, hostile configuration space:
//! loops, bad pointers and bad lengths end the walk or fail the parse, never hang or panic.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::cell::RefCell;

use vireo::pci::{
    CAP_ID_MSIX, CAP_ID_VENDOR, Capabilities, CapabilityError, ConfigSpace, MAX_CAPABILITIES,
    MsixCapability, VendorCapability, regs,
};

vireo::test_main!(
    no_list_without_the_status_bit,
    walks_a_well_formed_list,
    stops_at_a_loop,
    stops_at_bad_pointers,
    walks_the_longest_possible_list,
    vendor_capability_is_bounded_by_its_length,
    msix_capability_parses_and_toggles,
);

/// 256 bytes of configuration space in memory.
struct Fake(RefCell<[u8; 256]>);

impl Fake {
    fn new() -> Self {
        Self(RefCell::new([0; 256]))
    }

    /// A list: the status bit, the head pointer, and `(offset, id, next)` entries.
    fn with_list(head: u8, caps: &[(u8, u8, u8)]) -> Self {
        let f = Self::new();
        f.write_u16(regs::STATUS, regs::STATUS_CAP_LIST);
        f.write_u8(regs::CAP_PTR, head);
        for &(at, id, next) in caps {
            f.write_u8(at.into(), id);
            f.write_u8(u16::from(at) + 1, next);
        }
        f
    }

    fn ok(offset: u16, size: u16) -> bool {
        offset.is_multiple_of(size) && offset + size <= 256
    }
}

impl ConfigSpace for Fake {
    fn read_u8(&self, offset: u16) -> u8 {
        if Self::ok(offset, 1) {
            self.0.borrow()[usize::from(offset)]
        } else {
            u8::MAX
        }
    }
    fn read_u16(&self, offset: u16) -> u16 {
        if Self::ok(offset, 2) {
            u16::from_le_bytes([self.read_u8(offset), self.read_u8(offset + 1)])
        } else {
            u16::MAX
        }
    }
    fn read_u32(&self, offset: u16) -> u32 {
        if Self::ok(offset, 4) {
            u32::from(self.read_u16(offset)) | u32::from(self.read_u16(offset + 2)) << 16
        } else {
            u32::MAX
        }
    }
    fn write_u8(&self, offset: u16, value: u8) {
        if Self::ok(offset, 1) {
            self.0.borrow_mut()[usize::from(offset)] = value;
        }
    }
    fn write_u16(&self, offset: u16, value: u16) {
        if Self::ok(offset, 2) {
            let [a, b] = value.to_le_bytes();
            self.write_u8(offset, a);
            self.write_u8(offset + 1, b);
        }
    }
    fn write_u32(&self, offset: u16, value: u32) {
        if Self::ok(offset, 4) {
            self.write_u16(offset, value as u16);
            self.write_u16(offset + 2, (value >> 16) as u16);
        }
    }
}

fn walk(f: &Fake) -> (Vec<(u8, u8)>, Option<CapabilityError>) {
    let mut caps = Capabilities::new(f);
    let items = caps.by_ref().map(|c| (c.id, c.offset)).collect();
    (items, caps.error())
}

fn no_list_without_the_status_bit() {
    let f = Fake::with_list(0x40, &[(0x40, 0x11, 0)]);
    f.write_u16(regs::STATUS, 0);
    assert_eq!(walk(&f), (Vec::new(), None));
}

fn walks_a_well_formed_list() {
    let f = Fake::with_list(
        0x40,
        &[(0x40, 0x09, 0x60), (0x60, 0x11, 0x50), (0x50, 0x05, 0)],
    );
    assert_eq!(
        walk(&f),
        ([(0x09, 0x40), (0x11, 0x60), (0x05, 0x50)].to_vec(), None)
    );
}

fn stops_at_a_loop() {
    let f = Fake::with_list(0x40, &[(0x40, 0x09, 0x50), (0x50, 0x09, 0x40)]);
    assert_eq!(
        walk(&f),
        (
            [(0x09, 0x40), (0x09, 0x50)].to_vec(),
            Some(CapabilityError::Loop(0x40))
        )
    );
    let f = Fake::with_list(0x40, &[(0x40, 0x09, 0x40)]);
    assert_eq!(walk(&f).1, Some(CapabilityError::Loop(0x40)));
}

fn stops_at_bad_pointers() {
    let f = Fake::with_list(0x20, &[]);
    assert_eq!(
        walk(&f),
        (Vec::new(), Some(CapabilityError::BadPointer(0x20)))
    );
    let f = Fake::with_list(0x40, &[(0x40, 0x09, 0x41)]);
    assert_eq!(
        walk(&f),
        (
            [(0x09, 0x40)].to_vec(),
            Some(CapabilityError::BadPointer(0x41))
        )
    );
    let f = Fake::with_list(0x40, &[(0x40, 0x09, 0x3C)]);
    assert_eq!(walk(&f).1, Some(CapabilityError::BadPointer(0x3C)));
}

fn walks_the_longest_possible_list() {
    // Every 4-aligned slot from 0x40 to 0xFC, each pointing at the next: 48 entries.
    let slots: Vec<(u8, u8, u8)> = (0x40u16..0x100)
        .step_by(4)
        .map(|at| (at as u8, 0x09, if at == 0xFC { 0 } else { at as u8 + 4 }))
        .collect();
    assert_eq!(slots.len(), MAX_CAPABILITIES);
    let f = Fake::with_list(0x40, &slots);
    let (items, error) = walk(&f);
    assert_eq!(items.len(), MAX_CAPABILITIES);
    assert_eq!(error, None);
    // The same chain closed into a ring ends at the loop.
    f.write_u8(0xFD, 0x40);
    let (items, error) = walk(&f);
    assert_eq!(items.len(), MAX_CAPABILITIES);
    assert_eq!(error, Some(CapabilityError::Loop(0x40)));
}

fn vendor_capability_is_bounded_by_its_length() {
    let f = Fake::with_list(0xF0, &[(0xF0, CAP_ID_VENDOR, 0)]);
    f.write_u8(0xF2, 0x20); // runs past the end of the space
    assert_eq!(
        VendorCapability::new(&f, 0xF0).err(),
        Some(CapabilityError::BadLength(0xF0))
    );
    f.write_u8(0xF2, 2); // shorter than its own header
    assert!(VendorCapability::new(&f, 0xF0).is_err());
    f.write_u8(0xF2, 8);
    f.write_u32(0xF4, 0x1234_5678);
    let v = VendorCapability::new(&f, 0xF0).unwrap();
    assert_eq!(v.len(), 8);
    assert_eq!(v.read_u32(4), Some(0x1234_5678));
    assert_eq!(v.read_u32(5), None, "crosses the capability's end");
    assert_eq!(v.read_u8(7), Some(0x12));
    assert_eq!(v.read_u8(8), None);
    assert_eq!(v.read_u32(u8::MAX), None);
}

fn msix_capability_parses_and_toggles() {
    let f = Fake::with_list(0x50, &[(0x50, CAP_ID_MSIX, 0)]);
    f.write_u16(0x52, 3); // 4 entries
    f.write_u32(0x54, 0x2000 | 1); // table in BAR1 at 0x2000
    f.write_u32(0x58, 0x2800 | 1);
    let m = MsixCapability::parse(&f, 0x50).unwrap();
    assert_eq!(
        (
            m.table_size,
            m.table_bar,
            m.table_offset,
            m.pba_bar,
            m.pba_offset
        ),
        (4, 1, 0x2000, 1, 0x2800)
    );
    assert_eq!(m.table_len(), 64);
    assert_eq!(m.pba_len(), 8);
    assert!(!m.is_enabled(&f));
    m.set_function_mask(&f, true);
    m.set_enabled(&f, true);
    assert!(m.is_enabled(&f));
    assert_eq!(f.read_u16(0x52), 0xC003, "table size bits untouched");
    m.set_enabled(&f, false);
    m.set_function_mask(&f, false);
    assert_eq!(f.read_u16(0x52), 3);
    f.write_u32(0x54, 0x2000 | 7); // BIR 7 does not exist
    assert_eq!(
        MsixCapability::parse(&f, 0x50),
        Err(CapabilityError::BadBar(0x50))
    );
    f.write_u16(0x52, 0x7FF);
    f.write_u32(0x54, 0);
    assert_eq!(MsixCapability::parse(&f, 0x50).unwrap().table_size, 2048);
    assert_eq!(
        MsixCapability::parse(&f, 0xFC),
        Err(CapabilityError::BadLength(0xFC))
    );
}
