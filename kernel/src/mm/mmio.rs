//! Uncached mappings of device registers, in their own virtual window.

use core::{fmt, ptr::NonNull};

use x86_64::{
    PhysAddr, VirtAddr,
    structures::paging::{Page, PageTableFlags, PhysFrame},
};

use super::{
    MMIO_BASE, MMIO_SIZE,
    frames::FRAME_SIZE,
    paging::{map_locked, unmap_locked},
    space,
};

/// Why a mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No frame was left for a page table.
    OutOfFrames,
    /// No virtual space was left in the window the mapping comes from.
    OutOfVirtualSpace,
    /// The physical range wraps around or is beyond what the CPU can address, or the virtual
    /// address is not canonical.
    BadRange,
    /// An address that must be page-aligned is not.
    Unaligned,
    /// The virtual page is already mapped (possibly as part of a larger page).
    AlreadyMapped,
    /// The virtual address belongs to a range the kernel manages itself (the null page, the image,
    /// the direct map, the MMIO window).
    ReservedVirtual,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OutOfFrames => "out of physical frames for page tables",
            Self::OutOfVirtualSpace => "out of virtual address space",
            Self::BadRange => "physical range not addressable",
            Self::Unaligned => "address not page-aligned",
            Self::AlreadyMapped => "virtual page already mapped",
            Self::ReservedVirtual => "virtual address reserved for the kernel",
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

/// The highest physical address plus one that a page-table entry can name (52 bits).
const PHYS_LIMIT: u64 = 1 << 52;

/// Maps `len` bytes of device registers at physical `phys` uncached, at any physical address.
///
/// The mapping lives in the MMIO window (`MMIO_BASE`, 4 KiB pages, `PCD | PWT` so the default PAT
/// makes it uncacheable, `NO_EXECUTE` where enabled); each mapping is followed by an unmapped
/// guard page. `phys` need not be page-aligned: the returned [`Mmio`] points at `phys` itself.
/// A zero `len` maps one byte's page. Give the mapping back with [`unmap_mmio`].
///
/// # Errors
/// [`MapError::BadRange`] if the range wraps or passes the CPU's physical address width
/// (MAXPHYADDR), [`MapError::OutOfVirtualSpace`]
/// when the window is used up (it is never reused), [`MapError::OutOfFrames`] if a page table
/// cannot be allocated.
///
/// # Safety
/// Every aligned volatile access to the range must be unable to break memory safety (the registers
/// must not, e.g., start a DMA into memory the kernel owns without the driver's consent).
pub unsafe fn map_mmio(phys: u64, len: usize) -> Result<Mmio, MapError> {
    let end = phys
        .checked_add(len.max(1) as u64)
        .filter(|&end| end <= PHYS_LIMIT)
        .ok_or(MapError::BadRange)?;
    let first = phys & !(FRAME_SIZE - 1);
    let pages = (end - first).div_ceil(FRAME_SIZE);
    let flags = PageTableFlags::PRESENT
        | PageTableFlags::WRITABLE
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH
        | PageTableFlags::NO_EXECUTE;
    let base = space::with(|m| {
        if end > m.phys_limit {
            return Err(MapError::BadRange);
        }
        let base = m.mmio_next;
        let next = base + (pages + 1) * FRAME_SIZE;
        if next > MMIO_BASE + MMIO_SIZE {
            return Err(MapError::OutOfVirtualSpace);
        }
        for i in 0..pages {
            let page = Page::containing_address(VirtAddr::new(base + i * FRAME_SIZE));
            let frame = PhysFrame::containing_address(PhysAddr::new(first + i * FRAME_SIZE));
            // SAFETY: the window's pages above `mmio_next` are unused; the caller vouches for the
            // registers.
            if let Err(e) = unsafe { map_locked(m, page, frame, flags) } {
                for j in 0..i {
                    let page = Page::containing_address(VirtAddr::new(base + j * FRAME_SIZE));
                    unmap_locked(m, page).expect("an MMIO page mapped just now");
                }
                return Err(e);
            }
        }
        m.mmio_next = next;
        Ok(base)
    })?;
    let virt = NonNull::new((base + (phys - first)) as *mut u8).ok_or(MapError::BadRange)?;
    // SAFETY: `[virt, virt + len)` maps `[phys, phys + len)` uncached until `unmap_mmio` consumes
    // the value; the caller vouches for the registers.
    Ok(unsafe { Mmio::from_raw(virt, phys, len) })
}

/// Removes a mapping made by [`map_mmio`] (its virtual range is not reused).
///
/// # Panics
/// If `mmio` does not lie in the MMIO window or its pages are not mapped: it did not come from
/// [`map_mmio`].
pub fn unmap_mmio(mmio: Mmio) {
    let virt = mmio.as_ptr() as u64;
    let first = virt & !(FRAME_SIZE - 1);
    let end = virt + mmio.len().max(1) as u64;
    assert!(
        first >= MMIO_BASE && end <= MMIO_BASE + MMIO_SIZE,
        "unmap_mmio of a mapping outside the MMIO window"
    );
    space::with(|m| {
        for page in (first..end).step_by(FRAME_SIZE as usize) {
            unmap_locked(m, Page::containing_address(VirtAddr::new(page)))
                .expect("unmap_mmio of a mapping that is not mapped");
        }
    });
}
