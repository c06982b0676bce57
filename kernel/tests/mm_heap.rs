//! The kernel heap: many sizes and alignments with content checks, large blocks, and its place in
//! the direct map.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::{
    alloc::{alloc, dealloc},
    boxed::Box,
    vec::Vec,
};
use core::alloc::Layout;

use vireo::mm::{self, PHYS_OFFSET};

vireo::test_main!(
    many_sizes_keep_their_contents,
    alignments_are_honoured,
    large_blocks,
    heap_lives_in_the_direct_map,
);

fn fill(v: &mut [u8], seed: usize) {
    for (i, b) in v.iter_mut().enumerate() {
        *b = (i.wrapping_mul(31) ^ seed.wrapping_mul(0x9e37)) as u8;
    }
}

fn check(v: &[u8], seed: usize) -> bool {
    v.iter()
        .enumerate()
        .all(|(i, &b)| b == (i.wrapping_mul(31) ^ seed.wrapping_mul(0x9e37)) as u8)
}

fn many_sizes_keep_their_contents() {
    let used_before = mm::stats().heap_used;
    let mut blocks: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut size = 1usize;
    for seed in 0..1500usize {
        size = (size * 7 + 13) % 2000 + 1;
        let mut v = alloc::vec![0u8; size];
        fill(&mut v, seed);
        blocks.push((seed, v));
        // Free some on the way so the free list fragments and coalesces.
        if seed % 3 == 0 {
            let victim = (seed * 17) % blocks.len();
            let (s, v) = blocks.swap_remove(victim);
            assert!(check(&v, s), "block {s} corrupted");
        }
    }
    assert!(blocks.iter().all(|(s, v)| check(v, *s)));
    // Grow some in place or by moving; contents survive.
    for (s, v) in blocks.iter_mut().take(200) {
        let old = v.len();
        v.resize(old * 3, 0);
        assert!(check(&v[..old], *s));
    }
    drop(blocks);
    assert_eq!(mm::stats().heap_used, used_before);
}

fn alignments_are_honoured() {
    for shift in 0..=21u32 {
        let align = 1usize << shift;
        for size in [1, align.max(8), 3 * align / 2 + 1] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: the layout has a non-zero size.
            let p = unsafe { alloc(layout) };
            assert!(!p.is_null(), "no block of {size} bytes aligned {align}");
            assert!((p as usize).is_multiple_of(align));
            // SAFETY: `p` holds `size` bytes.
            unsafe {
                p.write_bytes(0xa5, size);
                assert_eq!(p.add(size - 1).read(), 0xa5);
                dealloc(p, layout);
            }
        }
    }
}

fn large_blocks() {
    let heap = mm::stats().heap_bytes;
    // A quarter of the heap in one piece, then several MiB-sized ones.
    let mut big = alloc::vec![0u64; heap / 4 / 8];
    let n = big.len();
    for (i, x) in big.iter_mut().enumerate().step_by(511) {
        *x = i as u64 ^ 0xfeed;
    }
    assert!(
        big.iter()
            .enumerate()
            .step_by(511)
            .all(|(i, &x)| x == i as u64 ^ 0xfeed)
    );
    assert_eq!(big[n - 1], 0);
    let mibs: Vec<Box<[u8]>> = (0..4)
        .map(|i| alloc::vec![i as u8; 1 << 20].into_boxed_slice())
        .collect();
    for (i, b) in mibs.iter().enumerate() {
        assert!(b.iter().step_by(4093).all(|&x| x == i as u8));
        assert_eq!(b[b.len() - 1], i as u8);
    }
}

fn heap_lives_in_the_direct_map() {
    let b = Box::new([7u8; 4096]);
    let virt = b.as_ptr() as u64;
    assert!(virt >= PHYS_OFFSET);
    assert_eq!(mm::translate(virt), Some(virt - PHYS_OFFSET));
    let s = mm::stats();
    assert!(s.heap_bytes >= 4 << 20);
    assert!(s.heap_used >= 4096 && s.heap_used < s.heap_bytes);
    assert_eq!(s.ram_bytes, vireo::boot_info().ram_bytes());
}
