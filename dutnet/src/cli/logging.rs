//! Where log lines go and how they look: `DUTNET_LOG` filters (tracing's
//! `EnvFilter` syntax, `info` by default), `DUTNET_LOG_FORMAT=json` writes
//! one JSON object per line, and under systemd (stderr is the journal, as
//! `JOURNAL_STREAM` says) each line starts with its syslog priority (`<4>`
//! for a warning) and no timestamp, so `journalctl -p warning` filters.
//! `DUTNET_EBPF_LOG` (see `dutnet::datapath::ebpf::log`) lets the eBPF
//! programs' records through at the level it names.
use std::os::unix::fs::MetadataExt as _;

use dutnet::datapath::ebpf::log as ebpf_log;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

/// The one variable that sets the log filter.
pub const LOG_ENV: &str = "DUTNET_LOG";
/// `text` (the default) or `json`.
pub const FORMAT_ENV: &str = "DUTNET_LOG_FORMAT";

/// Installs the subscriber for the whole process.
pub fn init() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env(LOG_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Asking the programs for records means wanting to read them,
    // whatever DUTNET_LOG says about the rest. An invalid value is reported
    // by the verbs that load the programs.
    if let Ok(Some(level)) = ebpf_log::level_from_env()
        && let Ok(directive) = format!("{}={level}", ebpf_log::TARGET).parse()
    {
        filter = filter.add_directive(directive);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Its report of a failed write is an eprintln!, which panics when
        // stderr is a closed pipe (the SSH session that ran `dutnet load`
        // went away): a log line that cannot be written is dropped instead.
        .log_internal_errors(false);
    if std::env::var(FORMAT_ENV).is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().with_ansi(false).init();
    } else if stderr_is_the_journal() {
        builder
            .with_ansi(false)
            .event_format(Priority(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_ansi(false),
            ))
            .init();
    } else {
        builder
            // Colour codes only for a terminal, not in log files.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// `JOURNAL_STREAM` (`device:inode`) names our stderr: systemd connected
/// it to the journal (a redirected stderr keeps the variable but not the
/// inode, see systemd.exec(5)).
fn stderr_is_the_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream == format!("{}:{}", meta.dev(), meta.ino())
}

/// The syslog priority `sd-daemon(3)` reads from the start of a line.
#[must_use]
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Prefixes each line of the inner format with `<priority>`.
struct Priority<F>(F);

impl<S, N, F> FormatEvent<S, N> for Priority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        // One journal record per event: a multi-line field (a Debug dump)
        // would otherwise become several records, the later ones without
        // the priority.
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n').replace('\n', " ");
        writeln!(writer, "<{}>{line}", priority(*event.metadata().level()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_syslogs() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::TRACE), 7);
    }
}
