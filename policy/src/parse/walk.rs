//! Typed reading of the spanned TOML tree: each getter reports wrong types, unknown keys (with
//! "did you mean") and empty list entries to the [`Sink`] and carries on, so that every problem
//! is found in one pass. Knows nothing of what the keys mean.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::Sink;

use crate::duration::parse_duration;

/// A string value with its place in the file.
#[derive(Debug, Clone)]
pub(crate) struct Str {
    pub value: String,
    pub span: Range<usize>,
}

/// A TOML table being read, with the span to blame for missing keys.
#[derive(Debug, Clone)]
pub(crate) struct Table<'t, 'i> {
    pub table: &'t DeTable<'i>,
    pub span: Range<usize>,
    /// How to name the table in messages, e.g. `[server]`.
    pub what: &'static str,
}

impl<'t, 'i> Table<'t, 'i> {
    pub(crate) fn new(table: &'t DeTable<'i>, span: Range<usize>, what: &'static str) -> Self {
        Self { table, span, what }
    }

    /// Reports every key not in `allowed`, suggesting the nearest allowed key.
    pub(crate) fn check_keys(&self, sink: &mut Sink<'_>, allowed: &[super::keys::Key]) {
        let allowed = super::keys::names(allowed);
        let allowed = allowed.as_slice();
        for key in self.table.keys() {
            let name: &str = key.get_ref();
            if allowed.contains(&name) {
                continue;
            }
            let message = format!("unknown key `{name}` in {}", self.what);
            match nearest(name, allowed) {
                Some(near) => sink.error_help(key.span(), message, format!("did you mean `{near}`?")),
                None => sink.error_help(key.span(), message, format!("allowed keys: {}", allowed.join(", "))),
            }
        }
    }

    fn get(&self, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.table.get(key)
    }

    /// Reports a missing required key.
    pub(crate) fn missing(&self, sink: &mut Sink<'_>, key: &str, help: &str) {
        sink.error_help(
            self.span.clone(),
            format!("missing key `{key}` in {}", self.what),
            help.to_string(),
        );
    }

    /// The span of a key's value, or of the table when absent.
    pub(crate) fn span_of(&self, key: &str) -> Range<usize> {
        self.get(key).map_or_else(|| self.span.clone(), Spanned::span)
    }

    /// Is `key` present as an empty array?
    pub(crate) fn is_empty_list(&self, key: &str) -> bool {
        matches!(self.get(key).map(Spanned::get_ref), Some(DeValue::Array(a)) if a.is_empty())
    }

    pub(crate) fn string(&self, sink: &mut Sink<'_>, key: &str) -> Option<Str> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(Str {
                value: s.to_string(),
                span: v.span(),
            }),
            other => {
                wrong_type(sink, v.span(), key, "a string", other);
                None
            }
        }
    }

    /// A required, non-empty string.
    pub(crate) fn required_string(&self, sink: &mut Sink<'_>, key: &str, help: &str) -> Option<Str> {
        if self.get(key).is_none() {
            self.missing(sink, key, help);
            return None;
        }
        let s = self.string(sink, key)?;
        if s.value.is_empty() {
            sink.error_help(s.span.clone(), format!("`{key}` is empty"), help.to_string());
            return None;
        }
        Some(s)
    }

    pub(crate) fn boolean(&self, sink: &mut Sink<'_>, key: &str) -> Option<bool> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                wrong_type(sink, v.span(), key, "true or false", other);
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub(crate) fn integer(&self, sink: &mut Sink<'_>, key: &str, min: u64, max: u64) -> Option<u64> {
        let v = self.get(key)?;
        let DeValue::Integer(i) = v.get_ref() else {
            wrong_type(sink, v.span(), key, "an integer", v.get_ref());
            return None;
        };
        match u64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                sink.error_help(
                    v.span(),
                    format!("`{key}` is out of range"),
                    format!("use an integer from {min} to {max}"),
                );
                None
            }
        }
    }

    /// A duration string such as `"15m"`, within `min..=max`.
    pub(crate) fn duration(&self, sink: &mut Sink<'_>, key: &str, min: Duration, max: Duration) -> Option<Duration> {
        let s = self.string(sink, key)?;
        match parse_duration(&s.value) {
            Ok(d) if d >= min && d <= max => Some(d),
            Ok(_) => {
                sink.error_help(
                    s.span,
                    format!("`{key}` = \"{}\" is out of range", s.value),
                    format!("use a duration from {} to {}", show(min), show(max)),
                );
                None
            }
            Err(why) => {
                sink.error_help(
                    s.span,
                    format!("`{key}` = \"{}\" is not a duration: {why}", s.value),
                    "write a number and a unit, e.g. \"30s\", \"15m\", \"8h\", \"1d\" or \"1h30m\"",
                );
                None
            }
        }
    }

    /// A list of non-empty strings. Non-strings and empty strings are reported and skipped.
    pub(crate) fn string_list(&self, sink: &mut Sink<'_>, key: &str) -> Option<Vec<Str>> {
        let v = self.get(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            wrong_type(sink, v.span(), key, "a list of strings", v.get_ref());
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) if s.is_empty() => sink.error_help(
                    item.span(),
                    format!("empty string in `{key}`"),
                    "remove the empty entry",
                ),
                DeValue::String(s) => out.push(Str {
                    value: s.to_string(),
                    span: item.span(),
                }),
                other => wrong_type(sink, item.span(), key, "strings", other),
            }
        }
        Some(out)
    }

    /// A sub-table (`[name]`).
    pub(crate) fn table(&self, sink: &mut Sink<'_>, key: &str, what: &'static str) -> Option<Table<'t, 'i>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(Table::new(t, v.span(), what)),
            other => {
                wrong_type(sink, v.span(), key, "a table", other);
                None
            }
        }
    }

    /// An array of tables (`[[name]]`).
    pub(crate) fn tables(&self, sink: &mut Sink<'_>, key: &str, what: &'static str) -> Vec<Table<'t, 'i>> {
        let Some(v) = self.get(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = v.get_ref() else {
            wrong_type(sink, v.span(), key, "an array of tables", v.get_ref());
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(t) => out.push(Table::new(t, item.span(), what)),
                other => wrong_type(sink, item.span(), key, "tables", other),
            }
        }
        out
    }
}

fn wrong_type(sink: &mut Sink<'_>, span: Range<usize>, key: &str, expected: &str, found: &DeValue<'_>) {
    sink.error_help(
        span,
        format!("`{key}` must be {expected}, found {}", found.type_str()),
        format!("write `{key}` as {expected}"),
    );
}

fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(86_400_000) {
        format!("\"{}d\"", ms / 86_400_000)
    } else if ms.is_multiple_of(3_600_000) {
        format!("\"{}h\"", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("\"{}m\"", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("\"{}s\"", ms / 1000)
    } else {
        format!("\"{ms}ms\"")
    }
}

/// The allowed key closest to `name` (edit distance ≤ 2, or a case-only difference).
pub(crate) fn nearest<'a>(name: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (edit_distance(&name.to_ascii_lowercase(), a), *a))
        .filter(|(d, a)| *d <= 2.min(a.len() / 2).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev
                .get(j)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(usize::from(ca != *cb));
            let del = prev.get(j + 1).copied().unwrap_or(usize::MAX).saturating_add(1);
            let ins = cur.get(j).copied().unwrap_or(usize::MAX).saturating_add(1);
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}
