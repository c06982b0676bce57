//! Helpers shared by the `mm_*` test images.

#![allow(dead_code, reason = "each test image uses a different subset")]

use vireo::mm::{FRAME_SIZE, PHYS_OFFSET};
use vireo_boot::MemoryKind;
use x86_64::registers::model_specific::{Efer, EferFlags};

/// A lower-half virtual address far from anything the kernel maps, for test mappings.
pub const TEST_VIRT: u64 = 0x0000_1000_0000_0000;

/// Whether the CPU runs with `EFER.NXE`, so mappings carry `NO_EXECUTE`.
pub fn nx_enabled() -> bool {
    Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE)
}

/// Whether the frame at `phys` is one the frame allocator must never hand out: outside the RAM
/// ranges of the memory map (reserved, ACPI, holes), in the first MiB, or in the kernel image.
pub fn frame_is_reserved(phys: u64) -> bool {
    let end = phys + FRAME_SIZE;
    let in_ram = vireo::boot_info()
        .memory_map()
        .iter()
        .any(|r| r.kind == MemoryKind::Ram && r.start <= phys && end <= r.end);
    let image = vireo_boot::image_layout().range();
    !in_ram || phys < 1 << 20 || (phys < image.end && image.start < end)
}

/// Writes a tag identifying `phys` at both ends of its frame, through the direct map.
pub fn tag_frame(phys: u64) {
    let p = (PHYS_OFFSET + phys) as *mut u64;
    // SAFETY: the frame is RAM the caller allocated, reached through the direct map.
    unsafe {
        p.write_volatile(phys ^ 0x5a5a_5a5a_5a5a_5a5a);
        p.add(511).write_volatile(!phys);
    }
}

/// Whether the frame at `phys` still holds the tag [`tag_frame`] wrote.
pub fn frame_has_tag(phys: u64) -> bool {
    let p = (PHYS_OFFSET + phys) as *const u64;
    // SAFETY: as in `tag_frame`.
    unsafe {
        p.read_volatile() == phys ^ 0x5a5a_5a5a_5a5a_5a5a && p.add(511).read_volatile() == !phys
    }
}
