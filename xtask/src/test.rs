//! `cargo xtask test`: every check CI runs, in one command.
//!
//! Builds unprivileged, then runs each test binary as root (namespaces, BPF and
//! netlink need it), collecting failures across binaries.
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{run, setup};

/// A test binary that runs longer than this is killed and counted as failed.
const BINARY_LIMIT: Duration = Duration::from_secs(20 * 60);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Skip `cargo fmt --check` and clippy (for a quick local loop; CI lints).
    #[arg(long)]
    no_lint: bool,
    /// Passed to every test binary (e.g. a test name filter).
    #[arg(last = true)]
    test_args: Vec<String>,
}

pub fn run(args: &Args) -> Result<()> {
    setup::run()?;
    if !args.no_lint {
        run::checked(run::cargo().args(["fmt", "--all", "--check"]))
            .context("formatting differs: run `cargo fmt --all`")?;
        run::checked(run::cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    run::checked(run::cargo().args(["build", "--package", "dutnet", "--bin", "dutnet"]))?;
    let binaries = build_test_binaries()?;
    let dutnet = target_dir()?.join("debug/dutnet");

    let mut failed = Vec::new();
    let mut totals = TestCounts::default();
    for binary in &binaries {
        eprintln!("\n=== {}", binary.display());
        let mut command = as_root(binary);
        command
            .args(&args.test_args)
            .env("RUST_BACKTRACE", "1")
            .env("DUTNET_BIN", &dutnet)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let (passed, counts) = run_test_binary(command, binary)?;
        totals.passed += counts.passed;
        totals.failed += counts.failed;
        if !passed {
            failed.push(binary.clone());
        }
    }
    for binary in &failed {
        eprintln!("failed: {}", binary.display());
    }
    // The plain closing line CI reads, summed over every binary.
    println!(
        "\ntests: {} passed, {} failed",
        totals.passed, totals.failed
    );
    if !failed.is_empty() {
        bail!(
            "{} of {} test binaries failed",
            failed.len(),
            binaries.len()
        );
    }
    if !args.test_args.is_empty() {
        // A filtered local run: no benchmark.
        return Ok(());
    }
    // Every parser under libFuzzer for a few seconds: a crash, a timeout
    // or a memory blow-up fails the run.
    eprintln!("\n=== cargo xtask fuzz --quick");
    crate::fuzz::run(&crate::fuzz::Args::quick())?;
    // The benchmark must keep running (CI checks it runs, not its numbers).
    eprintln!("\n=== cargo xtask bench --quick (smoke run)");
    crate::bench::quick_smoke(&dutnet)
}

#[derive(Debug, Default)]
struct TestCounts {
    passed: u64,
    failed: u64,
}

/// Runs one test binary, echoing its output and adding up its
/// `test result:` lines; kills it after [`BINARY_LIMIT`].
fn run_test_binary(mut command: Command, binary: &Path) -> Result<(bool, TestCounts)> {
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stdout = child.stdout.take().context("test binary stdout")?;
    let reader = std::thread::spawn(move || {
        let mut counts = TestCounts::default();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(summary) = line.strip_prefix("test result: ") {
                counts.passed += count_before(summary, " passed");
                counts.failed += count_before(summary, " failed");
            }
        }
        counts
    });
    let passed = loop {
        if let Some(status) = child.try_wait()? {
            break status.success();
        }
        if started.elapsed() > BINARY_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("{} ran over {BINARY_LIMIT:?}: killed", binary.display());
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let counts = reader.join().unwrap_or_default();
    Ok((passed, counts))
}

/// In "ok. 6 passed; 0 failed; ...", the number before `word`.
fn count_before(summary: &str, word: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| {
            part.trim()
                .rsplit('.')
                .next()?
                .trim()
                .strip_suffix(word.trim_start())
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Builds every test binary of the workspace (except the eBPF crate, which
/// only builds for the bpf target) and returns their paths.
pub(crate) fn build_test_binaries() -> Result<Vec<PathBuf>> {
    let output = run::cargo()
        .args([
            "test",
            "--workspace",
            "--exclude",
            "dutnet-ebpf",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cargo test --no-run")?;
    if !output.status.success() {
        bail!("building the tests failed");
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["profile"]["test"] == true
            && let Some(executable) = message["executable"].as_str()
        {
            binaries.push(PathBuf::from(executable));
        }
    }
    binaries.sort();
    binaries.dedup();
    Ok(binaries)
}

pub(crate) fn target_dir() -> Result<PathBuf> {
    let metadata =
        run::stdout(run::cargo().args(["metadata", "--format-version", "1", "--no-deps"]))?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata)?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}

pub(crate) fn as_root(binary: &Path) -> Command {
    if run::is_root() {
        Command::new(binary)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-E", "--"]).arg(binary);
        sudo
    }
}

#[cfg(test)]
mod tests {
    use super::count_before;

    #[test]
    fn reads_cargo_test_summaries() {
        let summary = "ok. 6 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(count_before(summary, " passed"), 6);
        assert_eq!(count_before(summary, " failed"), 1);
    }

    /// README's second set-up command is exactly what CI runs.
    #[test]
    fn ci_runs_the_readme_test_command() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let commands: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("```sh"))
            .skip(1)
            .take_while(|l| !l.starts_with("```"))
            .map(|l| l.split('#').next().unwrap_or_default().trim())
            .collect();
        assert_eq!(commands, ["cargo xtask demo", "cargo xtask test"]);
        let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
        let ci_command = ci
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap();
        assert_eq!(ci_command, "exec cargo xtask test");
    }
}
