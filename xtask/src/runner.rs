//! Booting an application image: the body of `cargo xtask run`, and the cargo runner of
//! applications outside this repository (`xtask runner`, written into their
//! `.cargo/config.toml` by `cargo xtask new`).
//!
//! One implementation serves both: `cargo xtask run` builds an example and calls [`boot_app`];
//! the runner is handed an image cargo built, finds its source file (for the `vireo-run:` or
//! `vireo-test:` directives) through `cargo metadata`, and calls [`boot_app`] for an
//! application or the test harness's own boot-and-judge code for a test image.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use crate::{
    Common, accel, artifacts,
    artifacts::Image,
    directives, gdb,
    qemu::{self, Accel},
    setup, test,
};

/// One boot of an application image.
#[derive(Debug)]
pub struct App<'a> {
    /// The ELF file QEMU boots.
    pub elf: &'a Path,
    /// The source file whose `//! vireo-run:` lines say what QEMU attaches.
    pub source: &'a Path,
    /// Names the disk images the boot creates.
    pub scope: &'a str,
    /// `--release`, `--accel`, `--machine`, `--qemu-arg`.
    pub common: &'a Common,
    /// Start halted with a gdb stub (`--gdb`).
    pub gdb: bool,
    /// Words for the kernel command line.
    pub app_args: &'a [String],
}

/// Boots `app` with serial on stdout and returns the guest's verdict as the exit status.
pub fn boot_app(app: &App<'_>) -> Result<ExitCode, String> {
    let choice = accel::choose(app.common.accel)?;
    eprintln!("xtask: {choice}");
    let mut dirs = directives::parse_file(app.source, "vireo-run:")?;
    dirs.machine = app.common.machine.unwrap_or_default();
    let mut cmd = qemu::command(
        app.elf,
        choice.accel,
        &dirs,
        &app.app_args.join(" "),
        app.scope,
    )?;
    cmd.args(&app.common.qemu_args);
    if app.gdb {
        gdb::attach(&mut cmd, app.elf)?;
    }
    eprintln!("xtask: booting {}", app.elf.display());
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start QEMU ({}): {e}", setup::QEMU))?;
    Ok(match qemu::outcome(status) {
        qemu::Outcome::Success => ExitCode::SUCCESS,
        other => {
            eprintln!("xtask: {other}");
            if other == qemu::Outcome::Other(1) && !app.common.qemu_args.is_empty() {
                eprintln!(
                    "xtask: QEMU refuses to start when an argument is wrong (its message is \
                     above); check the --qemu-arg values {:?}: each is one QEMU word, so an \
                     option and its value are two (--qemu-arg -m --qemu-arg 512M)",
                    app.common.qemu_args
                );
            }
            ExitCode::FAILURE
        }
    })
}

/// The environment variable whose words are `xtask` options for the runner (`--gdb`,
/// `--accel tcg`, `--machine microvm`, `--qemu-arg ARG`): cargo passes the runner only the image
/// and the application's own arguments.
pub const OPTIONS_VAR: &str = "VIREO_RUN";

/// `xtask runner [--app-dir DIR] [--cwd DIR] IMAGE [ARGS...]`: what cargo calls for `cargo run`
/// and `cargo test` in an application crate; IMAGE is relative to `--cwd` (where cargo ran).
pub fn main(args: &[String]) -> Result<ExitCode, String> {
    let mut it = args.iter();
    let (mut app_dir, mut cwd) = (None, None);
    let elf = loop {
        match it.next().map(String::as_str) {
            Some("--app-dir") => app_dir = it.next().filter(|d| !d.is_empty()).map(PathBuf::from),
            Some("--cwd") => cwd = it.next().filter(|d| !d.is_empty()).map(PathBuf::from),
            Some(path) => break cwd.unwrap_or_default().join(path),
            None => return Err("runner: cargo passed no image to boot".into()),
        }
    };
    let app_args: Vec<String> = it.cloned().collect();
    let env_words: Vec<String> = std::env::var(OPTIONS_VAR)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut common = Common::default();
    let mut gdb = false;
    for word in crate::parse_common(&env_words, &mut common)? {
        match word.as_str() {
            "--gdb" => gdb = true,
            other => {
                return Err(format!(
                    "{OPTIONS_VAR}: unknown option `{other}` (it takes --gdb, --accel kvm|tcg, \
                     --machine q35|microvm, --qemu-arg ARG)"
                ));
            }
        }
    }
    let elf =
        std::fs::canonicalize(&elf).map_err(|e| format!("runner: image {}: {e}", elf.display()))?;
    // Disk images go under the application's target directory, not this checkout's.
    if let Some(target) = target_dir_of(&elf) {
        artifacts::set_target_dir(target);
    }
    let dir = match app_dir.or_else(|| std::env::var_os("CARGO_MANIFEST_DIR").map(Into::into)) {
        Some(d) => d,
        None => std::env::current_dir().map_err(|e| format!("runner: {e}"))?,
    };
    let kind = kind_of(&elf);
    let name = target_name(&elf, kind);
    let source = source_of(&dir, kind, &name)?;
    setup::ensure_all()?;
    if kind == "test" {
        if !app_args.is_empty() {
            eprintln!("xtask: a test image takes no arguments; ignoring {app_args:?}");
        }
        return run_test(elf, source, name, &common);
    }
    boot_app(&App {
        elf: &elf,
        source: &source,
        scope: &name,
        common: &common,
        gdb,
        app_args: &app_args,
    })
}

/// Boots a test image as `cargo xtask test` does (same directives, time limit and judging).
fn run_test(
    elf: PathBuf,
    source: PathBuf,
    name: String,
    common: &Common,
) -> Result<ExitCode, String> {
    // As under `cargo xtask test`: TCG unless asked otherwise.
    let accel = accel::choose(Some(common.accel.unwrap_or(Accel::Tcg)))?;
    let image = Image {
        name,
        path: elf,
        source,
        app: false,
    };
    let tally = test::qemu_tests(
        std::slice::from_ref(&image),
        test::How {
            accel: accel.accel,
            extra: &common.qemu_args,
            show: false,
            machine: common.machine,
        },
    );
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The cargo target directory an image under `TARGET/x86_64-unknown-none/PROFILE/...` lives in.
fn target_dir_of(elf: &Path) -> Option<PathBuf> {
    elf.ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == setup::KERNEL_TARGET))
        .and_then(Path::parent)
        .map(Path::to_path_buf)
}

/// The cargo target kind of an image from where cargo put it: `test` (`deps/NAME-HASH`),
/// `example` (`examples/NAME`) or `bin`.
fn kind_of(elf: &Path) -> &'static str {
    match elf
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
    {
        Some("deps") => "test",
        Some("examples") => "example",
        _ => "bin",
    }
}

/// The target name of an image: its file name, without the hash cargo adds to a test.
fn target_name(elf: &Path, kind: &str) -> String {
    let file = elf
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match file.rsplit_once('-') {
        Some((name, _hash)) if kind == "test" => name.to_string(),
        _ => file,
    }
}

/// The source file of the target `name` of kind `kind` in the package at `dir`.
fn source_of(dir: &Path, kind: &str, name: &str) -> Result<PathBuf, String> {
    let manifest = dir.join("Cargo.toml");
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|e| format!("runner: cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "runner: cargo metadata for {} failed: {}",
            manifest.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("runner: cargo metadata: {e}"))?;
    find_source(&meta, &manifest, kind, name).ok_or_else(|| {
        format!(
            "runner: no {kind} target `{name}` in {} (the runner boots the package's binaries, \
             examples and tests)",
            manifest.display()
        )
    })
}

/// Finds the target in `cargo metadata` output; a test's file name has `_` for the name's `-`.
fn find_source(
    meta: &serde_json::Value,
    manifest: &Path,
    kind: &str,
    name: &str,
) -> Option<PathBuf> {
    let packages = meta["packages"].as_array()?;
    let package = packages
        .iter()
        .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest))
        .or_else(|| packages.first())?;
    package["targets"].as_array()?.iter().find_map(|t| {
        let kinds = t["kind"].as_array()?;
        let tname = t["name"].as_str()?;
        let matches = if kind == "test" {
            tname.replace('-', "_") == name
        } else {
            tname == name
        };
        let src = t["src_path"].as_str()?;
        (matches && kinds.iter().any(|k| k == kind)).then(|| PathBuf::from(src))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_cargo_puts_images() {
        let t = Path::new("/a/target/x86_64-unknown-none/debug/deps/my_test-0123abcd");
        assert_eq!(kind_of(t), "test");
        assert_eq!(target_name(t, "test"), "my_test");
        assert_eq!(target_dir_of(t), Some(PathBuf::from("/a/target")));
        let b = Path::new("/a/target/x86_64-unknown-none/release/my-app");
        assert_eq!(kind_of(b), "bin");
        assert_eq!(target_name(b, "bin"), "my-app");
        assert_eq!(
            kind_of(Path::new("/t/x86_64-unknown-none/debug/examples/e")),
            "example"
        );
        assert_eq!(target_dir_of(Path::new("/elsewhere/app")), None);
    }

    #[test]
    fn sources_from_metadata() {
        let meta = serde_json::json!({"packages": [{
        "manifest_path": "/app/Cargo.toml",
        "targets": [
            {"name": "my-app", "kind": ["bin"], "src_path": "/app/src/main.rs"},
            {"name": "disk-io", "kind": ["test"], "src_path": "/app/tests/disk-io.rs"},
        ]}]});
        let m = Path::new("/app/Cargo.toml");
        assert_eq!(
            find_source(&meta, m, "bin", "my-app"),
            Some(PathBuf::from("/app/src/main.rs"))
        );
        assert_eq!(
            find_source(&meta, m, "test", "disk_io"),
            Some(PathBuf::from("/app/tests/disk-io.rs"))
        );
        assert_eq!(find_source(&meta, m, "test", "my-app"), None);
    }
}
