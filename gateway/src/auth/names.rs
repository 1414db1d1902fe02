//! User names as people type them → the one canonical spelling every counter, record and
//! session uses (corpus MFA-005: `admin`, `Admin`, ` admin` and `ADMIN` are one user and
//! share one lockout counter).

use unicode_normalization::UnicodeNormalization as _;

/// The longest name accepted (the policy allows 128).
pub const MAX_NAME: usize = 128;

/// NFKC, surrounding whitespace trimmed, lower-cased. Returns `None` for an empty or
/// overlong name, or one with characters no policy name can hold (such a name names no
/// user; callers still answer exactly as for a wrong code).
pub fn canonical(typed: &str) -> Option<String> {
    let n: String = typed.nfkc().collect::<String>().trim().to_lowercase();
    let ok =
        !n.is_empty() && n.len() <= MAX_NAME && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    ok.then_some(n)
}

/// The policy user a canonical name stands for (policy names compare case-insensitively).
pub fn policy_user<'p>(policy: &'p sekisho_policy::Policy, canonical: &str) -> Option<&'p sekisho_policy::User> {
    policy.users.iter().find(|u| u.name.eq_ignore_ascii_case(canonical))
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn spellings_of_one_name_are_one_name() {
        for typed in ["admin", "Admin", " admin", "ADMIN", "admin\t", "ａｄｍｉｎ"] {
            assert_eq!(canonical(typed).as_deref(), Some("admin"), "{typed:?}");
        }
        for typed in ["", "   ", "ad min", "admin\u{0}", "a/b"] {
            assert_eq!(canonical(typed), None, "{typed:?}");
        }
    }
}
