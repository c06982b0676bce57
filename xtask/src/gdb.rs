//! `--gdb`: QEMU starts halted with a gdb stub on a free loopback port, and `xtask` prints the
//! debugger command that loads the image's symbols, connects, and stops at the application's
//! `main`.

use std::{path::Path, process::Command};

use crate::{httpcheck, scaffold};

/// The function `vireo::main!` defines around the application's `main` (unmangled, so it has
/// the same name in every image; the application's `main` is usually inlined into it).
const APP_ENTRY: &str = "__vireo_app_main";

/// Adds a gdb stub to `cmd` (QEMU waits for the debugger before the first instruction) and prints
/// the `rust-gdb` command line for `elf`.
pub fn attach(cmd: &mut Command, elf: &Path) -> Result<(), String> {
    let port = httpcheck::free_port()?;
    cmd.arg("-gdb")
        .arg(format!("tcp:127.0.0.1:{port}"))
        .arg("-S");
    eprintln!(
        "xtask: QEMU is halted until a debugger connects; in another terminal run:\n  {}",
        command_line(elf, port)
    );
    Ok(())
}

/// The debugger's command line. The breakpoint is a hardware one: the firmware copies the image
/// into memory after the debugger connects, over any software breakpoint written there first
/// (under KVM; TCG keeps its breakpoints outside guest memory).
fn command_line(elf: &Path, port: u16) -> String {
    format!(
        "rust-gdb -q {} -ex 'target remote 127.0.0.1:{port}' -ex 'hbreak {APP_ENTRY}' -ex continue",
        scaffold::sh_word(&elf.display().to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_command() {
        assert_eq!(
            command_line(Path::new("/t/debug/app"), 4321),
            "rust-gdb -q /t/debug/app -ex 'target remote 127.0.0.1:4321' \
             -ex 'hbreak __vireo_app_main' -ex continue"
        );
        assert!(
            command_line(Path::new("/my dir/app"), 1).starts_with("rust-gdb -q '/my dir/app' ")
        );
    }
}
