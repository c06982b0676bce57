//! The few CPU operations the rest of the kernel builds on.

pub mod port;

/// Stops the CPU until the next interrupt.
pub fn halt() {
    x86_64::instructions::hlt();
}

/// Stops the CPU for good, with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
