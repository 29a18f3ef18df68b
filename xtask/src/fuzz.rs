//! `cargo xtask fuzz`: builds the libFuzzer targets of `fuzz/` (cargo-fuzz,
//! nightly, AddressSanitizer) and runs each from a corpus seeded with what
//! real clients send (`fuzz/seeds/`, recorded by `fuzz/seeds/capture.sh`),
//! then prints a line per target: executions, coverage, and whether it
//! found anything. `--quick` (in `cargo xtask test`) gives each target a
//! few seconds; docs/reliability.md has the figures of the long runs.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{run, setup};

/// Every target, by its `[[bin]]` name in fuzz/Cargo.toml.
const TARGETS: [&str; 6] = ["dhcp", "dns", "config", "control", "ntp", "tftp"];
/// Seconds per target of `--quick`.
const QUICK_SECONDS: u64 = 8;
/// An input that takes longer than this is a finding (libFuzzer -timeout).
const INPUT_TIMEOUT_SECONDS: u64 = 2;
/// An input that makes the process grow past this is a finding.
const RSS_LIMIT_MB: u64 = 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A few seconds per target (what `cargo xtask test` runs).
    #[arg(long)]
    quick: bool,
    /// Only this target (dhcp, dns, config, control, ntp, tftp).
    #[arg(long)]
    target: Option<String>,
    /// Executions per target (libFuzzer -runs); without it, --seconds.
    #[arg(long)]
    runs: Option<u64>,
    /// Seconds per target when --runs is not given.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

impl Args {
    /// What `cargo xtask test` runs.
    pub fn quick() -> Self {
        Self {
            quick: true,
            target: None,
            runs: None,
            seconds: QUICK_SECONDS,
        }
    }
}

/// What libFuzzer said at the end of one target's run.
#[derive(Debug, Default)]
struct Outcome {
    executions: u64,
    seconds: u64,
    coverage: u64,
    features: u64,
    corpus: u64,
}

pub fn run(args: &Args) -> Result<()> {
    let root = run::workspace_root()?;
    let targets: Vec<&str> = match &args.target {
        Some(t) if TARGETS.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => bail!("no fuzz target `{t}`; pick one of {}", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    let cargo_fuzz = setup::cargo_fuzz()?;
    run::checked(fuzz_command(&root, &cargo_fuzz).args(["build", "-O"]))
        .context("building the fuzz targets failed")?;
    let mut table = Vec::new();
    for target in targets {
        let corpus = seed_corpus(&root, target)?;
        let mut command = fuzz_command(&root, &cargo_fuzz);
        command.args(["run", "-O", target]).arg(&corpus).arg("--");
        command.arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"));
        command.arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"));
        command.arg("-print_final_stats=1");
        match (args.quick, args.runs) {
            (true, _) => command.arg(format!("-max_total_time={QUICK_SECONDS}")),
            (false, Some(runs)) => command.arg(format!("-runs={runs}")),
            (false, None) => command.arg(format!("-max_total_time={}", args.seconds)),
        };
        eprintln!("\n=== fuzz {target}");
        let output = command
            .output()
            .with_context(|| format!("cannot start {}", run::describe(&command)))?;
        let log = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            eprintln!("{log}");
            bail!(
                "fuzz target `{target}` found a crash, a timeout or a memory blow-up (its input is in fuzz/artifacts/{target}/; `cargo +nightly fuzz run {target} FILE` replays it)"
            );
        }
        let outcome = parse_stats(&log);
        eprintln!(
            "{target}: {} executions in {} s, coverage {} edges, {} features, corpus {}",
            outcome.executions, outcome.seconds, outcome.coverage, outcome.features, outcome.corpus
        );
        table.push((target, outcome));
    }
    println!("\n| target | executions | seconds | edges covered | corpus | crashes |");
    println!("|---|---|---|---|---|---|");
    for (target, o) in &table {
        println!(
            "| {target} | {} | {} | {} | {} | 0 |",
            o.executions, o.seconds, o.coverage, o.corpus
        );
    }
    Ok(())
}

/// `cargo fuzz` with the nightly toolchain (sanitizers and coverage
/// instrumentation need it) and cargo-fuzz from `target/tools`.
fn fuzz_command(root: &Path, cargo_fuzz: &Path) -> Command {
    let mut command = Command::new("rustup");
    command
        .args(["run", setup::NIGHTLY])
        .arg(cargo_fuzz)
        // As `cargo fuzz` calls it.
        .arg("fuzz")
        .current_dir(root)
        // The stable toolchain's cargo ran xtask: its settings must not
        // reach the nightly build.
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC");
    command
}

/// `target/fuzz-corpus/<target>`, with the seeds written in the shape the
/// target reads (kept across runs: libFuzzer adds what it finds).
fn seed_corpus(root: &Path, target: &str) -> Result<PathBuf> {
    let corpus = root.join("target/fuzz-corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("create {}", corpus.display()))?;
    let seeds: Vec<(String, Vec<u8>)> = match target {
        "config" => files(&root.join("examples"))?,
        other => files(&root.join("fuzz/seeds").join(other))?,
    };
    let framed = |bytes: &[u8]| {
        let mut out = u16::try_from(bytes.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes()
            .to_vec();
        out.extend_from_slice(bytes);
        out
    };
    for (name, bytes) in &seeds {
        // The DHCP and DNS targets read length-led datagrams.
        let seed = match target {
            "dhcp" | "dns" => framed(bytes),
            _ => bytes.clone(),
        };
        std::fs::write(corpus.join(format!("seed-{name}")), seed)?;
    }
    if target == "dhcp" {
        // Every client's messages in one conversation.
        let all: Vec<u8> = seeds.iter().flat_map(|(_, b)| framed(b)).collect();
        std::fs::write(corpus.join("seed-all-clients"), all)?;
    }
    Ok(corpus)
}

fn files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "sh") {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((name, std::fs::read(&path)?));
    }
    out.sort();
    Ok(out)
}

/// The numbers of libFuzzer's last status line and its final stats.
fn parse_stats(log: &str) -> Outcome {
    let mut o = Outcome::default();
    let number_after = |line: &str, key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split_whitespace()
            .next()?
            .trim_end_matches(',')
            .parse()
            .ok()
    };
    for line in log.lines() {
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            o.executions = n.trim().parse().unwrap_or(o.executions);
        }
        if line.starts_with("Done ") {
            // "Done 1234 runs in 8 second(s)"
            o.seconds = number_after(line, " in ").unwrap_or(o.seconds);
        }
        if line.starts_with('#') && line.contains("cov: ") {
            o.coverage = number_after(line, "cov: ").unwrap_or(o.coverage);
            o.features = number_after(line, "ft: ").unwrap_or(o.features);
            o.corpus = number_after(line, "corp: ")
                .or_else(|| {
                    let rest = &line[line.find("corp: ")? + 6..];
                    rest.split('/').next()?.parse().ok()
                })
                .unwrap_or(o.corpus);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_numbers_are_read_from_libfuzzers_log() {
        let log = "#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                   #65536\tpulse  cov: 812 ft: 2301 corp: 140/9Kb lim: 650 exec/s: 21845 rss: 60Mb\n\
                   Done 190000 runs in 9 second(s)\n\
                   stat::number_of_executed_units: 190123\n";
        let o = parse_stats(log);
        assert_eq!(
            (o.executions, o.seconds, o.coverage, o.features, o.corpus),
            (190_123, 9, 812, 2301, 140)
        );
    }
}
