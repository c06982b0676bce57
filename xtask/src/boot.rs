//! One QEMU boot of a test image: run under a hard time limit (sending QMP commands when the
//! serial output asks for them), then judged from its exit status and serial output.

use std::{
    io::Read,
    path::PathBuf,
    process::{Child, ChildStdout, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    directives::Directives,
    garbage, httpcheck,
    netns::NetNs,
    peer::Peers,
    qemu::{self, Accel, Outcome},
    test::{Job, Tally},
};

/// The limit for one boot unless the image sets its own.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What one boot printed and how it ended.
pub struct Boot {
    pub outcome: Outcome,
    pub serial: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub timed_out: bool,
    /// The result of the `http-check` or the `garbage` burst, when it ran.
    pub probe: Option<httpcheck::Report>,
}

/// Serial text after which an `http-check` image serves.
const SERVING: &str = "serving http://";
/// Serial text after which a `garbage` image takes its burst of malformed frames.
const GARBAGE_READY: &str = "garbage: ready";
/// The tap of a `netns` boot, and the host's address on it.
const TEST_TAP: &str = "vttap0";
const TEST_TAP_HOST: &str = "10.0.9.1";

pub fn boot(job: &Job<'_>, accel: Accel, extra: &[String]) -> Result<Boot, String> {
    // The namespace is deleted when this function returns, after QEMU and the peers are gone.
    let ns = if job.dirs.netns {
        let name = format!("{}-{}", NetNs::name_for("test"), job.scope);
        Some(NetNs::create(&name, TEST_TAP, TEST_TAP_HOST)?)
    } else {
        None
    };
    // Peers serve until this boot is over (they stop when dropped at the end of the function).
    let peers = match &ns {
        Some(ns) => ns.run_inside(|| Peers::start(&job.dirs.peers, TEST_TAP_HOST))?,
        None => Peers::start(&job.dirs.peers, "127.0.0.1")?,
    };
    let mut dirs = job.dirs.clone();
    for arg in dirs.qemu.iter_mut().chain(dirs.append.iter_mut()) {
        *arg = peers.substitute(arg);
    }
    // A server gets a free host port for its forward, and the checks run against it.
    let probe = match &dirs.http_check {
        Some(site) => {
            let port = httpcheck::free_port()?;
            dirs.host_port = Some(port);
            let site = crate::artifacts::workspace_root().join(site);
            Some(Probe {
                text: SERVING.into(),
                kill: true,
                check: Box::new(move || httpcheck::run(port, &site)),
            })
        }
        None => match (&dirs.garbage, &ns) {
            (Some((count, mac, addr)), Some(ns)) => {
                let to = garbage::Target::parse(mac, addr)?;
                let src = ns.tap_mac()?;
                let mut frames = garbage::frames(*count, to, src);
                frames.push(garbage::done_marker(
                    *count,
                    to,
                    src,
                    TEST_TAP_HOST.parse().expect("an IPv4 address"),
                ));
                Some(Probe {
                    text: GARBAGE_READY.into(),
                    kill: false,
                    check: Box::new(move || {
                        let mut r = httpcheck::Report::default();
                        r.check("garbage burst", garbage::inject(ns, &frames));
                        r
                    }),
                })
            }
            (Some(_), None) => return Err("`garbage` needs the `netns` directive".into()),
            (None, _) => None,
        },
    };
    let dirs = &dirs;
    let mut cmd = qemu::command(&job.image.path, accel, dirs, "", &job.scope)?;
    let qmp = qemu::disk_path(&job.scope, "qmp").with_extension("sock");
    if !dirs.qmp_on.is_empty() {
        let _ = std::fs::remove_file(&qmp);
        cmd.arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()));
    }
    cmd.args(extra);
    if let Some(ns) = &ns {
        cmd = ns.wrap(&cmd);
    }
    let limit = dirs.timeout.unwrap_or(DEFAULT_TIMEOUT);
    run_qemu(cmd, limit, dirs.qmp_on.clone(), qmp, probe)
}

/// A started QEMU: its serial output to read, and a thread collecting its stderr.
pub struct Spawned {
    pub child: Child,
    pub out: ChildStdout,
    pub stderr: thread::JoinHandle<String>,
}

/// Starts `cmd` (a QEMU command line) with stdin closed, stdout piped for the caller and stderr
/// collected by a thread.
pub fn spawn(mut cmd: Command) -> Result<Spawned, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
    let out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let stderr = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    Ok(Spawned { child, out, stderr })
}

/// Checks run from the host while the image runs: once the serial output contains `text`,
/// `check` runs, then QEMU is killed if `kill` says so (else the image goes on to its end).
pub struct Probe<'a> {
    pub text: String,
    pub kill: bool,
    pub check: Box<dyn FnOnce() -> httpcheck::Report + 'a>,
}

/// Runs `cmd` (a QEMU command line) with its serial output captured, killing it after `limit`;
/// each `(text, command)` of `triggers` sends `command` to the QMP socket `qmp` when the serial
/// output first contains `text`; a `probe` runs when its text appears, and QEMU is killed after it.
pub fn run_qemu(
    cmd: Command,
    limit: Duration,
    triggers: Vec<(String, String)>,
    qmp: PathBuf,
    mut probe: Option<Probe<'_>>,
) -> Result<Boot, String> {
    let start = Instant::now();
    let Spawned {
        mut child,
        mut out,
        stderr,
    } = spawn(cmd)?;
    let probe_text = probe.as_ref().map(|p| p.text.clone());
    let probe_ready = Arc::new(AtomicBool::new(false));
    let ready = Arc::clone(&probe_ready);
    let serial = thread::spawn(move || {
        // Read as it comes, sending each QMP command when its text first appears.
        let (mut buf, mut chunk, mut fired, mut notes) =
            (Vec::new(), [0u8; 4096], 0, String::new());
        while let Ok(n) = out.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(text) = &probe_text
                && !ready.load(Ordering::Relaxed)
                && String::from_utf8_lossy(&buf).contains(text.as_str())
            {
                ready.store(true, Ordering::Relaxed);
            }
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
    let (mut timed_out, mut report) = (false, None);
    let status = loop {
        if probe_ready.load(Ordering::Relaxed)
            && let Some(p) = probe.take()
        {
            // The checks bound their own time (each read, write and connect has a limit).
            report = Some((p.check)());
            if p.kill {
                let _ = child.kill();
            }
        }
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
        probe: report,
    })
}

/// Counts cases: each `vireo-test: ok NAME` line is one passed test; an image that does not end with
/// its `all N passed` line and the success code adds one failure (the case that was running).
/// A `garbage` burst adds its own pass or failure.
pub fn judge(dirs: &Directives, b: &Boot) -> (Tally, String) {
    let (mut tally, mut verdict) = judge_image(dirs, b);
    if dirs.garbage.is_some() {
        match &b.probe {
            Some(r) => {
                tally += r.tally;
                if let Some(f) = r.failures.first() {
                    verdict = f.clone();
                }
            }
            None => {
                tally.failed += 1;
                verdict = format!("never printed `{GARBAGE_READY}`: {}", b.outcome);
            }
        }
    }
    (tally, verdict)
}

fn judge_image(dirs: &Directives, b: &Boot) -> (Tally, String) {
    if dirs.http_check.is_some() {
        return match &b.probe {
            Some(r) => (r.tally, r.failures.join("; ")),
            None => (
                Tally::new(0, 1),
                format!("never printed `{SERVING}`: {}", b.outcome),
            ),
        };
    }
    if dirs.expect_timeout {
        return if b.timed_out {
            (Tally::new(1, 0), String::new())
        } else {
            (
                Tally::new(0, 1),
                format!("expected to be killed at its time limit, but {}", b.outcome),
            )
        };
    }
    if b.timed_out {
        let ok = count_ok(&b.serial);
        return (Tally::new(ok, 1), "timed out: QEMU killed".into());
    }
    if let Some(text) = &dirs.expect_failure {
        return match (b.outcome, b.serial.contains(text.as_str())) {
            (Outcome::Failure, true) => (Tally::new(1, 0), String::new()),
            (Outcome::Failure, false) => (
                Tally::new(0, 1),
                format!("failed as expected but never printed `{text}`"),
            ),
            (o, _) => (Tally::new(0, 1), format!("expected a failure, but {o}")),
        };
    }
    if dirs.app {
        return match b.outcome {
            Outcome::Success => (Tally::new(1, 0), String::new()),
            o => (Tally::new(0, 1), o.to_string()),
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
        (Outcome::Success, Some(n)) if n == ok && ok > 0 => (Tally::new(ok, 0), String::new()),
        (Outcome::Success, _) => (
            Tally::new(ok, 1),
            "exited with success without finishing its cases".into(),
        ),
        (o, _) => (Tally::new(ok, 1), o.to_string()),
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
            probe: None,
        }
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
