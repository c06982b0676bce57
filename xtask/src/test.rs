//! `cargo xtask test`: host tests, then every in-QEMU test image under a hard time limit.

use std::{
    io::{BufRead, BufReader},
    process::{Command, ExitCode, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
};

use crate::{
    Common, artifacts,
    artifacts::Image,
    boot::{boot, judge},
    directives::{self, Directives},
    diskcheck,
    qemu::{self, Accel},
};

/// Options of `cargo xtask test`.
#[derive(Debug)]
pub struct Options {
    pub common: Common,
    /// Run the host tests too.
    pub host: bool,
    /// Only images whose name contains this.
    pub filter: Option<String>,
    /// Print every boot's whole serial output, passed or failed (`--show`).
    pub show: bool,
}

/// How the boots run: the accelerator, extra QEMU arguments, and whether to show their output.
#[derive(Debug, Clone, Copy)]
pub struct How<'a> {
    /// The accelerator of every boot.
    pub accel: Accel,
    /// QEMU arguments added to every boot (`--qemu-arg`).
    pub extra: &'a [String],
    /// Print every boot's serial output (`--show`).
    pub show: bool,
    /// Only the boots on this machine type.
    pub machine: Option<crate::qemu::Machine>,
}

/// Passed, failed and skipped counts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    /// Boots not run because this machine cannot (e.g. a network namespace without root).
    pub skipped: usize,
}

impl Tally {
    /// `passed` and `failed`, nothing skipped.
    pub fn new(passed: usize, failed: usize) -> Self {
        Self {
            passed,
            failed,
            skipped: 0,
        }
    }
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.skipped += o.skipped;
    }
}

/// Lines of serial output shown when an image fails.
const TAIL_LINES: usize = 40;

pub fn run(opts: &Options) -> Result<ExitCode, String> {
    let mut total = Tally::default();
    if opts.host {
        total += host_tests();
    }
    // TCG unless asked otherwise: the tests must pass under both, and TCG runs everywhere.
    let accel = qemu::choose_accel(Some(opts.common.accel.unwrap_or(Accel::Tcg)))?;
    // Test images, and the application images (which must boot and exit with success too).
    // Only the images the filter selects are built.
    let filter = opts.filter.as_deref();
    let built =
        artifacts::build_matching("test", filter, opts.common.release).and_then(|mut images| {
            images.extend(artifacts::build_matching(
                "example",
                filter,
                opts.common.release,
            )?);
            Ok(images)
        });
    match built {
        Ok(images) => {
            if let Some(f) =
                filter.filter(|f| images.is_empty() && !crate::appcheck::selected(Some(f)))
            {
                println!(
                    "xtask: no test or example name contains `{f}` (kernel/tests, kernel/examples)"
                );
            }
            println!("\nrunning {} in-QEMU images ({accel})", images.len());
            total += qemu_tests(
                &images,
                How {
                    accel,
                    extra: &opts.common.qemu_args,
                    show: opts.show,
                    machine: opts.common.machine,
                },
            );
        }
        Err(e) => {
            println!("xtask: {e}");
            total.failed += 1;
        }
    }
    // An application scaffolded outside the workspace builds, runs and tests (appcheck.rs).
    if crate::appcheck::selected(opts.filter.as_deref()) {
        println!("\nan application outside the workspace (cargo xtask new, cargo run, cargo test)");
        total += crate::appcheck::check();
    }
    if total.skipped > 0 {
        println!(
            "\n{} skipped: boots in a network namespace need root (run as root to include them)",
            total.skipped
        );
    }
    println!("\n{} passed, {} failed", total.passed, total.failed);
    Ok(if total.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `cargo test` for the host crates (the workspace's default members), echoing its output and
/// adding up its `test result:` lines.
fn host_tests() -> Tally {
    println!("running host tests (cargo test)");
    let child = Command::new(env!("CARGO"))
        .arg("test")
        .current_dir(artifacts::workspace_root())
        .stdout(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            println!("xtask: cannot run cargo test: {e}");
            return Tally::new(0, 1);
        }
    };
    let mut tally = Tally::default();
    for line in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
    {
        println!("{line}");
        if let Some(t) = parse_libtest_result(&line) {
            tally += t;
        }
    }
    let ok = child.wait().is_ok_and(|s| s.success());
    if !ok && tally.failed == 0 {
        // A build failure or a crashed test binary reports no count: it still fails the run.
        tally.failed += 1;
    }
    tally
}

/// Reads `test result: ok. 12 passed; 0 failed; ...`.
fn parse_libtest_result(line: &str) -> Option<Tally> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |word: &str| -> Option<usize> {
        rest.split(';').find_map(|part| {
            part.trim()
                .trim_start_matches(|c: char| !c.is_ascii_digit())
                .strip_suffix(word)?
                .trim()
                .parse()
                .ok()
        })
    };
    Some(Tally::new(count("passed")?, count("failed")?))
}

/// One boot of a test image: one combination of its matrix.
pub struct Job<'a> {
    pub image: &'a Image,
    /// `qemu:NAME` or `qemu:NAME[k=v,...]`.
    pub label: String,
    /// Names the job's disk images.
    pub scope: String,
    pub dirs: Directives,
}

/// The jobs of every image; an image whose directives do not parse is a failure right away.
fn jobs(images: &[Image]) -> (Vec<Job<'_>>, Tally) {
    let mut jobs = Vec::new();
    let mut failed = Tally::default();
    for image in images {
        let parsed = directives::parse_file(&image.source, "vireo-test:").and_then(|mut d| {
            if image.app {
                // An application boots with the devices it runs with.
                let run = directives::parse_file(&image.source, "vireo-run:")?;
                d.qemu.extend(run.qemu);
                d.append.extend(run.append);
            }
            Ok(d)
        });
        match parsed {
            Ok(dirs) if image.app && !dirs.app && dirs.http_check.is_none() => {}
            Ok(dirs) => {
                let combos = dirs.expand();
                let single = combos.len() == 1;
                for (i, (combo, dirs)) in combos.into_iter().enumerate() {
                    let (label, scope) = if single {
                        let kind = if image.app { "app" } else { "qemu" };
                        (format!("{kind}:{}", image.name), image.name.clone())
                    } else {
                        (
                            format!("qemu:{}[{combo}]", image.name),
                            format!("{}-{i}", image.name),
                        )
                    };
                    jobs.push(Job {
                        image,
                        label,
                        scope,
                        dirs,
                    });
                }
            }
            Err(e) => {
                println!("test qemu:{} ... FAILED\n  {e}", image.name);
                failed.failed += 1;
            }
        }
    }
    (jobs, failed)
}

/// Boots every combination of every image and judges it (also the cargo runner's test mode).
pub fn qemu_tests(images: &[Image], how: How<'_>) -> Tally {
    let (mut jobs, failed) = jobs(images);
    if let Some(m) = how.machine {
        jobs.retain(|j| j.dirs.machine == m);
    }
    println!("running {} QEMU boots", jobs.len());
    // Boots that measure time run last, one at a time: a loaded host stretches their numbers.
    let (alone, shared): (Vec<_>, Vec<_>) = jobs.iter().partition(|j| j.dirs.alone);
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    let mut total = run_pool(&shared, threads, how);
    total += run_pool(&alone, 1, how);
    total += failed;
    total
}

/// Runs `jobs` on `threads` threads at most, printing each report as it comes.
fn run_pool(jobs: &[&Job<'_>], threads: usize, how: How<'_>) -> Tally {
    let next = AtomicUsize::new(0);
    let total = Mutex::new(Tally::default());
    thread::scope(|s| {
        for _ in 0..threads.min(jobs.len()).max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let (tally, report) = run_job(job, how);
                    print!("{report}");
                    *total.lock().expect("no panics while holding it") += tally;
                }
            });
        }
    });
    total.into_inner().expect("threads joined")
}

/// Boots one job and judges it; returns the tally and the text to print.
fn run_job(job: &Job<'_>, how: How<'_>) -> (Tally, String) {
    let (name, dirs) = (&job.label, &job.dirs);
    if dirs.netns && !crate::netns::is_root() {
        return (
            Tally {
                skipped: 1,
                ..Tally::default()
            },
            format!("test {name} ... skipped (a network namespace and a tap need root)\n"),
        );
    }
    let b = match boot(job, how.accel, how.extra) {
        Ok(b) => b,
        Err(e) => {
            return (Tally::new(0, 1), format!("test {name} ... FAILED\n  {e}\n"));
        }
    };
    let (mut tally, mut verdict) = judge(dirs, &b);
    // A guest that did not finish reported only part of its writes: its disks are not checked
    // (the failure is already counted, with its own verdict).
    let disks = if tally.failed == 0 {
        dirs.verify_disks.as_slice()
    } else {
        &[]
    };
    for disk in disks {
        match diskcheck::verify(&qemu::disk_path(&job.scope, disk), disk, &b.serial) {
            Ok(sectors) if sectors > 0 => tally.passed += 1,
            Ok(_) => {
                tally.failed += 1;
                verdict = format!("disk {disk}: the guest reported no writes to check");
            }
            Err(e) => {
                tally.failed += 1;
                verdict = e;
            }
        }
    }
    let mut report = String::new();
    if how.show {
        report.push_str(&format!("--- serial output of {name} ---\n{}", b.serial));
    }
    let secs = b.elapsed.as_secs_f64();
    if tally.failed == 0 {
        report.push_str(&format!(
            "test {name} ... ok ({} passed, {secs:.1} s)\n",
            tally.passed
        ));
    } else {
        report.push_str(&format!(
            "test {name} ... FAILED ({verdict}, {secs:.1} s)\n"
        ));
        let lines: Vec<&str> = b.serial.lines().collect();
        let from = lines.len().saturating_sub(TAIL_LINES);
        report.push_str(&format!(
            "  --- last {} lines of serial output ---\n",
            lines.len() - from
        ));
        for l in &lines[from..] {
            report.push_str(&format!("  | {l}\n"));
        }
        if !b.stderr.trim().is_empty() {
            report.push_str("  --- QEMU stderr ---\n");
            for l in b.stderr.lines().take(TAIL_LINES) {
                report.push_str(&format!("  | {l}\n"));
            }
        }
    }
    (tally, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_lines() {
        let t = parse_libtest_result("test result: ok. 12 passed; 3 failed; 0 ignored; 0 measured")
            .unwrap();
        assert_eq!((t.passed, t.failed), (12, 3));
        assert!(parse_libtest_result("running 3 tests").is_none());
    }
}
