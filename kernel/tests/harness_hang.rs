//! The harness kills a guest that never finishes and counts that as the expected outcome here;
//! any other image that hangs is counted as failed.
//!
//! vireo-test: timeout 3
//! vireo-test: expect-timeout

#![no_std]
#![no_main]

vireo::main!(main);

fn main() {
    vireo::println!("harness_hang: spinning until the harness kills QEMU");
    loop {
        core::hint::spin_loop();
    }
}
