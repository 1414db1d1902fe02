//! The corpus's paranoid canonicaliser (`meta.oracle_no_protected_upstream_hit`): what
//! *some* upstream might make of a request-target, so that a forwarded request is judged by
//! the worst reading, not by Sekisho's own.
//!
//! It must stay independent of the gateway's canonicaliser: sharing code would make the
//! oracle agree with the bug it is meant to catch.

use unicode_normalization::UnicodeNormalization as _;

/// Every reading of `target` (a request-target as an upstream received it) worth checking:
/// the query is cut at the first literal `?`, then the path is decoded until stable; one
/// reading also cuts at a decoded `?`/`#`, the other keeps them as characters.
pub fn readings(target: &str) -> Vec<String> {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let decoded = decode_until_stable(path.as_bytes());
    let text: String = String::from_utf8_lossy(&decoded).nfkc().collect::<String>();
    let text = text.to_lowercase().replace('\\', "/");
    let cut = text.split(['?', '#']).next().unwrap_or_default().to_string();
    let mut out = vec![canonical(&cut), canonical(&text)];
    out.dedup();
    out
}

/// The paranoid canonical form of an already decoded, lower-cased path.
fn canonical(path: &str) -> String {
    let segments: Vec<String> = path
        .split('/')
        .map(|segment| {
            let without_params = segment.split(';').next().unwrap_or_default();
            if without_params == "." || without_params == ".." {
                without_params.to_string()
            } else {
                without_params
                    .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
                    .to_string()
            }
        })
        .collect();
    // Merge `//` runs (empty segments), then remove dot segments (RFC 3986 5.2.4).
    let mut stack: Vec<&str> = Vec::new();
    for segment in segments.iter().map(String::as_str) {
        match segment {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            other => stack.push(other),
        }
    }
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    let mut out = format!("/{}", stack.join("/"));
    if trailing && out != "/" {
        out.push('/');
    }
    out
}

/// Percent-decodes repeatedly until nothing changes; overlong `C0 AE`/`C0 AF` become `.`/`/`.
pub fn decode_until_stable(input: &[u8]) -> Vec<u8> {
    let mut current = input.to_vec();
    for _ in 0..16 {
        let next = decode_overlong(&percent_decode(&current));
        if next == current {
            break;
        }
        current = next;
    }
    current
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn decode_overlong(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match (input[i], input.get(i + 1)) {
            (0xc0, Some(0xae)) => {
                out.push(b'.');
                i += 2;
            }
            (0xc0, Some(0xaf)) => {
                out.push(b'/');
                i += 2;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Whether canonical `path` is `prefix` or below it, by whole segments.
pub fn is_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.to_lowercase();
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    path == prefix || path.starts_with(&format!("{prefix}/"))
}

/// The route prefixes of a context, for deciding whether a path is protected.
#[derive(Clone, Debug, Default)]
pub struct Prefixes {
    pub protected: Vec<String>,
    pub public: Vec<String>,
}

impl Prefixes {
    /// Whether any reading of `target` falls in a protected prefix (longest prefix wins,
    /// so a public `/tmui/login.jsp` carves itself out of a protected `/tmui`).
    pub fn protected_hit(&self, target: &str) -> Option<String> {
        readings(target).into_iter().find(|path| {
            let longest = |list: &[String]| {
                list.iter()
                    .filter(|p| is_under(path, p))
                    .map(|p| p.trim_end_matches('/').len())
                    .max()
            };
            match (longest(&self.protected), longest(&self.public)) {
                (Some(protected), Some(public)) => protected >= public,
                (Some(_), None) => true,
                _ => false,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(target: &str, expected: &str) {
        let all = readings(target);
        assert!(
            all.iter().any(|r| r == expected),
            "{target:?} read as {all:?}, expected {expected:?} among them"
        );
    }

    #[test]
    fn sees_through_every_encoding_trick_in_the_corpus() {
        check("/%61dmin/", "/admin/");
        check("/%2561dmin/", "/admin/");
        check("/admin%2Fusers", "/admin/users");
        check("/public/%2e%2e/admin/", "/admin/");
        check("/public/%252e%252e/admin/", "/admin/");
        check("/public%5c..%5cadmin/", "/admin/");
        check("/admin;jsessionid=0A/users", "/admin/users");
        check("/public;/../admin/", "/admin/");
        check("/ADMIN/", "/admin/");
        check("/%c0%afadmin/", "/admin/");
        check("/public/%c0%ae%c0%ae/admin/", "/admin/");
        check("/%EF%BD%81%EF%BD%84%EF%BD%8D%EF%BD%89%EF%BD%8E/", "/admin/");
        check("/public/%EF%BC%8E%EF%BC%8E/admin/", "/admin/");
        check("/public//..//admin/", "/admin/");
        check("/admin./", "/admin/");
        check("/public/x%3F/../../admin/", "/admin/");
        check("/public/../../../admin/?/public/", "/admin/");
    }

    #[test]
    fn leaves_plain_public_paths_alone() {
        assert_eq!(readings("/public/a?x=/admin"), vec!["/public/a".to_string()]);
        assert_eq!(readings("/"), vec!["/".to_string()]);
    }

    #[test]
    fn matches_whole_segments_only() {
        assert!(is_under("/admin", "/admin"));
        assert!(is_under("/admin/x", "/admin"));
        assert!(!is_under("/administrator", "/admin"));
        assert!(!is_under("/admin-public", "/admin"));
    }

    #[test]
    fn the_longest_prefix_decides() {
        let prefixes = Prefixes {
            protected: vec!["/tmui".into(), "/admin".into()],
            public: vec!["/".into(), "/tmui/login.jsp".into()],
        };
        assert!(prefixes.protected_hit("/tmui/login.jsp").is_none());
        assert!(prefixes.protected_hit("/tmui/login.jsp/..;/x").is_some());
        assert!(prefixes.protected_hit("/public/%2e%2e/ADMIN").is_some());
        assert!(prefixes.protected_hit("/admin-public").is_none());
    }
}
