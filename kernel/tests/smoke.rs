//! The runtime reaches the application, `alloc` works, and the command line arrives.
//!
//! vireo-test: append app.smoke=1
//! vireo-test: machines q35 microvm

#![no_std]
#![no_main]

extern crate alloc;

use alloc::{string::String, vec::Vec};

vireo::test_main!(
    main_is_reached,
    heap_allocates,
    command_line_arrives,
    disk_pattern_fill_matches_bytes
);

fn main_is_reached() {}

fn heap_allocates() {
    let v: Vec<u32> = (0..1000).collect();
    assert_eq!(v.iter().sum::<u32>(), 499_500);
    let s = String::from("vireo");
    assert_eq!(s.len(), 5);
}

fn command_line_arrives() {
    assert!(
        vireo::boot_info()
            .cmdline()
            .split(' ')
            .any(|a| a == "app.smoke=1")
    );
}

fn disk_pattern_fill_matches_bytes() {
    let mut buf = [0u8; 61];
    for offset in [0u64, 1, 7, 8, 13, 4096, 1 << 40] {
        for len in [0usize, 1, 5, 8, 9, 16, 61] {
            vireo::testing::fill_disk_pattern(&mut buf[..len], 42, offset);
            for (i, &b) in buf[..len].iter().enumerate() {
                assert_eq!(b, vireo::testing::disk_pattern_byte(42, offset + i as u64));
            }
        }
    }
}
