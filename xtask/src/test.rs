//! `cargo xtask test`: host tests, then every in-QEMU test image under a hard time limit.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Command, ExitCode, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    Common, artifacts,
    artifacts::Image,
    directives::{self, Directives},
    diskcheck,
    qemu::{self, Accel, Outcome},
};

/// Options of `cargo xtask test`.
#[derive(Debug)]
pub struct Options {
    pub common: Common,
    /// Run the host tests too.
    pub host: bool,
    /// Only images whose name contains this.
    pub filter: Option<String>,
}

/// Passed and failed counts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.passed += o.passed;
        self.failed += o.failed;
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
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
    let built = artifacts::build_tests(opts.common.release).and_then(|mut images| {
        images.extend(artifacts::build_examples(opts.common.release)?);
        Ok(images)
    });
    match built {
        Ok(images) => {
            let images: Vec<Image> = images
                .into_iter()
                .filter(|i| {
                    opts.filter
                        .as_ref()
                        .is_none_or(|f| i.name.contains(f.as_str()))
                })
                .collect();
            println!("\nrunning {} in-QEMU images ({accel})", images.len());
            total += qemu_tests(&images, accel, &opts.common.qemu_args);
        }
        Err(e) => {
            println!("xtask: {e}");
            total.failed += 1;
        }
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
            return Tally {
                passed: 0,
                failed: 1,
            };
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
    Some(Tally {
        passed: count("passed")?,
        failed: count("failed")?,
    })
}

/// One boot of a test image: one combination of its matrix.
struct Job<'a> {
    image: &'a Image,
    /// `qemu:NAME` or `qemu:NAME[k=v,...]`.
    label: String,
    /// Names the job's disk images.
    scope: String,
    dirs: Directives,
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
            Ok(dirs) if image.app && !dirs.app => {}
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

fn qemu_tests(images: &[Image], accel: Accel, extra: &[String]) -> Tally {
    let (jobs, failed) = jobs(images);
    println!("running {} QEMU boots", jobs.len());
    let next = AtomicUsize::new(0);
    let total = Mutex::new(failed);
    let threads = thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len().max(1));
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let (tally, report) = run_job(job, accel, extra);
                    print!("{report}");
                    *total.lock().expect("no panics while holding it") += tally;
                }
            });
        }
    });
    total.into_inner().expect("threads joined")
}

/// What one boot printed and how it ended.
struct Boot {
    outcome: Outcome,
    serial: String,
    stderr: String,
    elapsed: Duration,
    timed_out: bool,
}

fn boot(job: &Job<'_>, accel: Accel, extra: &[String]) -> Result<Boot, String> {
    let dirs = &job.dirs;
    let mut cmd = qemu::command(&job.image.path, accel, dirs, "", &job.scope)?;
    let qmp = qemu::disk_path(&job.scope, "qmp").with_extension("sock");
    if !dirs.qmp_on.is_empty() {
        let _ = std::fs::remove_file(&qmp);
        cmd.arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()));
    }
    cmd.args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let triggers = dirs.qmp_on.clone();
    let serial = thread::spawn(move || {
        // Read as it comes, sending each QMP command when its text first appears.
        let (mut buf, mut chunk, mut fired, mut notes) =
            (Vec::new(), [0u8; 4096], 0, String::new());
        while let Ok(n) = out.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some((text, command)) = triggers.get(fired) {
                if !String::from_utf8_lossy(&buf).contains(text.as_str()) {
                    break;
                }
                match qemu::qmp_command(&qmp, command) {
                    Ok(reply) => notes.push_str(&format!("xtask: QMP {command} -> {reply}\n")),
                    Err(e) => notes.push_str(&format!("xtask: {e}\n")),
                }
                fired += 1;
            }
        }
        String::from_utf8_lossy(&buf).into_owned() + &notes
    });
    let stderr = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let limit = dirs.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > limit => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().map_err(|e| format!("waiting for QEMU: {e}"))?;
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for QEMU: {e}")),
        }
    };
    let elapsed = start.elapsed();
    Ok(Boot {
        outcome: if timed_out {
            Outcome::Killed
        } else {
            qemu::outcome(status)
        },
        serial: serial.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        elapsed,
        timed_out,
    })
}

/// Boots one job and judges it; returns the tally and the text to print.
fn run_job(job: &Job<'_>, accel: Accel, extra: &[String]) -> (Tally, String) {
    let (name, dirs) = (&job.label, &job.dirs);
    let b = match boot(job, accel, extra) {
        Ok(b) => b,
        Err(e) => {
            return (
                Tally {
                    passed: 0,
                    failed: 1,
                },
                format!("test {name} ... FAILED\n  {e}\n"),
            );
        }
    };
    let (mut tally, mut verdict) = judge(dirs, &b);
    for disk in &dirs.verify_disks {
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

/// Counts cases: each `vireo-test: ok NAME` line is one passed test; an image that does not end with
/// its `all N passed` line and the success code adds one failure (the case that was running).
fn judge(dirs: &Directives, b: &Boot) -> (Tally, String) {
    if dirs.expect_timeout {
        return if b.timed_out {
            (
                Tally {
                    passed: 1,
                    failed: 0,
                },
                String::new(),
            )
        } else {
            (
                Tally {
                    passed: 0,
                    failed: 1,
                },
                format!("expected to be killed at its time limit, but {}", b.outcome),
            )
        };
    }
    if b.timed_out {
        let ok = count_ok(&b.serial);
        return (
            Tally {
                passed: ok,
                failed: 1,
            },
            "timed out: QEMU killed".into(),
        );
    }
    if let Some(text) = &dirs.expect_failure {
        return match (b.outcome, b.serial.contains(text.as_str())) {
            (Outcome::Failure, true) => (
                Tally {
                    passed: 1,
                    failed: 0,
                },
                String::new(),
            ),
            (Outcome::Failure, false) => (
                Tally {
                    passed: 0,
                    failed: 1,
                },
                format!("failed as expected but never printed `{text}`"),
            ),
            (o, _) => (
                Tally {
                    passed: 0,
                    failed: 1,
                },
                format!("expected a failure, but {o}"),
            ),
        };
    }
    if dirs.app {
        return match b.outcome {
            Outcome::Success => (
                Tally {
                    passed: 1,
                    failed: 0,
                },
                String::new(),
            ),
            o => (
                Tally {
                    passed: 0,
                    failed: 1,
                },
                o.to_string(),
            ),
        };
    }
    let ok = count_ok(&b.serial);
    let all = b
        .serial
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("vireo-test: all ")?
                .strip_suffix(" passed")?
                .parse::<usize>()
                .ok()
        })
        .next_back();
    match (b.outcome, all) {
        (Outcome::Success, Some(n)) if n == ok && ok > 0 => (
            Tally {
                passed: ok,
                failed: 0,
            },
            String::new(),
        ),
        (Outcome::Success, _) => (
            Tally {
                passed: ok,
                failed: 1,
            },
            "exited with success without finishing its cases".into(),
        ),
        (o, _) => (
            Tally {
                passed: ok,
                failed: 1,
            },
            o.to_string(),
        ),
    }
}

fn count_ok(serial: &str) -> usize {
    serial
        .lines()
        .filter(|l| l.trim().starts_with("vireo-test: ok "))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(outcome: Outcome, serial: &str) -> Boot {
        Boot {
            outcome,
            serial: serial.into(),
            stderr: String::new(),
            elapsed: Duration::ZERO,
            timed_out: false,
        }
    }

    #[test]
    fn libtest_lines() {
        let t = parse_libtest_result("test result: ok. 12 passed; 3 failed; 0 ignored; 0 measured")
            .unwrap();
        assert_eq!((t.passed, t.failed), (12, 3));
        assert!(parse_libtest_result("running 3 tests").is_none());
    }

    #[test]
    fn judging() {
        let d = Directives::default();
        let good = "vireo-test: start a\nvireo-test: ok a\nvireo-test: start b\nvireo-test: ok b\nvireo-test: all 2 passed\n";
        let t = judge(&d, &boot(Outcome::Success, good)).0;
        assert_eq!((t.passed, t.failed), (2, 0));
        let t = judge(
            &d,
            &boot(
                Outcome::Failure,
                "vireo-test: ok a\nvireo-test: start b\npanicked",
            ),
        )
        .0;
        assert_eq!((t.passed, t.failed), (1, 1));
        // Success without the closing line (e.g. a stray exit) is a failure.
        let t = judge(&d, &boot(Outcome::Success, "vireo-test: ok a\n")).0;
        assert_eq!((t.passed, t.failed), (1, 1));
        let t = judge(&d, &boot(Outcome::Success, "")).0;
        assert_eq!(t.failed, 1);
        let fault = Directives {
            expect_failure: Some("page fault".into()),
            ..Directives::default()
        };
        assert_eq!(
            judge(&fault, &boot(Outcome::Failure, "page fault at 0x0"))
                .0
                .passed,
            1
        );
        assert_eq!(
            judge(&fault, &boot(Outcome::Success, "page fault"))
                .0
                .failed,
            1
        );
        assert_eq!(judge(&fault, &boot(Outcome::Failure, "other")).0.failed, 1);
        let hang = Directives {
            expect_timeout: true,
            ..Directives::default()
        };
        let mut killed = boot(Outcome::Killed, "");
        killed.timed_out = true;
        assert_eq!(judge(&hang, &killed).0.passed, 1);
        assert_eq!(judge(&hang, &boot(Outcome::Success, "")).0.failed, 1);
        assert_eq!(judge(&d, &killed).0.failed, 1);
    }
}
