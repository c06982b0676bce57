//! `cargo xtask soak [OPS] [--seed N] [--timeout SECS]`: the randomised hostile-device runs
//! (`virtio/tests/hostile_random.rs`) at `OPS` operations per ring layout (default 10^7), split
//! and packed, under a hard time limit. Opt-in; not part of `cargo xtask test` or CI.
//!
//! The test reads `VIREO_HOSTILE_OPS` and `VIREO_HOSTILE_SEED`; without them it runs its
//! default 10^6 operations with fixed seeds. The build is the test profile (debug assertions and
//! overflow checks on).

use std::{
    os::unix::process::CommandExt,
    process::{Command, ExitCode},
    thread,
    time::{Duration, Instant},
};

use crate::artifacts::workspace_root;

/// Operations per layout when none is given.
const DEFAULT_OPS: u64 = 10_000_000;
/// The whole run (build included) is killed past this.
const DEFAULT_TIMEOUT_SECS: u64 = 30 * 60;

/// Runs the soak; fails when a run fails or the time limit passes.
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let (mut ops, mut seed, mut timeout) = (DEFAULT_OPS, None, DEFAULT_TIMEOUT_SECS);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let number = |name: &str, v: Option<&String>| -> Result<u64, String> {
            let v = v.ok_or_else(|| format!("{name} needs a number"))?;
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.replace('_', "").parse(),
            };
            parsed.map_err(|_| format!("{name}: `{v}` is not a number"))
        };
        match arg.as_str() {
            "--seed" => seed = Some(number("--seed", it.next())?),
            "--timeout" => timeout = number("--timeout", it.next())?,
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`")),
            _ => ops = number("OPS", Some(arg))?,
        }
    }
    if seed == Some(0) {
        return Err("--seed must not be 0 (the generator is xorshift)".into());
    }
    println!(
        "soak: hostile_random, {ops} operations per layout, seeds: {}, limit {timeout} s",
        seed.map_or("the test's defaults".to_string(), |s| format!("{s:#x}"))
    );
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "test",
        "-p",
        "vireo-virtio",
        "--test",
        "hostile_random",
        "--",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("VIREO_HOSTILE_OPS", ops.to_string())
    .current_dir(workspace_root())
    // Its own process group, so a timeout kills the test binary along with cargo.
    .process_group(0);
    if let Some(seed) = seed {
        cmd.env("VIREO_HOSTILE_SEED", format!("{seed:#x}"));
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    let deadline = started + Duration::from_secs(timeout);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() >= deadline {
            // The group created above: cargo and the test binary it runs.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            return Err(format!("soak: killed after {timeout} s"));
        }
        thread::sleep(Duration::from_millis(200));
    };
    let elapsed = started.elapsed().as_secs_f64();
    if status.success() {
        println!(
            "soak: passed, {ops} operations per layout, {elapsed:.1} s in all (build included)"
        );
        Ok(ExitCode::SUCCESS)
    } else {
        Err(format!("soak: failed ({status}) after {elapsed:.1} s"))
    }
}
