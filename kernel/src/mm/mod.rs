//! Memory: physical frames, the kernel's page tables, the heap, and memory for devices.

pub mod heap;
