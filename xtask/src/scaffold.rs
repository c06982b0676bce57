//! `cargo xtask new PATH [--name NAME]`: an application crate anywhere on disk that links this
//! checkout's Vireo and boots with `cargo run` (through `xtask runner`, see `runner.rs`).

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::artifacts;

/// Names a package cannot take next to its `vireo` dependency or the standard crates.
const RESERVED: [&str; 5] = ["vireo", "core", "alloc", "std", "test"];

/// Creates the application crate at `path` (which must not exist, or be an empty directory).
/// Returns the directory created.
pub fn create(path: &Path, name: Option<&str>) -> Result<PathBuf, String> {
    let name = match name {
        Some(n) => n.to_string(),
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("`{}` names no directory: give --name", path.display()))?,
    };
    check_name(&name)?;
    if path.exists() {
        let empty = fs::read_dir(path)
            .map_err(|e| format!("{} exists and cannot be read: {e}", path.display()))?
            .next()
            .is_none();
        if !empty {
            return Err(format!(
                "{} exists and is not empty: choose a new directory",
                path.display()
            ));
        }
    }
    let root = artifacts::workspace_root();
    let files = files(&name, &root)?;
    for (rel, text) in &files {
        let file = path.join(rel);
        let dir = file.parent().expect("every file has a directory");
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        fs::write(&file, text).map_err(|e| format!("writing {}: {e}", file.display()))?;
    }
    // The dependency versions this checkout is tested with (cargo drops what the app does not use).
    let lock = path.join("Cargo.lock");
    fs::copy(root.join("Cargo.lock"), &lock)
        .map_err(|e| format!("writing {}: {e}", lock.display()))?;
    fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A package name cargo accepts that does not shadow what the application links.
fn check_name(name: &str) -> Result<(), String> {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !first_ok || !rest_ok {
        return Err(format!(
            "`{name}` is not a package name: use letters, digits, `-` and `_`, starting with a \
             letter (give one with --name)"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "`{name}` would shadow a crate the application links: give another with --name"
        ));
    }
    Ok(())
}

/// A TOML basic string holding `s`.
fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `s` as one shell word (single-quoted when it needs to be).
pub fn sh_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The runner line of `.cargo/config.toml`: `xtask runner` run from this checkout (so its own
/// configuration and toolchain apply, and it is rebuilt when it changes), told where the
/// application is (`cargo run` there replaces `CARGO_MANIFEST_DIR`) and where cargo ran it (the
/// image's path may be relative to that directory).
fn runner_line(root: &Path) -> String {
    let script = format!(
        "cwd=$PWD; cd {} && exec cargo run --quiet --package xtask -- runner \
         --app-dir \"$CARGO_MANIFEST_DIR\" --cwd \"$cwd\" \"$@\"",
        sh_word(&root.display().to_string())
    );
    format!(
        "runner = [\"sh\", \"-c\", {}, \"vireo-runner\"]",
        toml_str(&script)
    )
}

/// The files of a new application crate, by path relative to its directory.
fn files(name: &str, root: &Path) -> Result<Vec<(&'static str, String)>, String> {
    let toolchain = fs::read_to_string(root.join("rust-toolchain.toml"))
        .map_err(|e| format!("reading this checkout's rust-toolchain.toml: {e}"))?;
    let kernel = root.join("kernel");
    let ident = name.replace('-', "_");
    let cargo_toml = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
# The Vireo checkout this crate was created from.
vireo = {{ path = {kernel} }}

[[bin]]
name = "{name}"
path = "src/main.rs"
# There is no libtest on x86_64-unknown-none: tests are images of their own under tests/.
test = false
bench = false

# An in-QEMU test image: `cargo test` boots it through the runner.
[[test]]
name = "boots"
harness = false

[profile.dev]
# Vireo's own setting: unoptimised kernel code is slow under emulation.
opt-level = 1

[profile.release]
debug = 1

# A workspace of its own, wherever the directory is.
[workspace]
"#,
        kernel = toml_str(&kernel.display().to_string()),
    );
    let config = format!(
        r#"# Everything here builds for Vireo's target; `cargo run` and `cargo test` boot in QEMU.
[build]
target = "x86_64-unknown-none"

[target.x86_64-unknown-none]
# The image is linked at fixed addresses and never relocated.
rustflags = ["-C", "relocation-model=static"]
# `cargo xtask run`'s boot code, in the Vireo checkout. Options for it go in the environment:
# VIREO_RUN="--gdb" cargo run   (also --accel kvm|tcg, --machine q35|microvm, --qemu-arg ARG)
{runner}
"#,
        runner = runner_line(root)
    );
    let main_rs = format!(
        r#"//! {name}: a Vireo application.
//!
//! `cargo run` builds this image and boots it in QEMU; words after `--` go to the kernel
//! command line (`cargo run -- log=debug`). The `vireo-run:` lines below are what QEMU attaches:
//! a scratch disk (`{{disk:NAME:SIZE}}` is a fresh zero-filled image under `target/vireo-disks/`)
//! and a network card on QEMU's user network (the host is 10.0.2.2).
//!
//! vireo-run: qemu -device virtio-blk-pci,drive=scratch,disable-legacy=on,serial=scratch
//! vireo-run: qemu -drive if=none,id=scratch,format=raw,file={{disk:scratch:16M}}
//! vireo-run: qemu -device virtio-net-pci,netdev=net0,disable-legacy=on -netdev user,id=net0

#![no_std]
#![no_main]

extern crate alloc;

use vireo::{{block, net, println}};

vireo::main!(main);

/// Returning `Ok` ends QEMU with success (`cargo run` exits 0); an error or a panic fails it.
fn main() -> Result<(), block::BlockError> {{
    println!("hello from {name}");
    println!("command line: {{:?}}", vireo::boot_info().cmdline());
    if let Some(disk) = block::by_serial("scratch") {{
        let size = disk.info().block_size as usize;
        let data = alloc::vec![0x5a; size];
        disk.write(0, &data)?;
        let mut back = alloc::vec![0; size];
        disk.read(0, &mut back)?;
        assert_eq!(back, data, "the scratch disk gave back other bytes");
        println!("{{disk}}: wrote and read back one block");
    }}
    for dev in net::devices() {{
        match dev.wait_for_address(core::time::Duration::from_secs(2)) {{
            Ok(cidr) => println!("{{dev}}: {{cidr}}"),
            Err(e) => println!("{{dev}}: no address ({{e}})"),
        }}
    }}
    Ok(())
}}
"#
    );
    let test_rs = r#"//! An in-QEMU test image: `cargo test` boots it and counts its cases. Each case runs on a
//! booted kernel; a panic fails it. `vireo-test:` lines (like the application's `vireo-run:`
//! ones) attach devices: `vireo-test: qemu -device ...`, `vireo-test: timeout 30`.

#![no_std]
#![no_main]

extern crate alloc;

vireo::test_main!(the_heap_works, the_clock_runs);

fn the_heap_works() {
    let v: alloc::vec::Vec<u64> = (1..=100).collect();
    assert_eq!(v.iter().sum::<u64>(), 5050);
}

fn the_clock_runs() {
    let start = vireo::time::Instant::now();
    vireo::time::sleep(core::time::Duration::from_millis(20));
    assert!(start.elapsed() >= core::time::Duration::from_millis(20));
}
"#
    .to_string();
    let readme = format!(
        r#"# {name}

A Vireo application: this crate and the Vireo kernel are one bootable image
(Vireo checkout: `{root}`).

```sh
cargo run                        # build and boot in QEMU; serial output here, the app's exit status
cargo run -- log=debug           # words after -- go to the kernel command line
cargo run --release
cargo test                       # boot each image under tests/ and count its cases
VIREO_RUN=--gdb cargo run        # start halted with a gdb stub; prints the gdb command
VIREO_RUN="--accel kvm" cargo run
```

`.cargo/config.toml` builds for `x86_64-unknown-none` and makes `xtask runner` (the code of
`cargo xtask run` in the Vireo checkout) the runner: it picks the accelerator, the firmware,
creates the disks named in the `vireo-run:` lines of `src/main.rs`, and maps the guest's exit.
The symbols for a debugger are in `target/x86_64-unknown-none/debug/{name}`; the application's
`main` is `{ident}::main`.
"#,
        root = root.display()
    );
    Ok(vec![
        ("Cargo.toml", cargo_toml),
        ("rust-toolchain.toml", toolchain),
        (".cargo/config.toml", config),
        (".gitignore", "/target\n".to_string()),
        ("src/main.rs", main_rs),
        ("tests/boots.rs", test_rs),
        ("README.md", readme),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("my-app").is_ok());
        assert!(check_name("_x9").is_ok());
        assert!(check_name("9lives").is_err());
        assert!(check_name("my app").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("vireo").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(sh_word("it's"), r#"'it'\''s'"#);
        assert_eq!(sh_word("/a/b-1.x"), "/a/b-1.x");
        let line = runner_line(Path::new("/src/vi reo"));
        assert!(line.starts_with("runner = [\"sh\", \"-c\", \"cwd=$PWD; cd '/src/vi reo' && exec"));
        assert!(
            line.contains("--app-dir \\\"$CARGO_MANIFEST_DIR\\\" --cwd \\\"$cwd\\\" \\\"$@\\\"")
        );
    }

    #[test]
    fn refuses_a_non_empty_directory() {
        let dir = std::env::temp_dir().join(format!("vireo-scaffold-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("x"), "").unwrap();
        let err = create(&dir, Some("app")).unwrap_err();
        assert!(err.contains("not empty"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
