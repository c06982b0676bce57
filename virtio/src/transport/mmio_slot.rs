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
    pub const QWORD_PREFIX: u8 = 0x0e;
    pub const EXT_OP_PREFIX: u8 = 0x5b;
    pub const DEVICE_OP: u8 = 0x82;
    /// Large resource descriptors (tag bit 7 set) by type (ACPI 6.5 §6.4.3).
    pub const MEMORY32: u8 = 0x05;
    pub const MEMORY32_FIXED: u8 = 0x06;
    pub const EXTENDED_IRQ: u8 = 0x09;
    /// Small resource descriptors by type (ACPI 6.5 §6.4.2).
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
/// This is not an AML interpreter: it finds the `Name` objects by their encoding, the `_CRS`
/// anywhere in the innermost `Device` package that holds the `_HID` but not inside a `Device`
/// nested in it, which is how firmware writes them.
pub fn dsdt_slots(aml: &[u8]) -> Vec<MmioSlot> {
    let mut hid = Vec::with_capacity(VIRTIO_MMIO_HID.len() + 7);
    hid.extend_from_slice(&[aml::NAME_OP, b'_', b'H', b'I', b'D', aml::STRING_PREFIX]);
    hid.extend_from_slice(VIRTIO_MMIO_HID);
    hid.push(0);
    let crs = [aml::NAME_OP, b'_', b'C', b'R', b'S', aml::BUFFER_OP];
    let devices = device_extents(aml);
    // The innermost device whose package holds the byte at `at`.
    let innermost = |at: usize| {
        devices
            .iter()
            .copied()
            .filter(|&(start, end)| (start..end).contains(&at))
            .min_by_key(|&(start, end)| end - start)
    };
    let mut slots = Vec::new();
    for at in find_all(aml, &hid) {
        let Some(device @ (start, end)) = innermost(at) else {
            continue;
        };
        // The device's own `_CRS`, before or after its `_HID`, not one of a device inside it.
        if let Some(slot) = find_all(&aml[start..end], &crs)
            .map(|c| start + c)
            .find(|&c| innermost(c) == Some(device))
            .and_then(|c| buffer_contents(&aml[c + crs.len()..end]))
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

/// The bytes of a `Buffer` whose `PkgLength` starts `b` (after the `BufferOp`). Its size is an
/// integer constant; the initializer must hold that many bytes.
fn buffer_contents(b: &[u8]) -> Option<&[u8]> {
    let (len, used) = pkg_length(b)?;
    let body = b.get(used..len)?;
    let (size, skip) = integer_const(body)?;
    body.get(skip..skip.checked_add(usize::try_from(size).ok()?)?)
}

/// The integer constant at the start of `b` (ByteConst, WordConst, DWordConst or QWordConst:
/// ACPI 6.5 §20.2.3) and how many bytes encode it.
fn integer_const(b: &[u8]) -> Option<(u64, usize)> {
    let width = match *b.first()? {
        aml::BYTE_PREFIX => 1,
        aml::WORD_PREFIX => 2,
        aml::DWORD_PREFIX => 4,
        aml::QWORD_PREFIX => 8,
        _ => return None,
    };
    let encoded = 1 + width;
    let mut le = [0; 8];
    le[..width].copy_from_slice(b.get(1..encoded)?);
    Some((u64::from_le_bytes(le), encoded))
}

/// A resource descriptor's type: small and large descriptors number theirs separately.
enum Descriptor {
    Small(u8),
    Large(u8),
}

/// Walks a resource template up to its End Tag: the first 32-bit memory window (a fixed one, or
/// a range whose minimum and maximum base agree) and the first interrupt (extended or legacy).
fn resource_slot(mut t: &[u8]) -> Option<MmioSlot> {
    let u32_at =
        |d: &[u8], at: usize| Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?));
    let (mut window, mut irq) = (None, None);
    while let Some(&tag) = t.first() {
        // Large descriptors have a 3-byte header with a 16-bit length, small ones a 1-byte
        // header with a 3-bit length (ACPI 6.5 §6.4.1, §6.4.3).
        let (kind, header, len) = if tag & 0x80 != 0 {
            let len = u16::from_le_bytes([*t.get(1)?, *t.get(2)?]);
            (Descriptor::Large(tag & 0x7f), 3, usize::from(len))
        } else {
            (
                Descriptor::Small((tag >> 3) & 0x0f),
                1,
                usize::from(tag & 7),
            )
        };
        // Each step consumes the whole descriptor, header included, so the walk ends.
        let (descriptor, rest) = t.split_at_checked(header + len)?;
        let data = &descriptor[header..];
        match kind {
            Descriptor::Large(aml::MEMORY32_FIXED) if window.is_none() => {
                window = Some((u32_at(data, 1)?, u32_at(data, 5)?));
            }
            // A window whose minimum and maximum base agree is a fixed one.
            Descriptor::Large(aml::MEMORY32)
                if window.is_none() && u32_at(data, 1)? == u32_at(data, 5)? =>
            {
                window = Some((u32_at(data, 1)?, u32_at(data, 13)?));
            }
            Descriptor::Large(aml::EXTENDED_IRQ) if irq.is_none() => {
                let flags = *data.first()?;
                if *data.get(1)? == 0 {
                    return None;
                }
                irq = Some((u32_at(data, 2)?, flags & 2 == 0, flags & 4 != 0));
            }
            Descriptor::Small(aml::IRQ) if irq.is_none() => {
                let mask = u16::from_le_bytes([*data.first()?, *data.get(1)?]);
                if mask == 0 {
                    return None;
                }
                // Without the flags byte: edge, active high (ACPI 6.5 §6.4.2.1).
                let flags = data.get(2).copied().unwrap_or(1);
                irq = Some((mask.trailing_zeros(), flags & 1 == 0, flags & 8 != 0));
            }
            Descriptor::Small(aml::END_TAG) => break,
            _ => {}
        }
        t = rest;
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
mod tests;
