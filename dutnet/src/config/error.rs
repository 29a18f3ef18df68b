//! What a configuration error looks like: every problem found, each naming the
//! key path, the bad value and the fix, so one `config check` run shows all of
//! them instead of one per edit-and-retry cycle.
use std::fmt;

use serde::Serialize;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The key path, e.g. `networks[1].addresses[0].hostname`; empty when the
    /// problem concerns the whole file (a YAML syntax error, say).
    pub path: String,
    /// What is wrong, with the bad value and how to fix it.
    pub message: String,
}

impl Problem {
    /// Long words in the path or the message (an echoed 10 MB interface
    /// name, say) are shortened to their first [`SHOWN_CHARS`] characters
    /// and their size: a problem stays one readable line.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: shorten(path.into()),
            message: shorten(message.into()),
        }
    }
}

/// How much of a long value a message shows.
pub const SHOWN_CHARS: usize = 64;
/// Words up to this many bytes are shown whole.
const LONG_WORD: usize = 80;
/// A message longer than this (a long value with spaces) keeps its start
/// and its end, which says what to do.
const LONG_MESSAGE: usize = 1024;

/// `text` with every whitespace-separated word longer than [`LONG_WORD`]
/// bytes cut to `first 64 chars… (N bytes)`, a closing quote or backtick
/// kept; then, if still long, the middle of the whole text cut the same way.
pub(crate) fn shorten(text: String) -> String {
    if text.len() <= LONG_WORD {
        return text;
    }
    let mut out = String::with_capacity(LONG_MESSAGE);
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let start = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        rest = &rest[end..];
        if word.len() <= LONG_WORD {
            out.push_str(word);
            continue;
        }
        out.extend(word.chars().take(SHOWN_CHARS));
        out.push_str(&format!("… ({} bytes)", word.len()));
        // Keep a closing `...` or "..." (and what follows it: `;`, `,`).
        let tail: String = word
            .chars()
            .rev()
            .take_while(|c| matches!(c, '`' | '"' | ';' | ',' | '.' | ')' | ':'))
            .collect();
        out.extend(tail.chars().rev());
    }
    if out.len() <= LONG_MESSAGE {
        return out;
    }
    let head: String = out.chars().take(LONG_MESSAGE / 2).collect();
    let tail: Vec<char> = out.chars().rev().take(LONG_MESSAGE / 4).collect();
    let tail: String = tail.into_iter().rev().collect();
    format!("{head}… ({} bytes) …{tail}", out.len())
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a configuration (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem::new(path, message)],
        }
    }

    /// `Ok(())` when there is nothing to report.
    pub(crate) fn from_problems(problems: Vec<Problem>) -> Result<(), Self> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Self { problems })
        }
    }

    /// Puts `prefix` in front of every path, so a network's own checks (which
    /// speak of `addresses[0].ip`) read as `networks[2].addresses[0].ip`.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        for p in &mut self.problems {
            p.path = join(prefix, &p.path);
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Joins two key-path parts: `join("networks[1]", "ip")` is `networks[1].ip`,
/// an index part (`[0]`) attaches without a dot.
pub(crate) fn join(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (_, true) => prefix.to_owned(),
        _ if rest.starts_with('[') => format!("{prefix}{rest}"),
        _ => format!("{prefix}.{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_per_problem() {
        let e = ConfigError {
            problems: vec![Problem::new("a.b", "bad"), Problem::new("", "whole file")],
        };
        assert_eq!(e.to_string(), "a.b: bad\nwhole file");
    }

    #[test]
    fn long_values_are_shortened() {
        let name = "x".repeat(10_000);
        let p = Problem::new(
            "interface",
            format!("`{name}` is too long; use at most 15 bytes"),
        );
        assert_eq!(
            p.message,
            format!(
                "`{}… (10002 bytes)` is too long; use at most 15 bytes",
                "x".repeat(63)
            )
        );
        // Short words, however many, are left alone up to the message limit.
        let p = Problem::new("a", "short words stay as they are");
        assert_eq!(p.message, "short words stay as they are");
        let spaced = "ab ".repeat(5_000);
        let p = Problem::new("a", format!("`{spaced}` is bad; do this"));
        assert!(p.message.len() < 2 * LONG_MESSAGE, "{}", p.message.len());
        assert!(p.message.ends_with("` is bad; do this"), "{}", p.message);
    }

    #[test]
    fn prefix_joins_paths() {
        let e = ConfigError::single("addresses[0].ip", "x").prefixed("networks[1]");
        assert_eq!(e.problems[0].path, "networks[1].addresses[0].ip");
        assert_eq!(join("a", "[2]"), "a[2]");
        assert_eq!(join("", "x"), "x");
    }
}
