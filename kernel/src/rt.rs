//! The runtime: from the boot stub's hand-off to the application's `main` and back out of QEMU.

use core::{fmt::Debug, panic::PanicInfo};

use spin::Once;
use vireo_boot::BootInfo;

use crate::{
    block, console,
    exit::{ExitCode, exit_qemu},
    interrupts, mm, net, pci, println, time,
};

/// What an application's `main` may return: `()` or `Result<(), E>` for any debuggable error.
pub trait Termination {
    /// Turns the value into the image's exit code, printing an error if there is one.
    fn report(self) -> ExitCode;
}

impl Termination for () {
    fn report(self) -> ExitCode {
        ExitCode::Success
    }
}

impl<E: Debug> Termination for Result<(), E> {
    fn report(self) -> ExitCode {
        match self {
            Ok(()) => ExitCode::Success,
            Err(e) => {
                println!("main returned an error: {e:?}");
                ExitCode::Failure
            }
        }
    }
}

/// Names the application's entry point: `vireo::main!(main);` with `fn main() -> impl Termination`.
///
/// The kernel calls it once everything is up; its return value becomes QEMU's exit status.
#[macro_export]
macro_rules! main {
    ($main:path) => {
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub fn __vireo_app_main() -> $crate::exit::ExitCode {
            $crate::Termination::report($main())
        }
    };
}

static BOOT_INFO: Once<BootInfo> = Once::new();

/// What the loader handed over: memory map, command line, ACPI RSDP.
pub fn boot_info() -> &'static BootInfo {
    BOOT_INFO
        .get()
        .expect("boot info is read before anything else runs")
}

unsafe extern "Rust" {
    /// Defined by the application through [`main!`].
    fn __vireo_app_main() -> ExitCode;
}

/// The Rust entry point, called by the boot stub on the boot stack with the PVH `hvm_start_info`.
///
/// # Safety
/// Called once, by the boot stub, with the early page tables live and `start_info` the loader's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vireo_kernel_entry(start_info: u64) -> ! {
    let stub_done = time::rdtsc();
    console::init();
    // SAFETY: the boot stub passes the loader's pointer and the early tables identity-map it.
    let boot_info = match unsafe { BootInfo::from_pvh(start_info) } {
        Ok(info) => info,
        Err(e) => {
            println!("vireo: cannot read the boot hand-off: {e}");
            exit_qemu(ExitCode::Failure);
        }
    };
    let boot_info = BOOT_INFO.call_once(|| boot_info);
    console::init_logger(boot_info.cmdline());
    log::debug!("boot info: {boot_info:?}");
    let mut stages = BootStages::new(stub_done);
    stages.mark("console");
    interrupts::init_cpu();
    stages.mark("cpu");
    mm::init(boot_info);
    stages.mark("mm");
    // After the heap exists: the reports are kept for `cmdline::problems`.
    crate::cmdline::report(boot_info.cmdline());
    stages.mark("cmdline");
    interrupts::init_apic();
    stages.mark("apic");
    time::init();
    stages.mark("time");
    pci::init();
    stages.mark("pci");
    block::init();
    stages.mark("block");
    net::init();
    stages.mark("net");
    stages.report();
    // SAFETY: `__vireo_app_main` is the application's entry, defined by `vireo::main!` with exactly
    // this signature; an image without it does not link.
    let code = unsafe { __vireo_app_main() };
    exit_qemu(code)
}

/// The TSC at the end of each boot stage, reported once the clock runs.
struct BootStages {
    marks: [(&'static str, u64); 10],
    len: usize,
}

impl BootStages {
    /// Starts the list with the boot stub's end (`stub_done`: the TSC on entering Rust).
    fn new(stub_done: u64) -> Self {
        let mut marks = [("", 0); 10];
        marks[0] = ("stub", stub_done);
        Self { marks, len: 1 }
    }

    fn mark(&mut self, stage: &'static str) {
        if let Some(m) = self.marks.get_mut(self.len) {
            *m = (stage, time::rdtsc());
            self.len += 1;
        }
    }

    /// Logs the time from the first instruction to the application's `main` (`info`: `xtask bench
    /// boot` reads this line; printing it is the last thing before `main`, and the only part of
    /// the boot not counted) and, at `debug`, to the end of each stage.
    fn report(&self) {
        let entry = vireo_boot::entry_tsc();
        let us = |tsc: u64| time::cycles_to_duration(tsc.saturating_sub(entry)).as_micros();
        log::info!(
            "boot: first instruction to main in {} us (TSC {} Hz)",
            us(time::rdtsc()),
            time::tsc_frequency()
        );
        if log::log_enabled!(log::Level::Debug) {
            for (stage, tsc) in &self.marks[..self.len] {
                log::debug!("boot: {stage} done at {} us", us(*tsc));
            }
        }
    }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    x86_64::instructions::interrupts::disable();
    crate::console::_print_emergency(format_args!("\nvireo: {info}\n"));
    exit_qemu(ExitCode::Failure)
}
