//! Route matching: whole segments, longest wins, case-insensitivity per upstream, hosts.

use sekisho_policy::{Policy, RouteId, parse};

const POLICY: &str = r#"version = 1
[server]
listen = ["127.0.0.1:8443"]
hostnames = ["shop.example.jp", "admin.example.jp"]
tls_cert = "/c.pem"
tls_key = "/k.pem"

[[upstream]]
name = "folded"
url = "http://127.0.0.1:9000"

[[upstream]]
name = "exact"
url = "http://127.0.0.1:9001"
case_insensitive = false

[[route]]
name = "root"
paths = ["/"]
upstream = "folded"
access = "public"

[[route]]
name = "admin"
paths = ["/admin"]
upstream = "folded"
access = "protected"
second_factor = ["totp"]

[[route]]
name = "admin-users"
paths = ["/admin/users"]
upstream = "folded"
access = "protected"
second_factor = ["webauthn"]

[[route]]
name = "files"
paths = ["/Files"]
upstream = "exact"
access = "public"

[[route]]
name = "secret"
paths = ["/Secret"]
access = "deny"

[[route]]
name = "console"
paths = ["/console", "/日本"]
hosts = ["admin.example.jp"]
upstream = "folded"
access = "protected"
second_factor = ["webauthn"]
"#;

fn policy() -> Policy {
    parse("m.toml", POLICY).unwrap_or_else(|d| panic!("{d}"))
}

#[test]
fn matching_table() {
    let p = policy();
    let name = |host: &str, path: &str| p.route_for(host, path).map(|id| p.route(id).name.clone());
    let cases: &[(&str, &str, Option<&str>)] = &[
        // Whole segments.
        ("shop.example.jp", "/admin", Some("admin")),
        ("shop.example.jp", "/admin/", Some("admin")),
        ("shop.example.jp", "/admin/x", Some("admin")),
        ("shop.example.jp", "/administrator", Some("root")),
        ("shop.example.jp", "/admin-x/admin", Some("root")),
        ("shop.example.jp", "/", Some("root")),
        ("shop.example.jp", "/anything/at/all", Some("root")),
        // Longest wins.
        ("shop.example.jp", "/admin/users", Some("admin-users")),
        ("shop.example.jp", "/admin/users/7", Some("admin-users")),
        ("shop.example.jp", "/admin/usersx", Some("admin")),
        // Case-insensitive by default.
        ("shop.example.jp", "/ADMIN/Users/7", Some("admin-users")),
        ("shop.example.jp", "/Admin", Some("admin")),
        // Case-sensitive upstream: only the exact spelling.
        ("shop.example.jp", "/Files/a", Some("files")),
        ("shop.example.jp", "/files/a", Some("root")),
        // Deny routes always fold case.
        ("shop.example.jp", "/secret/x", Some("secret")),
        ("shop.example.jp", "/SECRET", Some("secret")),
        // Hosts.
        ("shop.example.jp", "/console", Some("root")),
        ("admin.example.jp", "/console/x", Some("console")),
        ("admin.example.jp", "/%E6%97%A5%E6%9C%AC", Some("root")),
        ("admin.example.jp", "/日本/x", Some("console")),
        ("ADMIN.example.jp", "/console", Some("console")),
        ("other.example.jp", "/", None),
    ];
    let mut failures = Vec::new();
    for &(host, path, want) in cases {
        let got = name(host, path);
        if got.as_deref() != want {
            failures.push(format!("{host} {path}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn no_root_route_means_no_match() {
    let p = parse("m.toml", &POLICY.replace("paths = [\"/\"]", "paths = [\"/shop\"]")).unwrap();
    assert_eq!(p.route_for("shop.example.jp", "/"), None);
    assert_eq!(p.route_for("shop.example.jp", "/other"), None);
    assert_eq!(p.route_for("shop.example.jp", "/shop/x"), Some(RouteId(0)));
}

#[test]
fn admits_peer_at_accept_time() {
    let restricted = r#"version = 1
[server]
listen = ["127.0.0.1:8443"]
hostnames = ["admin.example.jp"]
tls_cert = "/c.pem"
tls_key = "/k.pem"
trusted_proxies = ["10.9.0.0/16"]

[[upstream]]
name = "app"
url = "http://127.0.0.1:9000"

[[route]]
name = "admin"
paths = ["/"]
upstream = "app"
access = "protected"
allow_ips = ["203.0.113.0/24"]
second_factor = ["totp"]

[[route]]
name = "nothing"
paths = ["/x"]
access = "deny"
"#;
    let p = parse("r.toml", restricted).unwrap_or_else(|d| panic!("{d}"));
    let ip = |s: &str| s.parse().unwrap();
    assert!(p.admits_peer(ip("203.0.113.9")));
    assert!(p.admits_peer(ip("::ffff:203.0.113.9")));
    assert!(p.admits_peer(ip("10.9.1.1")));
    assert!(!p.admits_peer(ip("198.51.100.1")));
    assert!(!p.admits_peer(ip("2001:db8::1")));
    // Any non-deny route without allow_ips opens the door to everyone.
    assert!(policy().admits_peer(ip("198.51.100.1")));
}
