//! `cargo xtask bench blk`: the virtio-blk benchmark.
//!
//! Boots `kernel/examples/blkbench.rs` (release) once per (accelerator, backend, ring layout, job,
//! run) — each boot runs one job after a warm-up — reads its `vireo-bench:` line, and prints the
//! median of the runs as a table, with the exact QEMU command lines and the host's load.
//!
//! A run is *suspect* when its boot failed (timed out, QEMU or the guest failed, no result line),
//! when its measured phase overran its planned length by more than 10 % (`ns` against
//! `planned_ns`: a phase ends only at a clock read after a completion, so one stalled request
//! stretches it), or when its mean latency exceeds its p99 (a few huge requests dominate the mean).
//! Suspect runs are left out of the medians and listed under the table with their numbers; the
//! output ends with a line counting them.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use crate::{
    accel, artifacts,
    directives::Directives,
    qemu::{self, Accel},
    setup,
};

/// Options of `cargo xtask bench blk` and `bench net`.
#[derive(Debug, Default)]
pub struct Options {
    /// One run of 2 s per job instead of three of 5 s (blk) or 10 s (net).
    pub quick: bool,
    /// Only these accelerators (default: TCG, and KVM where it runs guest code natively; net: TCG
    /// only).
    pub accel: Option<Accel>,
    /// Only this backend (`null` or `file`; `user` or `tap` for `bench net`).
    pub backend: Option<String>,
    /// Only this ring layout (`split` or `packed`).
    pub layout: Option<String>,
    /// Only jobs whose name contains this.
    pub job: Option<String>,
    /// Poll for completions instead of sleeping on MSI-X (`vireo.blk.polled=1`,
    /// `vireo.net.polled=1`).
    pub polled: bool,
    /// Extra QEMU arguments.
    pub qemu_args: Vec<String>,
    /// Extra kernel command-line words (e.g. `vireo.blk.indirect=0`, `vireo.net.event_idx=0`).
    pub append: Vec<String>,
}

/// One benchmark job: what `blkbench` runs.
struct Job {
    name: &'static str,
    args: &'static str,
}

const JOBS: [Job; 4] = [
    Job {
        name: "randread-4k-qd1",
        args: "job=randread bs=4096 qd=1",
    },
    Job {
        name: "randread-4k-qd32",
        args: "job=randread bs=4096 qd=32",
    },
    Job {
        name: "seqread-128k-qd8",
        args: "job=seqread bs=131072 qd=8",
    },
    Job {
        name: "randwrite-4k-qd32",
        args: "job=randwrite bs=4096 qd=32",
    },
];

const BACKENDS: [&str; 2] = ["null", "file"];
const LAYOUTS: [&str; 2] = ["split", "packed"];
/// Size of the raw file backend (sparse, in `/dev/shm`).
const FILE_SIZE: u64 = 1 << 30;

/// What one boot measured (the `vireo-bench:` line).
#[derive(Debug, Clone, Default)]
struct Sample {
    ios: f64,
    /// The measured phase's actual length.
    ns: u64,
    /// Its planned length (the job's `secs`).
    planned_ns: u64,
    bytes: f64,
    kicks: f64,
    irqs: f64,
    /// Per-request latencies (0 when not recorded: only QD1 with `lat=1` records them).
    lat_mean_ns: u64,
    lat_p99_ns: u64,
    lat_max_ns: u64,
    /// Completions the guest found at a timer tick without their interrupt.
    missed: u64,
}

impl Sample {
    fn secs(&self) -> f64 {
        self.ns as f64 / 1e9
    }
    fn iops(&self) -> f64 {
        self.ios / self.secs()
    }
    fn mbps(&self) -> f64 {
        self.bytes / self.secs() / 1e6
    }
    fn lat_mean_us(&self) -> f64 {
        self.lat_mean_ns as f64 / 1e3
    }
    fn lat_p99_us(&self) -> f64 {
        self.lat_p99_ns as f64 / 1e3
    }
    fn lat_max_us(&self) -> f64 {
        self.lat_max_ns as f64 / 1e3
    }
}

/// Why a run that printed `s` is suspect (empty: it is not). `job_planned_ns` is the length the
/// host asked for, which the guest's `planned_ns` must match.
fn suspect_reasons(s: &Sample, job_planned_ns: u64) -> Vec<String> {
    let mut why = window_suspects(s.ns, s.planned_ns, job_planned_ns);
    if s.lat_mean_ns > s.lat_p99_ns {
        why.push(format!(
            "mean latency {:.1} us above p99 {:.1} us",
            s.lat_mean_us(),
            s.lat_p99_us()
        ));
    }
    why
}

/// Why a guest's measured window is suspect, shared by `bench blk` and `bench net`: the guest
/// planned another length (`planned_ns`) than the host asked for (`job_planned_ns`), or its
/// window (`ns`) ran more than 10 % over the plan.
pub(crate) fn window_suspects(ns: u64, planned_ns: u64, job_planned_ns: u64) -> Vec<String> {
    let mut why = Vec::new();
    if planned_ns != job_planned_ns {
        why.push(format!(
            "planned_ns={planned_ns} but the job asked for {job_planned_ns}"
        ));
    }
    // More than 10 % over, in integers: exactly 10 % over is not suspect.
    if u128::from(ns) * 10 > u128::from(planned_ns) * 11 {
        why.push(format!(
            "measured phase overran: {:.3} s of a planned {:.3} s (+{:.1} %)",
            ns as f64 / 1e9,
            planned_ns as f64 / 1e9,
            (ns as f64 / planned_ns as f64 - 1.0) * 100.0
        ));
    }
    why
}

/// The `key=value` words of the `vireo-bench:` line in the serial output.
pub(crate) fn result_fields(serial: &str) -> Option<BTreeMap<&str, &str>> {
    let line = serial
        .lines()
        .find_map(|l| l.trim().strip_prefix("vireo-bench: "))?;
    Some(
        line.split_ascii_whitespace()
            .filter_map(|w| w.split_once('='))
            .collect(),
    )
}

/// Reads `vireo-bench: k=v ...` from the serial output.
fn parse_sample(serial: &str) -> Option<Sample> {
    let kv = result_fields(serial)?;
    let num = |k: &str| kv.get(k)?.parse::<f64>().ok();
    let int = |k: &str| kv.get(k)?.parse::<u64>().ok();
    let sample = Sample {
        ios: num("ios")?,
        ns: int("ns")?,
        planned_ns: int("planned_ns")?,
        bytes: num("bytes")?,
        kicks: num("kicks")?,
        irqs: num("irqs")?,
        lat_mean_ns: int("lat_mean_ns")?,
        lat_p99_ns: int("lat_p99_ns")?,
        lat_max_ns: int("lat_max_ns")?,
        missed: int("missed")?,
    };
    (sample.ns > 0 && sample.ios > 0.0).then_some(sample)
}

/// The median of `values` (the mean of the middle two for an even count).
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The raw file backend: created sparse in `/dev/shm`, removed when dropped.
struct ShmFile(PathBuf);

impl ShmFile {
    fn create() -> Result<Self, String> {
        let path = PathBuf::from(format!("/dev/shm/vireo-bench-{}.img", std::process::id()));
        qemu::create_disk(&path, FILE_SIZE)?;
        Ok(Self(path))
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The QEMU arguments of a backend and ring layout (without the job's command line).
fn device_args(backend: &str, layout: &str, file: Option<&Path>) -> Result<Vec<String>, String> {
    let (node, blockdev) = match backend {
        "null" => (
            "n0",
            "driver=null-co,node-name=n0,size=8589934592,read-zeroes=on".to_string(),
        ),
        "file" => {
            let file = file.ok_or("the file backend needs its file")?;
            (
                "f0",
                format!(
                    "driver=file,node-name=f0,filename={},aio=threads,cache.direct=on",
                    file.display()
                ),
            )
        }
        _ => return Err(format!("unknown backend `{backend}` (null or file)")),
    };
    let packed = if layout == "packed" { ",packed=on" } else { "" };
    Ok([
        "-m".to_string(),
        "1G".into(),
        "-object".into(),
        "iothread,id=io0".into(),
        "-blockdev".into(),
        blockdev,
        "-device".into(),
        format!("virtio-blk-pci,drive={node},iothread=io0,disable-legacy=on{packed}"),
    ]
    .into())
}

/// A command line as a shell would take it.
pub(crate) fn shell_words(cmd: &Command) -> String {
    let quote = |s: &str| {
        if s.is_empty()
            || s.chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "-_=.,/:+@".contains(c)))
        {
            format!("'{}'", s.replace('\'', r"'\''"))
        } else {
            s.to_string()
        }
    };
    let mut out = quote(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        out.push(' ');
        out.push_str(&quote(&a.to_string_lossy()));
    }
    out
}

/// What one boot gave: its result line if it printed one, and why it failed if it did (the
/// first line says why; the rest is the serial tail and QEMU's stderr).
struct Attempt {
    sample: Option<Sample>,
    failure: Option<String>,
}

/// The entries of `all` that `want` names (all of them when it is `None`).
pub(crate) fn pick(
    all: &[&'static str],
    want: &Option<String>,
    what: &str,
) -> Result<Vec<&'static str>, String> {
    let v: Vec<&'static str> = all
        .iter()
        .copied()
        .filter(|x| want.as_deref().is_none_or(|w| w == *x))
        .collect();
    if v.is_empty() {
        Err(format!("no {what} matches (one of {})", all.join(", ")))
    } else {
        Ok(v)
    }
}

/// Boots one run and reads its result line. A boot that printed its line and then failed (e.g.
/// timed out draining) keeps its numbers, so the suspect list can show them.
fn run_once(cmd: Command, limit: Duration) -> Attempt {
    let b = match crate::boot::run_qemu(cmd, limit, Vec::new(), PathBuf::new(), None) {
        Ok(b) => b,
        Err(e) => {
            return Attempt {
                sample: None,
                failure: Some(e),
            };
        }
    };
    let sample = parse_sample(&b.serial);
    let failure = boot_failure(&b, limit, sample.is_some());
    Attempt { sample, failure }
}

/// Why a benchmark boot failed (`None`: it did not), with the serial tail and QEMU's stderr
/// after the first line; `has_result`: its result line was read.
pub(crate) fn boot_failure(
    b: &crate::boot::Boot,
    limit: Duration,
    has_result: bool,
) -> Option<String> {
    let why = if b.timed_out {
        format!("timed out after {} s", limit.as_secs())
    } else if b.outcome != qemu::Outcome::Success {
        b.outcome.to_string()
    } else if !has_result {
        "the guest printed no `vireo-bench:` result line".to_string()
    } else {
        return None;
    };
    let tail: Vec<&str> = b.serial.lines().rev().take(15).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Some(format!(
        "{why}\n  serial: {}\n  stderr: {}",
        tail.join("\n  | "),
        b.stderr.trim()
    ))
}

pub(crate) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// One boot of a run and how it was judged.
struct RunRecord {
    /// 1-based run number.
    run: usize,
    /// 1 for the first boot of the run, 2 for its retry after a failed boot.
    attempt: usize,
    sample: Option<Sample>,
    /// Why the boot is suspect; empty when its numbers go into the medians.
    suspect: Vec<String>,
}

impl RunRecord {
    fn new(run: usize, attempt: usize, a: Attempt, job_planned_ns: u64) -> Self {
        let mut suspect: Vec<String> = a.failure.iter().map(|f| first_line(f).into()).collect();
        if let Some(s) = &a.sample {
            suspect.extend(suspect_reasons(s, job_planned_ns));
        }
        Self {
            run,
            attempt,
            sample: a.sample,
            suspect,
        }
    }

    /// The numbers that go into the medians: a result and nothing suspect.
    fn clean(&self) -> Option<&Sample> {
        self.sample.as_ref().filter(|_| self.suspect.is_empty())
    }
}

/// One row of the table: a configuration and its runs (every boot, suspect ones included).
struct Row {
    accel: Accel,
    backend: &'static str,
    layout: &'static str,
    job: &'static Job,
    runs: Vec<RunRecord>,
}

impl Row {
    fn clean(&self) -> Vec<&Sample> {
        self.runs.iter().filter_map(RunRecord::clean).collect()
    }
}

/// Prints one boot's result on the progress line.
fn progress(r: &RunRecord) {
    match &r.sample {
        Some(s) => {
            eprint!("{:.0} IOPS, {:.1} MB/s", s.iops(), s.mbps());
            if s.lat_max_ns > 0 {
                eprint!(
                    ", mean {:.1} us, p99 {:.1} us, max {:.1} us",
                    s.lat_mean_us(),
                    s.lat_p99_us(),
                    s.lat_max_us()
                );
            }
            eprint!(", measured {:.3} s", s.secs());
        }
        None => eprint!("no result"),
    }
    if r.suspect.is_empty() {
        eprintln!();
    } else {
        eprintln!(" -- SUSPECT: {}", r.suspect.join("; "));
    }
}

/// The accelerators a benchmark runs under: the one asked for (KVM must open), else TCG and KVM
/// too where KVM runs guest code natively ([`accel::choose`]; on the PVM hypervisor a KVM figure
/// would measure its instruction emulator, so it is left out with one line saying why).
pub(crate) fn accels(requested: Option<Accel>) -> Result<Vec<Accel>, String> {
    Ok(match requested {
        Some(a) => vec![qemu::choose_accel(Some(a))?],
        None => {
            let mut v = vec![Accel::Tcg];
            let choice = accel::choose(None)?;
            if choice.accel == Accel::Kvm {
                v.push(Accel::Kvm);
            } else if qemu::choose_accel(None)? == Accel::Kvm {
                eprintln!("xtask: bench: not measuring KVM: {}", choice.why);
            }
            v
        }
    })
}

pub fn run(opts: &Options) -> Result<ExitCode, String> {
    setup::ensure_all()?;
    let accels = accels(opts.accel)?;
    let backends = pick(&BACKENDS, &opts.backend, "backend")?;
    let layouts = pick(&LAYOUTS, &opts.layout, "layout")?;
    let jobs: Vec<&Job> = JOBS
        .iter()
        .filter(|j| opts.job.as_deref().is_none_or(|w| j.name.contains(w)))
        .collect();
    if jobs.is_empty() {
        let names: Vec<&str> = JOBS.iter().map(|j| j.name).collect();
        return Err(format!("no job matches (jobs: {})", names.join(", ")));
    }
    let (runs, secs, warmup) = if opts.quick { (1, 2, 1) } else { (3, 5, 1) };
    let image = artifacts::build_example("blkbench", true)?;
    let file = if backends.contains(&"file") {
        Some(ShmFile::create()?)
    } else {
        None
    };
    let load_before = loadavg();
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut commands: Vec<String> = Vec::new();
    // Runs whose boot failed twice: they have no numbers, and the command fails at the end.
    let mut unmeasured: Vec<String> = Vec::new();
    for &accel in &accels {
        for &backend in &backends {
            for &layout in &layouts {
                for &job in &jobs {
                    let mut append = format!("{} secs={secs} warmup={warmup}", job.args);
                    if opts.polled {
                        append.push_str(" vireo.blk.polled=1");
                    }
                    for word in &opts.append {
                        append.push(' ');
                        append.push_str(word);
                    }
                    let dirs = Directives {
                        qemu: device_args(backend, layout, file.as_ref().map(|f| f.0.as_path()))?,
                        append: vec![append],
                        ..Directives::default()
                    };
                    let job_planned_ns = secs * 1_000_000_000;
                    let mut records = Vec::new();
                    for run in 0..runs {
                        eprint!(
                            "xtask: bench {accel} {backend} {layout} {} run {}/{runs} ... ",
                            job.name,
                            run + 1
                        );
                        let limit = Duration::from_secs(secs + warmup + 60);
                        // A failed boot (a timeout, a failing guest, or QEMU killed from outside
                        // on a shared machine) is a suspect run, listed under the table, and is
                        // retried once; the retry is judged on its own.
                        for attempt in 1..=2 {
                            let mut cmd = qemu::command(&image.path, accel, &dirs, "", "bench")?;
                            cmd.args(&opts.qemu_args);
                            if run == 0 && attempt == 1 {
                                commands.push(shell_words(&cmd));
                            }
                            let sample = run_once(cmd, limit);
                            let failed = sample.failure.clone();
                            let record = RunRecord::new(run + 1, attempt, sample, job_planned_ns);
                            progress(&record);
                            records.push(record);
                            let Some(e) = failed else { break };
                            if attempt == 1 {
                                eprintln!("xtask: run failed: {e}");
                                eprint!("xtask: retrying run {} ... ", run + 1);
                            } else {
                                eprintln!("xtask: retry failed too: {e}");
                                unmeasured.push(format!(
                                    "{accel} {backend} {layout} {} run {}",
                                    job.name,
                                    run + 1
                                ));
                            }
                        }
                    }
                    rows.push(Row {
                        accel,
                        backend,
                        layout,
                        job,
                        runs: records,
                    });
                }
            }
        }
    }
    drop(file);
    print!(
        "{}",
        table(
            &rows,
            runs,
            secs,
            opts.polled,
            &load_before,
            started.elapsed()
        )
    );
    println!("\nQEMU command lines (the first run of each job; `-append` carries the job):");
    for c in &commands {
        println!("  {c}");
    }
    for u in &unmeasured {
        println!("xtask: {u}: failed twice, nothing measured");
    }
    println!("{}", suspect_count_line(&rows));
    Ok(if unmeasured.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The output's last line: how many boots were suspect, and how many completions the guests
/// found without their interrupt (a lost or late interrupt costs a timer tick at most).
fn suspect_count_line(rows: &[Row]) -> String {
    let boots: usize = rows.iter().map(|r| r.runs.len()).sum();
    let runs = || rows.iter().flat_map(|r| &r.runs);
    let suspect = runs().filter(|r| !r.suspect.is_empty()).count();
    let missed: u64 = runs()
        .filter_map(|r| r.sample.as_ref())
        .map(|s| s.missed)
        .sum();
    format!(
        "xtask: bench blk: {missed} missed wake-up(s); {suspect} suspect run(s) of {boots}, \
         excluded from the medians"
    )
}

fn table(
    rows: &[Row],
    runs: usize,
    secs: u64,
    polled: bool,
    load_before: &str,
    took: Duration,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nvirtio-blk benchmark: median of {runs} run(s) of {secs} s after a 1 s warm-up, suspect \
         runs excluded; completions {}; load average before {load_before}, after {}; took {:.0} s\n",
        if polled { "polled" } else { "by MSI-X" },
        loadavg(),
        took.as_secs_f64()
    );
    s.push_str(&table_body(rows));
    s
}

/// The smallest and largest of `values`.
pub(crate) fn min_max(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    values
        .into_iter()
        .fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// Writes a Markdown table's header; a column whose name ends in `:` is right-aligned.
pub(crate) fn table_head(s: &mut String, columns: &[&str]) {
    let names: Vec<&str> = columns.iter().map(|c| c.trim_end_matches(':')).collect();
    let rules: Vec<&str> = columns
        .iter()
        .map(|c| if c.ends_with(':') { "---:" } else { "---" })
        .collect();
    let _ = writeln!(s, "| {} |", names.join(" | "));
    let _ = writeln!(s, "| {} |", rules.join(" | "));
}

/// A run's label in a suspect list: its number, and whether it was the retry.
pub(crate) fn run_label(run: usize, attempt: usize) -> String {
    if attempt > 1 {
        format!("{run} (retry)")
    } else {
        run.to_string()
    }
}

/// A latency cell: `-` when not recorded (0: only QD1 with `lat=1` records latency).
fn lat_cell(us: f64) -> String {
    if us > 0.0 {
        format!("{us:.0}")
    } else {
        "-".into()
    }
}

/// The table, its footer and the suspect runs (everything but the header line).
fn table_body(rows: &[Row]) -> String {
    let mut s = String::new();
    table_head(
        &mut s,
        &[
            "accel",
            "backend",
            "ring",
            "job",
            "IOPS:",
            "MB/s:",
            "mean lat (us):",
            "p99 lat (us):",
            "max lat (us):",
            "kicks/req:",
            "irqs/req:",
            "IOPS range",
        ],
    );
    for r in rows {
        let clean = r.clean();
        let cfg = format!(
            "| {} | {} | {} | {} |",
            r.accel, r.backend, r.layout, r.job.name
        );
        if clean.is_empty() {
            let _ = writeln!(s, "{cfg} - | - | - | - | - | - | - | no run left |");
            continue;
        }
        let m = |f: &dyn Fn(&Sample) -> f64| median(clean.iter().map(|x| f(x)).collect());
        let (lo, hi) = min_max(clean.iter().map(|x| x.iops()));
        let _ = writeln!(
            s,
            "{cfg} {:.0} | {:.1} | {} | {} | {} | {:.3} | {:.3} | {:.0}–{:.0} |",
            m(&Sample::iops),
            m(&Sample::mbps),
            lat_cell(m(&Sample::lat_mean_us)),
            lat_cell(m(&Sample::lat_p99_us)),
            lat_cell(m(&Sample::lat_max_us)),
            m(&|x| x.kicks / x.ios),
            m(&|x| x.irqs / x.ios),
            lo,
            hi
        );
    }
    let suspect: Vec<(&Row, &RunRecord)> = rows
        .iter()
        .flat_map(|r| r.runs.iter().map(move |x| (r, x)))
        .filter(|(_, x)| !x.suspect.is_empty())
        .collect();
    if suspect.is_empty() {
        let _ = writeln!(
            s,
            "\nNo suspect runs: every run is in the medians (max lat: the median of each run's \
             maximum; suspect: a failed boot, a measured phase more than 10 % over its planned \
             length, or mean latency above p99)."
        );
        return s;
    }
    let _ = writeln!(
        s,
        "\nMedians (max lat too: the median of each run's maximum) and IOPS ranges exclude {} \
         suspect run(s) (a failed boot, a measured phase more than 10 % over its planned length, \
         or mean latency above p99); runs used per row:",
        suspect.len()
    );
    for r in rows
        .iter()
        .filter(|r| r.runs.iter().any(|x| !x.suspect.is_empty()))
    {
        let _ = writeln!(
            s,
            "  {} {} {} {}: {} of {} boot(s)",
            r.accel,
            r.backend,
            r.layout,
            r.job.name,
            r.clean().len(),
            r.runs.len()
        );
    }
    let _ = writeln!(s, "\nSuspect runs (not in the medians):\n");
    table_head(
        &mut s,
        &[
            "accel",
            "backend",
            "ring",
            "job",
            "run",
            "ns (planned):",
            "mean lat (us):",
            "p99 lat (us):",
            "max lat (us):",
            "why",
        ],
    );
    for (r, x) in suspect {
        let run = run_label(x.run, x.attempt);
        let numbers = match &x.sample {
            Some(p) => format!(
                "{} ({}) | {:.1} | {:.1} | {:.1}",
                p.ns,
                p.planned_ns,
                p.lat_mean_us(),
                p.lat_p99_us(),
                p.lat_max_us()
            ),
            None => "no result | - | - | -".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {run} | {numbers} | {} |",
            r.accel,
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

    const LINE: &str = "vireo-bench: job=randread bs=4096 qd=1 layout=split irq=msix ios=2000 \
                        ns=2000000000 planned_ns=2000000000 bytes=8192000 kicks=1000 irqs=500 \
                        waits=500 missed=2 renotified=0 lat_mean_ns=70000 lat_p99_ns=480000 lat_max_ns=5000000000";

    #[test]
    fn parses_the_result_line() {
        let s = parse_sample(&format!("noise\n{LINE}\n")).unwrap();
        assert_eq!(s.iops(), 1000.0);
        assert!((s.mbps() - 4.096).abs() < 1e-9);
        assert_eq!(s.kicks / s.ios, 0.5);
        assert_eq!(s.ns, 2_000_000_000);
        assert_eq!(s.planned_ns, 2_000_000_000);
        assert_eq!(s.lat_mean_us(), 70.0);
        assert_eq!(s.lat_p99_us(), 480.0);
        // Above u32::MAX ns: the max is a u64 end to end.
        assert_eq!(s.lat_max_ns, 5_000_000_000);
        assert_eq!(s.missed, 2);
        assert!(parse_sample("vireo-bench: ios=0 ns=1").is_none());
        assert!(parse_sample("nothing").is_none());
        // A line without the new fields (an old image) is not taken.
        assert!(parse_sample(&LINE.replace(" lat_max_ns=5000000000", "")).is_none());
        assert!(parse_sample(&LINE.replace(" planned_ns=2000000000", "")).is_none());
    }

    /// A clean QD1 sample of 2 s planned.
    fn sample(ns: u64, mean_ns: u64, p99_ns: u64) -> Sample {
        Sample {
            ios: 2000.0,
            ns,
            planned_ns: 2_000_000_000,
            bytes: 8_192_000.0,
            kicks: 1000.0,
            irqs: 500.0,
            lat_mean_ns: mean_ns,
            lat_p99_ns: p99_ns,
            lat_max_ns: p99_ns * 2,
            missed: 0,
        }
    }

    const PLANNED: u64 = 2_000_000_000;

    #[test]
    fn suspect_rule_overrun() {
        assert!(suspect_reasons(&sample(PLANNED, 70_000, 480_000), PLANNED).is_empty());
        // Exactly 10 % over is not suspect; one nanosecond more is.
        assert!(suspect_reasons(&sample(2_200_000_000, 70_000, 480_000), PLANNED).is_empty());
        let why = suspect_reasons(&sample(2_200_000_001, 70_000, 480_000), PLANNED);
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(why[0].contains("overran"), "{why:?}");
        let why = suspect_reasons(&sample(4_000_000_000, 70_000, 480_000), PLANNED);
        assert!(why[0].contains("+100.0 %"), "{why:?}");
        // Shorter than planned cannot happen (the phase runs to its deadline) and is not flagged.
        assert!(suspect_reasons(&sample(1_000_000_000, 70_000, 480_000), PLANNED).is_empty());
    }

    #[test]
    fn suspect_rule_mean_above_p99() {
        let why = suspect_reasons(&sample(PLANNED, 480_001, 480_000), PLANNED);
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(why[0].contains("mean latency"), "{why:?}");
        assert!(suspect_reasons(&sample(PLANNED, 480_000, 480_000), PLANNED).is_empty());
        // No latency recorded (deep queues, lat=0): both 0, not suspect.
        assert!(suspect_reasons(&sample(PLANNED, 0, 0), PLANNED).is_empty());
        // Both triggers at once.
        assert_eq!(
            suspect_reasons(&sample(3_000_000_000, 900_000, 480_000), PLANNED).len(),
            2
        );
        // The guest planned something else than the host asked for.
        assert_eq!(
            suspect_reasons(&sample(PLANNED, 70_000, 480_000), 5_000_000_000).len(),
            1
        );
    }

    fn attempt(s: Option<Sample>, failure: Option<&str>) -> Attempt {
        Attempt {
            sample: s,
            failure: failure.map(String::from),
        }
    }

    #[test]
    fn suspect_runs_are_listed_and_left_out_of_the_median() {
        let mut stalled = sample(3_000_000_000, 900_000, 480_000);
        stalled.lat_max_ns = 1_000_000_000;
        stalled.ios = 1_000_000.0; // would move the median if it were used
        let runs = vec![
            RunRecord::new(
                1,
                1,
                attempt(Some(sample(PLANNED, 70_000, 480_000)), None),
                PLANNED,
            ),
            RunRecord::new(2, 1, attempt(Some(stalled), None), PLANNED),
            RunRecord::new(
                3,
                1,
                attempt(None, Some("timed out after 63 s\n  serial: x")),
                PLANNED,
            ),
            RunRecord::new(
                3,
                2,
                attempt(Some(sample(PLANNED, 80_000, 500_000)), None),
                PLANNED,
            ),
        ];
        assert!(runs[0].clean().is_some() && runs[3].clean().is_some());
        assert!(runs[1].clean().is_none() && runs[2].clean().is_none());
        assert_eq!(runs[2].suspect, vec!["timed out after 63 s".to_string()]);
        let rows = [Row {
            accel: Accel::Tcg,
            backend: "null",
            layout: "split",
            job: &JOBS[0],
            runs,
        }];
        let t = table_body(&rows);
        // The median of the two clean runs: 1000 IOPS, mean 75 us, p99 490, max 980.
        assert!(
            t.contains("| tcg | null | split | randread-4k-qd1 | 1000 | 4.1 | 75 | 490 | 980 |"),
            "{t}"
        );
        assert!(t.contains("exclude 2 suspect run(s)"), "{t}");
        assert!(t.contains("randread-4k-qd1: 2 of 4 boot(s)"), "{t}");
        assert!(
            t.contains("| 2 | 3000000000 (2000000000) | 900.0 | 480.0 | 1000000.0 |"),
            "{t}"
        );
        assert!(
            t.contains("| 3 | no result | - | - | - | timed out after 63 s |"),
            "{t}"
        );
        assert_eq!(
            suspect_count_line(&rows),
            "xtask: bench blk: 0 missed wake-up(s); 2 suspect run(s) of 4, excluded from the medians"
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn device_arguments() {
        let a = device_args("null", "packed", None).unwrap();
        assert!(
            a.iter()
                .any(|x| x.contains("null-co") && x.contains("size=8589934592"))
        );
        assert!(
            a.iter()
                .any(|x| x.ends_with("iothread=io0,disable-legacy=on,packed=on"))
        );
        let f = device_args("file", "split", Some(Path::new("/dev/shm/x.img"))).unwrap();
        assert!(
            f.iter()
                .any(|x| x.contains("filename=/dev/shm/x.img,aio=threads,cache.direct=on"))
        );
        assert!(device_args("file", "split", None).is_err());
        assert!(device_args("nvme", "split", None).is_err());
    }
}
