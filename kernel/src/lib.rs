//! Vireo: a library operating system for x86_64.
//!
//! An application is a `no_std` crate that depends on this one and names its entry point with
//! [`main!`]; linking it produces one bootable image that QEMU starts with `-kernel`. The kernel
//! brings the machine up (console, CPU tables, memory, interrupts, time, PCI), calls the
//! application's `main`, and exits QEMU with its result.
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! extern crate alloc;
//!
//! vireo::main!(main);
//!
//! fn main() -> Result<(), &'static str> {
//!     vireo::println!("hello from a unikernel");
//!     Ok(())
//! }
//! ```

#![no_std]

extern crate alloc;

pub mod arch;
pub mod block;
pub mod cmdline;
pub mod console;
pub mod exit;
pub mod interrupts;
pub mod mm;
pub mod net;
pub mod pci;
pub mod rt;
pub mod testing;
pub mod time;
pub mod virtio;

pub use log;
pub use rt::{Termination, boot_info};
pub use vireo_boot as boot;
