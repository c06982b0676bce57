//! The first instructions of a Vireo image.
//!
//! QEMU's `-kernel` loader finds the PVH note (in `entry.rs`), loads the ELF segments at their physical
//! addresses and jumps to `pvh_start32` in 32-bit protected mode with paging off and the physical
//! address of a `hvm_start_info` in `ebx`. The stub clears `.bss`, builds early page tables that
//! identity-map the first 4 GiB, enters long mode and calls the kernel's `vireo_kernel_entry` with
//! that address. The kernel turns it into a [`BootInfo`] and replaces the early tables with its own.

#![no_std]

mod entry;
mod info;
mod pvh;

pub use entry::{EARLY_IDENTITY_LIMIT, ImageLayout, boot_stack, entry_tsc, image_layout};
pub use info::{BootInfo, MAX_CMDLINE, MAX_REGIONS, MemoryKind, MemoryRegion};
pub use pvh::BootInfoError;
