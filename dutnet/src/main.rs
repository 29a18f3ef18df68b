//! The dutnet command: parse, set up logging, dispatch to a verb.
mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
