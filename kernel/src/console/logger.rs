//! The `log` backend: every record goes to the console with its level and target.
//!
//! The level comes from the command line: `log=error|warn|info|debug|trace|off` (default `info`).

use log::{LevelFilter, Log, Metadata, Record};

struct ConsoleLogger;

static LOGGER: ConsoleLogger = ConsoleLogger;

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            crate::println!(
                "[{:>5} {}] {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Parses `log=LEVEL` out of a command line (`None` if absent or not a level; a bad value is
/// reported at boot by [`crate::cmdline`]).
pub fn level_from_cmdline(cmdline: &str) -> Option<LevelFilter> {
    crate::cmdline::level_in(cmdline)
}

/// Installs the console logger with the level named on `cmdline` (`info` by default).
pub fn init(cmdline: &str) {
    // A second call finds the logger installed; only the level changes.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level_from_cmdline(cmdline).unwrap_or(LevelFilter::Info));
}
