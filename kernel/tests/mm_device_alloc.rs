//! DeviceAlloc: physically contiguous memory whose translated physical address reads back the same
//! bytes through another mapping; allocator-api2 `Vec` and `Box`.

#![no_std]
#![no_main]

extern crate alloc;

mod mm_common;

use core::alloc::Layout;

use allocator_api2::{
    alloc::{Allocator, Global},
    boxed::Box,
    vec::Vec,
};
use mm_common::TEST_VIRT;
use vireo::mm::{self, DeviceAlloc, FRAME_SIZE, PHYS_OFFSET, PageTableFlags};

vireo::test_main!(
    vec_reads_back_through_its_physical_address,
    allocations_are_physically_contiguous,
    page_aligned_requests_are_page_aligned_physically,
    box_and_zero_sized,
    many_buffers_do_not_overlap,
);

fn vec_reads_back_through_its_physical_address() {
    let mut v: Vec<u8, DeviceAlloc> = Vec::with_capacity_in(3 * 4096, DeviceAlloc);
    v.extend((0..3 * 4096).map(|i: usize| (i * 7 + 1) as u8));
    let phys = DeviceAlloc::virt_to_phys(v.as_ptr());
    assert_eq!(mm::translate(v.as_ptr() as u64), Some(phys));
    assert_ne!(phys, v.as_ptr() as u64);
    assert!(DeviceAlloc::pool().contains(&phys));
    assert_eq!(DeviceAlloc::phys_to_virt(phys), v.as_mut_ptr());
    // A second, independent mapping of the frame holding byte 4096.
    let at = phys + 4096;
    let page = at & !(FRAME_SIZE - 1);
    // SAFETY: the frame belongs to `v`, which outlives the alias; TEST_VIRT is unused.
    unsafe {
        mm::map_page(
            TEST_VIRT,
            page,
            PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE,
        )
    }
    .unwrap();
    let alias = (TEST_VIRT + (at - page)) as *mut u8;
    let in_frame = (FRAME_SIZE - (at - page)).min(64) as usize;
    for i in 0..in_frame {
        assert_eq!(mm::translate(alias as u64 + i as u64), Some(at + i as u64));
        // SAFETY: `alias + i` maps byte 4096 + i of `v` (same frame: `i < in_frame`).
        let b = unsafe { alias.add(i).read_volatile() };
        assert_eq!(b, v[4096 + i]);
    }
    // Write through the alias, read through the Vec.
    // SAFETY: as above.
    unsafe { alias.write_volatile(0x5c) };
    assert_eq!(v[4096], 0x5c);
    // SAFETY: the alias is no longer used.
    assert_eq!(unsafe { mm::unmap_page(TEST_VIRT) }, Ok(page));
    // The Vec round trip: grow (reallocate) and keep the contents.
    v.extend_from_slice(&[9; 5000]);
    assert_eq!(v[4096], 0x5c);
    assert_eq!(v[1], 8);
    assert_eq!(
        DeviceAlloc::virt_to_phys(v.as_ptr()),
        mm::translate(v.as_ptr() as u64).unwrap()
    );
}

fn allocations_are_physically_contiguous() {
    for pages in [1usize, 2, 5, 16, 64] {
        let v: Vec<u8, DeviceAlloc> = Vec::with_capacity_in(pages * 4096, DeviceAlloc);
        assert!(v.capacity() >= pages * 4096);
        let base = v.as_ptr() as u64;
        let phys = DeviceAlloc::virt_to_phys(v.as_ptr());
        for off in (0..pages as u64 * 4096)
            .step_by(4096)
            .chain([pages as u64 * 4096 - 1])
        {
            assert_eq!(mm::translate(base + off), Some(phys + off));
        }
    }
}

fn page_aligned_requests_are_page_aligned_physically() {
    for align in [4096usize, 8192, 64 << 10] {
        let layout = Layout::from_size_align(3 * 4096, align).unwrap();
        let block = DeviceAlloc.allocate(layout).unwrap();
        let p = block.as_ptr().cast::<u8>();
        assert!(block.len() >= 3 * 4096);
        let phys = DeviceAlloc::virt_to_phys(p);
        assert!(phys.is_multiple_of(align as u64));
        assert_eq!(p as u64 - PHYS_OFFSET, phys);
        // SAFETY: allocated above with `layout`.
        unsafe { DeviceAlloc.deallocate(block.cast(), layout) };
    }
}

fn box_and_zero_sized() {
    let used = mm::stats().device_pool_used;
    let b = Box::new_in([0x1234_5678u32; 1024], DeviceAlloc);
    let phys = DeviceAlloc::virt_to_phys(&raw const *b);
    // SAFETY: the direct map address of the box's physical memory is the box itself.
    let first = unsafe { (mm::phys_to_direct(phys) as *const u32).read_volatile() };
    assert_eq!(first, 0x1234_5678);
    assert!(mm::stats().device_pool_used >= used + 4096);
    drop(b);
    assert_eq!(mm::stats().device_pool_used, used);
    let mut z: Vec<(), DeviceAlloc> = Vec::new_in(DeviceAlloc);
    z.push(());
    assert_eq!(z.len(), 1);
    let layout = Layout::from_size_align(0, 64).unwrap();
    let empty = DeviceAlloc.allocate(layout).unwrap();
    assert_eq!(empty.len(), 0);
    // SAFETY: allocated above.
    unsafe { DeviceAlloc.deallocate(empty.cast(), layout) };
    assert_eq!(mm::stats().device_pool_used, used);
    // Heap memory is not device memory.
    let heap = Box::new_in(1u8, Global);
    assert!(!DeviceAlloc::pool().contains(&(&raw const *heap as u64 - PHYS_OFFSET)));
}

fn many_buffers_do_not_overlap() {
    let mut bufs: alloc::vec::Vec<Vec<u8, DeviceAlloc>> = alloc::vec::Vec::new();
    let mut size = 1usize;
    for i in 0..200usize {
        size = (size * 5 + 77) % 3000 + 1;
        bufs.push(allocator_api2::vec::from_elem_in(
            i as u8,
            size,
            DeviceAlloc,
        ));
    }
    let mut ranges: alloc::vec::Vec<(u64, u64)> = bufs
        .iter()
        .map(|b| {
            let p = DeviceAlloc::virt_to_phys(b.as_ptr());
            (p, p + b.len() as u64)
        })
        .collect();
    ranges.sort_unstable();
    assert!(ranges.windows(2).all(|w| w[0].1 <= w[1].0));
    assert!(
        bufs.iter()
            .enumerate()
            .all(|(i, b)| b.iter().all(|&x| x == i as u8))
    );
}
