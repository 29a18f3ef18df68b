//! The programs' own log records (aya-log), off unless `DUTNET_EBPF_LOG`
//! names a level.
//!
//! The programs write a record (a punt, a drop) into aya-log's `AYA_LOGS`
//! ring buffer only when its level is at or below the `AYA_LOG_LEVEL` global
//! dutnet sets at load time. A task waits for the ring buffer to become
//! readable and forwards each record to tracing under target
//! [`TARGET`]. Unset, the global is 0 (every record off, which the
//! verifier sees and prunes), nothing reads the ring buffer and no task runs.
use aya::{Ebpf, EbpfLoader};
use aya_log::EbpfLogger;
use tokio::io::{Interest, unix::AsyncFd};
use tracing::{Level, warn};

use super::EbpfError;

/// Unset (or empty): eBPF logging off. Otherwise the most verbose level the
/// programs write.
pub const EBPF_LOG_ENV: &str = "DUTNET_EBPF_LOG";

/// The tracing target of every forwarded record.
pub const TARGET: &str = "dutnet::ebpf";

/// What [`EBPF_LOG_ENV`] accepts, as the error message lists it.
const ACCEPTED: &str = "error, warn, info, debug, trace or 1 (debug)";

/// `DUTNET_EBPF_LOG` holds something that is not a level.
#[derive(Debug, thiserror::Error)]
#[error(
    "{EBPF_LOG_ENV}={value:?} is not an eBPF log level: set it to {ACCEPTED}, or unset it to keep eBPF logging off"
)]
pub struct InvalidLevel {
    pub value: String,
}

/// The level [`EBPF_LOG_ENV`] asks for; `None` when it is unset or empty.
pub fn level_from_env() -> Result<Option<Level>, InvalidLevel> {
    match std::env::var_os(EBPF_LOG_ENV) {
        None => Ok(None),
        Some(value) if value.is_empty() => Ok(None),
        Some(value) => parse_level(&value.to_string_lossy()).map(Some),
    }
}

/// One of [`ACCEPTED`], in any case.
pub fn parse_level(value: &str) -> Result<Level, InvalidLevel> {
    let level = match value.to_ascii_lowercase().as_str() {
        "error" => Level::ERROR,
        "warn" => Level::WARN,
        "info" => Level::INFO,
        // `1` for "logging on", the usual meaning of a boolean variable.
        "debug" | "1" => Level::DEBUG,
        "trace" => Level::TRACE,
        _ => {
            return Err(InvalidLevel {
                value: value.to_owned(),
            });
        }
    };
    Ok(level)
}

/// `level` as [`EBPF_LOG_ENV`] spells it, `off` for none.
#[must_use]
pub fn describe(level: Option<Level>) -> &'static str {
    match level {
        None => "off",
        Some(Level::ERROR) => "error",
        Some(Level::WARN) => "warn",
        Some(Level::INFO) => "info",
        Some(Level::DEBUG) => "debug",
        Some(Level::TRACE) => "trace",
    }
}

/// The value of aya-log-ebpf's `AYA_LOG_LEVEL` for `level`, for
/// [`set_level`]: 0 turns every record off. It must be set even then, as
/// aya-log-ebpf 0.2 defaults it to 0xff (everything on).
#[must_use]
pub fn level_byte(level: Option<Level>) -> u8 {
    let Some(level) = level else {
        return 0;
    };
    let level = match level {
        Level::ERROR => aya_log::Level::Error,
        Level::WARN => aya_log::Level::Warn,
        Level::INFO => aya_log::Level::Info,
        Level::DEBUG => aya_log::Level::Debug,
        Level::TRACE => aya_log::Level::Trace,
    };
    u8::from(level)
}

/// Sets the programs' log level in `loader`; `level` must outlive it.
pub fn set_level<'a>(loader: &mut EbpfLoader<'a>, level: &'a u8) {
    loader.override_global(aya_log::LEVEL, level, true);
}

/// Forwards the programs' records to tracing until dropped.
pub struct Forwarder {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Takes the ring buffer out of `ebpf` and starts the task that reads it,
/// on the tokio runtime of the caller.
pub fn forward(ebpf: &mut Ebpf) -> Result<Forwarder, EbpfError> {
    let runtime =
        tokio::runtime::Handle::try_current().map_err(|_| EbpfError::LogWithoutRuntime)?;
    let logger = EbpfLogger::init_with_logger(ebpf, ToTracing)
        .map_err(|source| EbpfError::LogRing { source })?;
    // SAFETY: the fd is the logger's ring buffer map, which the logger owns
    // and keeps open, and its `as_raw_fd` returns, for as long as it lives;
    // the AsyncFd owns the logger.
    let ring =
        unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }.map_err(|e| {
            EbpfError::LogPoll {
                source: e.into_parts().1,
            }
        })?;
    Ok(Forwarder {
        task: runtime.spawn(read_records(ring)),
    })
}

/// Waits (no busy loop: epoll on the ring buffer) and forwards every record
/// there is, until aborted.
async fn read_records(mut ring: AsyncFd<EbpfLogger<ToTracing>>) {
    loop {
        let mut ready = match ring.readable_mut().await {
            Ok(ready) => ready,
            Err(e) => {
                warn!(error = %e, "eBPF log records can no longer be read; the datapath runs on without them");
                return;
            }
        };
        // aya-log 0.3 `unwrap`s the parse of each record. The records come
        // only from dutnet's own programs, written by aya-log-ebpf with the
        // same aya-log-common, so a malformed one is a build bug; its panic
        // would end this task only (tokio catches it), not the daemon: the
        // datapath goes on without eBPF logs.
        ready.get_inner_mut().flush();
        ready.clear_ready();
    }
}

/// A `log::Log` that hands aya-log's records to tracing.
struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        // The programs wrote only the levels asked for; tracing's filter
        // has the last word.
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        // The record's target is the eBPF module that wrote it.
        let module = record.target();
        let message = record.args();
        match record.level() {
            log::Level::Error => tracing::error!(target: TARGET, module, "{message}"),
            log::Level::Warn => tracing::warn!(target: TARGET, module, "{message}"),
            log::Level::Info => tracing::info!(target: TARGET, module, "{message}"),
            log::Level::Debug => tracing::debug!(target: TARGET, module, "{message}"),
            log::Level::Trace => tracing::trace!(target: TARGET, module, "{message}"),
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_five_levels_and_1_are_accepted_in_any_case() {
        assert_eq!(parse_level("error").unwrap(), Level::ERROR);
        assert_eq!(parse_level("WARN").unwrap(), Level::WARN);
        assert_eq!(parse_level("Info").unwrap(), Level::INFO);
        assert_eq!(parse_level("debug").unwrap(), Level::DEBUG);
        assert_eq!(parse_level("1").unwrap(), Level::DEBUG);
        assert_eq!(parse_level("trace").unwrap(), Level::TRACE);
    }

    #[test]
    fn anything_else_is_refused_naming_the_accepted_values() {
        for value in ["loud", "0", "warning", "debug,info"] {
            let message = parse_level(value).unwrap_err().to_string();
            assert!(message.contains(EBPF_LOG_ENV), "{message}");
            assert!(message.contains(ACCEPTED), "{message}");
            assert!(message.contains(&format!("{value:?}")), "{message}");
        }
    }

    #[test]
    fn off_is_0_and_each_level_is_aya_logs_number() {
        assert_eq!(level_byte(None), 0);
        assert_eq!(level_byte(Some(Level::ERROR)), 1);
        assert_eq!(level_byte(Some(Level::DEBUG)), 4);
        assert_eq!(level_byte(Some(Level::TRACE)), 5);
    }
}
