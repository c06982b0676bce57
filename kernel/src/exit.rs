//! Leaving QEMU through the `isa-debug-exit` device (`iobase=0xf4,iosize=0x04`).
//!
//! QEMU exits with status `(value << 1) | 1` when a value is written to the port, so no guest
//! write can produce QEMU's own 0. Vireo uses two values: [`ExitCode::Success`] makes QEMU exit
//! with 33, [`ExitCode::Failure`] with 35; `xtask` maps 33 back to success.

use crate::arch::port::Port;

/// The I/O port of `isa-debug-exit`.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// How the image ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// The application returned success (QEMU status 33).
    Success = 0x10,
    /// The application failed, panicked, or the kernel hit a fatal fault (QEMU status 35).
    Failure = 0x11,
}

impl ExitCode {
    /// The status QEMU exits with for this code.
    pub const fn qemu_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }
}

/// Ends the virtual machine with `code`. Without the exit device, halts forever.
pub fn exit_qemu(code: ExitCode) -> ! {
    // SAFETY: port 0xf4 is `isa-debug-exit` (or nothing); writing it ends QEMU and touches no memory.
    let mut port = unsafe { Port::<u32>::new(DEBUG_EXIT_PORT) };
    port.write(code as u32);
    crate::arch::halt_forever()
}
