//! CPU exceptions with a hook installed are handled and the interrupted code resumes with the
//! registers the hook left in the frame.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use vireo::interrupts::{
    self, DIVIDE_ERROR, INVALID_OPCODE, InterruptFrame, PAGE_FAULT, VectorError,
};

vireo::test_main!(
    ud2_is_skipped_by_a_hook,
    divide_error_is_fixed_up,
    registers_survive_an_exception,
    hooks_only_for_exceptions,
    names_are_known,
);

static UD_SEEN: AtomicU32 = AtomicU32::new(0);
static DE_SEEN: AtomicU32 = AtomicU32::new(0);

/// The code bytes at the faulting instruction.
fn code_at(rip: u64) -> [u8; 2] {
    // SAFETY: `rip` points at the instruction that faulted, in the kernel's mapped text.
    unsafe { core::ptr::read(rip as *const [u8; 2]) }
}

fn skip_ud2(frame: &mut InterruptFrame) -> bool {
    if code_at(frame.rip) != [0x0f, 0x0b] {
        return false;
    }
    UD_SEEN.fetch_add(1, Ordering::SeqCst);
    frame.rip += 2;
    true
}

fn fix_divide(frame: &mut InterruptFrame) -> bool {
    // `div ecx` is F7 F1.
    if code_at(frame.rip) != [0xf7, 0xf1] {
        return false;
    }
    DE_SEEN.fetch_add(1, Ordering::SeqCst);
    frame.rax = 42;
    frame.rdx = 0;
    frame.rip += 2;
    true
}

fn ud2_is_skipped_by_a_hook() {
    // SAFETY: the hook resumes only after a `ud2` (checked by its bytes), at the next instruction.
    unsafe { interrupts::set_exception_hook(INVALID_OPCODE, Some(skip_ud2)) }.unwrap();
    for i in 1..=3 {
        // SAFETY: `ud2` faults; the hook above moves past it and nothing else changes.
        unsafe { core::arch::asm!("ud2") };
        assert_eq!(UD_SEEN.load(Ordering::SeqCst), i);
    }
    // SAFETY: removing a hook is always sound.
    unsafe { interrupts::set_exception_hook(INVALID_OPCODE, None) }.unwrap();
}

fn divide_error_is_fixed_up() {
    // SAFETY: the hook resumes only after `div ecx` (checked by its bytes) with rax/rdx set, as if
    // the division had produced 42 remainder 0.
    unsafe { interrupts::set_exception_hook(DIVIDE_ERROR, Some(fix_divide)) }.unwrap();
    let quotient: u32;
    // SAFETY: a division by zero whose #DE the hook completes; eax/edx/ecx are declared clobbered.
    unsafe {
        core::arch::asm!(
            "xor edx, edx",
            "mov eax, 7",
            "xor ecx, ecx",
            ".byte 0xf7, 0xf1", // div ecx
            out("eax") quotient,
            out("edx") _,
            out("ecx") _,
        );
    }
    assert_eq!(quotient, 42);
    assert_eq!(DE_SEEN.load(Ordering::SeqCst), 1);
    // SAFETY: removing a hook is always sound.
    unsafe { interrupts::set_exception_hook(DIVIDE_ERROR, None) }.unwrap();
}

fn registers_survive_an_exception() {
    // SAFETY: as in `ud2_is_skipped_by_a_hook`.
    unsafe { interrupts::set_exception_hook(INVALID_OPCODE, Some(skip_ud2)) }.unwrap();
    let before = UD_SEEN.load(Ordering::SeqCst);
    let (a, b, c, d): (u64, u64, u64, u64);
    // SAFETY: `ud2` is skipped by the hook; the registers are plain inputs/outputs.
    unsafe {
        core::arch::asm!(
            "ud2",
            inout("r8") 0x0808_0808_0808_0808u64 => a,
            inout("r11") 0x1111_1111_1111_1111u64 => b,
            inout("r15") 0x1515_1515_1515_1515u64 => c,
            inout("rsi") 0x5151_5151_5151_5151u64 => d,
        );
    }
    assert_eq!(
        (a, b, c, d),
        (
            0x0808_0808_0808_0808,
            0x1111_1111_1111_1111,
            0x1515_1515_1515_1515,
            0x5151_5151_5151_5151
        )
    );
    assert_eq!(UD_SEEN.load(Ordering::SeqCst), before + 1);
    // SAFETY: removing a hook is always sound.
    unsafe { interrupts::set_exception_hook(INVALID_OPCODE, None) }.unwrap();
}

fn hooks_only_for_exceptions() {
    // SAFETY: the call fails before installing anything.
    let r = unsafe { interrupts::set_exception_hook(32, Some(skip_ud2)) };
    assert_eq!(r, Err(VectorError::NotAnException(32)));
}

fn names_are_known() {
    assert_eq!(interrupts::exception_name(PAGE_FAULT), Some("page fault"));
    assert_eq!(interrupts::exception_name(8), Some("double fault"));
    assert_eq!(interrupts::exception_name(32), None);
}
