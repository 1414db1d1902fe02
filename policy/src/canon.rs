//! The one canonicalisation of a request-target. Percent-escapes are decoded exactly once;
//! anything ambiguous (an encoding some server somewhere would read differently) is refused
//! rather than guessed at. It must never merge `//`, resolve `..`, strip `;params` or decode
//! twice: each of those is a refusal, because the upstream might not do the same.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// A request-target after canonicalisation. Routing, the decision, the audit record and the
/// request sent upstream all use this one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalTarget {
    /// Decoded, NFKC-stable UTF-8; starts with `/`; no dot or empty segments (a trailing `/`
    /// is kept).
    pub path: String,
    /// The raw query (after `?`), validated: printable ASCII, no space or `#`.
    pub query: Option<String>,
    /// Lower-cased `host[:port]` of an absolute-form target; the gateway compares it with Host.
    pub authority: Option<String>,
    /// True when `path` differs from the bytes received (some escape was decoded).
    pub changed: bool,
}

impl CanonicalTarget {
    /// The path (re-encoded with the one fixed encoder) and `?query`, as sent upstream.
    /// Every byte except unreserved characters and ``!$&'()*+,:=@/`` is percent-encoded.
    pub fn upstream_path_and_query(&self) -> String {
        let mut out = encode_path(&self.path);
        if let Some(q) = &self.query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// The one path encoder: percent-encodes every byte that is not unreserved or one of
/// ``!$&'()*+,:=@/``.
pub(crate) fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 16);
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,:=@/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0x0f));
        }
    }
    out
}

/// Why a request-target was refused. Each message is short and fit for logs (it never echoes
/// the target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CanonError {
    Empty,
    /// `*` (OPTIONS-wide) or authority-form (`host:port`), or anything not starting with `/`.
    NotOriginForm,
    /// An absolute-form target with userinfo, an empty or malformed authority, or a scheme other
    /// than http/https.
    BadAbsoluteForm,
    /// A raw control byte, space or DEL.
    ControlByte,
    /// A raw non-ASCII byte.
    NonAscii,
    /// A `#` (fragments are never sent).
    Fragment,
    /// `%` not followed by two hex digits.
    MalformedEscape,
    /// `%2F` (decoded `/`).
    EncodedSlash,
    /// `\` raw or encoded.
    Backslash,
    /// `%25` (decoded `%`): would be a double encoding.
    EncodedPercent,
    /// A decoded control character (NUL, CR, LF, C1 …) or invisible format character.
    EncodedControl,
    /// A decoded `?` or `#`.
    EncodedDelimiter,
    /// `;` in the path, raw or encoded (path parameters).
    Semicolon,
    /// Not UTF-8 after decoding (including overlong forms such as `%C0%AE`).
    InvalidUtf8,
    /// A `.` or `..` segment, raw or encoded.
    DotSegment,
    /// An empty segment (`//`).
    EmptySegment,
    /// A segment ending in `.` or beginning or ending with whitespace.
    SegmentEdge,
    /// A character NFKC normalisation would change (fullwidth letters, ligatures …).
    NotNormalized,
    /// A query with a byte that must not appear there.
    BadQuery,
}

impl CanonError {
    /// A short message fit for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            CanonError::Empty => "empty request-target",
            CanonError::NotOriginForm => "request-target is not origin-form",
            CanonError::BadAbsoluteForm => "malformed absolute-form request-target",
            CanonError::ControlByte => "control byte or space in request-target",
            CanonError::NonAscii => "raw non-ASCII byte in request-target",
            CanonError::Fragment => "fragment in request-target",
            CanonError::MalformedEscape => "malformed percent-escape",
            CanonError::EncodedSlash => "encoded slash in path",
            CanonError::Backslash => "backslash in path",
            CanonError::EncodedPercent => "encoded percent sign in path (double encoding)",
            CanonError::EncodedControl => "encoded control or invisible character in path",
            CanonError::EncodedDelimiter => "encoded ? or # in path",
            CanonError::Semicolon => "semicolon in path",
            CanonError::InvalidUtf8 => "path is not UTF-8 after decoding",
            CanonError::DotSegment => "dot segment in path",
            CanonError::EmptySegment => "empty segment in path",
            CanonError::SegmentEdge => "path segment ends with a dot or whitespace",
            CanonError::NotNormalized => "path is not in NFKC normal form",
            CanonError::BadQuery => "forbidden byte in query",
        }
    }
}

impl fmt::Display for CanonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for CanonError {}

/// Canonicalises a request-target as received: origin-form `/path?query`, or absolute-form
/// `http[s]://authority/path?query` (its authority is returned). `*` and authority-form are
/// refused.
pub fn canonicalize_target(target: &str) -> Result<CanonicalTarget, CanonError> {
    if target.is_empty() {
        return Err(CanonError::Empty);
    }
    for &b in target.as_bytes() {
        match b {
            0x80..=0xff => return Err(CanonError::NonAscii),
            0..=0x20 | 0x7f => return Err(CanonError::ControlByte),
            b'#' => return Err(CanonError::Fragment),
            _ => {}
        }
    }
    let (authority, rest) = split_absolute_form(target)?;
    let (raw_path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    // The byte checks above already refused control bytes, space, '#' and non-ASCII in the
    // query; a second '?' is legal there.
    let path = decode_path(raw_path)?;
    check_segments(&path)?;
    let changed = path != raw_path;
    Ok(CanonicalTarget {
        path,
        query: query.map(str::to_string),
        authority,
        changed,
    })
}

/// Splits an absolute-form target into its lower-cased authority and the rest (which starts
/// with `/` or `?`, or is empty meaning `/`). Origin-form passes through.
fn split_absolute_form(target: &str) -> Result<(Option<String>, &str), CanonError> {
    if target.starts_with('/') {
        return Ok((None, target));
    }
    let Some((scheme, after)) = target.split_once("://") else {
        return Err(CanonError::NotOriginForm);
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(CanonError::BadAbsoluteForm);
    }
    let end = after.find(['/', '?']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let authority_ok = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !authority_ok {
        return Err(CanonError::BadAbsoluteForm);
    }
    match rest.as_bytes().first() {
        None => Ok((Some(authority.to_ascii_lowercase()), "/")),
        Some(b'/') => Ok((Some(authority.to_ascii_lowercase()), rest)),
        // "http://host?q" has an empty path; RFC 9112 makes it "/", but nobody legitimate
        // sends it: refuse rather than invent a path.
        Some(_) => Err(CanonError::BadAbsoluteForm),
    }
}

/// Decodes percent-escapes once, refusing every byte that would make the path ambiguous.
fn decode_path(raw: &str) -> Result<String, CanonError> {
    if !raw.starts_with('/') {
        return Err(CanonError::NotOriginForm);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => return Err(CanonError::Backslash),
            b';' => return Err(CanonError::Semicolon),
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|&h| hex_value(h));
                let lo = bytes.get(i + 2).and_then(|&l| hex_value(l));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(CanonError::MalformedEscape);
                };
                let decoded = (hi << 4) | lo;
                match decoded {
                    b'/' => return Err(CanonError::EncodedSlash),
                    b'\\' => return Err(CanonError::Backslash),
                    b'%' => return Err(CanonError::EncodedPercent),
                    b';' => return Err(CanonError::Semicolon),
                    b'?' | b'#' => return Err(CanonError::EncodedDelimiter),
                    0..=0x1f | 0x7f => return Err(CanonError::EncodedControl),
                    _ => out.push(decoded),
                }
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    let path = String::from_utf8(out).map_err(|_| CanonError::InvalidUtf8)?;
    if path.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Err(CanonError::EncodedControl);
    }
    Ok(path)
}

/// Checks segments and normal form of a decoded path.
fn check_segments(path: &str) -> Result<(), CanonError> {
    // path starts with '/', so the first split item is the empty string before it.
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg.is_empty() {
            // Only the final segment may be empty: "/" and "/admin/".
            if last {
                break;
            }
            return Err(CanonError::EmptySegment);
        }
        if seg == "." || seg == ".." {
            return Err(CanonError::DotSegment);
        }
        let first = seg.chars().next();
        let end = seg.chars().next_back();
        if end == Some('.') || first.is_some_and(char::is_whitespace) || end.is_some_and(char::is_whitespace) {
            return Err(CanonError::SegmentEdge);
        }
    }
    if !path.chars().eq(path.nfkc()) {
        return Err(CanonError::NotNormalized);
    }
    Ok(())
}

/// Invisible format characters that some servers or filesystems drop: zero-width spaces and
/// joiners, bidi controls, word joiners, the BOM and the soft hyphen.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{E0000}'..='\u{E0FFF}')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789ABCDEF".get(usize::from(n & 0x0f)).copied().unwrap_or(b'0'))
}
