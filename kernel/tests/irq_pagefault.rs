//! A read of an address the page tables do not map ends the image with the page-fault report,
//! including the faulting address from CR2, and the failure code.
//!
//! vireo-test: expect-failure page fault at CR2 0x700000000000

#![no_std]
#![no_main]

vireo::test_main!(unmapped_read_faults);

/// Far outside anything the kernel maps (PML4 slot 224).
const UNMAPPED: usize = 0x0000_7000_0000_0000;

fn unmapped_read_faults() {
    // SAFETY: not sound — the read must fault; the fault handler reports it and exits QEMU, so
    // execution never continues past it.
    let v = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
    panic!("read of unmapped {UNMAPPED:#x} returned {v:#x} instead of faulting");
}
