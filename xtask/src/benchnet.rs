//! `cargo xtask bench net`: the virtio-net benchmark.
//!
//! Boots `kernel/examples/netbench.rs` (release) once per (backend, ring layout, job, run); each
//! boot runs one job against a host peer (`xtask peer-serve`, see `netpeer.rs`) that this command
//! starts for that boot alone and stops after it. The guest prints one `vireo-bench:` line; the
//! sinks of the guest-to-host jobs print a `peer-result:` line with what arrived in their window.
//! The table gives the median of the runs, their range and the guest's kicks and interrupts per
//! frame.
//!
//! Backends: `user` (QEMU user networking; the peer listens on the host's 127.0.0.1, which the
//! guest reaches as 10.0.2.2) and `tap` (as root only: a network namespace `vireo-bench-PID`
//! with the tap `vbtap0` = 10.0.2.1/24, QEMU and the peer both run in it through
//! `ip netns exec`; the namespace is deleted afterwards, on failure too). The guest is
//! 10.0.2.15/24 in both, as in the Linux baseline (`bench/linux-baseline`).
//!
//! A run is *suspect* when its boot failed (a timeout, a failing guest, no result line), when
//! the guest's window overran its planned length by more than 10 %, or, for the jobs the host
//! counts, when the peer reported nothing or its window did not fill (the stream stopped early).
//! Suspect runs are left out of the medians and listed under the table.

use std::{
    fmt::Write as _,
    path::PathBuf,
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use crate::{
    artifacts,
    bench::{
        Options, boot_failure, first_line, loadavg, median, min_max, pick, result_fields,
        run_label, shell_words, table_head, window_suspects,
    },
    boot,
    directives::Directives,
    netns::{NetNs, is_root},
    netpeer::{Peer, Tally},
    qemu::{self, Accel},
    setup,
};

/// What a job's result counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Bytes, shown as Gbit/s.
    Gbits,
    /// Datagrams per second.
    Pps,
    /// Round trips per second.
    Rtt,
}

/// One benchmark job.
#[derive(Debug)]
struct Job {
    name: &'static str,
    unit: Unit,
    /// The host's sink counts (else the guest does).
    host_counts: bool,
}

const JOBS: [Job; 5] = [
    Job {
        name: "tcp_tx",
        unit: Unit::Gbits,
        host_counts: true,
    },
    Job {
        name: "tcp_rx",
        unit: Unit::Gbits,
        host_counts: false,
    },
    Job {
        name: "udp64_tx",
        unit: Unit::Pps,
        host_counts: true,
    },
    Job {
        name: "udp64_rx",
        unit: Unit::Pps,
        host_counts: false,
    },
    Job {
        name: "tcp_rr",
        unit: Unit::Rtt,
        host_counts: false,
    },
];

const BACKENDS: [&str; 2] = ["user", "tap"];
const LAYOUTS: [&str; 2] = ["split", "packed"];
/// The tap in the namespace and the host's address on it.
const TAP: &str = "vbtap0";
const TAP_HOST: &str = "10.0.2.1";
/// The guest's static address.
const GUEST_IP: &str = "10.0.2.15/24";
/// Seconds the guest's sending jobs go on after their window (so the host's window fills).
const TAIL: u64 = 1;

/// What the guest's `vireo-bench:` line says.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Guest {
    bytes: f64,
    units: f64,
    ns: u64,
    planned_ns: u64,
    tx_frames: f64,
    rx_frames: f64,
    tx_kicks: f64,
    rx_kicks: f64,
    irqs: f64,
    missed: u64,
}

impl Guest {
    fn parse(serial: &str) -> Option<Self> {
        let kv = result_fields(serial)?;
        let num = |k: &str| kv.get(k)?.parse::<f64>().ok();
        let int = |k: &str| kv.get(k)?.parse::<u64>().ok();
        let g = Self {
            bytes: num("bytes")?,
            units: num("units")?,
            ns: int("ns")?,
            planned_ns: int("planned_ns")?,
            tx_frames: num("tx_frames")?,
            rx_frames: num("rx_frames")?,
            tx_kicks: num("tx_kicks")?,
            rx_kicks: num("rx_kicks")?,
            irqs: num("irqs")?,
            missed: int("missed")?,
        };
        (g.ns > 0).then_some(g)
    }

    fn frames(&self) -> f64 {
        self.tx_frames + self.rx_frames
    }
}

/// One boot of a run and how it was judged.
#[derive(Debug)]
struct RunRecord {
    run: usize,
    attempt: usize,
    guest: Option<Guest>,
    host: Option<Tally>,
    suspect: Vec<String>,
}

impl RunRecord {
    fn new(run: usize, attempt: usize, job: &Job, a: Attempt, planned_ns: u64) -> Self {
        let mut suspect: Vec<String> = a.failure.iter().map(|f| first_line(f).into()).collect();
        if let Some(g) = &a.guest {
            suspect.extend(window_suspects(g.ns, g.planned_ns, planned_ns));
        }
        if job.host_counts {
            match &a.host {
                None => suspect.push("the host peer reported nothing".into()),
                Some(h) if !h.full => suspect.push(format!(
                    "the host's window did not fill: the stream stopped after {:.3} s",
                    h.ns as f64 / 1e9
                )),
                Some(_) => {}
            }
        }
        Self {
            run,
            attempt,
            guest: a.guest,
            host: a.host,
            suspect,
        }
    }

    /// The job's result (Gbit/s, datagrams/s or round trips/s), from whoever counts it.
    fn value(&self, job: &Job) -> Option<f64> {
        let (amount, ns) = if job.host_counts {
            let h = self.host?;
            let amount = match job.unit {
                Unit::Gbits => h.bytes * 8,
                _ => h.packets,
            };
            (amount as f64, h.ns)
        } else {
            let g = self.guest?;
            let amount = match job.unit {
                Unit::Gbits => g.bytes * 8.0,
                _ => g.units,
            };
            (amount, g.ns)
        };
        if ns == 0 {
            return None;
        }
        let per_sec = amount / (ns as f64 / 1e9);
        Some(if job.unit == Unit::Gbits {
            per_sec / 1e9
        } else {
            per_sec
        })
    }

    fn clean(&self) -> bool {
        self.suspect.is_empty() && self.guest.is_some()
    }
}

/// One row of the table.
struct Row {
    backend: &'static str,
    layout: &'static str,
    job: &'static Job,
    runs: Vec<RunRecord>,
}

/// What one boot gave.
struct Attempt {
    guest: Option<Guest>,
    host: Option<Tally>,
    failure: Option<String>,
}

/// Where one run happens.
struct Setup<'a> {
    image: &'a std::path::Path,
    accel: Accel,
    ns: Option<&'a NetNs>,
    backend: &'static str,
    layout: &'static str,
    secs: u64,
    warmup: u64,
    opts: &'a Options,
}

impl Setup<'_> {
    fn peer_command(&self, job: &Job) -> Result<Command, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find xtask: {e}"))?;
        let bind = if self.ns.is_some() {
            TAP_HOST
        } else {
            "127.0.0.1"
        };
        let lifetime = self.warmup + self.secs + 60;
        let mut c = Command::new(exe);
        c.args(["peer-serve", job.name, bind])
            .arg(self.warmup.to_string())
            .arg(self.secs.to_string())
            .arg(lifetime.to_string());
        Ok(match self.ns {
            Some(ns) => ns.wrap(&c),
            None => c,
        })
    }

    fn qemu_command(&self, job: &Job, port: u16) -> Result<Command, String> {
        let (netdev, peer_ip) = match self.backend {
            "tap" => (
                format!("tap,id=n0,ifname={TAP},script=no,downscript=no"),
                TAP_HOST,
            ),
            _ => ("user,id=n0,net=10.0.2.0/24".to_string(), "10.0.2.2"),
        };
        let packed = if self.layout == "packed" {
            ",packed=on"
        } else {
            ""
        };
        let mut append = format!(
            "vireo.net.ip={GUEST_IP} job={} secs={} warmup={} tail={TAIL} peer={peer_ip}:{port}",
            job.name, self.secs, self.warmup
        );
        if self.opts.polled {
            append.push_str(" vireo.net.polled=1");
        }
        for word in &self.opts.append {
            append.push(' ');
            append.push_str(word);
        }
        let dirs = Directives {
            qemu: [
                "-m",
                "1G",
                "-netdev",
                &netdev,
                "-device",
                &format!(
                    "virtio-net-pci,netdev=n0,disable-legacy=on,mac=52:54:00:12:34:56{packed}"
                ),
            ]
            .map(String::from)
            .into(),
            append: vec![append],
            ..Directives::default()
        };
        let mut cmd = qemu::command(self.image, self.accel, &dirs, "", "bench")?;
        cmd.args(&self.opts.qemu_args);
        Ok(match self.ns {
            Some(ns) => ns.wrap(&cmd),
            None => cmd,
        })
    }

    /// Boots one run with its peer; returns it and the QEMU command line.
    fn run_once(&self, job: &Job) -> (Attempt, String) {
        let fail = |e: String| Attempt {
            guest: None,
            host: None,
            failure: Some(e),
        };
        let peer = match self.peer_command(job).and_then(Peer::start) {
            Ok(p) => p,
            Err(e) => return (fail(e), String::new()),
        };
        let cmd = match self.qemu_command(job, peer.port) {
            Ok(c) => c,
            Err(e) => return (fail(e), String::new()),
        };
        let line = shell_words(&cmd);
        let limit = Duration::from_secs(self.warmup + self.secs + 60);
        let b = match boot::run_qemu(cmd, limit, Vec::new(), PathBuf::new(), None) {
            Ok(b) => b,
            Err(e) => return (fail(e), line),
        };
        let host = peer.finish(Duration::from_secs(3));
        let guest = Guest::parse(&b.serial);
        let failure = boot_failure(&b, limit, guest.is_some()).map(|f| {
            // Keep the whole console of every failed boot (appended): the tail is not always enough.
            let log = artifacts::target_dir().join(format!(
                "vireo-bench/net-{}-{}-{}-{}.log",
                self.backend,
                self.layout,
                job.name,
                std::process::id()
            ));
            let saved = log
                .parent()
                .and_then(|d| std::fs::create_dir_all(d).ok())
                .and_then(|()| {
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)
                        .ok()?;
                    std::io::Write::write_all(
                        &mut file,
                        format!("{line}\n{}\n{}\n\n", b.serial, b.stderr).as_bytes(),
                    )
                    .ok()
                });
            match saved {
                Some(()) => format!("{f}\n  full console: {}", log.display()),
                None => f,
            }
        });
        (
            Attempt {
                guest,
                host,
                failure,
            },
            line,
        )
    }
}

fn progress(job: &Job, r: &RunRecord) {
    match r.value(job) {
        Some(v) => eprint!("{}", fmt_value(job.unit, v)),
        None => eprint!("no result"),
    }
    if let Some(g) = &r.guest {
        eprint!(
            ", guest window {:.3} s, {:.0} frames/s",
            g.ns as f64 / 1e9,
            g.frames() / (g.ns as f64 / 1e9)
        );
    }
    if let Some(h) = &r.host {
        eprint!(", host {} packets {} bytes", h.packets, h.bytes);
    }
    if r.suspect.is_empty() {
        eprintln!();
    } else {
        eprintln!(" -- SUSPECT: {}", r.suspect.join("; "));
    }
}

fn fmt_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Gbits => format!("{v:.3} Gbit/s"),
        Unit::Pps => format!("{v:.0} pps"),
        Unit::Rtt => format!("{v:.0} round trips/s"),
    }
}

pub fn run(opts: &Options) -> Result<ExitCode, String> {
    setup::ensure_all()?;
    let accel = qemu::choose_accel(Some(opts.accel.unwrap_or(Accel::Tcg)))?;
    let mut backends = pick(&BACKENDS, &opts.backend, "backend")?;
    let layouts = pick(&LAYOUTS, &opts.layout, "layout")?;
    let jobs: Vec<&'static Job> = JOBS
        .iter()
        .filter(|j| opts.job.as_deref().is_none_or(|w| j.name.contains(w)))
        .collect();
    if jobs.is_empty() {
        let names: Vec<&str> = JOBS.iter().map(|j| j.name).collect();
        return Err(format!("no job matches (jobs: {})", names.join(", ")));
    }
    let mut skipped = None;
    if backends.contains(&"tap") && !is_root() {
        backends.retain(|b| *b != "tap");
        let msg = "xtask: bench net: SKIPPING the tap backend: it needs root (a network namespace and a tap)";
        eprintln!("{msg}");
        skipped = Some(msg);
    }
    let (runs, secs, warmup) = if opts.quick { (1, 2, 1) } else { (3, 10, 2) };
    let image = artifacts::build_example("netbench", true)?;
    let load_before = loadavg();
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut commands = Vec::new();
    let mut unmeasured = Vec::new();
    for &backend in &backends {
        // Created per backend and deleted at the end of its loop, or on an early return.
        let ns = if backend == "tap" {
            Some(NetNs::create(&NetNs::name_for("bench"), TAP, TAP_HOST)?)
        } else {
            None
        };
        for &layout in &layouts {
            let setup = Setup {
                image: &image.path,
                accel,
                ns: ns.as_ref(),
                backend,
                layout,
                secs,
                warmup,
                opts,
            };
            for &job in &jobs {
                let planned_ns = secs * 1_000_000_000;
                let mut records = Vec::new();
                for run in 1..=runs {
                    for attempt in 1..=2 {
                        eprint!(
                            "xtask: bench net {accel} {backend} {layout} {} run {run}/{runs}{} ... ",
                            job.name,
                            if attempt > 1 { " (retry)" } else { "" }
                        );
                        let (a, line) = setup.run_once(job);
                        if run == 1 && attempt == 1 {
                            commands.push(line);
                        }
                        let failed = a.failure.clone();
                        let record = RunRecord::new(run, attempt, job, a, planned_ns);
                        progress(job, &record);
                        records.push(record);
                        match failed {
                            None => break,
                            Some(e) => eprintln!("xtask: run failed: {e}"),
                        }
                        if attempt == 2 {
                            unmeasured.push(format!("{backend} {layout} {} run {run}", job.name));
                        }
                    }
                }
                rows.push(Row {
                    backend,
                    layout,
                    job,
                    runs: records,
                });
            }
        }
    }
    println!();
    println!(
        "virtio-net benchmark ({accel}): median of {runs} run(s) of {secs} s after a {warmup} s \
         warm-up, suspect runs excluded; load average before {load_before}, after {}; took {:.0} s\n",
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    print!("{}", table_body(&rows));
    if let Some(msg) = skipped {
        println!("\n{msg}");
    }
    println!(
        "\nQEMU command lines (the first run of each job; `-append` carries the job; the tap \
         backend runs in `ip netns exec vireo-bench-PID` with {TAP} = {TAP_HOST}/24):"
    );
    for c in &commands {
        println!("  {c}");
    }
    for u in &unmeasured {
        println!("xtask: {u}: failed twice, nothing measured");
    }
    let boots: usize = rows.iter().map(|r| r.runs.len()).sum();
    let suspect = rows
        .iter()
        .flat_map(|r| &r.runs)
        .filter(|r| !r.suspect.is_empty())
        .count();
    println!("xtask: bench net: {suspect} suspect run(s) of {boots}, excluded from the medians");
    Ok(if unmeasured.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The table and the suspect runs.
fn table_body(rows: &[Row]) -> String {
    let mut s = String::new();
    table_head(
        &mut s,
        &[
            "backend",
            "ring",
            "job",
            "result:",
            "range",
            "counted by",
            "guest frames/s:",
            "kicks/frame:",
            "irqs/frame:",
        ],
    );
    for r in rows {
        let cfg = format!("| {} | {} | {} |", r.backend, r.layout, r.job.name);
        let clean: Vec<&RunRecord> = r.runs.iter().filter(|x| x.clean()).collect();
        let values: Vec<f64> = clean.iter().filter_map(|x| x.value(r.job)).collect();
        if values.is_empty() {
            let _ = writeln!(s, "{cfg} - | no run left | | | | |");
            continue;
        }
        let guests: Vec<Guest> = clean.iter().filter_map(|x| x.guest).collect();
        let m = |f: &dyn Fn(&Guest) -> f64| median(guests.iter().map(f).collect());
        let (lo, hi) = min_max(values.iter().copied());
        let unit = r.job.unit;
        let _ = writeln!(
            s,
            "{cfg} {} | {}–{} | {} | {:.0} | {:.3} | {:.3} |",
            fmt_value(unit, median(values.clone())),
            fmt_value(unit, lo).split(' ').next().unwrap_or(""),
            fmt_value(unit, hi).split(' ').next().unwrap_or(""),
            if r.job.host_counts { "host" } else { "guest" },
            m(&|g| g.frames() / (g.ns as f64 / 1e9)),
            m(&|g| (g.tx_kicks + g.rx_kicks) / g.frames().max(1.0)),
            m(&|g| g.irqs / g.frames().max(1.0)),
        );
    }
    let _ = writeln!(
        s,
        "\nframes: virtio-net frames both ways in the guest's window; kicks: notifications on \
         both queues; irqs: receive interrupts."
    );
    let suspect: Vec<(&Row, &RunRecord)> = rows
        .iter()
        .flat_map(|r| r.runs.iter().map(move |x| (r, x)))
        .filter(|(_, x)| !x.suspect.is_empty())
        .collect();
    if suspect.is_empty() {
        let _ = writeln!(s, "No suspect runs: every run is in the medians.");
        return s;
    }
    let _ = writeln!(s, "\nSuspect runs (not in the medians):\n");
    table_head(&mut s, &["backend", "ring", "job", "run", "result:", "why"]);
    for (r, x) in suspect {
        let run = run_label(x.run, x.attempt);
        let v = x
            .value(r.job)
            .map_or("-".into(), |v| fmt_value(r.job.unit, v));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {run} | {v} | {} |",
            r.backend,
            r.layout,
            r.job.name,
            x.suspect.join("; ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "vireo-bench: job=tcp_rx layout=split irq=msix bytes=125000000 units=125000000 \
                        ns=1000000000 planned_ns=1000000000 tx_frames=100 rx_frames=900 tx_kicks=100 \
                        rx_kicks=10 irqs=500 missed=0";

    fn attempt(guest: Option<Guest>, host: Option<Tally>) -> Attempt {
        Attempt {
            guest,
            host,
            failure: None,
        }
    }

    #[test]
    fn guest_counted_jobs_use_the_guest_line() {
        let g = Guest::parse(&format!("noise\n{LINE}\n")).unwrap();
        assert_eq!(g.frames(), 1000.0);
        let r = RunRecord::new(1, 1, &JOBS[1], attempt(Some(g), None), 1_000_000_000);
        assert!(r.clean(), "{:?}", r.suspect);
        assert_eq!(r.value(&JOBS[1]), Some(1.0));
        assert!(Guest::parse(&LINE.replace(" missed=0", "")).is_none());
    }

    #[test]
    fn host_counted_jobs_need_a_full_host_window() {
        let g = Guest::parse(LINE).unwrap();
        let full = Tally {
            bytes: 0,
            packets: 50_000,
            ns: 2_000_000_000,
            full: true,
        };
        let r = RunRecord::new(1, 1, &JOBS[2], attempt(Some(g), Some(full)), 1_000_000_000);
        assert!(r.clean());
        assert_eq!(r.value(&JOBS[2]), Some(25_000.0));
        let short = Tally {
            full: false,
            ..full
        };
        let r = RunRecord::new(1, 1, &JOBS[2], attempt(Some(g), Some(short)), 1_000_000_000);
        assert!(r.suspect[0].contains("did not fill"), "{:?}", r.suspect);
        let r = RunRecord::new(1, 1, &JOBS[2], attempt(Some(g), None), 1_000_000_000);
        assert!(!r.clean());
        let rows = [Row {
            backend: "user",
            layout: "split",
            job: &JOBS[2],
            runs: vec![r],
        }];
        let t = table_body(&rows);
        assert!(t.contains("the host peer reported nothing"), "{t}");
        assert!(t.contains("no run left"), "{t}");
    }

    #[test]
    fn an_overrun_window_is_suspect() {
        let mut g = Guest::parse(LINE).unwrap();
        g.ns = 1_100_000_001;
        let r = RunRecord::new(1, 1, &JOBS[4], attempt(Some(g), None), 1_000_000_000);
        assert!(r.suspect[0].contains("overran"), "{:?}", r.suspect);
    }
}
