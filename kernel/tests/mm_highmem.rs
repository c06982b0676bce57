//! RAM above 4 GiB: in the direct map, handed out by the frame allocator, and the same bytes through
//! two different mappings; MMIO mappings next to it.
//!
//! vireo-test: qemu -m 5G

#![no_std]
#![no_main]

extern crate alloc;

mod mm_common;

use mm_common::{TEST_VIRT, frame_is_reserved};
use vireo::mm::{self, FRAME_SIZE, PHYS_OFFSET, PageSizeKind, PageTableFlags};
use vireo_boot::MemoryKind;

const GIB: u64 = 1 << 30;

vireo::test_main!(
    ram_above_4g_is_direct_mapped,
    high_frames_read_back_through_two_mappings,
    sizes_scale_with_ram,
);

fn ram_above_4g_is_direct_mapped() {
    let high = vireo::boot_info()
        .memory_map()
        .iter()
        .find(|r| r.kind == MemoryKind::Ram && r.start >= 4 * GIB)
        .expect("no RAM above 4 GiB: boot with -m 5G");
    for phys in [high.start, high.start + GIB + 0x1234, high.end - 1] {
        let m = mm::mapping(PHYS_OFFSET + phys).unwrap();
        assert_eq!(m.phys, phys);
        assert_ne!(m.size, PageSizeKind::Small);
    }
    // SAFETY: the test owns nothing there, but reading RAM through the direct map is harmless.
    let _ = unsafe {
        mm::phys_to_direct(high.end - 8)
            .cast::<u64>()
            .read_volatile()
    };
}

fn high_frames_read_back_through_two_mappings() {
    // A 1 GiB-aligned run of 1 GiB can only come from above 4 GiB here: below 4 GiB the heap and
    // the pool already split RAM.
    let count = (GIB / FRAME_SIZE) as usize;
    let run = mm::alloc_frames(count, GIB).expect("no 1 GiB run");
    assert!(run >= 4 * GIB, "{run:#x}");
    let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    for (i, phys) in [run, run + 0x1234_5000, run + GIB - FRAME_SIZE]
        .into_iter()
        .enumerate()
    {
        assert!(!frame_is_reserved(phys));
        let virt = TEST_VIRT + i as u64 * FRAME_SIZE;
        // SAFETY: the frame is ours (allocated above); the virtual page is unused.
        unsafe { mm::map_page(virt, phys, flags) }.unwrap();
        assert_eq!(mm::translate(virt + 8), Some(phys + 8));
        let mapped = virt as *mut u64;
        let direct = mm::phys_to_direct(phys).cast::<u64>();
        // SAFETY: both point at the frame this test owns.
        unsafe {
            mapped.add(1).write_volatile(phys ^ 0x1111);
            assert_eq!(direct.add(1).read_volatile(), phys ^ 0x1111);
            direct.add(511).write_volatile(!phys);
            assert_eq!(mapped.add(511).read_volatile(), !phys);
        }
        // SAFETY: nothing uses the alias any more.
        assert_eq!(unsafe { mm::unmap_page(virt) }, Ok(phys));
    }
    // SAFETY: unmapped and unused.
    unsafe { mm::free_frames(run, count) };
}

fn sizes_scale_with_ram() {
    let s = mm::stats();
    assert!(s.ram_bytes > 5 * GIB - (64 << 20), "{s:?}");
    // Capped: 1 GiB heap, 256 MiB pool.
    assert_eq!(s.heap_bytes as u64, GIB);
    assert_eq!(s.device_pool_bytes as u64, 256 << 20);
    assert!(s.free_frames as u64 * FRAME_SIZE > 3 * GIB);
}
