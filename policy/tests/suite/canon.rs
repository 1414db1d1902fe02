//! The canonicaliser: every path-normalization and vpn-portal-traversal case of the bypass
//! corpus (/work/shared/corpus/bypass.toml) is refused or lands on the protected route, plus
//! positive cases, re-encoding and idempotence.

use sekisho_policy::{Access, CanonError, Policy, canonicalize_target, parse};

/// CTX-A + CTX-WP + CTX-VPN + the "/a/b" rule of the corpus, as one policy.
const CTX: &str = r#"version = 1
[server]
listen = ["127.0.0.1:8443"]
hostnames = ["admin.gw.test"]
tls_cert = "/c.pem"
tls_key = "/k.pem"
device_ca = "/ca.pem"

[[upstream]]
name = "echo"
url = "http://127.0.0.1:9000"

[[user]]
name = "tanaka"
groups = ["admins"]

[[route]]
name = "public"
paths = ["/", "/public", "/healthz", "/_gw", "/vpn", "/icons", "/api"]
upstream = "echo"
access = "public"

[[route]]
name = "admin"
paths = ["/admin", "/wp-admin", "/wp-login.php", "/remote", "/vpns", "/dana", "/dana-na",
         "/tmui", "/mgmt", "/cgi-bin", "/a/b"]
upstream = "echo"
access = "protected"
allow_ips = ["127.0.0.10/32"]
require_device = true
second_factor = ["webauthn", "totp"]
groups = ["admins"]
"#;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// Refused by the canonicaliser.
    Refused,
    /// Canonicalised, and routed to the protected route.
    Protected,
    /// Canonicalised to a path that is not under a protected prefix at all.
    Public,
}
use Want::{Protected, Public, Refused};

/// (corpus case, request-target as sent, expected).
const CORPUS: &[(&str, &str, Want)] = &[
    ("PATH-001", "/admin/", Protected),
    ("PATH-003", "/%61dmin/", Protected),
    ("PATH-003", "/adm%69n/users", Protected),
    ("PATH-003", "/%41DMIN/", Protected),
    ("PATH-004", "/%2561dmin/", Refused),
    ("PATH-005", "/admin%2Fusers", Refused),
    ("PATH-005", "/admin%2fusers", Refused),
    ("PATH-006", "/%2Fadmin/", Refused),
    ("PATH-008", "/public/%2e%2e/admin/", Refused),
    ("PATH-008", "/public/%2E%2E/admin/", Refused),
    ("PATH-009", "/public/.%2e/admin/", Refused),
    ("PATH-010", "/public/%252e%252e/admin/", Refused),
    ("PATH-012", "/admin%252Fusers", Refused),
    ("PATH-014", "/%5cadmin/", Refused),
    ("PATH-014", "/public%5c..%5cadmin/", Refused),
    ("PATH-015", "/./admin/", Refused),
    ("PATH-015", "/public/./../admin/", Refused),
    ("PATH-015", "/admin/./", Refused),
    ("PATH-016", "/public/../admin/", Refused),
    ("PATH-018", "/public;/../admin/", Refused),
    ("PATH-020", "/admin;jsessionid=0123456789ABCDEF/users", Refused),
    ("PATH-021", "/admin%3Bx=1/", Refused),
    ("PATH-022", "/a/b;%2f1/c", Refused),
    ("PATH-023", "/ADMIN/", Protected),
    ("PATH-023", "/Admin/", Protected),
    ("PATH-023", "/aDmIn/users", Protected),
    ("PATH-026", "/%0dadmin/", Refused),
    ("PATH-027", "/admin/%0a", Refused),
    ("PATH-027", "/admin/%0d%0a", Refused),
    ("PATH-028", "/%c0%afadmin/", Refused),
    ("PATH-028", "/public/%c0%ae%c0%ae/admin/", Refused),
    ("PATH-029", "/\u{c0}\u{af}admin/", Refused),
    ("PATH-030", "/admin%00/", Refused),
    ("PATH-030", "/admin%00.css", Refused),
    ("PATH-033", "/public#/../admin/", Refused),
    ("PATH-033", "/#/../admin/", Refused),
    ("PATH-034", "/public/x%23/../../admin/", Refused),
    ("PATH-036", "/public/x%3F/../../admin/", Refused),
    ("PATH-037", "//admin/", Refused),
    ("PATH-037", "///admin/", Refused),
    ("PATH-038", "/public//..//admin/", Refused),
    ("PATH-039", "/%EF%BD%81%EF%BD%84%EF%BD%8D%EF%BD%89%EF%BD%8E/", Refused),
    ("PATH-039", "/public/%EF%BC%8E%EF%BC%8E/admin/", Refused),
    ("PATH-041", "/\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e}/", Refused),
    ("PATH-042", "/healthz/../admin/", Refused),
    ("PATH-043", "/public/../../../admin/?/public/", Refused),
    ("PATH-044", "/admin-public", Public),
    ("PATH-045", "/wp-login.php/", Protected),
    ("PATH-045", "/wp-login.PHP", Protected),
    ("PATH-045", "/wp-login.php;x=1", Refused),
    ("PATH-045", "/public/..%2Fwp-login.php", Refused),
    ("PATH-046", "/wp-admin", Protected),
    ("PATH-046", "/Wp-Admin/", Protected),
    ("PATH-046", "/wp-admin%2Fadmin.php", Refused),
    ("PATH-047", "/admin/", Protected),
    ("PATH-048", "/admin/", Protected),
    ("PATH-052", "http://admin.gw.test/admin/", Protected),
    ("PATH-054", "https://admin.gw.test/admin/", Protected),
    ("PATH-055", "http://x@admin.gw.test/admin/", Refused),
    ("PATH-056", "/%zz/admin/", Refused),
    ("PATH-056", "/admin/%", Refused),
    ("PATH-056", "/admin/%f", Refused),
    ("PATH-057", "/api../admin/", Refused),
    ("PATH-057", "/api%2e%2e/admin/", Refused),
    ("PATH-057", "/api/../admin/", Refused),
    ("PATH-057", "/api%2F..%2Fadmin/", Refused),
    ("PATH-058", "/admin/*", Protected),
    ("PATH-058", "/admin/a*b", Protected),
    ("PATH-058", "/admin/!$&'()+,=@:", Protected),
    ("VPN-002", "/vpn/../vpns/cfg/smb.conf", Refused),
    ("VPN-003", "/vpn/../vpns/portal/scripts/newbm.pl", Refused),
    (
        "VPN-004",
        "/dana-na/../dana/html5acc/guacamole/../../../../../../etc/passwd?/dana/html5acc/guacamole/",
        Refused,
    ),
    ("VPN-006", "/icons/.%2e/%2e%2e/vpns/cfg/smb.conf", Refused),
];

fn ctx() -> Policy {
    parse("ctx.toml", CTX).unwrap_or_else(|d| panic!("{d}"))
}

#[test]
fn bypass_corpus_is_refused_or_protected() {
    let policy = ctx();
    let mut failures = Vec::new();
    for &(id, target, want) in CORPUS {
        let got = match canonicalize_target(target) {
            Err(_) => Refused,
            Ok(c) => {
                let route = policy.route_for("admin.gw.test", &c.path).map(|r| policy.route(r));
                match route.map(|r| r.access) {
                    Some(Access::Protected) => Protected,
                    _ => Public,
                }
            }
        };
        if got != want {
            failures.push(format!("{id} {target:?}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn refusals_name_the_reason() {
    let cases: &[(&str, CanonError)] = &[
        ("", CanonError::Empty),
        ("*", CanonError::NotOriginForm),
        ("admin.gw.test:443", CanonError::NotOriginForm),
        ("admin", CanonError::NotOriginForm),
        ("/a b", CanonError::ControlByte),
        ("/a\u{7f}", CanonError::ControlByte),
        ("/caf\u{e9}", CanonError::NonAscii),
        ("/a#b", CanonError::Fragment),
        ("/%zz", CanonError::MalformedEscape),
        ("/a%2fb", CanonError::EncodedSlash),
        ("/a\\b", CanonError::Backslash),
        ("/a%5Cb", CanonError::Backslash),
        ("/%2561", CanonError::EncodedPercent),
        ("/a%00", CanonError::EncodedControl),
        ("/a%C2%85", CanonError::EncodedControl),
        ("/a%E2%80%8Bb", CanonError::EncodedControl),
        ("/a%E2%80%AEb", CanonError::EncodedControl),
        ("/a%3Fb", CanonError::EncodedDelimiter),
        ("/a%23b", CanonError::EncodedDelimiter),
        ("/a;b", CanonError::Semicolon),
        ("/a%3bb", CanonError::Semicolon),
        ("/%C0%AE", CanonError::InvalidUtf8),
        ("/%FF", CanonError::InvalidUtf8),
        ("/a/.", CanonError::DotSegment),
        ("/a/%2E", CanonError::DotSegment),
        ("/a//b", CanonError::EmptySegment),
        ("/admin./", CanonError::SegmentEdge),
        ("/admin%20/", CanonError::SegmentEdge),
        ("/%20admin", CanonError::SegmentEdge),
        ("/admin%09", CanonError::EncodedControl),
        ("/%EF%AC%81le", CanonError::NotNormalized),
        ("/%E2%84%AA", CanonError::NotNormalized),
        ("/a?b c", CanonError::ControlByte),
        ("ftp://h/a", CanonError::BadAbsoluteForm),
        ("http:///a", CanonError::BadAbsoluteForm),
        ("http://h?x", CanonError::BadAbsoluteForm),
    ];
    let mut failures = Vec::new();
    for &(target, want) in cases {
        let got = canonicalize_target(target);
        if got != Err(want) {
            failures.push(format!("{target:?}: want {want:?}, got {got:?}"));
        }
        assert!(!want.as_str().is_empty());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn accepted_targets() {
    // (target, path, query, authority, changed)
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        bool,
    );
    let cases: &[Case] = &[
        ("/", "/", None, None, false),
        ("/wp-admin/", "/wp-admin/", None, None, false),
        ("/%E6%97%A5%E6%9C%AC", "/日本", None, None, true),
        ("/%61dmin", "/admin", None, None, true),
        (
            "/search?q=%2F..%2F&x=1;y",
            "/search",
            Some("q=%2F..%2F&x=1;y"),
            None,
            false,
        ),
        ("/a?", "/a", Some(""), None, false),
        ("/a?b?c", "/a", Some("b?c"), None, false),
        ("/a%20b", "/a b", None, None, true),
        ("/.git/config", "/.git/config", None, None, false),
        ("/a/b.c/..d", "/a/b.c/..d", None, None, false),
        (
            "HTTPS://Admin.GW.test:8443/x?y",
            "/x",
            Some("y"),
            Some("admin.gw.test:8443"),
            false,
        ),
        ("http://admin.gw.test", "/", None, Some("admin.gw.test"), false),
        ("http://[::1]:8443/", "/", None, Some("[::1]:8443"), false),
    ];
    for &(target, path, query, authority, changed) in cases {
        let c = canonicalize_target(target).unwrap_or_else(|e| panic!("{target:?}: {e}"));
        assert_eq!(c.path, path, "{target:?}");
        assert_eq!(c.query.as_deref(), query, "{target:?}");
        assert_eq!(c.authority.as_deref(), authority, "{target:?}");
        assert_eq!(c.changed, changed, "{target:?}");
    }
}

#[test]
fn upstream_encoding_is_fixed_and_idempotent() {
    let cases: &[(&str, &str)] = &[
        ("/", "/"),
        ("/%61dmin/x", "/admin/x"),
        ("/%E6%97%A5%E6%9C%AC?q=1", "/%E6%97%A5%E6%9C%AC?q=1"),
        ("/a%20b", "/a%20b"),
        ("/a%7Eb%2db", "/a~b-b"),
        ("/admin/!$&'()*+,=@:", "/admin/!$&'()*+,=@:"),
        ("/a%22b%3C%3E%60%7B%7D%7C%5E", "/a%22b%3C%3E%60%7B%7D%7C%5E"),
        ("/a\"b<>`{}|^", "/a%22b%3C%3E%60%7B%7D%7C%5E"),
    ];
    for &(target, upstream) in cases {
        let c = canonicalize_target(target).unwrap_or_else(|e| panic!("{target:?}: {e}"));
        let up = c.upstream_path_and_query();
        assert_eq!(up, upstream, "{target:?}");
        let again = canonicalize_target(&up).unwrap_or_else(|e| panic!("{up:?}: {e}"));
        assert_eq!(again.path, c.path, "{target:?}");
        assert_eq!(again.query, c.query, "{target:?}");
    }
}
