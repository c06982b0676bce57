//! `main` returning an error prints it and exits with the failure code.
//!
//! vireo-test: expect-failure main returned an error: "disk on fire"

#![no_std]
#![no_main]

vireo::main!(main);

fn main() -> Result<(), &'static str> {
    Err(core::hint::black_box("disk on fire"))
}
