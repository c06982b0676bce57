//! The kernel's page tables: the image's rights, the unmapped guard page and low memory, the
//! direct map, map/unmap/translate round trips, and MMIO mappings (including above 4 GiB).

#![no_std]
#![no_main]

extern crate alloc;

mod mm_common;

use mm_common::{TEST_VIRT, nx_enabled};
use vireo::mm::{
    self, FRAME_SIZE, MMIO_BASE, MMIO_SIZE, MapError, PHYS_OFFSET, PageSizeKind, PageTableFlags,
    UnmapError,
};
use vireo_boot::MemoryKind;

vireo::test_main!(
    boot_stack_guard_page_is_unmapped,
    null_page_and_low_memory_are_unmapped,
    image_sections_have_their_rights,
    direct_map_covers_ram_only,
    map_translate_unmap_round_trip,
    map_refuses_kernel_ranges,
    mmio_above_4g_is_uncached_and_unmappable,
    mmio_reads_a_real_device,
);

fn boot_stack_guard_page_is_unmapped() {
    let (guard, stack) = vireo_boot::boot_stack();
    assert_eq!(guard + FRAME_SIZE, stack.start);
    assert_eq!(mm::translate(guard), None);
    assert_eq!(mm::translate(guard + FRAME_SIZE - 1), None);
    assert_eq!(mm::translate(stack.start), Some(stack.start));
    assert_eq!(mm::translate(stack.end - 1), Some(stack.end - 1));
    // This very frame runs on the boot stack.
    let local = 0u64;
    let at = &raw const local as u64;
    assert!(stack.contains(&at));
    assert_eq!(mm::translate(at), Some(at));
}

fn null_page_and_low_memory_are_unmapped() {
    let image = vireo_boot::image_layout().range();
    for virt in [
        0,
        0x1000,
        0x9_f000,
        0xb_8000,
        0x10_0000,
        image.start - FRAME_SIZE,
    ] {
        assert_eq!(mm::translate(virt), None, "{virt:#x} is mapped");
    }
    // The boot stub's identity map of the first 4 GiB is gone beyond the image.
    for virt in [
        image.end,
        image.end + (1 << 20),
        1 << 30,
        0xfee0_0000,
        0xffff_f000,
    ] {
        assert_eq!(mm::translate(virt), None, "{virt:#x} is mapped");
    }
}

fn image_sections_have_their_rights() {
    let layout = vireo_boot::image_layout();
    let nx = nx_enabled();
    let text = mm::mapping(image_sections_have_their_rights as *const () as u64).unwrap();
    let here = image_sections_have_their_rights as *const () as u64;
    assert!((layout.text.0..layout.text.1).contains(&here));
    assert_eq!(text.phys, here);
    assert!(!text.flags.contains(PageTableFlags::WRITABLE));
    assert!(!text.flags.contains(PageTableFlags::NO_EXECUTE));
    for virt in (layout.rodata.0..layout.rodata.1).step_by(FRAME_SIZE as usize) {
        let m = mm::mapping(virt).unwrap();
        assert_eq!(m.phys, virt);
        assert!(!m.flags.contains(PageTableFlags::WRITABLE));
        assert_eq!(m.flags.contains(PageTableFlags::NO_EXECUTE), nx);
        assert_eq!(m.size, PageSizeKind::Small);
    }
    let (guard, _) = vireo_boot::boot_stack();
    for virt in (layout.data.0..layout.data.1).step_by(FRAME_SIZE as usize) {
        if virt == guard {
            continue;
        }
        let m = mm::mapping(virt).unwrap();
        assert_eq!(m.phys, virt);
        assert!(m.flags.contains(PageTableFlags::WRITABLE));
        assert_eq!(m.flags.contains(PageTableFlags::NO_EXECUTE), nx);
    }
}

fn direct_map_covers_ram_only() {
    let nx = nx_enabled();
    let mut large = 0;
    for r in vireo::boot_info().memory_map() {
        let (start, end) = (
            r.start.next_multiple_of(FRAME_SIZE),
            r.end & !(FRAME_SIZE - 1),
        );
        if start >= end {
            continue;
        }
        match r.kind {
            MemoryKind::Ram => {
                for phys in [start, start + (end - start) / 2, end - 1] {
                    let m = mm::mapping(PHYS_OFFSET + phys).unwrap();
                    assert_eq!(m.phys, phys);
                    assert!(m.flags.contains(PageTableFlags::WRITABLE));
                    assert_eq!(m.flags.contains(PageTableFlags::NO_EXECUTE), nx);
                    assert!(!m.flags.contains(PageTableFlags::NO_CACHE));
                }
                let mid = (start + (2 << 20) - 1) & !((2 << 20) - 1);
                if mid + (2 << 20) <= end {
                    let m = mm::mapping(PHYS_OFFSET + mid).unwrap();
                    assert_ne!(
                        m.size,
                        PageSizeKind::Small,
                        "{mid:#x} mapped with 4 KiB pages"
                    );
                    large += 1;
                }
            }
            MemoryKind::Reserved => {
                for phys in [start, end - 1] {
                    assert_eq!(mm::translate(PHYS_OFFSET + phys), None, "{phys:#x}");
                }
            }
            _ => {}
        }
    }
    assert!(large > 0);
}

fn map_translate_unmap_round_trip() {
    let frame = mm::alloc_frame().unwrap();
    let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    for round in 0..3u64 {
        let virt = TEST_VIRT + round * 0x4020_1000;
        assert_eq!(mm::translate(virt), None);
        // SAFETY: `frame` is ours; `virt` is unused.
        unsafe { mm::map_page(virt, frame, flags) }.unwrap();
        assert_eq!(mm::translate(virt), Some(frame));
        assert_eq!(mm::translate(virt + 0x123), Some(frame + 0x123));
        let m = mm::mapping(virt).unwrap();
        assert_eq!(m.size, PageSizeKind::Small);
        assert!(m.flags.contains(PageTableFlags::WRITABLE));
        assert_eq!(m.flags.contains(PageTableFlags::NO_EXECUTE), nx_enabled());
        // SAFETY: mapping again the same page is refused before anything changes.
        let again = unsafe { mm::map_page(virt, frame, flags) };
        assert_eq!(again, Err(MapError::AlreadyMapped));
        let via_map = virt as *mut u64;
        let via_direct = mm::phys_to_direct(frame).cast::<u64>();
        // SAFETY: both addresses map `frame`, which this test owns.
        unsafe {
            via_map.add(7).write_volatile(0xdead_beef_0000 + round);
            assert_eq!(via_direct.add(7).read_volatile(), 0xdead_beef_0000 + round);
            via_direct.add(100).write_volatile(!round);
            assert_eq!(via_map.add(100).read_volatile(), !round);
        }
        // SAFETY: no reference into the page is live.
        assert_eq!(unsafe { mm::unmap_page(virt) }, Ok(frame));
        assert_eq!(mm::translate(virt), None);
        // SAFETY: as above.
        assert_eq!(unsafe { mm::unmap_page(virt) }, Err(UnmapError::NotMapped));
    }
    // SAFETY: the frame is unmapped again and unused.
    unsafe { mm::free_frames(frame, 1) };
}

fn map_refuses_kernel_ranges() {
    let frame = mm::alloc_frame().unwrap();
    let flags = PageTableFlags::WRITABLE;
    let image = vireo_boot::image_layout().range();
    for (virt, phys, want) in [
        (0, frame, MapError::ReservedVirtual),
        (image.start, frame, MapError::ReservedVirtual),
        (PHYS_OFFSET, frame, MapError::ReservedVirtual),
        (MMIO_BASE + 0x1000, frame, MapError::ReservedVirtual),
        (TEST_VIRT + 8, frame, MapError::Unaligned),
        (TEST_VIRT, frame + 8, MapError::Unaligned),
        (0x0000_8000_0000_0000, frame, MapError::BadRange),
    ] {
        // SAFETY: every one of these is refused before the tables change.
        assert_eq!(unsafe { mm::map_page(virt, phys, flags) }, Err(want));
    }
    // SAFETY: refused: the direct map belongs to the kernel.
    let refused = unsafe { mm::unmap_page(PHYS_OFFSET + frame) };
    assert_eq!(refused, Err(UnmapError::Reserved));
    assert_eq!(mm::translate(PHYS_OFFSET + frame), Some(frame));
    // SAFETY: unused.
    unsafe { mm::free_frames(frame, 1) };
}

fn mmio_above_4g_is_uncached_and_unmappable() {
    let nx = nx_enabled();
    for (phys, len) in [
        (0x1_2345_6010u64, 0x2000usize),
        (0x3f_ffff_f000, 4),
        (0xff_fff0_0000, 1 << 20),
    ] {
        // SAFETY: nothing answers at these addresses under QEMU and the test never accesses them.
        let mmio = unsafe { mm::map_mmio(phys, len) }.unwrap();
        let virt = mmio.as_ptr() as u64;
        assert!((MMIO_BASE..MMIO_BASE + MMIO_SIZE).contains(&virt));
        assert_eq!(virt % FRAME_SIZE, phys % FRAME_SIZE);
        assert_eq!((mmio.phys(), mmio.len()), (phys, len));
        let first = virt & !(FRAME_SIZE - 1);
        let end = virt + len as u64;
        for page in (first..end).step_by(FRAME_SIZE as usize) {
            let m = mm::mapping(page).unwrap();
            assert_eq!(m.phys, (phys & !(FRAME_SIZE - 1)) + (page - first));
            assert_eq!(m.size, PageSizeKind::Small);
            assert!(
                m.flags
                    .contains(PageTableFlags::NO_CACHE | PageTableFlags::WRITE_THROUGH)
            );
            assert!(m.flags.contains(PageTableFlags::WRITABLE));
            assert_eq!(m.flags.contains(PageTableFlags::NO_EXECUTE), nx);
        }
        assert_eq!(mm::translate(virt), Some(phys));
        assert_eq!(mm::translate(end - 1), Some(phys + len as u64 - 1));
        // The guard page after the mapping.
        assert_eq!(mm::translate(end.next_multiple_of(FRAME_SIZE)), None);
        mm::unmap_mmio(mmio);
        for page in (first..end).step_by(FRAME_SIZE as usize) {
            assert_eq!(mm::translate(page), None);
        }
    }
    // SAFETY: refused before anything is mapped: beyond every CPU's physical address width.
    let refused = unsafe { mm::map_mmio(1 << 52, 8) };
    assert_eq!(refused.err(), Some(MapError::BadRange));
    let bits = core::arch::x86_64::__cpuid(0x8000_0008).eax & 0xff;
    // SAFETY: as above: it ends just beyond this CPU's physical address width.
    let beyond = unsafe { mm::map_mmio((1 << bits) - 4, 8) };
    assert_eq!(beyond.err(), Some(MapError::BadRange));
    // SAFETY: as above.
    let refused = unsafe { mm::map_mmio(u64::MAX - 4, 8) };
    assert_eq!(refused.err(), Some(MapError::BadRange));
}

fn mmio_reads_a_real_device() {
    // The HPET's General Capabilities and ID register (IA-PC HPET spec 1.0a §2.3.4), read-only:
    // vendor in bits 16..32, the counter period in femtoseconds (at most 100 ns) in bits 32..64.
    // (Not the local APIC: once it runs in x2APIC mode its MMIO page reads all ones.)
    // SAFETY: reading the HPET's capability register has no effect; nothing is written.
    let hpet = unsafe { mm::map_mmio(0xfed0_0000, 0x400) }.unwrap();
    let caps = hpet.read_u64(0);
    let (vendor, period) = ((caps >> 16) & 0xffff, caps >> 32);
    assert_eq!(vendor, 0x8086, "capabilities {caps:#x}");
    assert!(
        (1..=100_000_000).contains(&period),
        "capabilities {caps:#x}"
    );
    assert_eq!(hpet.read_u32(4) as u64, period);
    mm::unmap_mmio(hpet);
}
