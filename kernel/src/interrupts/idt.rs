//! The IDT and the 256 entry stubs.
//!
//! Every vector has a 16-byte stub in `vireo_isr_stubs`: it pushes a zero in place of an error code
//! when the CPU pushes none (Intel SDM vol. 3, §7.13 "Error Code"), then the vector number, and jumps
//! to a common trampoline that saves the general-purpose registers and calls
//! [`vireo_interrupt_dispatch`](super::dispatch) with a pointer to the resulting [`InterruptFrame`].
//! The kernel is built without SSE and without a red zone, so the integer registers are all the
//! state an interrupt can clobber.

use spin::Once;
use x86_64::{VirtAddr, instructions::tables::lidt, structures::DescriptorTablePointer};

use super::gdt;

/// The registers of the interrupted code, as the CPU and the entry stub left them on the stack.
///
/// An exception hook may modify it; the trampoline restores the registers from it and returns
/// with `iretq`.
#[repr(C)]
#[derive(Debug, Clone)]
#[expect(missing_docs, reason = "register names")]
pub struct InterruptFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// The vector number (pushed by the stub).
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// Stubs are 16 bytes apart; the vectors with a CPU error code are 8, 10..=14, 17, 21, 29 and 30.
core::arch::global_asm!(
    r#"
    .section .text.vireo_isr, "ax"
    .balign 16
    .global vireo_isr_stubs
vireo_isr_stubs:
    .set vireo_vec, 0
    .rept 256
    /* Stub N starts at byte 16 * N (the IDT computes the addresses); an overlong stub makes this
       directive fail to assemble instead of misplacing its successors. */
    .org vireo_isr_stubs + 16 * vireo_vec, 0xcc
    .if (vireo_vec == 8) || ((vireo_vec >= 10) && (vireo_vec <= 14)) || (vireo_vec == 17) || (vireo_vec == 21) || (vireo_vec == 29) || (vireo_vec == 30)
    .else
    pushq $0
    .endif
    pushq $vireo_vec
    jmp vireo_isr_common
    .set vireo_vec, vireo_vec + 1
    .endr

    .balign 16
vireo_isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    cld
    movq %rsp, %rdi
    movq %rsp, %rbx
    andq $-16, %rsp
    call vireo_interrupt_dispatch
    movq %rbx, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    /// The first of the 256 entry stubs (each 16 bytes long).
    static vireo_isr_stubs: u8;
}

/// One 16-byte interrupt gate (Intel SDM vol. 3, §7.14.1, figure 7-8).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

/// Present, DPL 0, 64-bit interrupt gate (interrupts stay off in handlers).
const INTERRUPT_GATE: u8 = 0x8e;

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

/// Which IST stack (0 = none) each vector's gate switches to.
fn ist_for(vector: usize) -> u8 {
    match vector {
        2 => gdt::IST_NMI,
        8 => gdt::IST_DOUBLE_FAULT,
        18 => gdt::IST_MACHINE_CHECK,
        _ => 0,
    }
}

/// Builds the IDT (every vector to its stub) and loads it.
pub(super) fn init() {
    let selector = gdt::code_selector().0;
    let idt = IDT.call_once(|| {
        // Only the address of the stubs is taken.
        let base = (&raw const vireo_isr_stubs) as u64;
        let mut idt = Idt([Gate::default(); 256]);
        for (vector, gate) in idt.0.iter_mut().enumerate() {
            let handler = base + 16 * vector as u64;
            *gate = Gate {
                offset_low: handler as u16,
                selector,
                ist: ist_for(vector),
                attributes: INTERRUPT_GATE,
                offset_mid: (handler >> 16) as u16,
                offset_high: (handler >> 32) as u32,
                reserved: 0,
            };
        }
        idt
    });
    let pointer = DescriptorTablePointer {
        limit: (size_of::<Idt>() - 1) as u16,
        base: VirtAddr::from_ptr(idt),
    };
    // SAFETY: the IDT is `'static`, and each gate points at a stub of `vireo_isr_stubs`, which saves
    // the registers, calls the dispatcher and returns with `iretq`; the selector is the kernel code
    // segment of the loaded GDT and the IST slots are set in the loaded TSS.
    unsafe { lidt(&pointer) };
}
