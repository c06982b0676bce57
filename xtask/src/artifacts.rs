//! Building images with cargo and finding what it produced.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use crate::setup::KERNEL_TARGET;

/// A built image and the source file it came from.
#[derive(Debug, Clone)]
pub struct Image {
    /// Target name (`hello`, `smoke`, ...).
    pub name: String,
    /// The ELF file QEMU boots.
    pub path: PathBuf,
    /// The example's or test's main source file (its `//!` directives configure QEMU).
    pub source: PathBuf,
    /// An application image (example) rather than a test image.
    pub app: bool,
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The target directory of an application outside the workspace, when the cargo runner boots
/// one of its images (its disk images go there).
static APP_TARGET_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Makes [`target_dir`] answer `dir` from now on (the first call wins).
pub fn set_target_dir(dir: PathBuf) {
    let _ = APP_TARGET_DIR.set(dir);
}

/// `target/` of the workspace (or of the application the runner boots).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = APP_TARGET_DIR.get() {
        return dir.clone();
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds the kernel crate's targets selected by `selection` (e.g. `["--example", "hello"]`) and
/// returns the executables of the given kind (`example` or `test`).
fn build(selection: &[&str], release: bool, kind: &str) -> Result<Vec<Image>, String> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(workspace_root())
        .args([
            "build",
            "-p",
            "vireo",
            "--target",
            KERNEL_TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .args(selection)
        .stdout(Stdio::piped());
    if release {
        cmd.arg("--release");
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot run cargo: {e}"))?;
    let mut images = Vec::new();
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading cargo's output: {e}"))?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let kinds = msg["target"]["kind"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !kinds.iter().any(|k| k == kind) {
            continue;
        }
        if let (Some(exe), Some(name), Some(src)) = (
            msg["executable"].as_str(),
            msg["target"]["name"].as_str(),
            msg["target"]["src_path"].as_str(),
        ) {
            images.push(Image {
                name: name.to_string(),
                path: exe.into(),
                source: src.into(),
                app: kind == "example",
            });
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo: {e}"))?;
    if !status.success() {
        return Err("cargo build of the kernel images failed".into());
    }
    images.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(images)
}

/// The names of the kernel's targets in `dir` (`kernel/examples` or `kernel/tests`): every `NAME.rs`
/// and every `NAME/main.rs`, sorted.
fn target_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().into_string().ok()?;
                match name.strip_suffix(".rs") {
                    Some(stem) => Some(stem.to_string()),
                    None => e.path().join("main.rs").exists().then_some(name),
                }
            })
            .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Builds one example (application image).
pub fn build_example(name: &str, release: bool) -> Result<Image, String> {
    let known = target_names(&workspace_root().join("kernel/examples"));
    if !known.iter().any(|k| k == name) {
        return Err(format!(
            "no example `{name}` in kernel/examples/; the examples are: {} (an application of \
             your own: `cargo xtask new PATH`)",
            known.join(", ")
        ));
    }
    build(&["--example", name], release, "example")?
        .into_iter()
        .next()
        .ok_or_else(|| format!("cargo built no example named `{name}`"))
}

/// Builds the images of `kind` (`example` from `kernel/examples`, `test` from `kernel/tests`)
/// whose names contain `filter`, or all of them without one. A filter that matches nothing builds
/// nothing.
pub fn build_matching(
    kind: &str,
    filter: Option<&str>,
    release: bool,
) -> Result<Vec<Image>, String> {
    let (dir, all, one) = match kind {
        "example" => ("kernel/examples", "--examples", "--example"),
        _ => ("kernel/tests", "--tests", "--test"),
    };
    let Some(filter) = filter else {
        return build(&[all], release, kind);
    };
    let names: Vec<String> = target_names(&workspace_root().join(dir))
        .into_iter()
        .filter(|n| n.contains(filter))
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let selection: Vec<&str> = names.iter().flat_map(|n| [one, n.as_str()]).collect();
    build(&selection, release, kind)
}
