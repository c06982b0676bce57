//! The 8254 PIT's channel 2 as a free-running reference counter. Channel 2 is gated through port
//! 0x61 and raises no interrupt; once started it counts down from 0xffff in mode 0 and keeps
//! counting (wrapping every 55 ms) for good, so a later reading can be compared with an earlier
//! one as long as the TSC says how many wraps lie between them.
//!
//! The count is read with the counter-latch command rather than by waiting for OUT2 to rise: an
//! emulated PIT computes a latched count from its clock at the moment of the read, while OUT2
//! rises only when the emulator's timer fires, which a loaded host can delay.

use core::sync::atomic::{AtomicBool, Ordering};

use super::{reference::Stamp, tsc::rdtsc};
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

/// Reads without a change of count after which the PIT is taken as absent. A counting PIT
/// changes every 838 ns and a port read takes far more than 838 / 256 ns, so a present PIT
/// always changes within this many reads; a missing one reads 0xffff for ever.
const STILL_READS: u32 = 256;

/// Whether channel 2 has been started (it is never reprogrammed afterwards: a calibration in
/// progress compares against its running count).
static STARTED: AtomicBool = AtomicBool::new(false);

/// PIT channel 2, counting.
pub(super) struct Pit {
    data: Port<u8>,
    command: Port<u8>,
}

impl Pit {
    /// Starts channel 2 (the first time only) and checks that it counts. `None` if it does not:
    /// no PIT (QEMU `-machine microvm,pit=off`).
    pub(super) fn start() -> Option<Pit> {
        // SAFETY: ports 0x42, 0x43 and 0x61 are the PIT's channel 2, its mode register and the
        // system control port B; programming them affects only timer 2 and the (disabled)
        // speaker, and without a PIT the writes go nowhere.
        let (mut pit, mut gate) = unsafe {
            (
                Pit {
                    data: Port::new(PORT_CHANNEL2),
                    command: Port::new(PORT_COMMAND),
                },
                Port::<u8>::new(PORT_GATE),
            )
        };
        if !STARTED.swap(true, Ordering::AcqRel) {
            let saved = gate.read();
            gate.write((saved & !SPEAKER) | GATE2);
            pit.command.write(CHANNEL2_MODE0);
            pit.data.write(0xff);
            pit.data.write(0xff);
        }
        let first = pit.count();
        (0..STILL_READS)
            .any(|_| pit.count() != first)
            .then_some(pit)
    }

    /// Latches and reads the count (low byte, then high byte).
    fn count(&mut self) -> u16 {
        self.command.write(CHANNEL2_LATCH);
        u16::from_le_bytes([self.data.read(), self.data.read()])
    }

    /// Ticks counted since the start, modulo 2^16 (the count runs down; this runs up).
    pub(super) fn ticks(&mut self) -> u64 {
        u64::from(0u16.wrapping_sub(self.count()))
    }

    /// The TSC at the moment the count changes: reads until it does, and dates the change by
    /// the reads around it. The count is quantised to 838 ns; its change is an instant the TSC
    /// can bracket far more tightly. `None` if the count stands still.
    pub(super) fn stamp(&mut self) -> Option<Stamp> {
        let mut last = self.count();
        // The TSC just before the previous read's latch command.
        let mut previous_latch = rdtsc();
        for _ in 0..STILL_READS {
            let before = rdtsc();
            self.command.write(CHANNEL2_LATCH);
            let latched = rdtsc();
            let count = u16::from_le_bytes([self.data.read(), self.data.read()]);
            if count != last {
                // The change happened after the previous latch and at or before this one.
                let width = latched.wrapping_sub(previous_latch);
                return Some(Stamp {
                    ticks: u64::from(0u16.wrapping_sub(count)),
                    tsc: previous_latch + width / 2,
                    width,
                });
            }
            last = count;
            previous_latch = before;
        }
        None
    }
}
