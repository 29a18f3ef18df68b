//! What the verbs that talk to the running daemon share: the options every
//! one takes, the request, and the exit codes.
use std::process::ExitCode;

use anyhow::Result;
use dutnet::{
    control::{self, ClientError, FailureKind, Reply, Request},
    state::paths::Paths,
};

/// A runtime change refers to something that does not exist.
pub const EXIT_NOT_FOUND: u8 = 3;
/// The daemon refused the request: nothing was changed.
pub const EXIT_INVALID: u8 = 4;
/// There is no daemon to ask (nor, for `stats --offline`, any pins).
pub const EXIT_NOT_RUNNING: u8 = 5;

/// `--network` and `--json`, on every verb that asks the daemon.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The network to act on (optional when dutnet runs one network).
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Sends `request`; with `--json` prints the reply and returns `None`,
/// otherwise returns it for the verb to print.
pub fn ask(common: &Common, request: &Request) -> Result<Option<Reply>> {
    let reply = control::request(&Paths::from_env().control_socket(), request)?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(None);
    }
    Ok(Some(reply))
}

/// The exit code for an error from a verb.
pub fn exit_code(error: &anyhow::Error) -> ExitCode {
    // `stats --offline` with nothing pinned: no dutnet ran here either.
    if let Some(dutnet::datapath::ebpf::EbpfError::NotRunning { .. }) = error.downcast_ref() {
        return ExitCode::from(EXIT_NOT_RUNNING);
    }
    let Some(client) = error.downcast_ref::<ClientError>() else {
        return ExitCode::FAILURE;
    };
    match client {
        ClientError::NotRunning { .. } => ExitCode::from(EXIT_NOT_RUNNING),
        _ => match client.failure_kind() {
            Some(FailureKind::NotFound) => ExitCode::from(EXIT_NOT_FOUND),
            Some(FailureKind::Invalid) => ExitCode::from(EXIT_INVALID),
            _ => ExitCode::FAILURE,
        },
    }
}

/// A reply of another shape than the verb asked for (a mismatched daemon).
pub fn unexpected(reply: &Reply) -> anyhow::Error {
    anyhow::anyhow!(
        "the daemon answered with an unexpected reply ({reply:?}); use the dutnet binary of the running daemon"
    )
}

/// Prints `Done` replies (the add/remove verbs).
pub fn print_done(reply: Option<Reply>) -> Result<()> {
    match reply {
        None => Ok(()),
        Some(Reply::Done { message, .. }) => {
            println!("{message}");
            Ok(())
        }
        Some(other) => Err(unexpected(&other)),
    }
}

/// `-` for what is absent.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}
