//! The kernel's address space: building its page tables from the memory map, switching to them,
//! and the lock-protected state (frame bitmap + page tables) every later change goes through.

use core::ops::Range;

use spin::Mutex;
use vireo_boot::{BootInfo, EARLY_IDENTITY_LIMIT, MemoryKind};
use x86_64::{
    PhysAddr, VirtAddr,
    instructions::interrupts::without_interrupts,
    registers::{
        control::{Cr3, Cr3Flags},
        model_specific::{Efer, EferFlags},
    },
    structures::paging::{
        FrameAllocator, Mapper, OffsetPageTable, Page, PageSize, PageTable, PageTableFlags,
        PhysFrame, Size1GiB, Size2MiB, Size4KiB,
    },
};

use vireo_kcore::frames::{bitmap_home, whole_frames};

use super::{
    PHYS_OFFSET,
    frames::{BitmapWords, FRAME_SIZE, FrameBitmap},
};

/// Physical memory below this is never handed out (real-mode IVT, BIOS data, EBDA, option ROMs,
/// and where the PVH loader leaves `hvm_start_info` and its memory map).
pub(crate) const LOW_RESERVED: u64 = 1 << 20;

/// The flags of every intermediate page-table entry: the leaf entry decides the access rights.
const TABLE_FLAGS: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);

/// Everything the memory lock protects.
#[derive(Debug)]
pub(crate) struct Memory {
    /// Physical frames.
    pub(crate) frames: FrameBitmap,
    /// The kernel's page tables, reached through the direct map.
    pub(crate) table: OffsetPageTable<'static>,
    /// Whether `EFER.NXE` is set, so `NO_EXECUTE` may be used.
    pub(crate) nx: bool,
    /// One past the highest physical address the CPU supports (`2^MAXPHYADDR`).
    pub(crate) phys_limit: u64,
    /// The next unused virtual address of the MMIO window.
    pub(crate) mmio_next: u64,
    /// Physical frames the bitmap itself occupies.
    pub(crate) bitmap_phys: Range<u64>,
    /// Physical address of the `hvm_start_info` page.
    pub(crate) start_info_page: u64,
}

static MEMORY: Mutex<Option<Memory>> = Mutex::new(None);

/// Runs `f` on the memory state, interrupts off so a handler cannot deadlock on the lock.
///
/// # Panics
/// If [`init`] has not run.
pub(crate) fn with<R>(f: impl FnOnce(&mut Memory) -> R) -> R {
    without_interrupts(|| {
        f(MEMORY
            .lock()
            .as_mut()
            .expect("memory is used before mm::init"))
    })
}

/// A frame source for the page-table code: the bitmap, limited to frames below `limit`.
pub(crate) struct TableFrames<'a> {
    pub(crate) bitmap: &'a mut FrameBitmap,
    pub(crate) limit: usize,
}

// SAFETY: the bitmap hands out each free frame once, and only frames of usable RAM.
unsafe impl FrameAllocator<Size4KiB> for TableFrames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let frame = self.bitmap.alloc(self.limit)? as u64;
        Some(PhysFrame::containing_address(PhysAddr::new(
            frame * FRAME_SIZE,
        )))
    }
}

/// The RAM ranges of the memory map, shrunk to whole frames.
pub(crate) fn ram_ranges(boot_info: &BootInfo) -> impl Iterator<Item = Range<u64>> + '_ {
    boot_info
        .memory_map()
        .iter()
        .filter(|r| r.kind == MemoryKind::Ram)
        .filter_map(|r| whole_frames(r.start, r.end))
}

fn cpu_has_1g_pages() -> bool {
    // CPUID leaf 0x8000_0001 EDX bit 26 (Intel SDM vol. 2A, CPUID, "Page1GB"); the leaf exists when
    // leaf 0x8000_0000 reports it.
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    max >= 0x8000_0001 && core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 26) != 0
}

/// `2^MAXPHYADDR`: CPUID leaf 0x8000_0008 EAX[7:0] (Intel SDM vol. 2A, CPUID), 36 bits when the
/// leaf is missing.
fn cpu_phys_limit() -> u64 {
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    let bits = if max >= 0x8000_0008 {
        core::arch::x86_64::__cpuid(0x8000_0008).eax & 0xff
    } else {
        36
    };
    1 << bits.clamp(32, 52)
}

/// Builds the kernel's page tables, switches to them and makes the memory state available.
///
/// # Safety
/// Called once, while the boot stub's identity map of the first 4 GiB is live and nothing but the
/// kernel image (code, statics, boot stack) is in use.
pub(crate) unsafe fn init(boot_info: &BootInfo) {
    let layout = vireo_boot::image_layout();
    let image = layout.range();
    let (guard, _) = vireo_boot::boot_stack();
    let top = ram_ranges(boot_info).map(|r| r.end).max().unwrap_or(0);
    let frames = (top / FRAME_SIZE) as usize;
    let bitmap_bytes = (FrameBitmap::storage_bytes(frames) as u64).next_multiple_of(FRAME_SIZE);
    let bitmap_at = bitmap_home(
        ram_ranges(boot_info),
        bitmap_bytes,
        &image,
        LOW_RESERVED,
        EARLY_IDENTITY_LIMIT,
    )
    .expect("no RAM below 4 GiB for the frame bitmap");
    let (at, len) = (bitmap_at as *mut u64, FrameBitmap::storage_words(frames));
    // SAFETY: `bitmap_at` is RAM below 4 GiB (identity-mapped by the boot tables), clear of the
    // image and of low memory, `bitmap_bytes` long, and nothing else uses it: it is marked used
    // below before any frame is handed out.
    let words = unsafe { BitmapWords::new(at, len) };
    let mut bitmap = FrameBitmap::new(words, frames);
    for r in ram_ranges(boot_info) {
        bitmap.set_range(
            (r.start / FRAME_SIZE) as usize,
            (r.end / FRAME_SIZE) as usize,
            true,
        );
    }
    let start_info_page = boot_info.start_info_addr() & !(FRAME_SIZE - 1);
    for r in [
        0..LOW_RESERVED,
        image.clone(),
        bitmap_at..bitmap_at + bitmap_bytes,
        start_info_page..start_info_page + FRAME_SIZE,
    ] {
        bitmap.set_range(
            (r.start / FRAME_SIZE) as usize,
            r.end.div_ceil(FRAME_SIZE) as usize,
            false,
        );
    }

    let nx = Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE);
    let nx_flag = if nx {
        PageTableFlags::NO_EXECUTE
    } else {
        PageTableFlags::empty()
    };
    let huge_1g = cpu_has_1g_pages();
    // Page-table frames for the build come from below 4 GiB: the boot tables reach them there.
    let mut build = TableFrames {
        bitmap: &mut bitmap,
        limit: (EARLY_IDENTITY_LIMIT / FRAME_SIZE) as usize,
    };
    let pml4 = build
        .allocate_frame()
        .expect("no frame for the kernel's PML4");
    let pml4_ptr = pml4.start_address().as_u64() as *mut PageTable;
    // SAFETY: the frame is RAM below 4 GiB, identity-mapped, just allocated and so unaliased.
    let pml4_table = unsafe {
        pml4_ptr.write(PageTable::new());
        &mut *pml4_ptr
    };
    // SAFETY: with offset 0 the mapper reaches page tables through the boot identity map, which
    // covers every table frame because `build` only hands out frames below 4 GiB.
    let mut mapper = unsafe { OffsetPageTable::new(pml4_table, VirtAddr::new(0)) };

    // The direct map: RAM and ACPI tables, with the largest pages alignment allows. Reserved and
    // device ranges stay out of it so no cacheable alias of MMIO exists.
    let direct = boot_info.memory_map().iter().filter(|r| {
        matches!(
            r.kind,
            MemoryKind::Ram | MemoryKind::AcpiReclaimable | MemoryKind::AcpiNvs
        )
    });
    let data_flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | nx_flag;
    for r in direct {
        let (mut p, end) = (
            r.start.next_multiple_of(FRAME_SIZE),
            r.end & !(FRAME_SIZE - 1),
        );
        while p < end {
            let fits = |size: u64| p.is_multiple_of(size) && end - p >= size;
            // SAFETY: mapping RAM into the direct map, which nothing has used yet.
            p += unsafe {
                if huge_1g && fits(Size1GiB::SIZE) {
                    map_build::<Size1GiB>(&mut mapper, &mut build, PHYS_OFFSET + p, p, data_flags)
                } else if fits(Size2MiB::SIZE) {
                    map_build::<Size2MiB>(&mut mapper, &mut build, PHYS_OFFSET + p, p, data_flags)
                } else {
                    map_build::<Size4KiB>(&mut mapper, &mut build, PHYS_OFFSET + p, p, data_flags)
                }
            };
        }
    }

    // The image at its link addresses, each part with its own rights; the stack guard stays out.
    let sections = [
        (layout.text, PageTableFlags::PRESENT),
        (layout.rodata, PageTableFlags::PRESENT | nx_flag),
        (layout.data, data_flags),
    ];
    for ((start, end), flags) in sections {
        for p in (start..end).step_by(FRAME_SIZE as usize) {
            if p != guard {
                // SAFETY: identity-mapping the image, where the kernel runs already.
                unsafe { map_build::<Size4KiB>(&mut mapper, &mut build, p, p, flags) };
            }
        }
    }

    // SAFETY: the new tables map the image (code, statics, boot stack) at the addresses it runs at,
    // with the rights the code needs; nothing else is in use (the caller's guarantee).
    unsafe { Cr3::write(pml4, Cr3Flags::empty()) };

    // From here on only the image and the direct map are mapped.
    let pml4_virt = (PHYS_OFFSET + pml4.start_address().as_u64()) as *mut PageTable;
    // SAFETY: the direct map now covers all RAM, including the PML4 and the bitmap; nothing else
    // refers to either.
    let memory = unsafe {
        bitmap
            .storage_mut()
            .relocate((PHYS_OFFSET + bitmap_at) as *mut u64);
        Memory {
            frames: bitmap,
            table: OffsetPageTable::new(&mut *pml4_virt, VirtAddr::new(PHYS_OFFSET)),
            nx,
            phys_limit: cpu_phys_limit(),
            mmio_next: super::MMIO_BASE,
            bitmap_phys: bitmap_at..bitmap_at + bitmap_bytes,
            start_info_page,
        }
    };
    log::debug!(
        "mm: page tables at {:#x}, 1 GiB pages: {huge_1g}, NX: {nx}, physical address bits: {}, frame bitmap at {bitmap_at:#x} ({} frames)",
        pml4.start_address().as_u64(),
        memory.phys_limit.trailing_zeros(),
        memory.frames.frames()
    );
    without_interrupts(|| *MEMORY.lock() = Some(memory));
}

/// Maps one page during the build; returns its size.
///
/// # Safety
/// The mapping must not change anything in use.
unsafe fn map_build<S: PageSize + core::fmt::Debug>(
    mapper: &mut OffsetPageTable<'_>,
    frames: &mut TableFrames<'_>,
    virt: u64,
    phys: u64,
    flags: PageTableFlags,
) -> u64
where
    for<'a> OffsetPageTable<'a>: Mapper<S>,
{
    let page = Page::<S>::containing_address(VirtAddr::new(virt));
    let frame = PhysFrame::<S>::containing_address(PhysAddr::new(phys));
    // SAFETY: the caller guarantees the mapping is harmless; these tables are not live yet, so no
    // TLB entry can be stale and the flush is skipped.
    unsafe { mapper.map_to_with_table_flags(page, frame, flags, TABLE_FLAGS, frames) }
        .expect("cannot build the kernel's page tables")
        .ignore();
    S::SIZE
}
