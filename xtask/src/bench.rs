//! `cargo xtask bench blk`: the virtio-blk benchmark.
//!
//! Boots `kernel/examples/blkbench.rs` (release) once per (accelerator, backend, ring layout, job,
//! run) — each boot runs one job after a warm-up — reads its `vireo-bench:` line, and prints the
//! median of the runs as a table, with the exact QEMU command lines and the host's load.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use crate::{
    artifacts,
    directives::Directives,
    qemu::{self, Accel},
    setup,
};

/// Options of `cargo xtask bench blk`.
#[derive(Debug, Default)]
pub struct Options {
    /// One run of 2 s per job instead of three of 5 s.
    pub quick: bool,
    /// Only these accelerators (default: TCG, and KVM when `/dev/kvm` opens).
    pub accel: Option<Accel>,
    /// Only this backend (`null` or `file`).
    pub backend: Option<String>,
    /// Only this ring layout (`split` or `packed`).
    pub layout: Option<String>,
    /// Only jobs whose name contains this.
    pub job: Option<String>,
    /// Poll for completions instead of sleeping on MSI-X (`vireo.blk.polled=1`).
    pub polled: bool,
    /// Extra QEMU arguments.
    pub qemu_args: Vec<String>,
    /// Extra kernel command-line words (e.g. `vireo.blk.indirect=0`).
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
    secs: f64,
    bytes: f64,
    kicks: f64,
    irqs: f64,
    lat_mean_us: f64,
    lat_p99_us: f64,
}

impl Sample {
    fn iops(&self) -> f64 {
        self.ios / self.secs
    }
    fn mbps(&self) -> f64 {
        self.bytes / self.secs / 1e6
    }
}

/// Reads `vireo-bench: k=v ...` from the serial output.
fn parse_sample(serial: &str) -> Option<Sample> {
    let line = serial
        .lines()
        .find_map(|l| l.trim().strip_prefix("vireo-bench: "))?;
    let kv: BTreeMap<&str, &str> = line
        .split_ascii_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect();
    let num = |k: &str| kv.get(k)?.parse::<f64>().ok();
    let sample = Sample {
        ios: num("ios")?,
        secs: num("ns")? / 1e9,
        bytes: num("bytes")?,
        kicks: num("kicks")?,
        irqs: num("irqs")?,
        lat_mean_us: num("lat_mean_ns")? / 1e3,
        lat_p99_us: num("lat_p99_ns")? / 1e3,
    };
    (sample.secs > 0.0 && sample.ios > 0.0).then_some(sample)
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
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
fn shell_words(cmd: &Command) -> String {
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

/// Boots one run; returns its serial output, or why it did not end with success.
fn boot(cmd: Command, limit: Duration) -> Result<String, String> {
    let b = crate::boot::run_qemu(cmd, limit, Vec::new(), PathBuf::new())?;
    if b.outcome == qemu::Outcome::Success {
        return Ok(b.serial);
    }
    let why = if b.timed_out {
        "timed out".to_string()
    } else {
        b.outcome.to_string()
    };
    let tail: Vec<&str> = b.serial.lines().rev().take(15).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "{why}\n  serial: {}\n  stderr: {}",
        tail.join("\n  | "),
        b.stderr.trim()
    ))
}

/// Boots one run and reads its result line.
fn run_once(cmd: Command, limit: Duration) -> Result<Sample, String> {
    let serial = boot(cmd, limit)?;
    parse_sample(&serial).ok_or_else(|| "the guest printed no `vireo-bench:` result line".into())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// One row of the table: a configuration and its runs.
struct Row {
    accel: Accel,
    backend: &'static str,
    layout: &'static str,
    job: &'static Job,
    samples: Vec<Sample>,
}

pub fn run(opts: &Options) -> Result<ExitCode, String> {
    setup::ensure_all()?;
    let accels: Vec<Accel> = match opts.accel {
        Some(a) => vec![qemu::choose_accel(Some(a))?],
        None => {
            let mut v = vec![Accel::Tcg];
            if qemu::choose_accel(None)? == Accel::Kvm {
                v.push(Accel::Kvm);
            }
            v
        }
    };
    let pick = |all: &[&'static str], want: &Option<String>, what: &str| {
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
    };
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
                    let mut samples = Vec::new();
                    for run in 0..runs {
                        let mut cmd = qemu::command(&image.path, accel, &dirs, "", "bench")?;
                        cmd.args(&opts.qemu_args);
                        if run == 0 {
                            commands.push(shell_words(&cmd));
                        }
                        eprint!(
                            "xtask: bench {accel} {backend} {layout} {} run {}/{runs} ... ",
                            job.name,
                            run + 1
                        );
                        let limit = Duration::from_secs(secs + warmup + 60);
                        // A boot that fails without a result (e.g. QEMU killed from outside on
                        // a shared machine) is retried; a second failure is an error.
                        let sample = match run_once(cmd, limit) {
                            Ok(s) => s,
                            Err(e) => {
                                eprint!("failed ({}), retrying ... ", first_line(&e));
                                let mut cmd =
                                    qemu::command(&image.path, accel, &dirs, "", "bench")?;
                                cmd.args(&opts.qemu_args);
                                run_once(cmd, limit).map_err(|e| format!("failed twice: {e}"))?
                            }
                        };
                        eprintln!(
                            "{:.0} IOPS, {:.1} MB/s, mean {:.1} us",
                            sample.iops(),
                            sample.mbps(),
                            sample.lat_mean_us
                        );
                        samples.push(sample);
                    }
                    rows.push(Row {
                        accel,
                        backend,
                        layout,
                        job,
                        samples,
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
    Ok(ExitCode::SUCCESS)
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
        "\nvirtio-blk benchmark: median of {runs} run(s) of {secs} s after a 1 s warm-up; \
         completions {}; load average before {load_before}, after {}; took {:.0} s\n",
        if polled { "polled" } else { "by MSI-X" },
        loadavg(),
        took.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "| accel | backend | ring | job | IOPS | MB/s | mean lat (us) | p99 lat (us) | kicks/req | irqs/req | IOPS range |"
    );
    let _ = writeln!(
        s,
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for r in rows {
        let m = |f: &dyn Fn(&Sample) -> f64| median(r.samples.iter().map(f).collect());
        let iops: Vec<f64> = r.samples.iter().map(Sample::iops).collect();
        let (lo, hi) = iops
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let lat = |v: f64| {
            if v > 0.0 {
                format!("{v:.0}")
            } else {
                "-".into()
            }
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.0} | {:.1} | {} | {} | {:.3} | {:.3} | {:.0}–{:.0} |",
            r.accel,
            r.backend,
            r.layout,
            r.job.name,
            m(&Sample::iops),
            m(&Sample::mbps),
            lat(m(&|x| x.lat_mean_us)),
            lat(m(&|x| x.lat_p99_us)),
            m(&|x| x.kicks / x.ios),
            m(&|x| x.irqs / x.ios),
            lo,
            hi
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_result_line() {
        let serial = "noise\nvireo-bench: job=randread bs=4096 qd=1 layout=split irq=msix ios=2000 \
                      ns=2000000000 bytes=8192000 kicks=1000 irqs=500 waits=500 lat_mean_ns=70000 \
                      lat_p99_ns=480000\n";
        let s = parse_sample(serial).unwrap();
        assert_eq!(s.iops(), 1000.0);
        assert!((s.mbps() - 4.096).abs() < 1e-9);
        assert_eq!(s.kicks / s.ios, 0.5);
        assert_eq!(s.lat_p99_us, 480.0);
        assert!(parse_sample("vireo-bench: ios=0 ns=1").is_none());
        assert!(parse_sample("nothing").is_none());
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
