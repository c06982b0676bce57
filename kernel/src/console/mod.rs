//! The console: COM1 serial, [`print!`](crate::print)/[`println!`](crate::println), and the `log` backend.

mod logger;
mod serial;

use core::fmt;

pub use logger::init as init_logger;
use serial::Serial;
use spin::Mutex;

static COM1: Mutex<Option<Serial>> = Mutex::new(None);

/// Brings up COM1 (115200 8N1). Output before this is dropped.
pub fn init() {
    let mut com1 = COM1.lock();
    if com1.is_none() {
        *com1 = Some(Serial::com1());
    }
}

/// Writes formatted text to the console; interrupts are held off so an interrupt handler that prints
/// cannot deadlock on the console lock.
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        if let Some(serial) = COM1.lock().as_mut() {
            let _ = fmt::Write::write_fmt(serial, args);
        }
    });
}

/// Writes to the console even if its lock is held (a panic or fault in the middle of a print).
///
/// Output may interleave with the interrupted print; that is better than losing a crash report.
#[doc(hidden)]
pub fn _print_emergency(args: fmt::Arguments<'_>) {
    if let Some(mut guard) = COM1.try_lock() {
        if let Some(serial) = guard.as_mut() {
            let _ = fmt::Write::write_fmt(serial, args);
        }
        return;
    }
    let _ = fmt::Write::write_fmt(&mut Serial::com1_unlocked(), args);
}

/// Prints to the serial console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints to the serial console, with a newline.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
