//! A 16550 UART at COM1 (I/O ports 0x3F8..0x3FF).

use core::fmt;

use crate::arch::port::Port;

const COM1_BASE: u16 = 0x3f8;
/// Line status register: transmitter holding register empty (with FIFOs on: the whole transmit
/// FIFO is empty).
const LSR_THR_EMPTY: u8 = 1 << 5;
/// The 16550's transmit FIFO holds 16 bytes.
const TX_FIFO: u8 = 16;

/// The COM1 UART.
#[derive(Debug)]
pub(super) struct Serial {
    data: Port<u8>,
    line_status: Port<u8>,
    /// Bytes the transmit FIFO still takes without looking at the line status: every port
    /// access is an exit to the hypervisor (about 2 us each under QEMU TCG), so the status is
    /// read once per FIFO-full instead of once per byte.
    room: u8,
}

impl Serial {
    /// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
    pub(super) fn com1() -> Self {
        let mut s = Self::com1_unlocked();
        // SAFETY: ports COM1+1..COM1+4 are the UART's own registers; programming them has no
        // effect on memory.
        let (mut ier, mut fcr, mut lcr, mut mcr) = unsafe {
            (
                Port::<u8>::new(COM1_BASE + 1),
                Port::<u8>::new(COM1_BASE + 2),
                Port::<u8>::new(COM1_BASE + 3),
                Port::<u8>::new(COM1_BASE + 4),
            )
        };
        ier.write(0x00);
        lcr.write(0x80); // DLAB on: the next two writes set the divisor
        s.data.write(0x01); // divisor 1 = 115200 baud
        ier.write(0x00);
        lcr.write(0x03); // 8 bits, no parity, one stop bit, DLAB off
        fcr.write(0xc7); // FIFOs on and cleared, 14-byte threshold
        mcr.write(0x03); // DTR, RTS
        s
    }

    /// COM1 without programming it (for emergency output, when it is already programmed).
    pub(super) fn com1_unlocked() -> Self {
        // SAFETY: the data and line-status registers of COM1; reading or writing them only moves
        // bytes through the UART.
        unsafe {
            Self {
                data: Port::new(COM1_BASE),
                line_status: Port::new(COM1_BASE + 5),
                room: 0,
            }
        }
    }

    fn send(&mut self, byte: u8) {
        if self.room == 0 {
            // Bounded: a UART that never drains (none attached) must not hang the kernel.
            for _ in 0..100_000 {
                if self.line_status.read() & LSR_THR_EMPTY != 0 {
                    break;
                }
                core::hint::spin_loop();
            }
            self.room = TX_FIFO;
        }
        self.data.write(byte);
        self.room -= 1;
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.send(b'\r');
            }
            self.send(b);
        }
        Ok(())
    }
}
