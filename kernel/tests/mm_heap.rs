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

/// The bytes a test writes and checks: every 61st and the last (full fills are slow under the
/// nested KVM of the test machines, and sparse tags already catch overlapping blocks).
fn tagged(len: usize) -> impl Iterator<Item = usize> {
    (0..len).step_by(61).chain(len.checked_sub(1))
}

fn tag(i: usize, seed: usize) -> u8 {
    (i.wrapping_mul(31) ^ seed.wrapping_mul(0x9e37)) as u8
}

fn fill(v: &mut [u8], seed: usize) {
    for i in tagged(v.len()) {
        v[i] = tag(i, seed);
    }
}

fn check(v: &[u8], seed: usize) -> bool {
    tagged(v.len()).all(|i| v[i] == tag(i, seed))
}

fn many_sizes_keep_their_contents() {
    let used_before = mm::stats().heap_used;
    let mut blocks: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut size = 1usize;
    for seed in 0..1000usize {
        size = (size * 7 + 13) % 5000 + 1;
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
    // A quarter of the heap in one piece (written sparsely), then several smaller big ones.
    let n = heap / 4 / 8;
    let mut big: Vec<u64> = Vec::with_capacity(n);
    let spare = big.spare_capacity_mut();
    for i in (0..n).step_by(511).chain([n - 1]) {
        spare[i].write(i as u64 ^ 0xfeed);
    }
    for i in (0..n).step_by(511).chain([n - 1]) {
        // SAFETY: written just above.
        assert_eq!(unsafe { spare[i].assume_init() }, i as u64 ^ 0xfeed);
    }
    drop(big);
    let blocks: Vec<Box<[u8]>> = (0..4)
        .map(|i| alloc::vec![i as u8; 256 << 10].into_boxed_slice())
        .collect();
    for (i, b) in blocks.iter().enumerate() {
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
