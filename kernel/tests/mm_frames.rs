//! The physical frame allocator: thousands of frames, all distinct, all usable RAM, none reserved;
//! free and reallocation; aligned contiguous runs; exhausting memory and getting it all back.
//!
//! Small RAM keeps the exhaustive case short and checks the sizing of heap and pool at the low end.
//!
//! vireo-test: qemu -m 64M
//! vireo-test: timeout 180

#![no_std]
#![no_main]

extern crate alloc;

mod mm_common;

use alloc::vec::Vec;

use mm_common::{frame_has_tag, frame_is_reserved, tag_frame};
use vireo::mm::{self, FRAME_SIZE};

vireo::test_main!(
    thousands_of_frames_are_distinct_and_usable,
    freed_frames_are_reused,
    aligned_contiguous_runs,
    every_free_frame_is_ram_and_comes_back,
    small_ram_sizes_are_sane,
);

/// Allocates `n` frames, checking each and tagging it.
fn take(n: usize) -> Vec<u64> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        let f = mm::alloc_frame().expect("out of frames");
        assert!(f.is_multiple_of(FRAME_SIZE));
        assert!(!frame_is_reserved(f), "handed out reserved frame {f:#x}");
        tag_frame(f);
        got.push(f);
    }
    got
}

fn assert_distinct(frames: &[u64]) {
    let mut sorted = frames.to_vec();
    sorted.sort_unstable();
    assert!(
        sorted.windows(2).all(|w| w[0] != w[1]),
        "a frame was handed out twice"
    );
}

fn thousands_of_frames_are_distinct_and_usable() {
    let before = mm::stats().free_frames;
    let frames = take(3000);
    assert_distinct(&frames);
    assert_eq!(mm::stats().free_frames, before - 3000);
    // Every frame still holds its own tag: no two overlap.
    assert!(frames.iter().all(|&f| frame_has_tag(f)));
    for &f in &frames {
        // SAFETY: taken above, unused now.
        unsafe { mm::free_frames(f, 1) };
    }
    assert_eq!(mm::stats().free_frames, before);
}

fn freed_frames_are_reused() {
    let before = mm::stats().free_frames;
    let mut held = take(2000);
    let (keep, give): (Vec<u64>, Vec<u64>) = held.iter().partition(|&&f| f % (2 * FRAME_SIZE) == 0);
    for &f in &give {
        // SAFETY: taken above, unused now.
        unsafe { mm::free_frames(f, 1) };
    }
    let again = take(give.len());
    // The lowest free frames come first: the ones just freed.
    let mut again_sorted = again.clone();
    again_sorted.sort_unstable();
    let mut give_sorted = give.clone();
    give_sorted.sort_unstable();
    assert_eq!(again_sorted, give_sorted);
    held = keep;
    held.extend_from_slice(&again);
    assert_distinct(&held);
    assert!(held.iter().all(|&f| frame_has_tag(f)));
    for &f in &held {
        // SAFETY: taken above, unused now.
        unsafe { mm::free_frames(f, 1) };
    }
    assert_eq!(mm::stats().free_frames, before);
}

fn aligned_contiguous_runs() {
    let before = mm::stats().free_frames;
    // A scattered single frame first, so runs have to skip used frames.
    let single = mm::alloc_frame().unwrap();
    let mut runs = Vec::new();
    for (count, align) in [
        (1usize, 4096u64),
        (3, 8192),
        (16, 64 << 10),
        (100, 4096),
        (512, 2 << 20),
        (7, 1 << 20),
        (1024, 4096),
    ] {
        let phys = mm::alloc_frames(count, align).expect("no run");
        assert!(
            phys.is_multiple_of(align),
            "{phys:#x} not aligned to {align:#x}"
        );
        for i in 0..count as u64 {
            let f = phys + i * FRAME_SIZE;
            assert!(!frame_is_reserved(f), "run has reserved frame {f:#x}");
            tag_frame(f);
        }
        runs.push((phys, count));
    }
    let mut all: Vec<u64> = runs
        .iter()
        .flat_map(|&(p, n)| (0..n as u64).map(move |i| p + i * FRAME_SIZE))
        .collect();
    all.push(single);
    assert_distinct(&all);
    for &(p, n) in &runs {
        assert!((0..n as u64).all(|i| frame_has_tag(p + i * FRAME_SIZE)));
    }
    assert_eq!(mm::alloc_frames(0, 4096), None);
    for (p, n) in runs {
        // SAFETY: taken above, unused now.
        unsafe { mm::free_frames(p, n) };
    }
    // SAFETY: as above.
    unsafe { mm::free_frames(single, 1) };
    assert_eq!(mm::stats().free_frames, before);
}

fn every_free_frame_is_ram_and_comes_back() {
    let before = mm::stats().free_frames;
    let mut all = Vec::with_capacity(before);
    while let Some(f) = mm::alloc_frame() {
        assert!(!frame_is_reserved(f), "handed out reserved frame {f:#x}");
        all.push(f);
    }
    assert_eq!(all.len(), before);
    assert_eq!(mm::stats().free_frames, 0);
    assert_eq!(mm::alloc_frames(1, 4096), None);
    assert_distinct(&all);
    // Neither the heap nor the DeviceAlloc pool was handed out.
    let pool = vireo::mm::DeviceAlloc::pool();
    let heap_probe = alloc::boxed::Box::new(0u64);
    let heap_phys = mm::translate(&raw const *heap_probe as u64).unwrap();
    assert!(
        all.iter()
            .all(|&f| !pool.contains(&f) && f != heap_phys & !(FRAME_SIZE - 1))
    );
    for f in all.iter().copied() {
        // SAFETY: taken above, unused.
        unsafe { mm::free_frames(f, 1) };
    }
    assert_eq!(mm::stats().free_frames, before);
    // After all that, a large run is still there.
    let run = mm::alloc_frames(256, 1 << 20).unwrap();
    // SAFETY: as above.
    unsafe { mm::free_frames(run, 256) };
}

fn small_ram_sizes_are_sane() {
    let s = mm::stats();
    assert!(s.ram_bytes < 64 << 20 && s.ram_bytes > 60 << 20, "{s:?}");
    // A quarter and an eighth of RAM, within the documented minimums.
    assert!(
        s.heap_bytes >= 4 << 20 && s.heap_bytes as u64 <= s.ram_bytes / 4,
        "{s:?}"
    );
    assert!(s.device_pool_bytes >= 2 << 20 && s.device_pool_bytes as u64 <= s.ram_bytes / 8);
    let taken = (s.heap_bytes + s.device_pool_bytes) as u64 / FRAME_SIZE;
    assert!(s.free_frames as u64 + taken < s.ram_bytes / FRAME_SIZE);
    assert!(s.free_frames as u64 > s.ram_bytes / FRAME_SIZE / 2, "{s:?}");
}
