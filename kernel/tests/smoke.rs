//! The runtime reaches the application, `alloc` works, and the command line arrives.
//!
//! vireo-test: append vireo.smoke=1

#![no_std]
#![no_main]

extern crate alloc;

use alloc::{string::String, vec::Vec};

vireo::test_main!(main_is_reached, heap_allocates, command_line_arrives);

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
            .any(|a| a == "vireo.smoke=1")
    );
}
