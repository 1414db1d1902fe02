//! Durations as written in the policy: `"500ms"`, `"30s"`, `"15m"`, `"8h"`, `"1d"` and compounds
//! such as `"1h30m"`. Parsing only; no clock is read here.

use std::time::Duration;

/// Parses a policy duration. Units: `ms`, `s`, `m`, `h`, `d`; parts may be concatenated from the
/// largest unit down (`"1h30m"`). Returns a message fit for a diagnostic on error.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let bytes = text.as_bytes();
    let mut total: u128 = 0;
    let mut pos = 0;
    let mut last_unit_ms: u128 = u128::MAX;
    while pos < bytes.len() {
        let start = pos;
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        if pos == start {
            return Err(format!("expected a number at `{}`", text.get(start..).unwrap_or("")));
        }
        if pos - start > 9 {
            return Err("number too large".into());
        }
        let number: u128 = text
            .get(start..pos)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "number too large".to_string())?;
        let unit_start = pos;
        while bytes.get(pos).is_some_and(u8::is_ascii_alphabetic) {
            pos += 1;
        }
        let unit_ms: u128 = match text.get(unit_start..pos).unwrap_or("") {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err("missing unit (use ms, s, m, h or d)".into()),
            other => return Err(format!("unknown unit `{other}` (use ms, s, m, h or d)")),
        };
        if unit_ms >= last_unit_ms {
            return Err("units must go from the largest to the smallest, each once".into());
        }
        last_unit_ms = unit_ms;
        total += number * unit_ms;
    }
    // 100 years is far beyond any sensible setting; the bound keeps the cast below lossless.
    if total > 100 * 365 * 86_400_000 {
        return Err("duration too long".into());
    }
    let millis = u64::try_from(total).map_err(|_| "duration too long".to_string())?;
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_compounds() {
        let ok = [
            ("30s", 30_000),
            ("15m", 900_000),
            ("8h", 28_800_000),
            ("1d", 86_400_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
        ];
        for (text, ms) in ok {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        for bad in [
            "",
            "15",
            "m",
            "1x",
            "1m1h",
            "1m1m",
            "-1s",
            "1.5h",
            " 1s",
            "99999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
