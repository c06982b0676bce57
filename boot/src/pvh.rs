//! The PVH boot ABI's `hvm_start_info` (Xen `include/public/arch-x86/hvm/start_info.h`).

use core::fmt;

/// `hvm_start_info.magic`.
const START_INFO_MAGIC: u32 = 0x336e_c578;

/// The start-of-day structure the loader leaves in low memory (version 1 layout).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct StartInfo {
    pub magic: u32,
    pub version: u32,
    pub flags: u32,
    pub nr_modules: u32,
    pub modlist_paddr: u64,
    pub cmdline_paddr: u64,
    pub rsdp_paddr: u64,
    pub memmap_paddr: u64,
    pub memmap_entries: u32,
    pub reserved: u32,
}

/// One entry of the PVH memory map (the e820 layout with 64-bit fields).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemmapEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
    pub reserved: u32,
}

/// Why the loader's hand-off could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootInfoError {
    /// `hvm_start_info.magic` was wrong: not booted through PVH.
    BadMagic(u32),
    /// A version-0 structure has no memory map and Vireo needs one.
    NoMemoryMap,
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic(m) => write!(
                f,
                "hvm_start_info magic {m:#x}, expected {START_INFO_MAGIC:#x}"
            ),
            Self::NoMemoryMap => f.write_str("hvm_start_info version 0 carries no memory map"),
        }
    }
}

impl StartInfo {
    pub(crate) fn check(&self) -> Result<(), BootInfoError> {
        if self.magic != START_INFO_MAGIC {
            return Err(BootInfoError::BadMagic(self.magic));
        }
        if self.version < 1 || self.memmap_paddr == 0 {
            return Err(BootInfoError::NoMemoryMap);
        }
        Ok(())
    }
}
