//! A pointer that is not DeviceAlloc memory makes `virt_to_phys` fail loudly.
//!
//! vireo-test: expect-failure not a DeviceAlloc pointer

#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;

use vireo::mm::DeviceAlloc;

vireo::test_main!(heap_pointer_is_refused);

fn heap_pointer_is_refused() {
    let heap = Box::new(0u64);
    let phys = DeviceAlloc::virt_to_phys(&raw const *heap);
    vireo::println!("virt_to_phys accepted a heap pointer: {phys:#x}");
}
