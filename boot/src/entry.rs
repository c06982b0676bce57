//! PVH note, 32-bit entry, long-mode switch, and the symbols of the linker script.

use core::ops::Range;

/// How much physical memory the early page tables identity-map (the first 4 GiB, 2 MiB pages).
///
/// Until the kernel switches to its own page tables it can touch only memory below this limit.
pub const EARLY_IDENTITY_LIMIT: u64 = 4 << 30;

/// Size of the boot stack the kernel runs on (below it sits an unmapped guard page once the kernel's
/// page tables are live).
const BOOT_STACK_SIZE: usize = 128 * 1024;

// The PVH ELF note (Xen's `XEN_ELFNOTE_PHYS32_ENTRY`, type 18): QEMU reads it to find the 32-bit
// entry point. For an ELF64 image QEMU reads the descriptor as a 64-bit value, so it is a `.quad`.
//
// The entry code follows the x86 boot protocol (Intel SDM vol. 3, §10.8.5 "Initializing IA-32e
// Mode"): PAE on, EFER.LME (and NXE when CPUID offers it), CR3, then paging; a far jump into a 64-bit
// code segment completes the switch.
core::arch::global_asm!(
    r#"
    .section .note.pvh, "a", @note
    .balign 4
    .long 4                 /* namesz: "Xen\0" */
    .long 8                 /* descsz */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4

    .section .boot.text, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    /* The very first instruction: the TSC at entry, for the boot-time figure (first instruction
       to the application's main). It goes to .data, which the .bss clearing below leaves alone. */
    rdtsc
    movl %eax, vireo_boot_entry_tsc
    movl %edx, vireo_boot_entry_tsc + 4
    cli
    cld
    movl %ebx, %esi                     /* hvm_start_info, kept until the kernel entry */

    /* Zero .bss (QEMU zero-fills it too; this does not rely on that), 4 bytes at a time: both
       ends are page-aligned, and an emulator runs each iteration of a string instruction on
       its own, so this is four times fewer than byte stores. */
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    shrl $2, %ecx
    xorl %eax, %eax
    rep stosl

    /* PML4[0] -> PDPT; PDPT[0..4] -> four page directories of 512 2-MiB pages: 0..4 GiB. */
    movl $vireo_boot_pdpt, %eax
    orl $0x3, %eax
    movl %eax, vireo_boot_pml4
    movl $vireo_boot_pd, %eax
    orl $0x3, %eax
    xorl %ecx, %ecx
1:
    movl %eax, vireo_boot_pdpt(,%ecx,8)
    addl $4096, %eax
    incl %ecx
    cmpl $4, %ecx
    jne 1b
    movl $0x83, %eax                    /* present | writable | 2-MiB page */
    xorl %ecx, %ecx
2:
    movl %eax, vireo_boot_pd(,%ecx,8)
    addl $0x200000, %eax
    incl %ecx
    cmpl $2048, %ecx
    jne 2b

    movl $vireo_boot_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $(1 << 5), %eax                 /* CR4.PAE */
    movl %eax, %cr4

    /* EFER.NXE only if CPUID.80000001h:EDX.NX[bit 20] says the CPU has it. */
    movl $0x80000001, %eax
    cpuid
    xorl %ebx, %ebx
    btl $20, %edx
    jnc 3f
    movl $(1 << 11), %ebx
3:
    movl $0xC0000080, %ecx              /* IA32_EFER */
    rdmsr
    orl $(1 << 8), %eax                 /* EFER.LME */
    orl %ebx, %eax
    wrmsr

    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16) | 1), %eax   /* CR0.PG | CR0.WP | CR0.PE */
    movl %eax, %cr0

    lgdt vireo_boot_gdt_ptr
    ljmp $0x08, $4f

    .code64
4:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $vireo_boot_stack_top, %rsp
    xorl %ebp, %ebp
    movl %esi, %edi                     /* first argument: hvm_start_info physical address */
    call vireo_kernel_entry
5:
    cli
    hlt
    jmp 5b

    .section .rodata.vireo_boot_gdt, "a"
    .balign 16
vireo_boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff            /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00cf92000000ffff            /* 0x10: data, DPL 0 */
vireo_boot_gdt_end:
vireo_boot_gdt_ptr:
    .word vireo_boot_gdt_end - vireo_boot_gdt - 1
    .long vireo_boot_gdt

    .section .data.vireo_boot_entry_tsc, "aw"
    .balign 8
    .global vireo_boot_entry_tsc
vireo_boot_entry_tsc:
    .quad 0

    .section .bss.vireo_boot, "aw", @nobits
    .balign 4096
    .global vireo_boot_pml4
vireo_boot_pml4:
    .skip 4096
vireo_boot_pdpt:
    .skip 4096
vireo_boot_pd:
    .skip 4 * 4096
    .global vireo_boot_stack_guard
vireo_boot_stack_guard:
    .skip 4096
    .global vireo_boot_stack_bottom
vireo_boot_stack_bottom:
    .skip {stack_size}
    .global vireo_boot_stack_top
vireo_boot_stack_top:
    "#,
    stack_size = const BOOT_STACK_SIZE,
    options(att_syntax)
);

unsafe extern "C" {
    static __image_start: u8;
    static __rodata_start: u8;
    static __data_start: u8;
    static __image_end: u8;
    static vireo_boot_stack_guard: u8;
    static vireo_boot_stack_bottom: u8;
    static vireo_boot_stack_top: u8;
    static vireo_boot_entry_tsc: u64;
}

/// The TSC value the boot stub read at its very first instruction (`pvh_start32`).
///
/// With the TSC frequency this dates every later point of the boot from the image's first
/// instruction (the loader and firmware before it are not counted).
pub fn entry_tsc() -> u64 {
    // SAFETY: the stub writes this 8-byte aligned `.data` word before any Rust code runs and
    // nothing writes it afterwards; a volatile read keeps the compiler from assuming its initial 0.
    unsafe { core::ptr::read_volatile(&raw const vireo_boot_entry_tsc) }
}

/// Where the linker put each part of the image (identity-mapped: these are physical addresses too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLayout {
    /// Code: `[text.start, text.end)`, read + execute.
    pub text: (u64, u64),
    /// Read-only data, including the PVH note.
    pub rodata: (u64, u64),
    /// Data and `.bss` (which holds the boot stack), read + write.
    pub data: (u64, u64),
}

impl ImageLayout {
    /// The whole image, page-aligned.
    pub fn range(&self) -> Range<u64> {
        self.text.0..self.data.1
    }
}

fn addr(sym: &'static u8) -> u64 {
    core::ptr::from_ref(sym) as u64
}

/// The linker's layout of this image.
pub fn image_layout() -> ImageLayout {
    // SAFETY: only the addresses of the linker-defined symbols are taken; they are never read.
    unsafe {
        ImageLayout {
            text: (addr(&__image_start), addr(&__rodata_start)),
            rodata: (addr(&__rodata_start), addr(&__data_start)),
            data: (addr(&__data_start), addr(&__image_end)),
        }
    }
}

/// The boot stack: `(guard page, stack range)`. The guard page is the 4 KiB just below the stack;
/// the kernel leaves it unmapped so an overflow faults instead of corrupting the page tables.
pub fn boot_stack() -> (u64, Range<u64>) {
    // SAFETY: only the addresses of the symbols defined above are taken; they are never read.
    unsafe {
        (
            addr(&vireo_boot_stack_guard),
            addr(&vireo_boot_stack_bottom)..addr(&vireo_boot_stack_top),
        )
    }
}
