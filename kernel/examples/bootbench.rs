//! The trivial application `cargo xtask bench boot` times: it returns at once, so a boot is
//! QEMU's start, the firmware, the kernel's initialisation and the exit.
//!
//! With `clock=SECS` on the command line it instead prints `vireo-clock: ns=N` (the clock's
//! reading) every 100 ms for SECS seconds; the host timestamps each line as it arrives and so
//! measures the clock's rate against its own.
//!
//! vireo-test: app

#![no_std]
#![no_main]

use core::time::Duration;

use vireo::time::{self, Instant};

vireo::main!(main);

/// Time between two clock lines.
const MARK_EVERY: Duration = Duration::from_millis(100);

fn main() -> Result<(), &'static str> {
    let cmdline = vireo::boot_info().cmdline();
    let Some(secs) = cmdline.split(' ').find_map(|w| w.strip_prefix("clock=")) else {
        return Ok(());
    };
    let secs: u64 = secs.parse().map_err(|_| "clock=SECS needs a number")?;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut next = Instant::now();
    loop {
        // The line goes out right after the reading; printing takes the same time every line.
        vireo::println!(
            "vireo-clock: ns={}",
            Instant::now().since_start().as_nanos()
        );
        if next >= end {
            return Ok(());
        }
        next += MARK_EVERY;
        time::sleep(next.saturating_duration_since(Instant::now()));
    }
}
