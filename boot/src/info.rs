//! [`BootInfo`]: what the kernel learns from the loader, copied out of low memory.

use core::fmt;

use crate::pvh::{BootInfoError, MemmapEntry, StartInfo};

/// The most memory-map entries kept (QEMU's maps have fewer than ten).
pub const MAX_REGIONS: usize = 64;
/// The longest command line kept, in bytes; a longer one is cut at a character boundary.
pub const MAX_CMDLINE: usize = 512;

/// What a memory-map range holds (the e820 types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// Usable RAM (e820 type 1).
    Ram,
    /// Reserved by firmware or hardware (type 2).
    Reserved,
    /// ACPI tables, reclaimable after they are read (type 3).
    AcpiReclaimable,
    /// ACPI non-volatile storage (type 4).
    AcpiNvs,
    /// Defective memory (type 5).
    Unusable,
    /// Any other type number.
    Other(u32),
}

impl MemoryKind {
    fn from_e820(kind: u32) -> Self {
        match kind {
            1 => Self::Ram,
            2 => Self::Reserved,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::Unusable,
            n => Self::Other(n),
        }
    }
}

/// One physical range of the memory map: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// What it holds.
    pub kind: MemoryKind,
}

/// The loader's hand-off, copied so that nothing in low memory has to survive the kernel's page
/// table switch.
#[derive(Clone)]
pub struct BootInfo {
    regions: [MemoryRegion; MAX_REGIONS],
    region_count: usize,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
    rsdp: Option<u64>,
    start_info: u64,
}

impl BootInfo {
    /// Reads the PVH `hvm_start_info` at physical address `start_info`.
    ///
    /// # Safety
    /// `start_info` must be the address the PVH loader passed in `ebx`, and the structure, its memory
    /// map and its command line must be identity-mapped and readable (the early page tables map
    /// the first 4 GiB, where the loader puts them).
    pub unsafe fn from_pvh(start_info: u64) -> Result<Self, BootInfoError> {
        // SAFETY: the caller guarantees `start_info` points at a readable `hvm_start_info`; it is
        // read unaligned because the ABI promises only 8-byte alignment, which the read does not need.
        let si = unsafe { core::ptr::read_unaligned(start_info as *const StartInfo) };
        si.check()?;
        let mut info = BootInfo {
            regions: [MemoryRegion {
                start: 0,
                end: 0,
                kind: MemoryKind::Reserved,
            }; MAX_REGIONS],
            region_count: 0,
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
            rsdp: (si.rsdp_paddr != 0).then_some(si.rsdp_paddr),
            start_info,
        };
        let entries = (si.memmap_entries as usize).min(MAX_REGIONS);
        for i in 0..entries {
            let at = si.memmap_paddr + (i * size_of::<MemmapEntry>()) as u64;
            // SAFETY: the loader's memory map holds `memmap_entries` entries at `memmap_paddr`
            // (caller's guarantee); `i` is below that count.
            let e = unsafe { core::ptr::read_unaligned(at as *const MemmapEntry) };
            let Some(end) = e.addr.checked_add(e.size) else {
                continue;
            };
            if e.size == 0 {
                continue;
            }
            info.regions[info.region_count] = MemoryRegion {
                start: e.addr,
                end,
                kind: MemoryKind::from_e820(e.kind),
            };
            info.region_count += 1;
        }
        info.regions[..info.region_count].sort_unstable_by_key(|r| r.start);
        if si.cmdline_paddr != 0 {
            let mut len = 0;
            while len < MAX_CMDLINE {
                // SAFETY: the command line is a NUL-terminated string at `cmdline_paddr` (caller's
                // guarantee); reading stops at the NUL or at the buffer's size.
                let b = unsafe { core::ptr::read((si.cmdline_paddr + len as u64) as *const u8) };
                if b == 0 {
                    break;
                }
                info.cmdline[len] = b;
                len += 1;
            }
            info.cmdline_len = match core::str::from_utf8(&info.cmdline[..len]) {
                Ok(_) => len,
                Err(e) => e.valid_up_to(),
            };
        }
        Ok(info)
    }

    /// The memory map, sorted by start address.
    pub fn memory_map(&self) -> &[MemoryRegion] {
        &self.regions[..self.region_count]
    }

    /// The kernel command line (QEMU `-append`), empty if none was given.
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// Physical address of the ACPI RSDP, if the loader gave one.
    pub fn rsdp(&self) -> Option<u64> {
        self.rsdp
    }

    /// Physical address of the `hvm_start_info` itself (its page must not be reused before it has
    /// been read; it has been by the time a `BootInfo` exists).
    pub fn start_info_addr(&self) -> u64 {
        self.start_info
    }

    /// Total usable RAM in bytes.
    pub fn ram_bytes(&self) -> u64 {
        self.memory_map()
            .iter()
            .filter(|r| r.kind == MemoryKind::Ram)
            .map(|r| r.end - r.start)
            .sum()
    }
}

impl fmt::Debug for BootInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootInfo")
            .field("memory_map", &self.memory_map())
            .field("cmdline", &self.cmdline())
            .field("rsdp", &self.rsdp)
            .finish()
    }
}
