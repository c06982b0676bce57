//! The part of Vireo's kernel that only computes: no port I/O, no MMIO, no page tables.
//!
//! The kernel (`vireo`) is built for `x86_64-unknown-none` only and its tests boot in QEMU. The
//! logic here needs no hardware, so it lives in a crate that also builds on the host, where
//! `cargo test` reaches it; the kernel feeds it plain values read from the hardware and writes
//! back what it computes:
//!
//! - [`acpi`]: the contents of the ACPI tables the kernel reads (RSDP, XSDT/RSDT, MADT, HPET,
//!   FADT), from their bytes.
//! - [`pci`]: BAR decoding from a sizing probe, the address windows BARs are placed in, and bridge
//!   window arithmetic.
//! - [`frames`]: the physical frame bitmap, over storage the kernel provides.
//! - [`cmdline`]: the table of kernel command-line options and the one rule that reads them.
//! - [`disk_pattern`]: the bytes disk tests write, shared by the guest (which writes them) and
//!   `xtask` (which checks disk images after QEMU exits), so the two cannot drift apart.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod acpi;
pub mod cmdline;
pub mod disk_pattern;
pub mod frames;
pub mod pci;
