//! ACPI table contents (ACPI 6.5 §5.2): checksums, the RSDP, the root table's entries, the MADT,
//! the HPET table and the FADT's DSDT pointer, read from bytes.
//!
//! The kernel's `interrupts::acpi` maps the tables and hands their bytes here. Table memory is
//! firmware-written and read with bounds checks: lengths and checksums are verified before a
//! table's contents are believed, and every field read stays inside the table.

/// Length of the common table header.
pub const HEADER_LEN: usize = 36;
/// Longest table accepted (a sanity bound on a length read from memory).
pub const MAX_TABLE_LEN: u32 = 64 * 1024;
/// Bytes of an ACPI 2.0+ RSDP (a 1.0 RSDP is the first 20).
pub const RSDP_LEN: usize = 36;
/// Most IOAPICs recorded from the MADT.
pub const MAX_IOAPICS: usize = 8;
/// Most interrupt source overrides recorded from the MADT.
pub const MAX_OVERRIDES: usize = 16;

/// The little-endian value of `n` bytes at `at` in `bytes`, `None` past the end.
fn le(bytes: &[u8], at: usize, n: usize) -> Option<u64> {
    let field = bytes.get(at..at.checked_add(n)?)?;
    Some(field.iter().rev().fold(0, |v, &b| (v << 8) | u64::from(b)))
}

/// Whether `bytes` sum to zero modulo 256, as every ACPI table and the RSDP must.
pub fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b)) == 0
}

/// The signature of the table whose header starts `bytes` (zeros where `bytes` is short).
pub fn signature(bytes: &[u8]) -> [u8; 4] {
    let mut sig = [0; 4];
    for (s, b) in sig.iter_mut().zip(bytes) {
        *s = *b;
    }
    sig
}

/// The table length in a table header, if it lies within `HEADER_LEN..=MAX_TABLE_LEN`.
pub fn table_len(header: &[u8]) -> Option<usize> {
    let len = le(header, 4, 4)? as u32;
    (HEADER_LEN as u32..=MAX_TABLE_LEN)
        .contains(&len)
        .then_some(len as usize)
}

/// Where the RSDP points: the root table and the size of its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootPointer {
    /// The RSDP's revision (0 for ACPI 1.0, 2 for 2.0 and later).
    pub revision: u8,
    /// Physical address of the XSDT, or of the RSDT when there is no usable XSDT.
    pub root: u64,
    /// Bytes per root-table entry: 8 for the XSDT, 4 for the RSDT.
    pub entry_size: usize,
}

/// Reads an RSDP (§5.2.5.3) from its first [`RSDP_LEN`] bytes: `None` if the signature or the
/// ACPI 1.0 checksum (first 20 bytes) is wrong. The XSDT is used when the revision is 2 or more
/// and the extended checksum (all 36 bytes) holds; the RSDT otherwise.
pub fn parse_rsdp(bytes: &[u8]) -> Option<RootPointer> {
    if bytes.get(..8)? != b"RSD PTR " || !checksum_ok(bytes.get(..20)?) {
        return None;
    }
    let revision = *bytes.get(15)?;
    if revision >= 2
        && bytes.len() >= RSDP_LEN
        && checksum_ok(&bytes[..RSDP_LEN])
        && let Some(xsdt) = le(bytes, 24, 8)
    {
        return Some(RootPointer {
            revision,
            root: xsdt,
            entry_size: 8,
        });
    }
    Some(RootPointer {
        revision,
        root: le(bytes, 16, 4)?,
        entry_size: 4,
    })
}

/// The physical addresses a root table (XSDT or RSDT, header included) lists, `entry_size` (8 or
/// 4; anything else lists nothing) bytes each; a trailing partial entry is ignored.
pub fn root_entries(table: &[u8], entry_size: usize) -> impl Iterator<Item = u64> + '_ {
    let size = if matches!(entry_size, 4 | 8) {
        entry_size
    } else {
        usize::MAX
    };
    table
        .get(HEADER_LEN..)
        .unwrap_or_default()
        .chunks_exact(size)
        .filter_map(move |e| le(e, 0, size))
}

/// An IOAPIC as the MADT describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoApicEntry {
    /// Its IOAPIC ID.
    pub id: u8,
    /// Physical address of its registers.
    pub address: u32,
    /// The first global system interrupt it serves.
    pub gsi_base: u32,
}

/// An ISA IRQ wired to a different GSI, or with non-ISA polarity/trigger (MADT type 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IsaOverride {
    /// The ISA IRQ.
    pub irq: u8,
    /// The GSI it arrives on.
    pub gsi: u32,
    /// MPS INTI flags: bits 0..2 polarity (3 = active low), bits 2..4 trigger (3 = level).
    pub flags: u16,
}

/// What the MADT says about interrupt controllers.
#[derive(Debug, Clone, Default)]
pub struct Madt {
    /// Physical address of the local APIC registers.
    pub local_apic: u64,
    /// Whether a legacy dual 8259 PIC is present (`PCAT_COMPAT`).
    pub has_8259: bool,
    ioapics: [IoApicEntry; MAX_IOAPICS],
    ioapic_count: usize,
    overrides: [IsaOverride; MAX_OVERRIDES],
    override_count: usize,
}

impl Madt {
    /// The IOAPICs.
    pub fn ioapics(&self) -> &[IoApicEntry] {
        &self.ioapics[..self.ioapic_count]
    }

    /// The interrupt source overrides.
    pub fn overrides(&self) -> &[IsaOverride] {
        &self.overrides[..self.override_count]
    }

    /// Reads a MADT (§5.2.12, header included, its checksum already verified): `None` if it is too
    /// short for its fixed fields. Entries are walked until one has a length below 2 or runs past
    /// the table; IOAPICs (type 1) and overrides (type 2) past the first [`MAX_IOAPICS`] and
    /// [`MAX_OVERRIDES`] are ignored, and a local APIC address override (type 5) replaces the
    /// 32-bit address.
    pub fn parse(table: &[u8]) -> Option<Self> {
        let mut madt = Madt {
            local_apic: le(table, 36, 4)?,
            has_8259: le(table, 40, 4)? & 1 != 0,
            ..Madt::default()
        };
        let mut at = 44;
        // Each entry is `type, length, ...`; a length below 2 would never advance, so it ends the walk.
        while let (Some(&kind), Some(&len)) = (table.get(at), table.get(at + 1)) {
            let len = usize::from(len);
            if len < 2 || at + len > table.len() {
                break;
            }
            let entry = &table[at..at + len];
            let field = |offset, n| le(entry, offset, n).unwrap_or(0);
            match (kind, len) {
                (1, 12..) if madt.ioapic_count < MAX_IOAPICS => {
                    madt.ioapics[madt.ioapic_count] = IoApicEntry {
                        id: entry[2],
                        address: field(4, 4) as u32,
                        gsi_base: field(8, 4) as u32,
                    };
                    madt.ioapic_count += 1;
                }
                (2, 10..) if madt.override_count < MAX_OVERRIDES => {
                    madt.overrides[madt.override_count] = IsaOverride {
                        irq: entry[3],
                        gsi: field(4, 4) as u32,
                        flags: field(8, 2) as u16,
                    };
                    madt.override_count += 1;
                }
                (5, 12..) => madt.local_apic = field(4, 8),
                _ => {}
            }
            at += len;
        }
        Some(madt)
    }
}

/// The HPET's register block address from the ACPI HPET table (IA-PC HPET specification 1.0a,
/// table 3): `None` unless its base address (a Generic Address Structure at offset 40) is in
/// memory space (0) and not zero.
pub fn hpet_base(table: &[u8]) -> Option<u64> {
    let space = *table.get(40)?;
    let address = le(table, 44, 8)?;
    (space == 0 && address != 0).then_some(address)
}

/// The DSDT's physical address from a FADT (§5.2.9): `X_DSDT` at offset 140 when the FADT is long
/// enough and it is set, else `DSDT` at offset 40 (zero: the FADT names no DSDT); `None` if the
/// FADT is too short to hold either.
pub fn fadt_dsdt(table: &[u8]) -> Option<u64> {
    match le(table, 140, 8) {
        Some(x) if x != 0 => Some(x),
        _ => le(table, 40, 4),
    }
}

#[cfg(test)]
mod tests {
    use alloc::{vec, vec::Vec};

    use super::*;

    /// A table: header with `sig` and the right length, then `body`, checksum fixed up.
    fn table(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; HEADER_LEN];
        t[..4].copy_from_slice(sig);
        t.extend_from_slice(body);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut t, 9);
        t
    }

    /// Sets byte `at` so that `bytes` sum to zero.
    fn fix_checksum(bytes: &mut [u8], at: usize) {
        bytes[at] = 0;
        let sum = bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        bytes[at] = sum.wrapping_neg();
    }

    fn rsdp(revision: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut r = vec![0u8; RSDP_LEN];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[15] = revision;
        r[16..20].copy_from_slice(&rsdt.to_le_bytes());
        r[20..24].copy_from_slice(&(RSDP_LEN as u32).to_le_bytes());
        r[24..32].copy_from_slice(&xsdt.to_le_bytes());
        fix_checksum(&mut r[..20], 8);
        fix_checksum(&mut r, 32);
        r
    }

    #[test]
    fn checksums_and_lengths() {
        let t = table(b"APIC", &[1, 2, 3]);
        assert!(checksum_ok(&t));
        assert_eq!(signature(&t), *b"APIC");
        assert_eq!(table_len(&t), Some(HEADER_LEN + 3));
        let mut bad = t.clone();
        bad[HEADER_LEN] ^= 1;
        assert!(!checksum_ok(&bad));
        assert!(checksum_ok(&[]));
        // A length shorter than the header, longer than the bound, or missing.
        let mut short = t.clone();
        short[4..8].copy_from_slice(&35u32.to_le_bytes());
        assert_eq!(table_len(&short), None);
        short[4..8].copy_from_slice(&(MAX_TABLE_LEN + 1).to_le_bytes());
        assert_eq!(table_len(&short), None);
        short[4..8].copy_from_slice(&MAX_TABLE_LEN.to_le_bytes());
        assert_eq!(table_len(&short), Some(MAX_TABLE_LEN as usize));
        assert_eq!(table_len(&t[..7]), None);
        assert_eq!(signature(b"AP"), *b"AP\0\0");
    }

    #[test]
    fn the_rsdp_picks_the_xsdt_only_when_it_can_be_trusted() {
        let r2 = rsdp(2, 0x7FE_0000, 0x7FE_1000);
        assert_eq!(
            parse_rsdp(&r2),
            Some(RootPointer {
                revision: 2,
                root: 0x7FE_1000,
                entry_size: 8
            })
        );
        // ACPI 1.0: the RSDT, whatever follows the first 20 bytes.
        let r0 = rsdp(0, 0x7FE_0000, 0x7FE_1000);
        assert_eq!(
            parse_rsdp(&r0).map(|r| (r.root, r.entry_size)),
            Some((0x7FE_0000, 4))
        );
        assert_eq!(parse_rsdp(&r0[..20]).map(|r| r.root), Some(0x7FE_0000));
        // A revision-2 RSDP whose extended checksum fails falls back to the RSDT.
        let mut broken = r2.clone();
        broken[33] ^= 0xFF;
        assert_eq!(parse_rsdp(&broken).map(|r| r.entry_size), Some(4));
        // A bad signature or a bad 1.0 checksum is no RSDP at all.
        let mut sig = r2.clone();
        sig[0] = b'X';
        assert_eq!(parse_rsdp(&sig), None);
        let mut sum = r2.clone();
        sum[16] ^= 1;
        assert_eq!(parse_rsdp(&sum), None);
        assert_eq!(parse_rsdp(&r2[..12]), None);
    }

    #[test]
    fn root_tables_list_addresses_of_their_entry_size() {
        let mut body = Vec::new();
        for a in [0x1000u64, 0x2_0000_0000] {
            body.extend_from_slice(&a.to_le_bytes());
        }
        body.extend_from_slice(&[0xAA; 5]); // a trailing partial entry is ignored
        let xsdt = table(b"XSDT", &body);
        assert_eq!(
            root_entries(&xsdt, 8).collect::<Vec<_>>(),
            [0x1000, 0x2_0000_0000]
        );
        let rsdt = table(b"RSDT", &[0x00, 0x10, 0, 0, 0x00, 0x20, 0, 0]);
        assert_eq!(root_entries(&rsdt, 4).collect::<Vec<_>>(), [0x1000, 0x2000]);
        assert_eq!(
            root_entries(&rsdt[..20], 4).count(),
            0,
            "shorter than a header"
        );
        assert_eq!(root_entries(&rsdt, 0).count(), 0, "no entry size");
        assert_eq!(root_entries(&rsdt, 2).count(), 0, "no such entry size");
    }

    /// A MADT body: local APIC address, flags, then `entries`.
    fn madt(local_apic: u32, flags: u32, entries: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&local_apic.to_le_bytes());
        body.extend_from_slice(&flags.to_le_bytes());
        for e in entries {
            body.extend_from_slice(e);
        }
        table(b"APIC", &body)
    }

    const LOCAL_APIC: &[u8] = &[0, 8, 0, 0, 1, 0, 0, 0];
    const IOAPIC: &[u8] = &[1, 12, 3, 0, 0x00, 0x00, 0xC0, 0xFE, 0x18, 0, 0, 0];
    const OVERRIDE_IRQ0: &[u8] = &[2, 10, 0, 0, 2, 0, 0, 0, 0x0F, 0];

    #[test]
    fn the_madt_lists_ioapics_and_overrides() {
        let addr_override = [5, 12, 0, 0, 0, 0, 0xE0, 0xFE, 1, 0, 0, 0];
        let t = madt(
            0xFEE0_0000,
            1,
            &[
                LOCAL_APIC,
                IOAPIC,
                OVERRIDE_IRQ0,
                &[0x7F, 3, 0],
                &addr_override,
            ],
        );
        let m = Madt::parse(&t).unwrap();
        assert!(m.has_8259);
        assert_eq!(
            m.local_apic, 0x1_FEE0_0000,
            "the type-5 entry replaces the 32-bit address"
        );
        assert_eq!(
            m.ioapics(),
            [IoApicEntry {
                id: 3,
                address: 0xFEC0_0000,
                gsi_base: 0x18
            }]
        );
        assert_eq!(
            m.overrides(),
            [IsaOverride {
                irq: 0,
                gsi: 2,
                flags: 0xF
            }]
        );
        let plain = Madt::parse(&madt(0xFEE0_0000, 0, &[])).unwrap();
        assert_eq!((plain.local_apic, plain.has_8259), (0xFEE0_0000, false));
        assert!(plain.ioapics().is_empty() && plain.overrides().is_empty());
    }

    #[test]
    fn hostile_madts_end_the_walk_without_reading_outside() {
        // Too short for the fixed fields.
        assert!(Madt::parse(&table(b"APIC", &[0; 7])).is_none());
        // A zero-length entry ends the walk (it would never advance).
        let m = Madt::parse(&madt(0, 0, &[&[1, 0], IOAPIC])).unwrap();
        assert!(m.ioapics().is_empty());
        // An entry that runs past the table ends it too.
        let mut t = madt(0, 0, &[IOAPIC, OVERRIDE_IRQ0]);
        t.truncate(t.len() - 1);
        let m = Madt::parse(&t).unwrap();
        assert_eq!((m.ioapics().len(), m.overrides().len()), (1, 0));
        // Entries shorter than their structure are skipped, not misread.
        let mut short_ioapic = IOAPIC[..8].to_vec();
        short_ioapic[1] = 8;
        let m = Madt::parse(&madt(0, 0, &[&short_ioapic, OVERRIDE_IRQ0])).unwrap();
        assert_eq!((m.ioapics().len(), m.overrides().len()), (0, 1));
        // More IOAPICs and overrides than recorded: the first ones are kept.
        let many: Vec<&[u8]> = core::iter::repeat_n(IOAPIC, MAX_IOAPICS + 3)
            .chain(core::iter::repeat_n(OVERRIDE_IRQ0, MAX_OVERRIDES + 3))
            .collect();
        let m = Madt::parse(&madt(0, 0, &many)).unwrap();
        assert_eq!(
            (m.ioapics().len(), m.overrides().len()),
            (MAX_IOAPICS, MAX_OVERRIDES)
        );
    }

    #[test]
    fn hpet_and_dsdt_addresses() {
        let mut hpet = vec![0u8; 20];
        hpet[4] = 0; // memory space
        hpet[8..16].copy_from_slice(&0xFED0_0000u64.to_le_bytes());
        let t = table(b"HPET", &hpet);
        assert_eq!(hpet_base(&t), Some(0xFED0_0000));
        let mut io = t.clone();
        io[40] = 1; // I/O space
        assert_eq!(hpet_base(&io), None);
        assert_eq!(hpet_base(&table(b"HPET", &[0; 20])), None, "address zero");
        assert_eq!(hpet_base(&t[..50]), None, "too short");

        // An ACPI 1.0 FADT (shorter than X_DSDT): the 32-bit DSDT.
        let mut fadt = vec![0u8; 80];
        fadt[4..8].copy_from_slice(&0x7FE_2000u32.to_le_bytes());
        assert_eq!(fadt_dsdt(&table(b"FACP", &fadt)), Some(0x7FE_2000));
        // A long FADT: X_DSDT when set, the 32-bit field when it is zero.
        let mut long = vec![0u8; 240];
        long[4..8].copy_from_slice(&0x7FE_2000u32.to_le_bytes());
        assert_eq!(fadt_dsdt(&table(b"FACP", &long)), Some(0x7FE_2000));
        long[104..112].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
        assert_eq!(fadt_dsdt(&table(b"FACP", &long)), Some(0x1_0000_0000));
        assert_eq!(
            fadt_dsdt(&table(b"FACP", &[0; 80])),
            Some(0),
            "names no DSDT"
        );
        assert_eq!(fadt_dsdt(&table(b"FACP", &[0; 3])), None, "too short");
    }
}
