//! The line format and the chain that links the lines.
//!
//! A record is one line: `{"seq":N,"prev":"<hex>","time":T,"kind":…,…}` and `\n`. `prev`
//! is the lower-case hex SHA-256 of the previous record's exact bytes (its line without
//! the `\n`), across files; the very first record names 64 zeros. `seq` counts from 0
//! without gaps. The envelope is written by the writer around a body the JSON encoder
//! made, so no event field can add or replace an envelope field.
//!
//! This module does no IO.

use serde::Deserialize;

/// The `prev` of the first record ever.
pub const GENESIS: Digest = [0; 32];

/// The kinds only the writer makes (events must use other names).
pub const META_KINDS: [&str; 4] = ["file", "checkpoint", "retention", "remote_dropped"];

/// A SHA-256 value.
pub type Digest = [u8; 32];

/// The hash that the next record names as `prev`.
pub fn hash(line: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, line);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Appends one record (with its `\n`) to `out`: the envelope, then the body's fields.
/// `body` is a JSON object with at least one field, as `serde_json` writes it.
pub fn compose(out: &mut Vec<u8>, seq: u64, prev: &Digest, time: i64, body: &[u8]) {
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"prev\":\"");
    push_hex(out, prev);
    out.extend_from_slice(b"\",\"time\":");
    out.extend_from_slice(time.to_string().as_bytes());
    out.push(b',');
    // Invariant: `body` starts with `{` (a serialised struct or tagged enum).
    out.extend_from_slice(body.get(1..).unwrap_or(b"}"));
    out.push(b'\n');
}

/// The envelope of a line as the writer composed it: `seq`, `time` and `kind`, read from
/// the fixed prefix without a JSON parser (the shipper runs this on every line). `None` for
/// anything that does not begin exactly as [`compose`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub seq: u64,
    pub time: i64,
    pub kind: &'a str,
}

/// Reads the [`Envelope`] of `line`.
pub fn envelope(line: &[u8]) -> Option<Envelope<'_>> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let (seq, rest) = number(rest)?;
    let rest = rest.strip_prefix(b",\"prev\":\"")?;
    let rest = rest.get(64..)?.strip_prefix(b"\",\"time\":")?;
    let (time, rest) = signed(rest)?;
    let rest = rest.strip_prefix(b",\"kind\":\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let kind = std::str::from_utf8(rest.get(..end)?).ok()?;
    if kind.bytes().any(|b| b == b'\\' || b.is_ascii_control()) {
        return None;
    }
    Some(Envelope {
        seq: seq.parse().ok()?,
        time: time.parse().ok()?,
        kind,
    })
}

fn number(b: &[u8]) -> Option<(&str, &[u8])> {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    Some((std::str::from_utf8(b.get(..n)?).ok()?, b.get(n..)?))
}

fn signed(b: &[u8]) -> Option<(&str, &[u8])> {
    let sign = usize::from(b.first() == Some(&b'-'));
    let n = b.iter().skip(sign).take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    Some((std::str::from_utf8(b.get(..sign + n)?).ok()?, b.get(sign + n..)?))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    String::from_utf8(out).unwrap_or_default()
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
}

/// Parses lower-case (or upper-case) hex of exactly `N` bytes.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// What the chain and the seals need from a line. Fields of other kinds are ignored;
/// a repeated field is an error (serde refuses duplicates), so a line cannot say two
/// things.
#[derive(Debug, Deserialize)]
pub struct Line {
    pub seq: u64,
    pub prev: String,
    pub time: i64,
    pub kind: String,
    /// `checkpoint` and `file`: the sealing epoch in force.
    pub epoch: Option<u64>,
    /// `checkpoint`: the signature (hex).
    pub sig: Option<String>,
    /// `checkpoint` that hands over to a later epoch: its number and public key (hex).
    pub next_epoch: Option<u64>,
    pub next_key: Option<String>,
    /// `file`: this file's number, and the current epoch's public key (hex).
    pub file_no: Option<u64>,
    pub key: Option<String>,
    /// `file`: the file before this one, as the writer left it.
    pub previous: Option<PreviousFile>,
    /// `file` of the first file: the root of the sealing keys.
    pub init: Option<Init>,
    /// `retention`: files deleted up to (and including) this number.
    pub through_file_no: Option<u64>,
}

/// How a new file names the one before it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct PreviousFile {
    pub name: String,
    /// The bytes of that file that belong to the chain (up to its last complete line).
    pub bytes: u64,
    pub last_seq: u64,
    /// Bytes after `bytes` found at start (a line torn by a crash), and their hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torn_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torn_sha256: Option<String>,
}

/// The sealing scheme's public parameters, written once in the first file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Init {
    /// The epoch-0 public key (hex): the verification key.
    pub key: String,
    /// When epoch 0 began (Unix seconds) and how long an epoch lasts.
    pub t0: i64,
    pub epoch_secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_composed_line_parses_and_keeps_the_body() {
        let mut out = Vec::new();
        compose(&mut out, 7, &GENESIS, 42, br#"{"kind":"stop","open":0}"#);
        assert!(out.ends_with(b"\n"));
        let line: Line = serde_json::from_slice(&out[..out.len() - 1]).unwrap();
        assert_eq!((line.seq, line.time, line.kind.as_str()), (7, 42, "stop"));
        assert_eq!(unhex::<32>(&line.prev), Some(GENESIS));
    }

    #[test]
    fn the_envelope_is_read_from_a_composed_line() {
        let mut out = Vec::new();
        compose(&mut out, 7, &GENESIS, -3, br#"{"kind":"stop","open":0}"#);
        let e = envelope(&out[..out.len() - 1]).unwrap();
        assert_eq!((e.seq, e.time, e.kind), (7, -3, "stop"));
        assert_eq!(envelope(b"{\"seq\":1}"), None);
        assert_eq!(envelope(b""), None);
    }

    #[test]
    fn a_repeated_field_is_refused() {
        let text = br#"{"seq":1,"prev":"00","time":1,"kind":"stop","seq":2}"#;
        assert!(serde_json::from_slice::<Line>(text).is_err());
    }

    #[test]
    fn hex_round_trips() {
        let d = hash(b"abc");
        assert_eq!(unhex::<32>(&hex(&d)), Some(d));
        assert_eq!(
            hex(&d),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(unhex::<2>("zz00"), None);
    }
}
