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
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
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
    fn prefix_joins_paths() {
        let e = ConfigError::single("addresses[0].ip", "x").prefixed("networks[1]");
        assert_eq!(e.problems[0].path, "networks[1].addresses[0].ip");
        assert_eq!(join("a", "[2]"), "a[2]");
        assert_eq!(join("", "x"), "x");
    }
}
