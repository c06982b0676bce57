//! Memory: physical frames, the kernel's page tables, the heap, and memory for devices.
//!
//! # Address space (after [`init`])
//!
//! | virtual range                                   | what                                          |
//! |-------------------------------------------------|-----------------------------------------------|
//! | `0 .. image`                                    | unmapped (the null page and low memory)       |
//! | image (`0x20_0000 ..`, identity)                | text R+X, rodata R+NX, data/bss RW+NX; the boot stack's guard page unmapped |
//! | above the image, lower half                     | free for [`map_page`]                         |
//! | [`PHYS_OFFSET`] `..` + 64 TiB                   | direct map of RAM and ACPI ranges, RW+NX, 1 GiB / 2 MiB pages where aligned |
//! | [`MMIO_BASE`] `..` + [`MMIO_SIZE`]              | [`map_mmio`] mappings, uncached, NX, 4 KiB pages |
//!
//! The boot stub's tables (identity map of the first 4 GiB) are dropped: after `init` nothing but
//! the image is reached through an identity mapping. NX is used only when the boot stub set
//! `EFER.NXE`.
//!
//! If the firmware left the MTRRs disabled (qboot does: all memory uncacheable), `init` enables
//! them with write-back as the default type; device mappings stay uncached through their PTEs.
//!
//! # Physical memory
//!
//! A bitmap frame allocator ([`alloc_frame`], [`alloc_frames`], [`free_frames`]) owns every RAM
//! frame of the memory map except the first MiB, the image and its own bitmap. At boot it gives
//! two contiguous runs away for good: the heap (a quarter of RAM, between 4 MiB and 1 GiB) and
//! the [`DeviceAlloc`] pool (an eighth of RAM, between 2 MiB and 256 MiB). Either halves (down to
//! its minimum) when no run that long is free.

mod cache;
mod device;
mod frames;
mod heap;
mod mmio;
mod paging;
mod space;

use core::sync::atomic::{AtomicBool, Ordering};

pub use device::DeviceAlloc;
pub use frames::{FRAME_SIZE, alloc_frame, alloc_frames, free_frames};
pub use mmio::{MapError, Mmio, map_mmio, unmap_mmio};
pub use paging::{Mapping, PageSizeKind, UnmapError, map_page, mapping, translate, unmap_page};
use vireo_boot::BootInfo;
pub use x86_64::structures::paging::PageTableFlags;

/// Where the direct map of physical memory starts: physical `p` is at virtual `PHYS_OFFSET + p`.
pub const PHYS_OFFSET: u64 = 0xffff_8000_0000_0000;
/// Start of the virtual window [`map_mmio`] maps device registers into.
pub const MMIO_BASE: u64 = 0xffff_c000_0000_0000;
/// Size of the MMIO window (1 TiB).
pub const MMIO_SIZE: u64 = 1 << 40;

const MIB: u64 = 1 << 20;
/// Heap: `RAM / HEAP_DIVISOR`, clamped to `[HEAP_MIN, HEAP_MAX]`.
const HEAP_DIVISOR: u64 = 4;
const HEAP_MIN: u64 = 4 * MIB;
const HEAP_MAX: u64 = 1024 * MIB;
/// DeviceAlloc pool: `RAM / POOL_DIVISOR`, clamped to `[POOL_MIN, POOL_MAX]`.
const POOL_DIVISOR: u64 = 8;
const POOL_MIN: u64 = 2 * MIB;
const POOL_MAX: u64 = 256 * MIB;

/// The virtual address of physical `phys` in the direct map.
///
/// Only RAM and ACPI ranges of the memory map are mapped there; for anything else use
/// [`map_mmio`].
pub fn phys_to_direct(phys: u64) -> *mut u8 {
    PHYS_OFFSET.wrapping_add(phys) as *mut u8
}

/// Memory sizes, for banners and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemStats {
    /// Usable RAM in the memory map, in bytes.
    pub ram_bytes: u64,
    /// Size of the kernel heap, in bytes.
    pub heap_bytes: usize,
    /// Bytes of the heap in use.
    pub heap_used: usize,
    /// Size of the [`DeviceAlloc`] pool, in bytes.
    pub device_pool_bytes: usize,
    /// Bytes of the pool in use.
    pub device_pool_used: usize,
    /// Frames the frame allocator can still hand out.
    pub free_frames: usize,
}

/// The current memory sizes.
///
/// # Panics
/// Before [`init`].
pub fn stats() -> MemStats {
    let (heap_bytes, heap_used) = heap::usage();
    let (device_pool_bytes, device_pool_used) = device::usage();
    MemStats {
        ram_bytes: crate::boot_info().ram_bytes(),
        heap_bytes,
        heap_used,
        device_pool_bytes,
        device_pool_used,
        free_frames: space::with(|m| m.frames.free_count()),
    }
}

/// Takes a contiguous run of `want` bytes (halving down to `min` if need be) for good.
fn take_run(want: u64, min: u64, what: &str) -> (u64, u64) {
    let mut size = want;
    loop {
        if let Some(phys) = alloc_frames((size / FRAME_SIZE) as usize, FRAME_SIZE) {
            return (phys, size);
        }
        assert!(
            size > min,
            "no {min:#x} contiguous bytes of RAM for the {what}"
        );
        size = (size / 2).max(min);
    }
}

/// Sets up memory from the boot memory map: builds and switches to the kernel's page tables, then
/// sets up the frame allocator, the heap and the [`DeviceAlloc`] pool.
///
/// Called once by the runtime, before anything allocates.
///
/// # Panics
/// When called a second time, or when the memory map has no room for the heap and pool minimums.
pub fn init(boot_info: &BootInfo) {
    static DONE: AtomicBool = AtomicBool::new(false);
    assert!(!DONE.swap(true, Ordering::AcqRel), "mm::init called twice");
    // SAFETY: this runs once (checked above), from the runtime, while the boot tables are live and
    // only the image is in use.
    unsafe { space::init(boot_info) };
    // SAFETY: the boot identity map is gone; the direct map holds only RAM and ACPI ranges, and
    // no MMIO mapping exists yet.
    if unsafe { cache::enable_write_back() } {
        log::debug!("mm: MTRRs were off; enabled with write-back default");
    }
    let ram = boot_info.ram_bytes();
    let clamp = |div: u64, min: u64, max: u64| (ram / div).clamp(min, max) & !(FRAME_SIZE - 1);
    let (heap_phys, heap_size) =
        take_run(clamp(HEAP_DIVISOR, HEAP_MIN, HEAP_MAX), HEAP_MIN, "heap");
    // SAFETY: the run is RAM, mapped writable in the direct map, and taken from the frame allocator
    // for good.
    unsafe { heap::init(phys_to_direct(heap_phys), heap_size as usize) };
    let (pool_phys, pool_size) = take_run(
        clamp(POOL_DIVISOR, POOL_MIN, POOL_MAX),
        POOL_MIN,
        "DeviceAlloc pool",
    );
    // SAFETY: as for the heap.
    unsafe { device::init(pool_phys, pool_size as usize) };
    let s = stats();
    log::debug!(
        "mm: {} MiB RAM, heap {} MiB at {heap_phys:#x}, DeviceAlloc pool {} MiB at {pool_phys:#x}, {} frames free",
        s.ram_bytes / MIB,
        s.heap_bytes as u64 / MIB,
        s.device_pool_bytes as u64 / MIB,
        s.free_frames
    );
}
