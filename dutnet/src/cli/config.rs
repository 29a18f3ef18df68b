//! `dutnet config check FILE`: validate a config and show what dutnet will run.
use std::path::PathBuf;

use anyhow::{Result, bail};
use dutnet::config::{self, LoadedConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Validate FILE and print the normalized networks (every default filled
    /// in), or every problem found, one per line.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// A dutnet config, or a jumpstarter exporter file with DutNetwork exports.
    file: PathBuf,
    /// Print JSON instead of YAML.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    match &args.command {
        Command::Check(check) => run_check(check),
    }
}

fn run_check(args: &CheckArgs) -> Result<()> {
    match config::load_file(&args.file) {
        Ok(loaded) => {
            // Warnings (partly overlapping subnets, ignored exports) also go
            // to stderr, where a wrapper script sees them.
            for note in &loaded.notes {
                eprintln!("{}: note: {note}", args.file.display());
            }
            print!("{}", render(&loaded, args.json)?);
            Ok(())
        }
        Err(e) => {
            // One line per problem, each prefixed by the file like a compiler
            // diagnostic, so editors and grep can jump to it.
            for problem in &e.problems {
                eprintln!("{}: {problem}", args.file.display());
            }
            let n = e.problems.len();
            bail!(
                "{}: {n} problem{} found",
                args.file.display(),
                if n == 1 { "" } else { "s" }
            )
        }
    }
}

fn render(loaded: &LoadedConfig, json: bool) -> Result<String> {
    Ok(if json {
        let mut s = serde_json::to_string_pretty(loaded)?;
        s.push('\n');
        s
    } else {
        serde_yaml::to_string(loaded)?
    })
}
