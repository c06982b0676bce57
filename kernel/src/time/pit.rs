//! The 8254 PIT's channel 2 as a reference clock. Channel 2 is gated through port 0x61 and raises
//! no interrupt, so it can be counted down freely while the TSC is compared against it.
//!
//! The count is read with the counter-latch command rather than by waiting for OUT2 to rise:
//! an emulated PIT computes a latched count from its clock at the moment of the read, while OUT2
//! rises only when the emulator's timer fires, which a loaded host can delay.

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
/// Channel 2, low byte then high byte, mode 0 (interrupt on terminal count), binary.
const CHANNEL2_MODE0: u8 = 0b1011_0000;
/// Counter-latch command for channel 2.
const CHANNEL2_LATCH: u8 = 0b1000_0000;

/// Most count reads in one measurement (a missing PIT must not hang the boot).
const MAX_POLLS: u32 = 1_000_000;

/// One measurement: how many `counter` units passed while the PIT counted `counts` cycles.
#[derive(Debug, Clone, Copy)]
pub(super) struct Measurement {
    /// Units of the measured counter.
    pub units: u64,
    /// PIT cycles.
    pub counts: u64,
    /// How far off `units` may be: the widths of the two reads' brackets.
    pub uncertainty: u64,
}

/// One latched read: the count, the counter at the latch (midpoint estimate) and the width of the
/// bracket around the latch command.
#[derive(Clone, Copy)]
struct Read {
    count: u16,
    at: u64,
    width: u64,
}

/// Reads taken at each end of a measurement; the one with the narrowest bracket is used, so a
/// vCPU descheduled in the middle of one read does not skew the result.
const READS_PER_END: usize = 4;

struct Channel2 {
    data: Port<u8>,
    command: Port<u8>,
}

impl Channel2 {
    /// Latches and reads the count, with the counter's value at the latch (the midpoint of
    /// readings just before and after the latch command).
    fn read(&mut self, counter: &impl Fn() -> u64) -> Read {
        let before = counter();
        self.command.write(CHANNEL2_LATCH);
        let after = counter();
        let lo = self.data.read();
        let hi = self.data.read();
        let width = after.wrapping_sub(before);
        Read {
            count: u16::from_le_bytes([lo, hi]),
            at: before + width / 2,
            width,
        }
    }

    /// The read with the narrowest bracket out of `first` and `READS_PER_END - 1` more.
    fn best_read(&mut self, first: Read, counter: &impl Fn() -> u64) -> Read {
        let mut best = first;
        for _ in 1..READS_PER_END {
            let r = self.read(counter);
            if r.width < best.width {
                best = r;
            }
        }
        best
    }
}

/// Lets the PIT count down at least `window` cycles (at most 65_000) and returns how far `counter`
/// advanced meanwhile. `None` if the PIT does not count (absent) or the wait exceeds
/// `max_counter_units` or the poll budget.
pub(super) fn measure(
    window: u16,
    max_counter_units: u64,
    counter: impl Fn() -> u64,
) -> Option<Measurement> {
    let window = window.min(65_000);
    // SAFETY: ports 0x42, 0x43 and 0x61 are the PIT's channel 2, its mode register and the
    // system control port B; programming them affects only timer 2 and the (disabled) speaker.
    let (mut ch2, mut gate) = unsafe {
        (
            Channel2 {
                data: Port::new(PORT_CHANNEL2),
                command: Port::new(PORT_COMMAND),
            },
            Port::<u8>::new(PORT_GATE),
        )
    };
    let saved = gate.read();
    gate.write((saved & !SPEAKER) | GATE2);
    ch2.command.write(CHANNEL2_MODE0);
    ch2.data.write(0xff);
    ch2.data.write(0xff);
    // The first read may see the count before it was loaded; start from the next ones.
    let _ = ch2.read(&counter);
    let first = ch2.read(&counter);
    let start = ch2.best_read(first, &counter);
    let mut result = None;
    for _ in 0..MAX_POLLS {
        let r = ch2.read(&counter);
        if r.count > start.count || r.at.wrapping_sub(start.at) > max_counter_units {
            break; // wrapped or reloaded (not a counting PIT), or too slow
        }
        if start.count - r.count >= window {
            let end = ch2.best_read(r, &counter);
            if end.count > start.count {
                break;
            }
            result = Some(Measurement {
                units: end.at - start.at,
                counts: u64::from(start.count - end.count),
                uncertainty: start.width + end.width,
            });
            break;
        }
    }
    gate.write(saved & !(SPEAKER | GATE2));
    result
}
