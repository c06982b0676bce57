//! Just enough ACPI to find the interrupt controllers: RSDP → XSDT/RSDT → MADT (ACPI 6.5 §5.2).
//!
//! Every table is reached through [`map_mmio`] and read byte by byte with bounds checks; lengths
//! and checksums are verified before a table's contents are believed.

use alloc::vec::Vec;
use core::fmt;

use crate::mm::{MapError, Mmio, map_mmio};

/// Most IOAPICs recorded from the MADT.
pub const MAX_IOAPICS: usize = 8;
/// Most interrupt source overrides recorded from the MADT.
pub const MAX_OVERRIDES: usize = 16;
/// Longest table accepted (a sanity bound on a length read from memory).
const MAX_TABLE_LEN: u32 = 64 * 1024;
/// Length of the common table header.
const HEADER_LEN: usize = 36;

/// Why the ACPI tables could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiError {
    /// The loader gave no RSDP.
    NoRsdp,
    /// The RSDP's signature or checksum is wrong.
    BadRsdp,
    /// A table's length is out of bounds or its checksum is wrong (signature given).
    BadTable([u8; 4]),
    /// The root table lists no table with this signature.
    NotFound([u8; 4]),
    /// A table could not be mapped.
    Map(MapError),
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRsdp => f.write_str("no ACPI RSDP"),
            Self::BadRsdp => f.write_str("bad ACPI RSDP"),
            Self::BadTable(sig) => write!(
                f,
                "bad ACPI table {}",
                core::str::from_utf8(sig).unwrap_or("????")
            ),
            Self::NotFound(sig) => write!(
                f,
                "no ACPI table {}",
                core::str::from_utf8(sig).unwrap_or("????")
            ),
            Self::Map(e) => write!(f, "cannot map an ACPI table: {e}"),
        }
    }
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
}

/// A mapped physical range read with bounds checks and no alignment requirement.
struct Phys {
    mmio: Mmio,
    offset: usize,
    len: usize,
}

impl Phys {
    fn map(phys: u64, len: usize) -> Result<Self, AcpiError> {
        let start = phys & !0xfff;
        let offset = (phys - start) as usize;
        let span = (offset + len).next_multiple_of(0x1000);
        // SAFETY: ACPI tables are firmware-owned memory that nothing writes; reading them has no
        // side effects (every access below is a read).
        let mmio = unsafe { map_mmio(start, span) }.map_err(AcpiError::Map)?;
        Ok(Self { mmio, offset, len })
    }

    fn u8(&self, at: usize) -> Option<u8> {
        (at < self.len).then(|| self.mmio.read_u8(self.offset + at))
    }

    fn le(&self, at: usize, n: usize) -> Option<u64> {
        let mut v = 0u64;
        for i in (0..n).rev() {
            v = (v << 8) | u64::from(self.u8(at + i)?);
        }
        Some(v)
    }

    fn sum(&self, len: usize) -> Option<u8> {
        let bytes = self.bytes(len)?;
        Some(bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)))
    }

    /// The first `len` bytes, read a 32-bit word at a time: a byte at a time costs one uncached
    /// access each, which for a DSDT of a few KiB is milliseconds under TCG and seconds under an
    /// instruction-emulating hypervisor.
    fn bytes(&self, len: usize) -> Option<Vec<u8>> {
        if len > self.len {
            return None;
        }
        let start = self.offset & !3;
        // The mapping spans whole pages, so rounding the end up to a word stays inside it.
        let end = (self.offset + len).next_multiple_of(4);
        let mut words = Vec::with_capacity(end - start);
        for at in (start..end).step_by(4) {
            words.extend_from_slice(&self.mmio.read_u32(at).to_le_bytes());
        }
        let from = self.offset - start;
        Some(words[from..from + len].to_vec())
    }

    fn signature(&self) -> [u8; 4] {
        let mut sig = [0; 4];
        for (i, b) in sig.iter_mut().enumerate() {
            *b = self.u8(i).unwrap_or(0);
        }
        sig
    }
}

/// Maps the whole table at `phys` after checking its header's length, and verifies its checksum.
fn map_table(phys: u64) -> Result<Phys, AcpiError> {
    let header = Phys::map(phys, HEADER_LEN)?;
    let sig = header.signature();
    let len = header.le(4, 4).ok_or(AcpiError::BadTable(sig))? as u32;
    if !(HEADER_LEN as u32..=MAX_TABLE_LEN).contains(&len) {
        return Err(AcpiError::BadTable(sig));
    }
    let table = Phys::map(phys, len as usize)?;
    if table.sum(len as usize) != Some(0) {
        return Err(AcpiError::BadTable(sig));
    }
    Ok(table)
}

/// Finds the table with signature `want` through the RSDP at `rsdp`.
fn find_table(rsdp: u64, want: &[u8; 4]) -> Result<Phys, AcpiError> {
    let r = Phys::map(rsdp, 36)?;
    let mut sig = [0u8; 8];
    for (i, b) in sig.iter_mut().enumerate() {
        *b = r.u8(i).ok_or(AcpiError::BadRsdp)?;
    }
    if &sig != b"RSD PTR " || r.sum(20) != Some(0) {
        return Err(AcpiError::BadRsdp);
    }
    let revision = r.u8(15).ok_or(AcpiError::BadRsdp)?;
    let (root, entry_size) = if revision >= 2 && r.sum(36) == Some(0) {
        (r.le(24, 8).ok_or(AcpiError::BadRsdp)?, 8)
    } else {
        (r.le(16, 4).ok_or(AcpiError::BadRsdp)?, 4)
    };
    log::debug!("ACPI: RSDP {rsdp:#x} revision {revision}, root table {root:#x}");
    let root = map_table(root)?;
    let entries = (root.len - HEADER_LEN) / entry_size;
    for i in 0..entries {
        let Some(addr) = root.le(HEADER_LEN + i * entry_size, entry_size) else {
            break;
        };
        let header = Phys::map(addr, HEADER_LEN)?;
        if &header.signature() == want {
            log::debug!(
                "ACPI: {} at {addr:#x}",
                core::str::from_utf8(want).unwrap_or("????")
            );
            return map_table(addr);
        }
    }
    Err(AcpiError::NotFound(*want))
}

/// Reads the MADT through the RSDP at physical address `rsdp`.
pub fn read_madt(rsdp: Option<u64>) -> Result<Madt, AcpiError> {
    let t = find_table(rsdp.ok_or(AcpiError::NoRsdp)?, b"APIC")?;
    let bad = AcpiError::BadTable(*b"APIC");
    let mut madt = Madt {
        local_apic: t.le(36, 4).ok_or(bad)?,
        has_8259: t.le(40, 4).ok_or(bad)? & 1 != 0,
        ..Madt::default()
    };
    let mut at = 44;
    // Each entry is `type, length, ...`; a length below 2 would never advance, so it ends the walk.
    while let (Some(kind), Some(len)) = (t.u8(at), t.u8(at + 1)) {
        let len = usize::from(len);
        if len < 2 || at + len > t.len {
            break;
        }
        match (kind, len) {
            (1, 12..) if madt.ioapic_count < MAX_IOAPICS => {
                madt.ioapics[madt.ioapic_count] = IoApicEntry {
                    id: t.u8(at + 2).ok_or(bad)?,
                    address: t.le(at + 4, 4).ok_or(bad)? as u32,
                    gsi_base: t.le(at + 8, 4).ok_or(bad)? as u32,
                };
                madt.ioapic_count += 1;
            }
            (2, 10..) if madt.override_count < MAX_OVERRIDES => {
                madt.overrides[madt.override_count] = IsaOverride {
                    irq: t.u8(at + 3).ok_or(bad)?,
                    gsi: t.le(at + 4, 4).ok_or(bad)? as u32,
                    flags: t.le(at + 8, 2).ok_or(bad)? as u16,
                };
                madt.override_count += 1;
            }
            (5, 12..) => madt.local_apic = t.le(at + 4, 8).ok_or(bad)?,
            _ => {}
        }
        at += len;
    }
    Ok(madt)
}

/// Physical address of the HPET's registers, from the ACPI HPET table (IA-PC HPET specification
/// 1.0a, table 3), if it describes a memory-mapped block.
pub fn hpet_address(rsdp: Option<u64>) -> Result<u64, AcpiError> {
    let t = find_table(rsdp.ok_or(AcpiError::NoRsdp)?, b"HPET")?;
    let bad = AcpiError::BadTable(*b"HPET");
    // The base address is a Generic Address Structure at offset 40: address space 0 is memory.
    let space = t.u8(40).ok_or(bad)?;
    let address = t.le(44, 8).ok_or(bad)?;
    if space != 0 || address == 0 {
        return Err(bad);
    }
    Ok(address)
}

/// The DSDT's bytes (header included), found through the FADT (ACPI 6.5 §5.2.9: `X_DSDT` at
/// offset 140 when the FADT is long enough and it is set, else `DSDT` at offset 40).
pub fn read_dsdt(rsdp: Option<u64>) -> Result<Vec<u8>, AcpiError> {
    let fadt = find_table(rsdp.ok_or(AcpiError::NoRsdp)?, b"FACP")?;
    let bad = AcpiError::BadTable(*b"FACP");
    let address = match fadt.le(140, 8) {
        Some(x) if x != 0 => x,
        _ => fadt.le(40, 4).ok_or(bad)?,
    };
    if address == 0 {
        return Err(AcpiError::NotFound(*b"DSDT"));
    }
    let t = map_table(address)?;
    if &t.signature() != b"DSDT" {
        return Err(AcpiError::BadTable(t.signature()));
    }
    t.bytes(t.len).ok_or(AcpiError::BadTable(*b"DSDT"))
}
