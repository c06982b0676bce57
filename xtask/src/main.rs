//! `cargo xtask`: build, boot, test and measure Vireo images.
//!
//! ```text
//! cargo xtask run [--example NAME] [--release] [--accel kvm|tcg] [--gdb] [--qemu-arg ARG]... [-- APP-ARGS]
//! cargo xtask new PATH [--name NAME]
//! cargo xtask test [--accel kvm|tcg] [--release] [--no-host] [--show] [FILTER]
//! cargo xtask bench virtq
//! cargo xtask bench blk [--quick] [--accel kvm|tcg] [--backend null|file] [--layout split|packed] [--job NAME] [--polled] [--append WORD]
//! cargo xtask bench net [--quick] [--accel kvm|tcg] [--backend user|tap] [--layout split|packed] [--job NAME] [--polled] [--append WORD]
//! cargo xtask bench boot [--quick] [--accel kvm|tcg] [--machine NAME] [--boots N] [--clock SECS] [--clock-runs N]
//! cargo xtask mutants [vireo-virtio|vireo-drivers|all] [CARGO-MUTANTS-ARGS]...
//! cargo xtask soak [OPS] [--seed N] [--timeout SECS]
//! ```

mod accel;
mod appcheck;
mod artifacts;
mod bench;
mod benchboot;
mod benchnet;
mod boot;
mod directives;
mod diskcheck;
mod garbage;
mod gdb;
mod httpcheck;
mod kvmprobe;
mod mutants;
mod netns;
mod netpeer;
mod peer;
mod qemu;
mod runner;
mod scaffold;
mod setup;
mod sitetar;
mod soak;
mod test;

use std::{env, process::ExitCode};

use qemu::Accel;

/// Options shared by the commands that boot images.
#[derive(Debug, Clone, Default)]
struct Common {
    release: bool,
    accel: Option<Accel>,
    /// `--machine`: the machine type to boot (`run`), or the only one to test (`test`).
    machine: Option<qemu::Machine>,
    qemu_args: Vec<String>,
}

fn usage() -> &'static str {
    "usage:
  cargo xtask run [--example NAME] [--release] [--accel kvm|tcg] [--machine q35|microvm] [--gdb]
                  [--qemu-arg ARG]... [-- APP-ARGS...]
  cargo xtask new PATH [--name NAME]
  cargo xtask test [--accel kvm|tcg] [--machine q35|microvm] [--release] [--no-host] [--show] [FILTER]
  cargo xtask bench virtq
  cargo xtask bench blk [--quick] [--accel kvm|tcg] [--backend null|file] [--layout split|packed]
                        [--job NAME] [--polled] [--append KERNEL-ARG]... [--qemu-arg ARG]...
  cargo xtask bench net [--quick] [--accel kvm|tcg] [--backend user|tap] [--layout split|packed]
                        [--job NAME] [--polled] [--append KERNEL-ARG]... [--qemu-arg ARG]...
  cargo xtask bench boot [--quick] [--accel kvm|tcg] [--machine NAME] [--boots N] [--clock SECS]
                         [--clock-runs N]
  cargo xtask mutants [vireo-virtio|vireo-drivers|all] [CARGO-MUTANTS-ARGS]...
  cargo xtask soak [OPS] [--seed N] [--timeout SECS]"
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("test") => test_cmd(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("new") => new(&args[1..]),
        Some("mutants") => mutants::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]),
        // Hidden: the cargo runner of applications made by `new` (see `runner.rs`).
        Some("runner") => runner::main(&args[1..]),
        // Hidden: the host side of one `bench net` job (see `netpeer.rs`).
        Some("peer-serve") => netpeer::serve(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{}", usage());
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(format!("unknown command\n{}", usage())),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the options every booting command shares; returns the rest.
fn parse_common(args: &[String], common: &mut Common) -> Result<Vec<String>, String> {
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--release" => common.release = true,
            "--accel" => {
                let v = it.next().ok_or("--accel needs kvm or tcg")?;
                common.accel = Some(v.parse()?);
            }
            "--machine" => {
                let v = it.next().ok_or("--machine needs q35 or microvm")?;
                common.machine = Some(v.parse()?);
            }
            "--qemu-arg" => common
                .qemu_args
                .push(it.next().ok_or("--qemu-arg needs a value")?.clone()),
            "--" => {
                rest.push(arg.clone());
                rest.extend(it.by_ref().cloned());
            }
            _ => rest.push(arg.clone()),
        }
    }
    Ok(rest)
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let mut common = Common::default();
    let rest = parse_common(args, &mut common)?;
    let mut example = "hello".to_string();
    let mut app_args = Vec::new();
    let mut gdb = false;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--example" => example = it.next().ok_or("--example needs a name")?.clone(),
            "--gdb" => gdb = true,
            "--" => app_args.extend(it.by_ref().cloned()),
            other => return Err(format!("unexpected argument `{other}`\n{}", usage())),
        }
    }
    setup::ensure_all()?;
    let image = artifacts::build_example(&example, common.release)?;
    runner::boot_app(&runner::App {
        elf: &image.path,
        source: &image.source,
        scope: "run",
        common: &common,
        gdb,
        app_args: &app_args,
    })
}

fn new(args: &[String]) -> Result<ExitCode, String> {
    let (mut path, mut name) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--name" => name = Some(it.next().ok_or("--name needs a package name")?.clone()),
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`\n{}", usage())),
            _ if path.is_some() => return Err(format!("one PATH only\n{}", usage())),
            _ => path = Some(arg.clone()),
        }
    }
    let path = path.ok_or_else(|| format!("where? give a PATH\n{}", usage()))?;
    let dir = scaffold::create(std::path::Path::new(&path), name.as_deref())?;
    println!(
        "created {}\n  cd {} && cargo run     # boots it in QEMU\n  cargo test              # runs its in-QEMU tests",
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn test_cmd(args: &[String]) -> Result<ExitCode, String> {
    let mut common = Common::default();
    let rest = parse_common(args, &mut common)?;
    let mut opts = test::Options {
        common,
        host: true,
        filter: None,
        show: false,
    };
    for arg in rest {
        match arg.as_str() {
            "--no-host" => opts.host = false,
            "--show" => opts.show = true,
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`\n{}", usage())),
            _ => opts.filter = Some(arg),
        }
    }
    setup::ensure_all()?;
    test::run(&opts)
}

fn bench(args: &[String]) -> Result<ExitCode, String> {
    match args.first().map(String::as_str) {
        Some("virtq") => {
            let status = std::process::Command::new(env!("CARGO"))
                .args(["bench", "-p", "vireo-virtio", "--bench", "virtq"])
                .current_dir(artifacts::workspace_root())
                .status()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            Ok(if status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Some("blk") => bench_blk(&args[1..]),
        Some("net") => bench_net(&args[1..]),
        Some("boot") => bench_boot(&args[1..]),
        _ => Err(format!("which benchmark?\n{}", usage())),
    }
}

/// Parses the options `bench blk` and `bench net` share.
fn bench_options(args: &[String]) -> Result<bench::Options, String> {
    let mut common = Common::default();
    let rest = parse_common(args, &mut common)?;
    let mut opts = bench::Options {
        accel: common.accel,
        qemu_args: common.qemu_args,
        ..bench::Options::default()
    };
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--polled" => opts.polled = true,
            "--backend" => opts.backend = Some(value("--backend")?),
            "--layout" => opts.layout = Some(value("--layout")?),
            "--job" => opts.job = Some(value("--job")?),
            "--append" => opts.append.push(value("--append")?),
            other => return Err(format!("unexpected argument `{other}`\n{}", usage())),
        }
    }
    Ok(opts)
}

fn bench_blk(args: &[String]) -> Result<ExitCode, String> {
    bench::run(&bench_options(args)?)
}

fn bench_net(args: &[String]) -> Result<ExitCode, String> {
    benchnet::run(&bench_options(args)?)
}

fn bench_boot(args: &[String]) -> Result<ExitCode, String> {
    let mut opts = benchboot::Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name} needs a number, not `{v}`"))
        };
        match arg.as_str() {
            "--quick" => {
                opts.boots = 3;
                opts.clock_secs = 3;
                opts.clock_runs = 1;
            }
            "--accel" => opts.accel = Some(value("--accel")?.parse()?),
            "--machine" => opts.machine = Some(value("--machine")?),
            "--boots" => opts.boots = number("--boots", value("--boots")?)? as usize,
            "--clock" => opts.clock_secs = number("--clock", value("--clock")?)?,
            "--clock-runs" => {
                opts.clock_runs = number("--clock-runs", value("--clock-runs")?)? as usize;
            }
            other => return Err(format!("unexpected argument `{other}`\n{}", usage())),
        }
    }
    benchboot::run(&opts)
}
