//! Just enough ACPI to find the interrupt controllers: RSDP → XSDT/RSDT → MADT (ACPI 6.5 §5.2).
//!
//! Every table is reached through [`map_mmio`] and read whole; its length and checksum are verified
//! before its contents are believed. What the bytes say is read by `vireo_kcore::acpi` (tested on
//! the host), with bounds checks on every field.

use alloc::vec::Vec;
use core::fmt;

use vireo_kcore::acpi::{
    HEADER_LEN, RSDP_LEN, checksum_ok, fadt_dsdt, hpet_base, parse_rsdp, root_entries, signature,
    table_len,
};
pub use vireo_kcore::acpi::{IoApicEntry, IsaOverride, MAX_IOAPICS, MAX_OVERRIDES, Madt};

use crate::mm::{MapError, Mmio, map_mmio};

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
}

/// The bytes of the table at `phys`, after checking its header's length and its checksum.
fn read_table(phys: u64) -> Result<Vec<u8>, AcpiError> {
    let header = Phys::map(phys, HEADER_LEN)?.bytes(HEADER_LEN);
    let sig = header.as_deref().map_or([0; 4], signature);
    let bad = AcpiError::BadTable(sig);
    let len = header.as_deref().and_then(table_len).ok_or(bad)?;
    let table = Phys::map(phys, len)?.bytes(len).ok_or(bad)?;
    if !checksum_ok(&table) {
        return Err(bad);
    }
    Ok(table)
}

/// Finds the table with signature `want` through the RSDP at `rsdp`; returns its bytes.
fn find_table(rsdp: u64, want: &[u8; 4]) -> Result<Vec<u8>, AcpiError> {
    let r = Phys::map(rsdp, RSDP_LEN)?
        .bytes(RSDP_LEN)
        .and_then(|b| parse_rsdp(&b))
        .ok_or(AcpiError::BadRsdp)?;
    log::debug!(
        "ACPI: RSDP {rsdp:#x} revision {}, root table {:#x}",
        r.revision,
        r.root
    );
    let root = read_table(r.root)?;
    for addr in root_entries(&root, r.entry_size) {
        let header = Phys::map(addr, HEADER_LEN)?.bytes(4);
        if header.as_deref().map(signature).as_ref() == Some(want) {
            log::debug!(
                "ACPI: {} at {addr:#x}",
                core::str::from_utf8(want).unwrap_or("????")
            );
            return read_table(addr);
        }
    }
    Err(AcpiError::NotFound(*want))
}

/// Reads the MADT through the RSDP at physical address `rsdp`.
pub fn read_madt(rsdp: Option<u64>) -> Result<Madt, AcpiError> {
    let t = find_table(rsdp.ok_or(AcpiError::NoRsdp)?, b"APIC")?;
    Madt::parse(&t).ok_or(AcpiError::BadTable(*b"APIC"))
}

/// Physical address of the HPET's registers, from the ACPI HPET table (IA-PC HPET specification
/// 1.0a, table 3), if it describes a memory-mapped block.
pub fn hpet_address(rsdp: Option<u64>) -> Result<u64, AcpiError> {
    let t = find_table(rsdp.ok_or(AcpiError::NoRsdp)?, b"HPET")?;
    hpet_base(&t).ok_or(AcpiError::BadTable(*b"HPET"))
}

/// The DSDT's bytes (header included), found through the FADT (ACPI 6.5 §5.2.9: `X_DSDT` at
/// offset 140 when the FADT is long enough and it is set, else `DSDT` at offset 40).
pub fn read_dsdt(rsdp: Option<u64>) -> Result<Vec<u8>, AcpiError> {
    let fadt = find_table(rsdp.ok_or(AcpiError::NoRsdp)?, b"FACP")?;
    let address = fadt_dsdt(&fadt).ok_or(AcpiError::BadTable(*b"FACP"))?;
    if address == 0 {
        return Err(AcpiError::NotFound(*b"DSDT"));
    }
    let t = read_table(address)?;
    if &signature(&t) != b"DSDT" {
        return Err(AcpiError::BadTable(signature(&t)));
    }
    Ok(t)
}
