//! The default application: a banner with what the kernel found.

#![no_std]
#![no_main]

vireo::main!(main);

fn main() {
    vireo::println!("Vireo is up.");
}
