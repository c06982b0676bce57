//! The kernel's GDT and TSS, with separate interrupt stacks (IST) for the faults that must be
//! reported even when the current stack is unusable.

use spin::Once;
use x86_64::{
    VirtAddr,
    instructions::{
        segmentation::{CS, DS, ES, SS, Segment},
        tables::load_tss,
    },
    registers::segmentation::SegmentSelector,
    structures::{
        gdt::{Descriptor, GlobalDescriptorTable},
        tss::TaskStateSegment,
    },
};

/// IST slot (1-based, as the IDT encodes it) of the double-fault stack.
pub(super) const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot of the NMI stack.
pub(super) const IST_NMI: u8 = 2;
/// IST slot of the machine-check stack.
pub(super) const IST_MACHINE_CHECK: u8 = 3;

/// Size of each IST stack.
const IST_STACK_SIZE: usize = 16 * 1024;

/// One IST stack; 16-byte aligned as the CPU aligns the stack pointer it loads from the TSS.
#[repr(C, align(16))]
struct IstStack([u8; IST_STACK_SIZE]);

/// The IST stacks. Only the CPU writes them (on exception entry); Rust code only takes their address.
static mut IST_STACKS: [IstStack; 3] = [const { IstStack([0; IST_STACK_SIZE]) }; 3];

struct Tables {
    gdt: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static TSS: Once<TaskStateSegment> = Once::new();
static TABLES: Once<Tables> = Once::new();

/// The kernel code segment selector (for IDT gates).
pub(super) fn code_selector() -> SegmentSelector {
    TABLES.get().map_or(SegmentSelector(0x08), |t| t.code)
}

/// Builds the TSS and GDT and loads them: CS, DS, ES, SS and TR.
pub(super) fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let stacks = &raw const IST_STACKS;
        for (i, slot) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK]
            .into_iter()
            .enumerate()
        {
            // Only the address is computed (no reference to the `static mut` is formed).
            let top = stacks as u64 + ((i + 1) * IST_STACK_SIZE) as u64;
            tss.interrupt_stack_table[usize::from(slot - 1)] = VirtAddr::new(top);
        }
        tss
    });
    let tables = TABLES.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        Tables {
            gdt,
            code,
            data,
            tss,
        }
    });
    tables.gdt.load();
    // The selectors index the GDT just loaded: a 64-bit ring-0 code segment, a writable ring-0 data
    // segment, and a TSS descriptor for a `'static` TSS whose IST entries top `'static` stacks.
    // SAFETY: those segments are valid; `load_tss` runs once per GDT (the `Once`), so not busy.
    unsafe {
        CS::set_reg(tables.code);
        DS::set_reg(tables.data);
        ES::set_reg(tables.data);
        SS::set_reg(tables.data);
        load_tss(tables.tss);
    }
}
