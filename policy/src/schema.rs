//! The JSON Schema (draft 2020-12) of policy format 1, for editor completion (e.g. Taplo or
//! Even Better TOML with `#:schema`). Emitted by hand from the parser's own key tables
//! (`parse::keys`), so a key the parser accepts is a key the schema offers, and no other.
//! The schema describes shapes; the parser remains the judge (paths, CIDRs, cross-references).

use std::fmt::Write as _;

use crate::parse::keys::{self, Key, Kind};

/// The schema as pretty JSON text.
pub fn json_schema() -> String {
    let mut out = String::new();
    out.push_str("{\n");
    out.push_str("  \"$schema\": \"https://json-schema.org/draft/2020-12/schema\",\n");
    out.push_str("  \"$id\": \"https://example.invalid/sekisho/policy-1.schema.json\",\n");
    out.push_str("  \"title\": \"Sekisho policy, format 1\",\n");
    let _ = write!(out, "  {}", &object_body(keys::ROOT, &["version", "server"], 1)[1..]);
    out.push_str("\n}\n");
    out
}

fn q(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn pad(depth: usize) -> String {
    "  ".repeat(depth)
}

/// `"type": "object", "additionalProperties": false, "required": …, "properties": {…}`
/// without the surrounding braces (the first character is a space to strip or keep).
fn object_body(keys: &[Key], required: &[&str], depth: usize) -> String {
    let p = pad(depth);
    let mut o = String::new();
    let _ = write!(o, " \"type\": \"object\",\n{p}\"additionalProperties\": false,\n");
    if !required.is_empty() {
        let r: Vec<String> = required.iter().map(|s| q(s)).collect();
        let _ = writeln!(o, "{p}\"required\": [{}],", r.join(", "));
    }
    let _ = writeln!(o, "{p}\"properties\": {{");
    for (i, k) in keys.iter().enumerate() {
        let comma = if i + 1 < keys.len() { "," } else { "" };
        let _ = writeln!(o, "{}{}: {}{comma}", pad(depth + 1), q(k.name), value(k, depth + 1));
    }
    let _ = write!(o, "{p}}}");
    o
}

fn value(k: &Key, depth: usize) -> String {
    let p = pad(depth + 1);
    let d = format!("\"description\": {}", q(k.doc));
    let strings = |v: &[&str]| v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ");
    match k.kind {
        Kind::Version => format!("{{ {d}, \"const\": 1 }}"),
        Kind::String => format!("{{ {d}, \"type\": \"string\", \"minLength\": 1 }}"),
        Kind::Bool => format!("{{ {d}, \"type\": \"boolean\" }}"),
        Kind::Integer(min, max) => format!("{{ {d}, \"type\": \"integer\", \"minimum\": {min}, \"maximum\": {max} }}"),
        Kind::Duration => format!("{{ {d}, \"type\": \"string\", \"pattern\": \"^([0-9]+(ms|s|m|h|d))+$\" }}"),
        Kind::StringList => {
            format!("{{ {d}, \"type\": \"array\", \"items\": {{ \"type\": \"string\", \"minLength\": 1 }} }}")
        }
        Kind::OneOf(v) => format!("{{ {d}, \"enum\": [{}] }}", strings(v)),
        Kind::ListOf(v) => format!(
            "{{ {d}, \"type\": \"array\", \"uniqueItems\": true, \"items\": {{ \"enum\": [{}] }} }}",
            strings(v)
        ),
        Kind::BoolOrString => format!("{{ {d}, \"type\": [\"boolean\", \"string\"] }}"),
        Kind::Table(keys) | Kind::Inline(keys) => {
            format!(
                "{{\n{p}{d},\n{p}{}\n{}}}",
                object_body(keys, &[], depth + 1).trim_start(),
                pad(depth)
            )
        }
        Kind::Tables(keys, required) => format!(
            "{{\n{p}{d},\n{p}\"type\": \"array\",\n{p}\"items\": {{\n{}{}\n{p}}}\n{}}}",
            pad(depth + 2),
            object_body(keys, required, depth + 2).trim_start(),
            pad(depth)
        ),
    }
}
