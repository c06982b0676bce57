//! Memory: physical frames, the kernel's page tables, the heap, and memory for devices.

pub mod heap;
mod mmio;

pub use mmio::{MapError, Mmio, map_mmio};

use vireo_boot::{BootInfo, MemoryKind};

/// Sets up memory from the boot memory map.
pub fn init(boot_info: &BootInfo) {
    // Provisional: a 4 MiB heap in the first RAM above the image, under the boot identity map.
    let image_end = vireo_boot::image_layout().range().end;
    let region = boot_info
        .memory_map()
        .iter()
        .find(|r| {
            r.kind == MemoryKind::Ram && r.end >= image_end + (4 << 20) && r.start <= image_end
        })
        .expect("no RAM above the image");
    let _ = region;
    // SAFETY: [image_end, image_end + 4 MiB) is RAM (checked above), identity-mapped by the boot
    // tables, and used by nothing else.
    unsafe { heap::init(image_end as *mut u8, 4 << 20) };
}
