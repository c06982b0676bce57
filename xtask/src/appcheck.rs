//! The check that an application outside this repository works as a user's would: `cargo xtask
//! new` in a temporary directory, then `cargo build`, `cargo run` (output and exit status) and
//! `cargo test` there, through the runner `new` wrote. Part of `cargo xtask test` (filter name
//! [`NAME`]); each step is one test in the tally.

use std::{
    io::Read,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{artifacts, scaffold, test::Tally};

/// The check's name in reports and for the test filter.
pub const NAME: &str = "outside_app";

/// The package name of the application the check creates.
const APP: &str = "vireo-outside-app";

/// Whether `cargo xtask test FILTER` includes the check.
pub fn selected(filter: Option<&str>) -> bool {
    filter.is_none_or(|f| NAME.contains(f))
}

/// What one command printed and how it ended.
struct Ran {
    ok: bool,
    out: String,
    secs: f64,
}

/// Runs `cmd` in `dir` with output captured, killing it after `limit`.
fn run(mut cmd: Command, dir: &Path, limit: Duration) -> Result<Ran, String> {
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let mut pipes = [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ]
    .map(|mut p| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = p.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
    .into_iter();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for {cmd:?}: {e}")),
        }
    };
    let mut out = pipes.next().and_then(|t| t.join().ok()).unwrap_or_default();
    out += &pipes.next().and_then(|t| t.join().ok()).unwrap_or_default();
    if status.is_none() {
        out += &format!("\nxtask: killed after {} s", limit.as_secs());
    }
    Ok(Ran {
        ok: status.is_some_and(|s| s.success()),
        out,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// `cargo ARGS` as a user types it (the toolchain comes from the application's
/// `rust-toolchain.toml`), with the build cached under this checkout's `target/` so that only
/// the first `cargo xtask test` pays for compiling the kernel.
fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(args)
        .env("CARGO_TARGET_DIR", artifacts::target_dir().join(NAME));
    cmd
}

/// Scaffolds, builds, runs and tests the application; prints one line per step.
pub fn check() -> Tally {
    let dir = std::env::temp_dir().join(format!("{APP}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut tally = Tally::default();
    let mut report = |step: &str, result: Result<(), String>| match result {
        Ok(()) => {
            println!("test {NAME}:{step} ... ok");
            tally.passed += 1;
            true
        }
        Err(e) => {
            println!("test {NAME}:{step} ... FAILED\n{e}");
            tally.failed += 1;
            false
        }
    };
    let ok = report(
        "new",
        scaffold::create(&dir, Some(APP))
            .map(|_| ())
            .and_then(|()| {
                // Outside the workspace: cargo must not find this checkout's manifest above it.
                match artifacts::workspace_root().canonicalize() {
                    Ok(root) if dir.starts_with(&root) => {
                        Err(format!("{} lies inside the workspace", dir.display()))
                    }
                    _ => Ok(()),
                }
            }),
    ) && report(
        "build",
        step(&dir, &["build"], Duration::from_secs(1200), |_| Ok(())),
    ) && report(
        "run",
        step(
            &dir,
            &["run", "--", "from-the-check"],
            Duration::from_secs(180),
            |out| {
                for want in [
                    format!("hello from {APP}"),
                    "command line: \"from-the-check\"".to_string(),
                    "wrote and read back one block".to_string(),
                ] {
                    if !out.contains(&want) {
                        return Err(format!("its output lacks `{want}`"));
                    }
                }
                Ok(())
            },
        ),
    ) && report(
        "test",
        step(&dir, &["test"], Duration::from_secs(300), |out| {
            if out.contains("2 passed, 0 failed") {
                Ok(())
            } else {
                Err("no `2 passed, 0 failed` line".into())
            }
        }),
    );
    if ok {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("  the application is left in {}", dir.display());
    }
    tally
}

/// Runs `cargo ARGS` in `dir`: it must succeed within `limit` and its output pass `expect`.
fn step(
    dir: &Path,
    args: &[&str],
    limit: Duration,
    expect: impl Fn(&str) -> Result<(), String>,
) -> Result<(), String> {
    let ran = run(cargo(args), dir, limit)?;
    let verdict = if ran.ok {
        expect(&ran.out)
    } else {
        Err(format!("`cargo {}` failed", args.join(" ")))
    };
    verdict.map_err(|e| {
        let tail: Vec<&str> = ran.out.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "  {e} ({:.1} s); last lines:\n  | {}",
            ran.secs,
            tail.join("\n  | ")
        )
    })
}
