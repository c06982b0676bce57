//! `cargo xtask bench boot`: boot time, image size, the smallest `-m`, and the clock's rate.
//!
//! Boots `kernel/examples/bootbench.rs` (release; its `main` returns at once) on each machine
//! type under each accelerator, N times, and timestamps from the host, from the moment QEMU is
//! started: the first byte on the serial line, the kernel's `boot: first instruction to main`
//! line (printed right before `main`), and QEMU's exit. The guest's own figure, first
//! instruction of the image to `main` by the TSC, is read from that line. The table gives the
//! median and the range of each; a boot that failed or printed no boot line is *suspect*, left
//! out and listed.
//!
//! Then: the stripped release image sizes; the smallest `-m` at which the default application
//! (`hello`, with the scratch disk and network card `cargo xtask run` gives it) still exits with
//! success; and the clock's error against the host's: `bootbench clock=SECS` prints its clock
//! every 100 ms, the host timestamps each line, and the rate difference comes from the line
//! that arrived soonest after its reading among the first five and among the last five (the
//! delivery delays are all positive, so the smallest is the truest).

use std::{
    fmt::Write as _,
    io::Read,
    path::Path,
    process::{Command, ExitCode},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use crate::{
    artifacts,
    bench::{accels, first_line, loadavg, median, min_max, shell_words, table_head},
    boot::{Spawned, spawn},
    directives,
    qemu::{self, Accel, Outcome},
    setup,
};

/// Options of `cargo xtask bench boot`.
#[derive(Debug)]
pub struct Options {
    /// Only this accelerator (default: TCG, and KVM where it runs guest code natively).
    pub accel: Option<Accel>,
    /// Boots per row.
    pub boots: usize,
    /// Only machines whose name contains this.
    pub machine: Option<String>,
    /// Length of each clock run in seconds (0: no clock runs).
    pub clock_secs: u64,
    /// Clock runs per configuration.
    pub clock_runs: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            accel: None,
            boots: 10,
            machine: None,
            clock_secs: 10,
            clock_runs: 3,
        }
    }
}

/// A machine type and the QEMU arguments that select it.
struct Machine {
    name: &'static str,
    args: &'static [&'static str],
}

const MACHINES: [Machine; 4] = [
    Machine {
        name: "q35+qboot",
        args: &["-machine", "q35", "-bios", qemu::QBOOT],
    },
    Machine {
        name: "q35+SeaBIOS",
        args: &["-machine", "q35"],
    },
    Machine {
        name: "microvm",
        args: &["-machine", "microvm", "-bios", qemu::QBOOT],
    },
    Machine {
        name: "microvm-bare",
        args: &[
            "-machine",
            "microvm,pit=off,pic=off,rtc=off,acpi=off",
            "-bios",
            qemu::QBOOT,
        ],
    },
];

/// Memory of every timed boot.
const MEMORY: &str = "256M";
/// The text of the kernel's boot line, before the microseconds.
const MAIN_LINE: &str = "boot: first instruction to main in ";
/// The clock lines of `bootbench clock=SECS`.
const CLOCK_LINE: &str = "vireo-clock: ns=";
/// Clock lines at each end of a run among which the soonest-delivered one counts.
const CLOCK_ENDS: usize = 5;

/// The command line of one boot of `image` on `machine`.
fn command(image: &Path, accel: Accel, machine: &Machine, append: &str) -> Command {
    let mut cmd = Command::new(setup::QEMU);
    cmd.args(machine.args)
        .args(["-smp", "1", "-m", MEMORY, "-nodefaults", "-display", "none"])
        .args(["-serial", "stdio", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(qemu::accel_args(accel))
        .arg("-kernel")
        .arg(image);
    if !append.is_empty() {
        cmd.args(["-append", append]);
    }
    cmd
}

/// One boot, timed from the host.
#[derive(Debug, Default)]
struct Timed {
    /// From QEMU's start to the first byte on the serial line.
    first_byte: Option<Duration>,
    /// To the end of the kernel's boot line (just before `main`).
    main: Option<Duration>,
    /// The guest's figure from that line: first instruction to `main`, in microseconds.
    guest_main_us: Option<u64>,
    /// To QEMU's exit.
    exit: Duration,
    /// Every serial line with the time its newline arrived.
    lines: Vec<(Duration, String)>,
    /// Why the boot is suspect (empty: it is not).
    failure: Option<String>,
}

/// The guest's figure in a boot line: `... boot: first instruction to main in 1234 us ...`.
fn guest_main_us(line: &str) -> Option<u64> {
    let rest = &line[line.find(MAIN_LINE)? + MAIN_LINE.len()..];
    rest.split(' ').next()?.parse().ok()
}

/// Runs `cmd`, timestamping each serial line as it arrives; kills QEMU after `limit`.
fn timed_boot(cmd: Command, limit: Duration) -> Result<Timed, String> {
    let start = Instant::now();
    let Spawned {
        mut child,
        mut out,
        stderr,
    } = spawn(cmd)?;
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let (mut chunk, mut partial) = ([0u8; 4096], Vec::new());
        let mut first = None;
        let mut lines = Vec::new();
        while let Ok(n) = out.read(&mut chunk) {
            if n == 0 {
                break;
            }
            let at = start.elapsed();
            first.get_or_insert(at);
            for &b in &chunk[..n] {
                if b == b'\n' {
                    let line = String::from_utf8_lossy(&partial).trim_end().to_string();
                    if line.contains(MAIN_LINE) {
                        let _ = tx.send(at);
                    }
                    lines.push((at, line));
                    partial.clear();
                } else {
                    partial.push(b);
                }
            }
        }
        (first, lines)
    });
    let (status, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (Some(status), false),
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break (None, true);
            }
            Ok(None) => thread::sleep(Duration::from_micros(200)),
            Err(e) => return Err(format!("waiting for QEMU: {e}")),
        }
    };
    let exit = start.elapsed();
    let (first_byte, lines) = reader.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let main = rx.try_recv().ok();
    let guest_main_us = lines.iter().find_map(|(_, l)| guest_main_us(l));
    let failure = match (timed_out, status.map(qemu::outcome)) {
        (true, _) => Some(format!("timed out after {} s", limit.as_secs())),
        (_, Some(Outcome::Success)) if guest_main_us.is_none() => {
            Some("no `boot: first instruction to main` line".into())
        }
        (_, Some(Outcome::Success)) => None,
        (_, o) => Some(format!(
            "{}; stderr: {}",
            o.map_or("no status".into(), |o| o.to_string()),
            stderr.trim()
        )),
    };
    Ok(Timed {
        first_byte,
        main,
        guest_main_us,
        exit,
        lines,
        failure,
    })
}

/// One row: a configuration and its boots.
struct Row {
    accel: Accel,
    machine: &'static str,
    app: &'static str,
    boots: Vec<Timed>,
}

/// `median (min–max)` of `values` in milliseconds, or `-`.
fn cell(values: Vec<f64>) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let (lo, hi) = min_max(values.iter().copied());
    let m = median(values);
    let digits = if hi < 10.0 { 2 } else { 1 };
    format!("{m:.digits$} ({lo:.digits$}–{hi:.digits$})")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The boot table, then the suspect boots.
fn boot_table(rows: &[Row]) -> String {
    let mut s = String::new();
    table_head(
        &mut s,
        &[
            "accel",
            "machine",
            "app",
            "boots",
            "first serial byte (ms)",
            "main, host (ms)",
            "exit (ms)",
            "first instruction → main, guest (ms)",
        ],
    );
    for r in rows {
        let clean: Vec<&Timed> = r.boots.iter().filter(|b| b.failure.is_none()).collect();
        let col =
            |f: &dyn Fn(&Timed) -> Option<f64>| cell(clean.iter().filter_map(|b| f(b)).collect());
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} of {} | {} | {} | {} | {} |",
            r.accel,
            r.machine,
            r.app,
            clean.len(),
            r.boots.len(),
            col(&|b| b.first_byte.map(ms)),
            col(&|b| b.main.map(ms)),
            col(&|b| Some(ms(b.exit))),
            col(&|b| b.guest_main_us.map(|us| us as f64 / 1e3)),
        );
    }
    let suspect: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.boots.iter().enumerate().filter_map(move |(i, b)| {
                let why = b.failure.as_ref()?;
                Some(format!(
                    "  {} {} {} boot {}: {}",
                    r.accel,
                    r.machine,
                    r.app,
                    i + 1,
                    first_line(why)
                ))
            })
        })
        .collect();
    if suspect.is_empty() {
        s.push_str("\nNo suspect boots: every boot is in the medians.\n");
    } else {
        let _ = writeln!(
            s,
            "\n{} suspect boot(s), left out of the medians:\n{}",
            suspect.len(),
            suspect.join("\n")
        );
    }
    s
}

/// The clock lines of a boot: `(host ns, guest ns)` each.
fn clock_marks(lines: &[(Duration, String)]) -> Vec<(i128, i128)> {
    lines
        .iter()
        .filter_map(|(at, l)| {
            let ns: i128 = l.trim().strip_prefix(CLOCK_LINE)?.parse().ok()?;
            Some((at.as_nanos() as i128, ns))
        })
        .collect()
}

/// The guest clock's rate error against the host's in ppm (positive: the guest's runs fast)
/// and the span it was measured over in seconds, from the soonest-delivered line among the
/// first and among the last [`CLOCK_ENDS`]. `None` with fewer than twice that many lines.
fn clock_error(marks: &[(i128, i128)]) -> Option<(f64, f64)> {
    if marks.len() < 2 * CLOCK_ENDS {
        return None;
    }
    // Host minus guest: the delivery delay plus the clocks' offset; the smallest is the truest.
    let soonest = |ms: &[(i128, i128)]| *ms.iter().min_by_key(|(h, g)| h - g).expect("not empty");
    let (h0, g0) = soonest(&marks[..CLOCK_ENDS]);
    let (h1, g1) = soonest(&marks[marks.len() - CLOCK_ENDS..]);
    let (host, guest) = ((h1 - h0) as f64, (g1 - g0) as f64);
    Some(((guest - host) / host * 1e6, host / 1e9))
}

/// Stripped size of `image` in bytes (with `strip`, into a temporary file).
fn stripped_size(image: &Path) -> Result<u64, String> {
    let out = artifacts::target_dir().join(format!(
        "vireo-stripped-{}",
        image.file_name().unwrap_or_default().to_string_lossy()
    ));
    let status = Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(image)
        .status()
        .map_err(|e| format!("cannot run strip: {e}"))?;
    if !status.success() {
        return Err(format!("strip {} failed", image.display()));
    }
    let size = std::fs::metadata(&out).map_err(|e| e.to_string())?.len();
    let _ = std::fs::remove_file(&out);
    Ok(size)
}

/// Whether the default application exits with success with `-m {mib}M` (TCG, q35 + qboot, its
/// `vireo-run` devices); a failure is tried once more before it counts.
fn default_app_runs(image: &artifacts::Image, mib: u64) -> Result<bool, String> {
    let mut dirs = directives::parse_file(&image.source, "vireo-run:")?;
    dirs.qemu.extend(["-m".to_string(), format!("{mib}M")]);
    for _ in 0..2 {
        let cmd = qemu::command(&image.path, Accel::Tcg, &dirs, "", "bench-mem")?;
        if timed_boot(cmd, Duration::from_secs(60))?.failure.is_none() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The smallest `-m` in MiB (from 4 up to 64) at which the default application runs.
fn smallest_memory(image: &artifacts::Image) -> Result<Option<u64>, String> {
    let (mut lo, mut hi) = (3u64, 16u64); // lo fails (assumed), hi runs (checked)
    while !default_app_runs(image, hi)? {
        if hi >= 64 {
            return Ok(None);
        }
        (lo, hi) = (hi, hi * 2);
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        eprintln!("xtask: default application with -m {mid}M ...");
        if default_app_runs(image, mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(Some(hi))
}

pub fn run(opts: &Options) -> Result<ExitCode, String> {
    setup::ensure_all()?;
    let accels = accels(opts.accel)?;
    let machines: Vec<&Machine> = MACHINES
        .iter()
        .filter(|m| opts.machine.as_deref().is_none_or(|w| m.name.contains(w)))
        .collect();
    if machines.is_empty() {
        let names: Vec<&str> = MACHINES.iter().map(|m| m.name).collect();
        return Err(format!("no machine matches (one of {})", names.join(", ")));
    }
    let trivial = artifacts::build_example("bootbench", true)?;
    let default_app = artifacts::build_example("hello", true)?;
    let load_before = loadavg();
    let started = Instant::now();
    let limit = Duration::from_secs(60);
    let mut rows = Vec::new();
    let mut commands = Vec::new();
    for &accel in &accels {
        for machine in &machines {
            let cmd = command(&trivial.path, accel, machine, "");
            commands.push(shell_words(&cmd));
            let mut boots = Vec::new();
            eprint!("xtask: {accel} {} ", machine.name);
            for _ in 0..opts.boots {
                let b = timed_boot(command(&trivial.path, accel, machine, ""), limit)?;
                eprint!("{}", if b.failure.is_some() { "x" } else { "." });
                boots.push(b);
            }
            eprintln!();
            rows.push(Row {
                accel,
                machine: machine.name,
                app: "bootbench",
                boots,
            });
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nBoot time: median (range) of {} boot(s) per row, timed from QEMU's start; -smp 1 -m \
         {MEMORY}; load average before {load_before}, after {}; took {:.0} s\n",
        opts.boots,
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    out.push_str(&boot_table(&rows));
    let _ = writeln!(out, "\nQEMU command lines:");
    for c in &commands {
        let _ = writeln!(out, "  {c}");
    }
    print!("{out}");

    println!("\nRelease images, stripped (unstripped):");
    for image in [&trivial, &default_app] {
        let full = std::fs::metadata(&image.path)
            .map_err(|e| e.to_string())?
            .len();
        println!(
            "  {}: {} KiB ({} KiB)",
            image.name,
            stripped_size(&image.path)?.div_ceil(1024),
            full.div_ceil(1024)
        );
    }
    match smallest_memory(&default_app)? {
        Some(mib) => println!(
            "\nSmallest -m at which the default application runs (TCG, q35 + qboot, scratch disk \
             and network card): {mib}M"
        ),
        None => println!("\nThe default application fails even with -m 64M"),
    }
    if opts.clock_secs > 0 {
        clock_runs(opts, &accels, &trivial.path)?;
    }
    let failed = rows
        .iter()
        .all(|r| r.boots.iter().all(|b| b.failure.is_some()));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The clock's error against the host's: `clock_runs` runs of `clock_secs` per configuration.
fn clock_runs(opts: &Options, accels: &[Accel], image: &Path) -> Result<(), String> {
    let append = format!("clock={}", opts.clock_secs);
    let configs = [("q35+qboot", "the PIT"), ("microvm-bare", "no PIT")];
    let mut s = String::new();
    table_head(
        &mut s,
        &[
            "accel",
            "machine",
            "TSC source",
            "error (ppm)",
            "runs",
            "error over the run (ms)",
        ],
    );
    let mut commands = Vec::new();
    for &accel in accels {
        for (name, _) in configs {
            let Some(machine) = MACHINES.iter().find(|m| m.name == name) else {
                continue;
            };
            let cmd = command(image, accel, machine, &append);
            commands.push(shell_words(&cmd));
            let (mut errors, mut source) = (Vec::new(), String::from("?"));
            eprint!("xtask: clock {accel} {name} ");
            for _ in 0..opts.clock_runs {
                let limit = Duration::from_secs(opts.clock_secs + 60);
                let b = timed_boot(command(image, accel, machine, &append), limit)?;
                if let Some(line) = b.lines.iter().find(|(_, l)| l.contains("TSC: ")) {
                    source = tsc_source(&line.1);
                }
                match (b.failure, clock_error(&clock_marks(&b.lines))) {
                    (None, Some((ppm, secs))) => {
                        eprint!("{ppm:+.1} ppm ");
                        errors.push((ppm, secs));
                    }
                    (why, _) => eprint!("[{}] ", why.unwrap_or_else(|| "too few lines".into())),
                }
            }
            eprintln!();
            let ppm: Vec<f64> = errors.iter().map(|e| e.0).collect();
            let ms: Vec<f64> = errors.iter().map(|e| e.0 * e.1 / 1e3).collect();
            let _ = writeln!(
                s,
                "| {accel} | {name} | {source} | {} | {} of {} | {} |",
                signed_cell(ppm),
                errors.len(),
                opts.clock_runs,
                signed_cell(ms)
            );
        }
    }
    println!(
        "\nClock error against the host's over {} s from main (positive: the guest's clock runs \
         fast), median (range):\n",
        opts.clock_secs
    );
    print!("{s}");
    println!("\nQEMU command lines:");
    for c in &commands {
        println!("  {c}");
    }
    Ok(())
}

/// `median (min – max)` with signs, or `-`.
fn signed_cell(values: Vec<f64>) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let lo = values.iter().copied().fold(f64::MAX, f64::min);
    let hi = values.iter().copied().fold(f64::MIN, f64::max);
    format!("{:+.1} ({lo:+.1} to {hi:+.1})", median(values))
}

/// The source named in the kernel's `TSC: ... from SOURCE (...)` line.
fn tsc_source(line: &str) -> String {
    let Some(rest) = line.split(" from ").nth(1) else {
        return "?".into();
    };
    rest.split(" (").next().unwrap_or(rest).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_boot_line() {
        let l = "[ INFO vireo::rt] boot: first instruction to main in 1234 us (TSC 2600000000 Hz)";
        assert_eq!(guest_main_us(l), Some(1234));
        assert_eq!(
            guest_main_us("boot: first instruction to main in x us"),
            None
        );
        assert_eq!(guest_main_us("nothing"), None);
    }

    #[test]
    fn clock_error_from_the_soonest_lines() {
        // The guest's clock runs 100 ppm fast; deliveries are late by 0..900 us, except one
        // line at each end that arrives 10 us late.
        let marks: Vec<(i128, i128)> = (0..101i128)
            .map(|i| {
                let host = i * 100_000_000;
                let guest = host + host / 10_000;
                let delay = if i == 2 || i == 98 {
                    10_000
                } else {
                    100_000 + (i * 7919) % 800_000
                };
                (host + delay, guest)
            })
            .collect();
        let (ppm, secs) = clock_error(&clock_marks_of(&marks)).unwrap();
        assert!((ppm - 100.0).abs() < 0.5, "{ppm}");
        assert!((secs - 9.6).abs() < 0.01, "{secs}");
        assert!(clock_error(&marks[..9]).is_none());
    }

    fn clock_marks_of(marks: &[(i128, i128)]) -> Vec<(i128, i128)> {
        let lines: Vec<(Duration, String)> = marks
            .iter()
            .map(|&(h, g)| (Duration::from_nanos(h as u64), format!("{CLOCK_LINE}{g}")))
            .chain([(Duration::ZERO, "noise".to_string())])
            .collect();
        clock_marks(&lines)
    }

    #[test]
    fn cells() {
        assert_eq!(cell(vec![3.0, 1.0, 2.0]), "2.00 (1.00–3.00)");
        assert_eq!(cell(vec![30.0, 10.0, 20.0]), "20.0 (10.0–30.0)");
        assert_eq!(cell(Vec::new()), "-");
        assert_eq!(signed_cell(vec![-1.0, 2.0, 0.5]), "+0.5 (-1.0 to +2.0)");
    }

    #[test]
    fn source_names() {
        assert_eq!(
            tsc_source("[ INFO vireo::time] TSC: 2600.000 MHz from the PIT (±700 ppm over 500 us)"),
            "the PIT"
        );
        assert_eq!(tsc_source("TSC: 2599.998 MHz from kvmclock"), "kvmclock");
    }
}
