//! A panic in an application prints its message and location and exits with the failure code.
//!
//! vireo-test: expect-failure panicked at kernel/tests/harness_panic.rs

#![no_std]
#![no_main]

vireo::main!(main);

fn main() {
    let answer = core::hint::black_box(41);
    assert_eq!(answer, 42, "deliberate failure");
}
