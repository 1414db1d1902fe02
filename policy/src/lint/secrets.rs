//! Secret-looking text in a policy: keys named like secrets, values shaped like private keys,
//! JWTs, cloud or forge tokens, and long high-entropy strings. A policy lives in git and is
//! read by many: a secret belongs in a file the policy names, never in the policy.

/// Key names that hold secrets wherever they appear.
const SECRET_KEY_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "private_key",
    "access_key",
    "credential",
    "bearer",
];

/// Does this key name say it holds a secret?
pub(super) fn secret_key_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    SECRET_KEY_WORDS.iter().any(|w| k.contains(w))
}

/// What kind of secret this text looks like, if any. `strong_only` limits the check to
/// unmistakable shapes (used on comments, where prose and hashes are common).
pub(super) fn looks_secret(s: &str, strong_only: bool) -> Option<&'static str> {
    if s.contains("PRIVATE KEY") && s.contains("-----BEGIN") || s.contains("-----BEGIN PRIVATE") {
        return Some("a PEM private key");
    }
    for token in s.split(|c: char| c.is_whitespace() || "\"'`,;()[]{}<>".contains(c)) {
        if let Some(kind) = strong_token(token) {
            return Some(kind);
        }
        if !strong_only && high_entropy(token) {
            return Some("a long high-entropy string (a key or token?)");
        }
    }
    None
}

fn strong_token(t: &str) -> Option<&'static str> {
    let b = t.as_bytes();
    let upper_digits = |s: &[u8]| s.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    let b64url = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    for prefix in ["AKIA", "ASIA"] {
        if let Some(rest) = t.strip_prefix(prefix)
            && rest.len() >= 16
            && upper_digits(rest.as_bytes().get(..16).unwrap_or_default())
        {
            return Some("an AWS access key id");
        }
    }
    let parts: Vec<&str> = t.split('.').collect();
    if parts.len() == 3
        && parts.first().is_some_and(|p| p.starts_with("eyJ") && b64url(p))
        && parts.get(1).is_some_and(|p| p.len() >= 4 && b64url(p))
    {
        return Some("a JSON Web Token");
    }
    for (prefix, kind) in [
        ("ghp_", "a GitHub token"),
        ("gho_", "a GitHub token"),
        ("ghs_", "a GitHub token"),
        ("github_pat_", "a GitHub token"),
        ("glpat-", "a GitLab token"),
        ("xoxb-", "a Slack token"),
        ("xoxp-", "a Slack token"),
        ("sk_live_", "a Stripe secret key"),
        ("AIza", "a Google API key"),
    ] {
        if t.starts_with(prefix) && b.len() >= prefix.len() + 16 {
            return Some(kind);
        }
    }
    None
}

/// A token of 24+ characters from a key alphabet, mixing letters and digits, with the
/// entropy of random bytes (≥ 3.5 bits per character for hex, ≥ 4.2 otherwise). Paths,
/// host names and addresses (with `/` first, `.` or `:`) are not tokens.
fn high_entropy(t: &str) -> bool {
    if t.len() < 24 || t.starts_with('/') || t.contains(['.', ':', '@']) {
        return false;
    }
    if !t.bytes().all(|c| c.is_ascii_alphanumeric() || b"+/=_-".contains(&c)) {
        return false;
    }
    let digits = t.bytes().any(|c| c.is_ascii_digit());
    let letters = t.bytes().any(|c| c.is_ascii_alphabetic());
    if !(digits && letters) {
        return false;
    }
    let hex = t.bytes().all(|c| c.is_ascii_hexdigit());
    let e = entropy(t);
    if hex { t.len() >= 32 && e >= 3.5 } else { e >= 4.2 }
}

/// Shannon entropy in bits per character.
fn entropy(t: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in t.bytes() {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    let n = t.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_found_and_ordinary_values_are_not() {
        for s in [
            "-----BEGIN PRIVATE KEY-----\nMIIE",
            "-----BEGIN EC PRIVATE KEY-----",
            "AKIAIOSFODNN7EXAMPLE",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abc",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "token: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ] {
            assert!(looks_secret(s, false).is_some(), "{s}");
        }
        for s in [
            "/etc/sekisho/tls/key.pem",
            "shop.example.jp",
            "tanaka@shop.example.jp",
            "2001:db8:1::/48",
            "http://127.0.0.1:8080",
            "wordpress-admin",
            "the admin app of the shop, behind a device certificate",
            "/wp-admin/admin-ajax.php",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
        ] {
            assert_eq!(looks_secret(s, false), None, "{s}");
        }
        assert!(secret_key_name("db_password"));
        assert!(secret_key_name("API-Key"));
        assert!(!secret_key_name("tls_key"));
    }
}
