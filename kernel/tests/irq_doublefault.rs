//! A fault while the stack is unusable escalates to a double fault, which is reported from its own
//! IST stack.
//!
//! vireo-test: expect-failure EXCEPTION: double fault (#DF, vector 8)

#![no_std]
#![no_main]

vireo::test_main!(bad_stack_double_faults);

fn bad_stack_double_faults() {
    // SAFETY: not sound — pointing RSP at unmapped memory makes the push fault, and delivering that
    // page fault on the same stack faults again: a double fault, whose handler runs on its IST
    // stack, reports and exits QEMU. Execution never returns here.
    unsafe {
        core::arch::asm!(
            "mov rsp, {bad}",
            "push rax",
            bad = in(reg) 0x0000_7000_0000_0000u64,
            options(noreturn)
        );
    }
}
