//! The command-line and DSDT readers against hand-built words and AML.

use super::*;

#[test]
fn command_line_words() {
    let cmdline = "log=debug virtio_mmio.device=512@0xfeb00e00:12 \
                   virtio_mmio.device=4K@0xd0000000:5:3 virtio_mmio.device=oops \
                   virtio_mmio.device=1M@4096:7";
    let slots: Vec<_> = cmdline_slots(cmdline).collect();
    assert_eq!(
        slots[0],
        Ok(MmioSlot {
            base: 0xfeb0_0e00,
            size: 512,
            irq: 12,
            level: true,
            active_low: false
        })
    );
    assert_eq!(
        slots[1].map(|s| (s.base, s.size, s.irq)),
        Ok((0xd000_0000, 4096, 5))
    );
    assert_eq!(slots[2], Err("virtio_mmio.device=oops"));
    assert_eq!(
        slots[3].map(|s| (s.base, s.size, s.irq)),
        Ok((4096, 1 << 20, 7))
    );
    assert_eq!(slots.len(), 4);
}

#[test]
fn sizes_take_binary_suffixes_in_either_case() {
    for (size, bytes) in [
        ("0x200", 0x200),
        ("4k", 4 << 10),
        ("4K", 4 << 10),
        ("2m", 2 << 20),
        ("2M", 2 << 20),
        ("1g", 1 << 30),
        ("3G", 3 << 30),
        ("0x10G", 16 << 30),
    ] {
        let word = format!("virtio_mmio.device={size}@0x100000000:10");
        let slot = cmdline_slots(&word).next().unwrap().unwrap();
        assert_eq!(
            (slot.base, slot.size, slot.irq),
            (1 << 32, bytes, 10),
            "{word}"
        );
    }
    // A size whose multiple passes 64 bits, or a suffix with no number, is refused.
    for bad in ["17179869184G@0x1000:5", "G@0x1000:5", "1T@0x1000:5"] {
        assert_eq!(parse_cmdline_value(bad), None, "{bad}");
    }
}

#[test]
fn bad_command_line_values_are_refused() {
    for bad in [
        "512@0xfeb00e00",
        "512@0xfeb00e00:12:3:4",
        "0@0x1000:5",
        "512@0xffffffffffffff00:5",
        "512@0x1000:99999999999",
        "x@0x1000:5",
        "512@zz:5",
        "@0x1000:5",
    ] {
        assert_eq!(parse_cmdline_value(bad), None, "{bad}");
    }
}

/// `PkgLength` as AML writes it (ACPI 6.5 §20.2.4), for `len` bytes after it.
fn pkg(len: usize) -> Vec<u8> {
    for follow in 0..4usize {
        let total = len + 1 + follow;
        if follow == 0 && total < 0x40 {
            return vec![total as u8];
        }
        if follow > 0 && total < 1 << (4 + 8 * follow) {
            let mut v = vec![(follow as u8) << 6 | (total & 0x0f) as u8];
            v.extend((0..follow).map(|i| (total >> (4 + 8 * i)) as u8));
            return v;
        }
    }
    unreachable!()
}

fn name(seg: &[u8; 4], value: &[u8]) -> Vec<u8> {
    [&[aml::NAME_OP][..], seg, value].concat()
}

fn string(s: &[u8]) -> Vec<u8> {
    [&[aml::STRING_PREFIX][..], s, &[0]].concat()
}

/// `Buffer` with its size in the smallest integer constant, as ASL compilers write it.
fn buffer(bytes: &[u8]) -> Vec<u8> {
    let n = bytes.len();
    let size = match u8::try_from(n) {
        Ok(n) => vec![aml::BYTE_PREFIX, n],
        Err(_) => [
            &[aml::WORD_PREFIX][..],
            &u16::try_from(n).unwrap().to_le_bytes(),
        ]
        .concat(),
    };
    buffer_sized(&size, bytes)
}

/// `Buffer` with its size encoded as `size` (a complete integer constant).
fn buffer_sized(size: &[u8], bytes: &[u8]) -> Vec<u8> {
    let body = [size, bytes].concat();
    [&[aml::BUFFER_OP][..], &pkg(body.len()), &body].concat()
}

fn device(seg: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let inner = [&seg[..], body].concat();
    [
        &[aml::EXT_OP_PREFIX, aml::DEVICE_OP][..],
        &pkg(inner.len()),
        &inner,
    ]
    .concat()
}

fn memory32_fixed(base: u32, len: u32) -> Vec<u8> {
    [
        &[0x86, 9, 0, 1][..],
        &base.to_le_bytes(),
        &len.to_le_bytes(),
    ]
    .concat()
}

fn extended_irq(flags: u8, gsi: u32) -> Vec<u8> {
    [&[0x89, 6, 0, flags, 1][..], &gsi.to_le_bytes()].concat()
}

const END: [u8; 2] = [0x79, 0];

fn virtio_device(seg: &[u8; 4], crs: &[u8]) -> Vec<u8> {
    [
        name(b"_HID", &string(b"LNRO0005")),
        name(b"_UID", &[aml::BYTE_PREFIX, 3]),
        name(b"_CRS", &buffer(crs)),
    ]
    .concat()
    .pipe(|body| device(seg, &body))
}

trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}
impl<T> Pipe for T {}

#[test]
fn dsdt_devices_with_their_windows_and_lines() {
    // A system bus scope with another device, then two virtio-mmio devices (level high and
    // edge low), one whose template has no interrupt, one with another _HID.
    let crs_a = [
        memory32_fixed(0xfeb0_2e00, 0x200),
        extended_irq(0x01, 47),
        END.to_vec(),
    ]
    .concat();
    let crs_b = [
        extended_irq(0x07, 46),
        memory32_fixed(0xfeb0_2c00, 0x200),
        END.to_vec(),
    ]
    .concat();
    let crs_none = [memory32_fixed(0xfeb0_2a00, 0x200), END.to_vec()].concat();
    let other = [
        name(b"_HID", &string(b"PNP0C0C")),
        name(
            b"_CRS",
            &buffer(
                &[
                    memory32_fixed(0x1000, 0x10),
                    extended_irq(1, 9),
                    END.to_vec(),
                ]
                .concat(),
            ),
        ),
    ]
    .concat();
    let sb = [
        device(b"PWRB", &other),
        virtio_device(b"VR23", &crs_a),
        virtio_device(b"VR22", &crs_b),
        virtio_device(b"VR21", &crs_none),
    ]
    .concat();
    let table = [vec![0u8; 36], device(b"_SB_", &sb)].concat();
    let slots = dsdt_slots(&table);
    assert_eq!(
        slots,
        [
            MmioSlot {
                base: 0xfeb0_2e00,
                size: 0x200,
                irq: 47,
                level: true,
                active_low: false
            },
            MmioSlot {
                base: 0xfeb0_2c00,
                size: 0x200,
                irq: 46,
                level: false,
                active_low: true
            },
        ]
    );
}

#[test]
fn long_packages_and_legacy_irq_descriptors() {
    // A template padded past 63 bytes (a two-byte PkgLength), with a small IRQ descriptor.
    let mut crs = vec![0x87, 17, 0];
    crs.extend_from_slice(&[0; 17]); // a DWord address space descriptor to skip
    crs.extend_from_slice(&[0x86, 9, 0, 1, 0, 0, 0, 0xd0, 0, 0x10, 0, 0]);
    crs.extend_from_slice(&[0x22, 1 << 5, 0]); // IRQ 5, no flags byte: edge, high
    crs.extend_from_slice(&[0x70 | 1, 0]); // a vendor-defined small descriptor to skip
    crs.extend_from_slice(&END);
    crs.extend_from_slice(&[0; 40]);
    let table = virtio_device(b"VR00", &crs);
    assert!(table.len() > 64);
    assert_eq!(
        dsdt_slots(&table),
        [MmioSlot {
            base: 0xd000_0000,
            size: 0x1000,
            irq: 5,
            level: false,
            active_low: false
        }]
    );
}

#[test]
fn truncated_or_lying_tables_give_nothing_and_do_not_panic() {
    let crs = [
        memory32_fixed(0xfeb0_2e00, 0x200),
        extended_irq(0x01, 47),
        END.to_vec(),
    ]
    .concat();
    let table = [vec![0u8; 36], virtio_device(b"VR23", &crs)].concat();
    assert_eq!(dsdt_slots(&table).len(), 1);
    for cut in 0..table.len() {
        let slots = dsdt_slots(&table[..cut]);
        assert!(slots.len() <= 1);
    }
    // Every byte changed in turn: whatever comes out is bounded, nothing panics.
    for i in 36..table.len() {
        for v in [0u8, 0x3f, 0x40, 0x7f, 0x80, 0xc0, 0xff] {
            let mut t = table.clone();
            t[i] = v;
            assert!(dsdt_slots(&t).len() <= 1);
        }
    }
    // A zero-length window or an interrupt descriptor with no interrupts is no slot.
    let empty = [
        memory32_fixed(0xfeb0_2e00, 0),
        extended_irq(0x01, 47),
        END.to_vec(),
    ]
    .concat();
    assert!(dsdt_slots(&virtio_device(b"VR23", &empty)).is_empty());
    let none = [
        memory32_fixed(0xfeb0_2e00, 0x200),
        vec![0x89, 2, 0, 1, 0],
        END.to_vec(),
    ]
    .concat();
    assert!(dsdt_slots(&virtio_device(b"VR23", &none)).is_empty());
}

/// A memory window and a level-triggered, active-high interrupt.
fn template(base: u32, gsi: u32) -> Vec<u8> {
    [
        memory32_fixed(base, 0x200),
        extended_irq(0x01, gsi),
        END.to_vec(),
    ]
    .concat()
}

fn slot(base: u64, irq: u32) -> MmioSlot {
    MmioSlot {
        base,
        size: 0x200,
        irq,
        level: true,
        active_low: false,
    }
}

#[test]
fn buffer_sizes_in_every_integer_encoding() {
    let crs = template(0xfeb0_0000, 40);
    let n = crs.len() as u8;
    for size in [
        vec![aml::BYTE_PREFIX, n],
        vec![aml::WORD_PREFIX, n, 0],
        vec![aml::DWORD_PREFIX, n, 0, 0, 0],
        vec![aml::QWORD_PREFIX, n, 0, 0, 0, 0, 0, 0, 0],
    ] {
        let body = [
            name(b"_HID", &string(b"LNRO0005")),
            name(b"_CRS", &buffer_sized(&size, &crs)),
        ]
        .concat();
        assert_eq!(
            dsdt_slots(&device(b"VR00", &body)),
            [slot(0xfeb0_0000, 40)],
            "{size:02x?}"
        );
        // A size larger than the bytes that follow is no template.
        let mut long = size.clone();
        long[1] = n + 1;
        let body = [
            name(b"_HID", &string(b"LNRO0005")),
            name(b"_CRS", &buffer_sized(&long, &crs)),
        ]
        .concat();
        assert!(
            dsdt_slots(&device(b"VR00", &body)).is_empty(),
            "{long:02x?}"
        );
    }
    // A template of more than 255 bytes, whose size a compiler writes as a WordConst: a
    // vendor-defined large descriptor (type 4) of 290 bytes before the window.
    let vendor = [&[0x84, 0x22, 0x01][..], &[0x5a; 0x122]].concat();
    let crs = [vendor, crs].concat();
    let table = virtio_device(b"VR01", &crs);
    assert_eq!(table[table.len() - crs.len() - 3], aml::WORD_PREFIX);
    assert_eq!(dsdt_slots(&table), [slot(0xfeb0_0000, 40)]);
}

#[test]
fn each_device_gets_its_own_resource_template() {
    // Device order inside a package is free (ACPI 6.5 §19.6.30): a child device before the
    // `_HID`, the `_CRS` before the `_HID`.
    let child = device(b"LED0", &name(b"_HID", &string(b"PNP0C0C")));
    let hid_after_child = [
        child.clone(),
        name(b"_HID", &string(b"LNRO0005")),
        name(b"_CRS", &buffer(&template(0xfeb0_0000, 40))),
    ]
    .concat();
    let crs_first = [
        name(b"_CRS", &buffer(&template(0xfeb0_0200, 41))),
        name(b"_HID", &string(b"LNRO0005")),
    ]
    .concat();
    // A virtio device whose `_CRS` is not a buffer here does not borrow its child's.
    let child_with_crs = device(b"CHLD", &name(b"_CRS", &buffer(&template(0xfeb0_0400, 42))));
    let no_crs_of_its_own = [name(b"_HID", &string(b"LNRO0005")), child_with_crs].concat();
    let table = [
        device(b"VR00", &hid_after_child),
        device(b"VR01", &crs_first),
        device(b"VR02", &no_crs_of_its_own),
    ]
    .concat();
    assert_eq!(
        dsdt_slots(&table),
        [slot(0xfeb0_0000, 40), slot(0xfeb0_0200, 41)]
    );
    // Nor does it take the parent's: a bus device with its own `_CRS` (the bus window)
    // and virtio devices inside it.
    let bus = [
        name(b"_HID", &string(b"ACPI0004")),
        name(b"_CRS", &buffer(&template(0xfe00_0000, 5))),
        virtio_device(b"VR10", &template(0xfeb0_1000, 50)),
        virtio_device(b"VR11", &template(0xfeb0_1200, 51)),
    ]
    .concat();
    assert_eq!(
        dsdt_slots(&device(b"BUS0", &bus)),
        [slot(0xfeb0_1000, 50), slot(0xfeb0_1200, 51)]
    );
}

/// A 32-bit memory range descriptor (ACPI 6.5 §6.4.3.3): bases `min..=max`, 4-byte aligned.
fn memory32(min: u32, max: u32, len: u32) -> Vec<u8> {
    [
        &[0x85, 17, 0, 1][..],
        &min.to_le_bytes(),
        &max.to_le_bytes(),
        &4u32.to_le_bytes(),
        &len.to_le_bytes(),
    ]
    .concat()
}

/// A legacy IRQ descriptor with its flags byte (ACPI 6.5 §6.4.2.1).
fn irq(line: u8, flags: u8) -> Vec<u8> {
    let mask = 1u16 << line;
    [&[0x23][..], &mask.to_le_bytes(), &[flags]].concat()
}

#[test]
fn templates_give_their_first_window_and_first_line() {
    let walk = |parts: &[Vec<u8>]| resource_slot(&[parts.concat(), END.to_vec()].concat());
    let slot = |base: u64, size: u64, irq: u32, level: bool, active_low: bool| MmioSlot {
        base,
        size,
        irq,
        level,
        active_low,
    };
    // A memory range that cannot move is the window; one that can is not.
    assert_eq!(
        walk(&[
            memory32(0xd000_0000, 0xd000_0000, 0x1000),
            extended_irq(1, 9)
        ]),
        Some(slot(0xd000_0000, 0x1000, 9, true, false))
    );
    assert_eq!(
        walk(&[
            memory32(0xd000_0000, 0xd800_0000, 0x1000),
            extended_irq(1, 9),
            memory32_fixed(0xfeb0_0000, 0x200),
        ]),
        Some(slot(0xfeb0_0000, 0x200, 9, true, false))
    );
    assert_eq!(
        walk(&[
            memory32(0xd000_0000, 0xd800_0000, 0x1000),
            extended_irq(1, 9)
        ]),
        None
    );
    // The first window and the first line win, whatever descriptor kinds follow.
    assert_eq!(
        walk(&[
            memory32_fixed(0xfeb0_0000, 0x200),
            extended_irq(0x07, 10),
            memory32_fixed(0xfeb0_0200, 0x200),
            memory32(0xd000_0000, 0xd000_0000, 0x1000),
            extended_irq(0x01, 11),
            irq(5, 0x18),
        ]),
        Some(slot(0xfeb0_0000, 0x200, 10, false, true))
    );
    // Legacy IRQ flags: bit 0 edge, bit 3 active low.
    for (flags, level, active_low) in [
        (0x18, true, true),
        (0x00, true, false),
        (0x01, false, false),
        (0x09, false, true),
    ] {
        assert_eq!(
            walk(&[irq(7, flags), memory32_fixed(0xfeb0_0000, 0x200)]),
            Some(slot(0xfeb0_0000, 0x200, 7, level, active_low)),
            "{flags:#x}"
        );
    }
    // Nothing after the End Tag is a descriptor of the template.
    assert_eq!(
        walk(&[
            memory32_fixed(0xfeb0_0000, 0x200),
            END.to_vec(),
            extended_irq(1, 9)
        ]),
        None
    );
}
