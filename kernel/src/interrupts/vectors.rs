//! Interrupt vectors 32..=255: the dispatch table, the allocator, and MSI messages.
//!
//! Layout: 0x20..=0x2F belong to the (masked) legacy PIC, whose spurious interrupts are dropped;
//! [`FIRST_DYNAMIC`]..=[`LAST_DYNAMIC`] are handed out by [`alloc_vector`]; the vectors above are
//! the kernel's own (timer, APIC error, spurious).

use core::{
    fmt,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
};

use super::{InterruptFrame, exceptions, lapic};

/// A device interrupt handler; it receives the vector it runs for. It runs with interrupts off and
/// the kernel sends the end-of-interrupt after it returns.
pub type InterruptHandler = fn(u8);

/// Base of the remapped legacy PIC's 16 vectors.
pub const PIC_VECTOR_BASE: u8 = 0x20;
/// The first vector [`alloc_vector`] hands out.
pub const FIRST_DYNAMIC: u8 = 0x30;
/// The last vector [`alloc_vector`] hands out.
pub const LAST_DYNAMIC: u8 = 0xdf;
/// The local APIC timer's vector.
pub const TIMER_VECTOR: u8 = 0xf0;
/// The local APIC error interrupt's vector.
pub const APIC_ERROR_VECTOR: u8 = 0xfe;
/// The local APIC spurious-interrupt vector (never acknowledged with an EOI).
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// Why a vector operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorError {
    /// Every dynamic vector is in use.
    Exhausted,
    /// The number is not a CPU exception vector (0..=31).
    NotAnException(u8),
    /// Fixed delivery cannot target vectors below 32.
    Reserved(u8),
    /// The boot CPU's APIC ID does not fit an MSI address (xAPIC format, 8 bits).
    ApicIdTooLarge(u32),
}

impl fmt::Display for VectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exhausted => f.write_str("no free interrupt vector"),
            Self::NotAnException(v) => write!(f, "vector {v} is not a CPU exception"),
            Self::Reserved(v) => write!(f, "vector {v} is reserved for CPU exceptions"),
            Self::ApicIdTooLarge(id) => write!(f, "APIC ID {id} does not fit an MSI address"),
        }
    }
}

/// An allocated interrupt vector. Give it back with [`free_vector`]; dropping it leaks the vector.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a dropped Vector stays allocated; free it with free_vector"]
pub struct Vector(u8);

impl Vector {
    /// The vector number.
    pub fn number(&self) -> u8 {
        self.0
    }

    /// The MSI / MSI-X message that raises this vector on the boot CPU.
    pub fn msi_message(&self) -> Result<MsiMessage, VectorError> {
        msi_message(self.0)
    }
}

/// The address/data pair a device writes to raise an interrupt (Intel SDM vol. 3, §12.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiMessage {
    /// Message address: `0xFEE0_0000 | destination APIC ID << 12` (physical destination mode).
    pub address: u64,
    /// Message data: the vector, fixed delivery, edge-triggered.
    pub data: u32,
}

/// The MSI message for `vector` on the boot CPU.
pub fn msi_message(vector: u8) -> Result<MsiMessage, VectorError> {
    if vector < 32 {
        return Err(VectorError::Reserved(vector));
    }
    let id = lapic::boot_apic_id();
    if id > 0xff {
        return Err(VectorError::ApicIdTooLarge(id));
    }
    Ok(MsiMessage {
        address: 0xfee0_0000 | (u64::from(id) << 12),
        data: u32::from(vector),
    })
}

/// Handlers by vector; 0 is "none".
static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
/// Allocated dynamic vectors, one bit per vector.
static ALLOCATED: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// Interrupts that arrived on a vector with no handler.
static UNEXPECTED: AtomicU64 = AtomicU64::new(0);
/// Spurious interrupts: the local APIC's spurious vector and the masked PIC's IRQ 7/15.
static SPURIOUS: AtomicU64 = AtomicU64::new(0);

/// Allocates a free vector in [`FIRST_DYNAMIC`]..=[`LAST_DYNAMIC`] and routes it to `handler`.
pub fn alloc_vector(handler: InterruptHandler) -> Result<Vector, VectorError> {
    for v in FIRST_DYNAMIC..=LAST_DYNAMIC {
        let word = &ALLOCATED[usize::from(v / 64)];
        let bit = 1u64 << (v % 64);
        if word.fetch_or(bit, Ordering::AcqRel) & bit == 0 {
            HANDLERS[usize::from(v)].store(handler as usize, Ordering::Release);
            return Ok(Vector(v));
        }
    }
    Err(VectorError::Exhausted)
}

/// Frees `vector`: its handler is removed and the number can be handed out again. The device that
/// used it must have been told to stop raising it.
pub fn free_vector(vector: Vector) {
    let v = vector.0;
    HANDLERS[usize::from(v)].store(0, Ordering::Release);
    ALLOCATED[usize::from(v / 64)].fetch_and(!(1u64 << (v % 64)), Ordering::AcqRel);
}

/// How many interrupts arrived on a vector with no handler since boot.
pub fn unexpected_interrupts() -> u64 {
    UNEXPECTED.load(Ordering::Relaxed)
}

/// How many spurious interrupts arrived since boot (the local APIC raises one, e.g., when an
/// interrupt is masked at the IOAPIC while it is being delivered).
pub fn spurious_interrupts() -> u64 {
    SPURIOUS.load(Ordering::Relaxed)
}

/// Installs the handler of one of the kernel's fixed vectors (above [`LAST_DYNAMIC`]).
pub(crate) fn set_fixed_handler(vector: u8, handler: InterruptHandler) {
    debug_assert!(vector > LAST_DYNAMIC);
    HANDLERS[usize::from(vector)].store(handler as usize, Ordering::Release);
}

/// The Rust side of every interrupt and exception, called by the entry trampoline.
///
/// # Safety
/// Called only by `vireo_isr_common` with a pointer to the frame it built on the stack.
#[unsafe(no_mangle)]
unsafe extern "C" fn vireo_interrupt_dispatch(frame: *mut InterruptFrame) {
    // SAFETY: the trampoline passes a pointer to the frame it just pushed; nothing else refers to
    // it until this function returns.
    let frame = unsafe { &mut *frame };
    let vector = frame.vector as u8;
    if vector < 32 {
        exceptions::handle(frame);
        return;
    }
    if vector == SPURIOUS_VECTOR || (PIC_VECTOR_BASE..PIC_VECTOR_BASE + 16).contains(&vector) {
        // Spurious APIC interrupts have no in-service bit; the masked PIC's spurious IRQ 7/15 do
        // not go through the local APIC. Neither gets an EOI.
        SPURIOUS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let raw = HANDLERS[usize::from(vector)].load(Ordering::Acquire);
    if raw == 0 {
        UNEXPECTED.fetch_add(1, Ordering::Relaxed);
    } else {
        // SAFETY: a non-zero slot holds a value stored from an `InterruptHandler` by
        // `alloc_vector` or `set_fixed_handler`, so it is a valid function pointer of that type.
        let handler = unsafe { core::mem::transmute::<usize, InterruptHandler>(raw) };
        handler(vector);
    }
    lapic::eoi();
}
