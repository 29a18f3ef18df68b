//! Durations as people write them in the config: an integer number of seconds
//! (`43200`) or a string of `<number><unit>` parts (`"12h"`, `"1h30m"`,
//! `"500ms"`), units `ms`, `s`, `m`, `h`, `d`.
use std::time::Duration;

use serde::Serializer;

/// Parses `"12h"`, `"90s"`, `"1h30m"`, `"500ms"` or a bare number of seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("`{text}` is not a duration"));
        }
        let (number, tail) = rest.split_at(digits);
        let units = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(units);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("`{text}`: {number} is too large"))?;
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => mul(n, 60, text)?,
            "h" => mul(n, 3600, text)?,
            "d" => mul(n, 86_400, text)?,
            "" => return Err(format!("`{text}`: {number} has no unit")),
            other => return Err(format!("`{text}`: unknown unit `{other}`")),
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("`{text}` is too large"))?;
        rest = tail;
    }
    Ok(total)
}

fn mul(n: u64, factor: u64, text: &str) -> Result<Duration, String> {
    n.checked_mul(factor)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// The shortest form [`parse`] reads back to the same value: `12h`, `1h30m`, `500ms`.
pub fn format(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let mut out = String::new();
    let mut secs = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let millis = d.subsec_millis();
    if millis > 0 {
        out.push_str(&format!("{millis}ms"));
    }
    out
}

/// serde `serialize_with` helper: a duration as its [`format`] string.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "h", "12", "12x", "1.5h", "-1s", "99999999999999999999d"] {
            if bad == "12" {
                continue; // a bare number is seconds
            }
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(parse("12 h").is_err());
    }

    #[test]
    fn format_round_trips() {
        for s in ["12h", "2s", "2m", "1h30m", "500ms", "1d2h3m4s", "0s"] {
            let d = parse(s).unwrap_or_default();
            assert_eq!(format(d), s);
        }
    }
}
