//! CPU exceptions (vectors 0..=31): names, hooks that let a test handle one and resume, and the
//! fatal report.

use core::sync::atomic::{AtomicUsize, Ordering};

use x86_64::registers::control::Cr2;

use super::{InterruptFrame, VectorError};
use crate::{
    console::_print_emergency,
    exit::{ExitCode, exit_qemu},
};

/// Divide error (`#DE`).
pub const DIVIDE_ERROR: u8 = 0;
/// Invalid opcode (`#UD`), raised e.g. by `ud2`.
pub const INVALID_OPCODE: u8 = 6;
/// Double fault (`#DF`), handled on its own IST stack.
pub const DOUBLE_FAULT: u8 = 8;
/// General protection fault (`#GP`).
pub const GENERAL_PROTECTION: u8 = 13;
/// Page fault (`#PF`); CR2 holds the faulting address.
pub const PAGE_FAULT: u8 = 14;

/// Name and mnemonic of each exception vector (Intel SDM vol. 3, table 7-1).
const NAMES: [(&str, &str); 32] = [
    ("divide error", "#DE"),
    ("debug", "#DB"),
    ("non-maskable interrupt", "NMI"),
    ("breakpoint", "#BP"),
    ("overflow", "#OF"),
    ("bound range exceeded", "#BR"),
    ("invalid opcode", "#UD"),
    ("device not available", "#NM"),
    ("double fault", "#DF"),
    ("coprocessor segment overrun", "CSO"),
    ("invalid TSS", "#TS"),
    ("segment not present", "#NP"),
    ("stack-segment fault", "#SS"),
    ("general protection fault", "#GP"),
    ("page fault", "#PF"),
    ("reserved", "-"),
    ("x87 floating-point error", "#MF"),
    ("alignment check", "#AC"),
    ("machine check", "#MC"),
    ("SIMD floating-point exception", "#XM"),
    ("virtualization exception", "#VE"),
    ("control protection exception", "#CP"),
    ("reserved", "-"),
    ("reserved", "-"),
    ("reserved", "-"),
    ("reserved", "-"),
    ("reserved", "-"),
    ("reserved", "-"),
    ("hypervisor injection exception", "#HV"),
    ("VMM communication exception", "#VC"),
    ("security exception", "#SX"),
    ("reserved", "-"),
];

/// The name of exception `vector` ("page fault"), or `None` above 31.
pub fn exception_name(vector: u8) -> Option<&'static str> {
    NAMES.get(usize::from(vector)).map(|(name, _)| *name)
}

/// A function called on an exception before the kernel's fatal report.
///
/// It returns `true` if it handled the exception: the CPU then resumes with the registers in the
/// frame (so a hook usually moves `rip` past the faulting instruction). `false` lets the report and
/// the failure exit follow. It runs with interrupts off, possibly on an IST stack.
pub type ExceptionHook = fn(&mut InterruptFrame) -> bool;

static HOOKS: [AtomicUsize; 32] = [const { AtomicUsize::new(0) }; 32];

/// Installs (`Some`) or removes (`None`) the hook of exception `vector` (0..=31).
///
/// # Safety
/// Whenever the hook returns `true`, the frame must describe a state the interrupted code can
/// soundly resume in: `rip` at the start of an instruction of that code, `rsp`, `cs`, `ss` and
/// `rflags` valid for it, and any changed general-purpose register a value the code can cope with.
pub unsafe fn set_exception_hook(
    vector: u8,
    hook: Option<ExceptionHook>,
) -> Result<(), VectorError> {
    let slot = HOOKS
        .get(usize::from(vector))
        .ok_or(VectorError::NotAnException(vector))?;
    slot.store(hook.map_or(0, |h| h as usize), Ordering::Release);
    Ok(())
}

/// Handles exception `frame.vector`: its hook if one handles it, else the report and exit.
pub(super) fn handle(frame: &mut InterruptFrame) {
    let vector = frame.vector as usize;
    let raw = HOOKS[vector].load(Ordering::Acquire);
    if raw != 0 {
        // SAFETY: a non-zero slot holds a value stored by `set_exception_hook` from an
        // `ExceptionHook`, so it is a valid function pointer of exactly this type.
        let hook = unsafe { core::mem::transmute::<usize, ExceptionHook>(raw) };
        if hook(frame) {
            return;
        }
    }
    report(frame);
    exit_qemu(ExitCode::Failure);
}

/// Prints the fatal-exception report (bypassing the console lock: the fault may be inside a print).
fn report(frame: &InterruptFrame) {
    let (name, mnemonic) = NAMES[frame.vector as usize & 31];
    _print_emergency(format_args!(
        "\nEXCEPTION: {name} ({mnemonic}, vector {}) error code {:#x}\n",
        frame.vector, frame.error_code
    ));
    if frame.vector == u64::from(PAGE_FAULT) {
        let e = frame.error_code;
        _print_emergency(format_args!(
            "  page fault at CR2 {:#x}: {} {} access, {} mode{}\n",
            Cr2::read_raw(),
            if e & 1 != 0 {
                "protection violation on"
            } else {
                "non-present page on"
            },
            if e & 0x10 != 0 {
                "instruction fetch"
            } else if e & 2 != 0 {
                "write"
            } else {
                "read"
            },
            if e & 4 != 0 { "user" } else { "supervisor" },
            if e & 8 != 0 { ", reserved bit set" } else { "" },
        ));
    }
    if frame.vector == u64::from(DOUBLE_FAULT) {
        _print_emergency(format_args!(
            "  CR2 {:#x} (the last page-fault address)\n",
            Cr2::read_raw()
        ));
    }
    // A push into the guard page faults with RSP just above it and CR2 inside it; the double fault
    // that follows keeps that CR2.
    let (guard, _) = vireo_boot::boot_stack();
    let near_guard = |a: u64| (guard..=guard + 4096).contains(&a);
    let cr2_valid =
        frame.vector == u64::from(PAGE_FAULT) || frame.vector == u64::from(DOUBLE_FAULT);
    if near_guard(frame.rsp) || (cr2_valid && near_guard(Cr2::read_raw())) {
        _print_emergency(format_args!(
            "  at the boot stack's guard page: kernel stack overflow\n"
        ));
    }
    _print_emergency(format_args!(
        "  RIP {:#018x} CS {:#x} RFLAGS {:#x} RSP {:#018x} SS {:#x}\n",
        frame.rip, frame.cs, frame.rflags, frame.rsp, frame.ss
    ));
    _print_emergency(format_args!(
        "  RAX {:#x} RBX {:#x} RCX {:#x} RDX {:#x} RSI {:#x} RDI {:#x} RBP {:#x}\n",
        frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp
    ));
    _print_emergency(format_args!(
        "  R8 {:#x} R9 {:#x} R10 {:#x} R11 {:#x} R12 {:#x} R13 {:#x} R14 {:#x} R15 {:#x}\n",
        frame.r8, frame.r9, frame.r10, frame.r11, frame.r12, frame.r13, frame.r14, frame.r15
    ));
}
