//! What a fresh machine lacks: the kernel target and QEMU.

use std::{
    path::Path,
    process::{Command, Stdio},
};

/// The target the kernel crates build for.
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

/// Makes sure the kernel target and QEMU are installed.
pub fn ensure_all() -> Result<(), String> {
    ensure_target()?;
    ensure_qemu()
}

fn ensure_target() -> Result<(), String> {
    let root = crate::artifacts::workspace_root();
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(&root)
        .output()
        .map_err(|e| {
            format!("cannot run rustc ({e}): install Rust with rustup (https://rustup.rs)")
        })?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(KERNEL_TARGET)
        .is_dir()
    {
        return Ok(());
    }
    eprintln!("xtask: installing the {KERNEL_TARGET} target (rustup target add)");
    // The toolchain file in the workspace root selects the pinned toolchain; never self-update.
    let status = Command::new("rustup")
        .args(["target", "add", KERNEL_TARGET])
        .current_dir(&root)
        .status()
        .map_err(|e| {
            format!(
                "cannot run rustup ({e}) to add the {KERNEL_TARGET} target: install rustup \
                 (https://rustup.rs), or add the target to your Rust installation"
            )
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`rustup target add {KERNEL_TARGET}` failed; run it in {}",
            root.display()
        ))
    }
}

/// The QEMU binary Vireo boots with.
pub const QEMU: &str = "qemu-system-x86_64";

fn qemu_present() -> bool {
    Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_qemu() -> Result<(), String> {
    if qemu_present() {
        return Ok(());
    }
    // Without recommends: qboot (qemu-system-data) and SeaBIOS are dependencies, and the
    // recommended packages (GUI, audio, OVMF, block back-ends) are nothing a headless boot uses.
    const INSTALL: &str =
        "apt-get update && apt-get install -y --no-install-recommends qemu-system-x86";
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let has_apt = Path::new("/usr/bin/apt-get").exists();
    if !(is_root && has_apt) {
        return Err(format!(
            "{QEMU} is not installed. Install it, e.g. on Debian/Ubuntu: sudo sh -c '{INSTALL}'"
        ));
    }
    eprintln!("xtask: {QEMU} is missing; installing it: {INSTALL}");
    let status = Command::new("sh")
        .args(["-c", INSTALL])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if status.success() && qemu_present() {
        Ok(())
    } else {
        Err(format!("installing QEMU failed; run: {INSTALL}"))
    }
}
