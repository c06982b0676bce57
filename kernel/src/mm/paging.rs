//! Changing and inspecting the kernel's page tables after boot: single-page map and unmap, and a
//! page-table walk. Every change is flushed from the TLB before the function returns.

use core::fmt;

use x86_64::{
    PhysAddr, VirtAddr,
    structures::paging::{
        Mapper, Page, PageTableFlags, PhysFrame, Size4KiB, Translate,
        mapper::{MapToError, MappedFrame, TranslateResult},
    },
};

use super::{
    MMIO_BASE, MMIO_SIZE, MapError, PHYS_OFFSET,
    frames::FRAME_SIZE,
    space::{self, TableFrames},
};

/// The size of the page that maps an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageSizeKind {
    /// 4 KiB.
    Small,
    /// 2 MiB.
    Large,
    /// 1 GiB.
    Huge,
}

/// What the page tables say about one virtual address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// The physical address the virtual address maps to.
    pub phys: u64,
    /// The flags of the leaf entry.
    pub flags: PageTableFlags,
    /// The size of the page.
    pub size: PageSizeKind,
}

/// Why a page could not be unmapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmapError {
    /// Nothing is mapped there.
    NotMapped,
    /// The address is part of a 2 MiB or 1 GiB page.
    HugePage,
    /// The address is unaligned, non-canonical, or belongs to a range the kernel manages itself
    /// (the image, the direct map, the MMIO window).
    Reserved,
}

impl fmt::Display for UnmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotMapped => "page not mapped",
            Self::HugePage => "address inside a large page",
            Self::Reserved => "address unaligned or managed by the kernel",
        })
    }
}

/// Walks the page tables: the mapping of `virt`, if any.
pub fn mapping(virt: u64) -> Option<Mapping> {
    let virt = VirtAddr::try_new(virt).ok()?;
    space::with(|m| match m.table.translate(virt) {
        TranslateResult::Mapped {
            frame,
            offset,
            flags,
        } => {
            let (base, size) = match frame {
                MappedFrame::Size4KiB(f) => (f.start_address(), PageSizeKind::Small),
                MappedFrame::Size2MiB(f) => (f.start_address(), PageSizeKind::Large),
                MappedFrame::Size1GiB(f) => (f.start_address(), PageSizeKind::Huge),
            };
            Some(Mapping {
                phys: base.as_u64() + offset,
                flags,
                size,
            })
        }
        TranslateResult::NotMapped | TranslateResult::InvalidFrameAddress(_) => None,
    })
}

/// Walks the page tables: the physical address `virt` maps to, if it is mapped.
pub fn translate(virt: u64) -> Option<u64> {
    mapping(virt).map(|m| m.phys)
}

/// Whether `virt` lies in a range whose mappings only the kernel's memory code changes.
fn reserved_virt(virt: u64) -> bool {
    let image = vireo_boot::image_layout().range();
    virt < FRAME_SIZE
        || image.contains(&virt)
        || (PHYS_OFFSET..MMIO_BASE + MMIO_SIZE).contains(&virt)
}

/// Maps the 4 KiB page at `virt` to the frame at `phys` with `flags` (`PRESENT` is added;
/// `NO_EXECUTE` is dropped when the CPU does not have it enabled; `HUGE_PAGE` is refused).
///
/// Missing page tables come from the frame allocator; they stay after an unmap.
///
/// # Errors
/// [`MapError::Unaligned`] if either address is not page-aligned, [`MapError::BadRange`] if `virt`
/// is not canonical or `phys` is beyond the CPU's physical address width (MAXPHYADDR), [`MapError::ReservedVirtual`] for the null page,
/// the image, the direct map or the MMIO window, [`MapError::AlreadyMapped`],
/// [`MapError::OutOfFrames`].
///
/// # Safety
/// The new mapping must not break memory safety: `phys` must be memory or registers the caller
/// owns (not, e.g., a frame the allocator may hand to someone else while it is mapped), and the
/// access `flags` allow must be harmless.
pub unsafe fn map_page(virt: u64, phys: u64, flags: PageTableFlags) -> Result<(), MapError> {
    if !virt.is_multiple_of(FRAME_SIZE) || !phys.is_multiple_of(FRAME_SIZE) {
        return Err(MapError::Unaligned);
    }
    let page = Page::<Size4KiB>::from_start_address(
        VirtAddr::try_new(virt).map_err(|_| MapError::BadRange)?,
    )
    .map_err(|_| MapError::Unaligned)?;
    let frame =
        PhysFrame::from_start_address(PhysAddr::try_new(phys).map_err(|_| MapError::BadRange)?)
            .map_err(|_| MapError::Unaligned)?;
    if reserved_virt(virt) || flags.contains(PageTableFlags::HUGE_PAGE) {
        return Err(MapError::ReservedVirtual);
    }
    // SAFETY: the caller vouches for the mapping; the virtual range is none the kernel relies on.
    space::with(|m| unsafe { map_locked(m, page, frame, flags) })
}

/// Maps one page with the memory lock held, flushing the TLB entry.
///
/// # Safety
/// As for [`map_page`].
pub(crate) unsafe fn map_locked(
    m: &mut space::Memory,
    page: Page<Size4KiB>,
    frame: PhysFrame<Size4KiB>,
    flags: PageTableFlags,
) -> Result<(), MapError> {
    if frame.start_address().as_u64() >= m.phys_limit {
        return Err(MapError::BadRange);
    }
    let mut flags = flags | PageTableFlags::PRESENT;
    if !m.nx {
        flags.remove(PageTableFlags::NO_EXECUTE);
    }
    let mut frames = TableFrames {
        bitmap: &mut m.frames,
        limit: usize::MAX,
    };
    // SAFETY: the caller vouches for the mapping. Intermediate tables are writable and executable:
    // the leaf entry alone decides the rights.
    let result = unsafe {
        m.table.map_to_with_table_flags(
            page,
            frame,
            flags,
            PageTableFlags::PRESENT | PageTableFlags::WRITABLE,
            &mut frames,
        )
    };
    match result {
        Ok(flush) => {
            flush.flush();
            Ok(())
        }
        Err(MapToError::FrameAllocationFailed) => Err(MapError::OutOfFrames),
        Err(MapToError::ParentEntryHugePage | MapToError::PageAlreadyMapped(_)) => {
            Err(MapError::AlreadyMapped)
        }
    }
}

/// Unmaps the 4 KiB page at `virt` (mapped by [`map_page`]) and returns the physical address it
/// mapped. The frame itself is not freed.
///
/// # Errors
/// [`UnmapError::Reserved`] for an unaligned address or one the kernel manages itself,
/// [`UnmapError::NotMapped`], [`UnmapError::HugePage`].
///
/// # Safety
/// Nothing may use the page any more (no live reference points into it).
pub unsafe fn unmap_page(virt: u64) -> Result<u64, UnmapError> {
    if !virt.is_multiple_of(FRAME_SIZE) || reserved_virt(virt) {
        return Err(UnmapError::Reserved);
    }
    let virt = VirtAddr::try_new(virt).map_err(|_| UnmapError::Reserved)?;
    space::with(|m| unmap_locked(m, Page::containing_address(virt)))
}

/// Unmaps one page with the memory lock held, flushing the TLB entry.
pub(crate) fn unmap_locked(m: &mut space::Memory, page: Page<Size4KiB>) -> Result<u64, UnmapError> {
    use x86_64::structures::paging::mapper::UnmapError as E;
    match m.table.unmap(page) {
        Ok((frame, flush)) => {
            flush.flush();
            Ok(frame.start_address().as_u64())
        }
        Err(E::PageNotMapped | E::InvalidFrameAddress(_)) => Err(UnmapError::NotMapped),
        Err(E::ParentEntryHugePage) => Err(UnmapError::HugePage),
    }
}
