//! The 8254 PIT's channel 2 as a reference clock: gated through port 0x61, its OUT2 level is
//! readable there too, so a one-shot count can be timed without interrupts.

use crate::arch::port::Port;

/// The PIT's input clock, in Hz.
pub(super) const PIT_HZ: u64 = 1_193_182;

const PORT_CHANNEL2: u16 = 0x42;
const PORT_COMMAND: u16 = 0x43;
const PORT_GATE: u16 = 0x61;
/// Port 0x61: channel 2 gate input.
const GATE2: u8 = 1 << 0;
/// Port 0x61: speaker data enable (kept off).
const SPEAKER: u8 = 1 << 1;
/// Port 0x61: channel 2 output level.
const OUT2: u8 = 1 << 5;
/// Channel 2, low byte then high byte, mode 0 (interrupt on terminal count), binary.
const CHANNEL2_MODE0: u8 = 0b1011_0000;

/// Most polls of OUT2 in one measurement (a missing PIT must not hang the boot).
const MAX_POLLS: u64 = 20_000_000;

/// Counts `latch` PIT cycles on channel 2 and returns how many `counter` units passed meanwhile, or
/// `None` if OUT2 misbehaves (no PIT) or the wait exceeds `max_counter_units` or the poll budget.
pub(super) fn time_against(
    latch: u16,
    max_counter_units: u64,
    counter: impl Fn() -> u64,
) -> Option<u64> {
    // SAFETY: ports 0x42, 0x43 and 0x61 are the PIT's channel 2, its mode register and the
    // system control port B; programming them affects only timer 2 and the (disabled) speaker.
    let (mut data, mut command, mut gate) = unsafe {
        (
            Port::<u8>::new(PORT_CHANNEL2),
            Port::<u8>::new(PORT_COMMAND),
            Port::<u8>::new(PORT_GATE),
        )
    };
    let saved = gate.read();
    gate.write((saved & !SPEAKER) | GATE2);
    command.write(CHANNEL2_MODE0);
    data.write(latch as u8);
    data.write((latch >> 8) as u8);
    let start = counter();
    // Mode 0 drives OUT2 low when the count is written; high already means there is no PIT.
    let mut result = None;
    if gate.read() & OUT2 == 0 {
        for _ in 0..MAX_POLLS {
            let now = counter();
            if gate.read() & OUT2 != 0 {
                result = Some(counter() - start);
                break;
            }
            if now - start > max_counter_units {
                break;
            }
        }
    }
    gate.write(saved & !(SPEAKER | GATE2));
    result
}
