//! Uncached mappings of device registers.

use core::{fmt, ptr::NonNull};

/// Why a mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No frame was left for a page table.
    OutOfFrames,
    /// No virtual space was left in the window the mapping comes from.
    OutOfVirtualSpace,
    /// The physical range wraps around or is beyond what the CPU can address.
    BadRange,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OutOfFrames => "out of physical frames for page tables",
            Self::OutOfVirtualSpace => "out of virtual address space",
            Self::BadRange => "physical range not addressable",
        })
    }
}

/// A device register block mapped uncached: bounds- and alignment-checked volatile access.
#[derive(Debug)]
pub struct Mmio {
    virt: NonNull<u8>,
    phys: u64,
    len: usize,
}

// SAFETY: an `Mmio` is an address range of device registers; access is by volatile reads and writes
// whose harmlessness the creator vouched for (see `map_mmio`), from any CPU.
unsafe impl Send for Mmio {}
// SAFETY: as for `Send`; shared access performs only single volatile reads/writes.
unsafe impl Sync for Mmio {}

macro_rules! mmio_access {
    ($read:ident, $write:ident, $t:ty) => {
        #[doc = concat!("Reads the `", stringify!($t), "` register at `offset`.")]
        ///
        /// # Panics
        /// If the access is out of bounds or misaligned: a driver bug, never device input.
        pub fn $read(&self, offset: usize) -> $t {
            let p = self.reg::<$t>(offset);
            // SAFETY: `reg` checked bounds and alignment inside the mapping; `map_mmio`'s caller
            // vouched that reading these registers is harmless.
            unsafe { p.read_volatile() }
        }

        #[doc = concat!("Writes the `", stringify!($t), "` register at `offset`.")]
        ///
        /// # Panics
        /// If the access is out of bounds or misaligned.
        pub fn $write(&self, offset: usize, value: $t) {
            let p = self.reg::<$t>(offset);
            // SAFETY: as for the read; `map_mmio`'s caller vouched that writing is harmless.
            unsafe { p.write_volatile(value) }
        }
    };
}

impl Mmio {
    /// Wraps an existing mapping.
    ///
    /// # Safety
    /// `[virt, virt + len)` must map `[phys, phys + len)` uncached for the life of the value, and
    /// every aligned volatile access inside it must be unable to break memory safety.
    pub(crate) unsafe fn from_raw(virt: NonNull<u8>, phys: u64, len: usize) -> Self {
        Self { virt, phys, len }
    }

    /// The physical address of the first register.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// The length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The virtual address of the first register.
    pub fn as_ptr(&self) -> *mut u8 {
        self.virt.as_ptr()
    }

    fn reg<T>(&self, offset: usize) -> *mut T {
        let size = size_of::<T>();
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len)
                && offset.is_multiple_of(size),
            "MMIO access of {size} bytes at {offset:#x} outside a {:#x}-byte mapping",
            self.len
        );
        self.virt.as_ptr().wrapping_add(offset).cast()
    }

    mmio_access!(read_u8, write_u8, u8);
    mmio_access!(read_u16, write_u16, u16);
    mmio_access!(read_u32, write_u32, u32);
    mmio_access!(read_u64, write_u64, u64);
}

/// Maps `len` bytes of device registers at physical `phys` uncached, at any physical address.
///
/// Provisional: until the kernel's own page tables exist this returns the boot identity mapping,
/// which covers only the first 4 GiB.
///
/// # Safety
/// Every aligned volatile access to the range must be unable to break memory safety (the registers
/// must not, e.g., start a DMA into memory the kernel owns without the driver's consent).
pub unsafe fn map_mmio(phys: u64, len: usize) -> Result<Mmio, MapError> {
    let end = phys.checked_add(len as u64).ok_or(MapError::BadRange)?;
    if end > vireo_boot::EARLY_IDENTITY_LIMIT || phys == 0 {
        return Err(MapError::BadRange);
    }
    let virt = NonNull::new(phys as *mut u8).ok_or(MapError::BadRange)?;
    // SAFETY: the boot tables identity-map the first 4 GiB; the caller vouches for the registers.
    Ok(unsafe { Mmio::from_raw(virt, phys, len) })
}
