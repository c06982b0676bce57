//! Where virtio-mmio devices sit: a platform without PCI names each register window and its
//! interrupt line, either on the kernel command line (`virtio_mmio.device=SIZE@BASE:IRQ[:ID]`,
//! the form Linux reads and QEMU's `microvm` machine appends with `auto-kernel-cmdline`) or in
//! ACPI, as devices with the hardware id `LNRO0005` whose `_CRS` resource template holds a
//! memory window and an interrupt (what `microvm` describes when its ACPI is on).
//!
//! Both readers take untrusted bytes and return what they can vouch for: a word or a device that
//! does not parse is skipped (the caller may log it), never a panic.

use alloc::vec::Vec;

/// One virtio-mmio register window and its interrupt line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioSlot {
    /// Physical address of the register window.
    pub base: u64,
    /// Length of the window (the registers and the device configuration after them).
    pub size: u64,
    /// The global system interrupt (GSI) the device raises.
    pub irq: u32,
    /// The line is level-triggered (else edge).
    pub level: bool,
    /// The line is active low (else high).
    pub active_low: bool,
}

/// The key of the command-line form.
pub const CMDLINE_KEY: &str = "virtio_mmio.device=";

/// Reads one `SIZE@BASE:IRQ[:ID]` value (after [`CMDLINE_KEY`]). SIZE and BASE take a `0x`
/// prefix for hexadecimal and SIZE a `K`, `M` or `G` suffix; the optional platform device id is
/// ignored. The line is taken as level-triggered, active high: a virtio-mmio device holds it
/// asserted until its interrupt status is acknowledged (virtio 1.2 §4.2.3.4), and the form
/// says nothing else.
pub fn parse_cmdline_value(value: &str) -> Option<MmioSlot> {
    let (size, rest) = value.split_once('@')?;
    let mut parts = rest.split(':');
    let base = parse_number(parts.next()?)?;
    let irq = u32::try_from(parse_number(parts.next()?)?).ok()?;
    // An optional device id, then nothing.
    if let Some(id) = parts.next() {
        parse_number(id)?;
    }
    if parts.next().is_some() {
        return None;
    }
    let size = parse_size(size)?;
    if size == 0 || base.checked_add(size).is_none() {
        return None;
    }
    Some(MmioSlot {
        base,
        size,
        irq,
        level: true,
        active_low: false,
    })
}

/// Every `virtio_mmio.device=` word of `cmdline`: the slot, or the word that did not parse.
pub fn cmdline_slots(cmdline: &str) -> impl Iterator<Item = Result<MmioSlot, &str>> {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix(CMDLINE_KEY).map(|v| (w, v)))
        .map(|(w, v)| parse_cmdline_value(v).ok_or(w))
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    parse_number(digits)?.checked_mul(1 << shift)
}

/// AML opcodes and the resource descriptors this reader understands (ACPI 6.5 §20.2, §6.4).
mod aml {
    pub const NAME_OP: u8 = 0x08;
    pub const STRING_PREFIX: u8 = 0x0d;
    pub const BUFFER_OP: u8 = 0x11;
    pub const BYTE_PREFIX: u8 = 0x0a;
    pub const WORD_PREFIX: u8 = 0x0b;
    pub const DWORD_PREFIX: u8 = 0x0c;
    pub const EXT_OP_PREFIX: u8 = 0x5b;
    pub const DEVICE_OP: u8 = 0x82;
    /// Large resource descriptors (tag bit 7 set) by type.
    pub const MEMORY32: u8 = 0x05;
    pub const MEMORY32_FIXED: u8 = 0x06;
    pub const EXTENDED_IRQ: u8 = 0x09;
    /// Small resource descriptors by type.
    pub const IRQ: u8 = 0x04;
    pub const END_TAG: u8 = 0x0f;
}

/// The hardware id ACPI gives virtio-mmio devices.
const VIRTIO_MMIO_HID: &[u8] = b"LNRO0005";

/// The virtio-mmio devices a DSDT (or SSDT) describes: each `Device` whose `_HID` is the string
/// `LNRO0005` and whose `_CRS` is a resource template with a 32-bit memory window and an
/// interrupt. `aml` is the table's AML (after its 36-byte header, or the whole table: the
/// header holds no match).
///
/// This is not an AML interpreter: it finds the `Name` objects by their encoding inside the
/// innermost `Device` package that holds the `_HID`, which is how firmware writes them.
pub fn dsdt_slots(aml: &[u8]) -> Vec<MmioSlot> {
    let mut hid = Vec::with_capacity(VIRTIO_MMIO_HID.len() + 7);
    hid.extend_from_slice(&[aml::NAME_OP, b'_', b'H', b'I', b'D', aml::STRING_PREFIX]);
    hid.extend_from_slice(VIRTIO_MMIO_HID);
    hid.push(0);
    let devices = device_extents(aml);
    let mut slots = Vec::new();
    for at in find_all(aml, &hid) {
        // The innermost device that holds this `_HID`.
        let Some(&(_, end)) = devices
            .iter()
            .filter(|(start, end)| *start < at && at < *end)
            .min_by_key(|(start, end)| end - start)
        else {
            continue;
        };
        let scope = &aml[at..end];
        let crs = [aml::NAME_OP, b'_', b'C', b'R', b'S', aml::BUFFER_OP];
        if let Some(slot) = find_all(scope, &crs)
            .next()
            .and_then(|c| buffer_contents(&scope[c + crs.len()..]))
            .and_then(resource_slot)
        {
            slots.push(slot);
        }
    }
    slots
}

/// The positions of every `needle` in `haystack`.
fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(move |(_, w)| *w == needle)
        .map(|(i, _)| i)
}

/// `(start, end)` of every `Device` package (`ExtOpPrefix DeviceOp PkgLength ...`) whose length
/// fits the table.
fn device_extents(aml: &[u8]) -> Vec<(usize, usize)> {
    find_all(aml, &[aml::EXT_OP_PREFIX, aml::DEVICE_OP])
        .filter_map(|at| {
            let pkg = at + 2;
            let (len, _) = pkg_length(aml.get(pkg..)?)?;
            let end = pkg.checked_add(len)?;
            (end <= aml.len()).then_some((at, end))
        })
        .collect()
}

/// An AML `PkgLength` at the start of `b`: the package length (which counts these bytes too) and
/// how many bytes encode it.
fn pkg_length(b: &[u8]) -> Option<(usize, usize)> {
    let lead = *b.first()?;
    let follow = usize::from(lead >> 6);
    if follow == 0 {
        return Some((usize::from(lead & 0x3f), 1));
    }
    let mut len = usize::from(lead & 0x0f);
    for i in 0..follow {
        len |= usize::from(*b.get(1 + i)?) << (4 + 8 * i);
    }
    Some((len, 1 + follow))
}

/// The bytes of a `Buffer` whose `PkgLength` starts `b` (after the `BufferOp`).
fn buffer_contents(b: &[u8]) -> Option<&[u8]> {
    let (len, used) = pkg_length(b)?;
    let body = b.get(used..len)?;
    let (size, skip) = match *body.first()? {
        aml::BYTE_PREFIX => (usize::from(*body.get(1)?), 2),
        aml::WORD_PREFIX => (
            usize::from(u16::from_le_bytes([*body.get(1)?, *body.get(2)?])),
            3,
        ),
        aml::DWORD_PREFIX => (
            usize::try_from(u32::from_le_bytes(body.get(1..5)?.try_into().ok()?)).ok()?,
            5,
        ),
        _ => return None,
    };
    body.get(skip..size.checked_add(skip)?)
}

/// Walks a resource template: the first 32-bit memory window and the first interrupt.
fn resource_slot(mut t: &[u8]) -> Option<MmioSlot> {
    let u32_at =
        |d: &[u8], at: usize| Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?));
    let (mut window, mut irq) = (None, None);
    while let Some(&tag) = t.first() {
        let (kind, data, next) = if tag & 0x80 != 0 {
            let len = usize::from(u16::from_le_bytes([*t.get(1)?, *t.get(2)?]));
            (tag & 0x7f, t.get(3..3 + len)?, 3 + len)
        } else {
            let len = usize::from(tag & 7);
            ((tag >> 3) & 0x0f | 0x80, t.get(1..1 + len)?, 1 + len)
        };
        match kind {
            aml::MEMORY32_FIXED if window.is_none() => {
                window = Some((u32_at(data, 1)?, u32_at(data, 5)?));
            }
            // A window whose minimum and maximum base agree is a fixed one.
            aml::MEMORY32 if window.is_none() && u32_at(data, 1)? == u32_at(data, 5)? => {
                window = Some((u32_at(data, 1)?, u32_at(data, 13)?));
            }
            aml::EXTENDED_IRQ if irq.is_none() => {
                let flags = *data.first()?;
                if *data.get(1)? == 0 {
                    return None;
                }
                irq = Some((u32_at(data, 2)?, flags & 2 == 0, flags & 4 != 0));
            }
            k if k == aml::IRQ | 0x80 && irq.is_none() => {
                let mask = u16::from_le_bytes([*data.first()?, *data.get(1)?]);
                if mask == 0 {
                    return None;
                }
                // Without the flags byte: edge, active high (ACPI 6.5 §6.4.2.1).
                let flags = data.get(2).copied().unwrap_or(1);
                irq = Some((mask.trailing_zeros(), flags & 1 == 0, flags & 8 != 0));
            }
            k if k == aml::END_TAG | 0x80 => break,
            _ => {}
        }
        t = &t[next..];
    }
    let (base, size) = window?;
    let (irq, level, active_low) = irq?;
    (size != 0).then_some(MmioSlot {
        base: u64::from(base),
        size: u64::from(size),
        irq,
        level,
        active_low,
    })
}

#[cfg(test)]
mod tests {
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

    fn buffer(bytes: &[u8]) -> Vec<u8> {
        let body = [&[aml::BYTE_PREFIX, bytes.len() as u8][..], bytes].concat();
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
}
