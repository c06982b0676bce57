//! `cargo xtask mutants [CRATE|all] [CARGO-MUTANTS-ARGS]`: mutation testing of the host-testable
//! crates with cargo-mutants, and their scores.
//!
//! cargo-mutants (pinned to [`VERSION`], installed with `cargo install --locked` when missing)
//! mutates one crate at a time in a copy of the workspace (never the checkout itself, so an
//! interrupted run leaves the tree untouched) and runs that crate's host tests against each
//! mutant. Its reports go to `target/mutants/CRATE/mutants.out`. Equivalent mutants are excluded
//! by name in `.cargo/mutants.toml`, each with its reason; they are not generated, so the score
//! printed here, caught / (caught + missed + timeouts), is caught / (viable − equivalent).
//!
//! Not part of `cargo xtask test`: a full run of one crate takes about 50 minutes on two cores.

use std::{
    fs,
    path::Path,
    process::{Command, ExitCode},
};

use crate::artifacts::workspace_root;

/// The cargo-mutants release the results in the READMEs were measured with.
const VERSION: &str = "27.0.0";

/// The crates mutation testing covers (their tests run on the host).
const CRATES: [&str; 2] = ["vireo-virtio", "vireo-drivers"];

/// Runs cargo-mutants for the crates `args` names, then prints each crate's score and survivors.
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let (crates, extra) = match args.first().map(String::as_str) {
        None | Some("all") => (CRATES.to_vec(), args.get(1..).unwrap_or_default()),
        Some(s) if s.starts_with('-') => (CRATES.to_vec(), args),
        Some(name) => {
            let name = CRATES
                .iter()
                .find(|c| **c == name || c.strip_prefix("vireo-") == Some(name))
                .ok_or_else(|| {
                    format!("`{name}`: not a crate mutation testing covers ({CRATES:?} or all)")
                })?;
            (vec![*name], &args[1..])
        }
    };
    ensure_installed()?;
    let root = workspace_root();
    let mut summaries = Vec::new();
    for krate in &crates {
        let out = root.join("target/mutants").join(krate);
        fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
        println!("cargo mutants -p {krate} {}", extra.join(" "));
        let status = Command::new(env!("CARGO"))
            .args(["mutants", "-p", krate, "--output"])
            .arg(&out)
            .args(extra)
            .current_dir(&root)
            .status()
            .map_err(|e| format!("cannot run cargo mutants: {e}"))?;
        // 0: all caught; 2: some missed; 3: some timed out. Anything else (usage error, failing
        // baseline, interrupted) means there is no score to print.
        if !matches!(status.code(), Some(0 | 2 | 3)) {
            return Err(format!("cargo mutants -p {krate}: {status}"));
        }
        let report = Report::read(&out.join("mutants.out"))?;
        report.print(krate, excluded(krate, extra));
        summaries.push((*krate, report));
    }
    println!();
    for (krate, report) in &summaries {
        println!("{krate}: {}", report.score_line());
    }
    Ok(ExitCode::SUCCESS)
}

/// Installs cargo-mutants [`VERSION`] unless that version is installed.
fn ensure_installed() -> Result<(), String> {
    let installed = Command::new(env!("CARGO"))
        .args(["mutants", "--version"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if installed.as_deref() == Some(&format!("cargo-mutants {VERSION}")) {
        return Ok(());
    }
    println!(
        "installing cargo-mutants {VERSION} (found: {}): cargo install --locked cargo-mutants --version {VERSION}",
        installed.as_deref().unwrap_or("none")
    );
    let status = Command::new(env!("CARGO"))
        .args(["install", "--locked", "cargo-mutants", "--version", VERSION])
        .status()
        .map_err(|e| format!("cannot run cargo install: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo install cargo-mutants {VERSION}: {status}"))
    }
}

/// How many mutants of `krate` (under the same filters) `.cargo/mutants.toml` excludes as
/// equivalent: the listing without the configuration minus the listing with it.
fn excluded(krate: &str, extra: &[String]) -> Option<usize> {
    let count = |no_config: bool| -> Option<usize> {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["mutants", "--list", "-p", krate])
            .args(extra)
            .current_dir(workspace_root());
        if no_config {
            cmd.arg("--no-config");
        }
        let out = cmd.output().ok().filter(|o| o.status.success())?;
        Some(String::from_utf8_lossy(&out.stdout).lines().count())
    };
    count(true)?.checked_sub(count(false)?)
}

/// The outcome lists cargo-mutants writes (one mutant per line: `file:line:col: mutation`).
#[derive(Debug)]
struct Report {
    caught: Vec<String>,
    missed: Vec<String>,
    timeout: Vec<String>,
    unviable: Vec<String>,
    /// With `--iterate`: the mutants earlier runs caught or found unviable (not run again, not
    /// in the score).
    previously: Vec<String>,
}

impl Report {
    fn read(dir: &Path) -> Result<Self, String> {
        let list = |name: &str| -> Result<Vec<String>, String> {
            let path = dir.join(name);
            let text = fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok(text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(String::from)
                .collect())
        };
        Ok(Self {
            caught: list("caught.txt")?,
            missed: list("missed.txt")?,
            timeout: list("timeout.txt")?,
            unviable: list("unviable.txt")?,
            previously: list("previously_caught.txt").unwrap_or_default(),
        })
    }

    /// Mutants that built: caught, missed or timed out.
    fn viable(&self) -> usize {
        self.caught.len() + self.missed.len() + self.timeout.len()
    }

    fn score_line(&self) -> String {
        let viable = self.viable();
        let score = if viable == 0 {
            "n/a".to_string()
        } else {
            format!("{:.1} %", 100.0 * self.caught.len() as f64 / viable as f64)
        };
        format!(
            "score {score}: {} caught of {viable} viable non-equivalent ({} missed, {} timeouts; {} unviable)",
            self.caught.len(),
            self.missed.len(),
            self.timeout.len(),
            self.unviable.len()
        )
    }

    fn print(&self, krate: &str, excluded: Option<usize>) {
        println!("\n{krate}: {}", self.score_line());
        match excluded {
            Some(n) => println!("  {n} equivalent mutants excluded by .cargo/mutants.toml"),
            None => println!("  (could not count the mutants .cargo/mutants.toml excludes)"),
        }
        if !self.previously.is_empty() {
            println!(
                "  --iterate: the score covers this run only; {} mutants caught or unviable earlier were not run again",
                self.previously.len()
            );
        }
        for (what, list) in [("missed", &self.missed), ("timeout", &self.timeout)] {
            for name in list {
                println!("  {what}: {name}");
            }
        }
    }
}
