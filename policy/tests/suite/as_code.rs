//! Policy as code: `[[test]]` tables, lint, diff and schema, and the policy class of the
//! bypass corpus (POL-001, POL-003, POL-004, POL-005) as named tests.

use sekisho_policy::{Effect, Outcome, Severity, diff, json_schema, lint, parse, read_tests, run_tests};

const BASE: &str = r#"version = 1

[server]
listen = ["0.0.0.0:8443", "[::]:8443"]
hostnames = ["admin.gw.test"]
tls_cert = "/c.pem"
tls_key = "/k.pem"
device_ca = "/ca.pem"
client_certificates = "request"

[[upstream]]
name = "app"
url = "http://127.0.0.1:9000"

[[user]]
name = "tanaka"
email = "tanaka@gw.test"
groups = ["admins"]

[[user]]
name = "guest"
email = "guest@gw.test"
groups = ["guests"]

[[route]]
name = "site"
paths = ["/"]
upstream = "app"
access = "public"

[[route]]
name = "admin"
paths = ["/admin", "/api"]
upstream = "app"
access = "protected"
allow_ips = ["203.0.113.0/24", "2001:db8::/32"]
require_device = true
second_factor = ["webauthn", "totp"]
groups = ["admins"]

[[route]]
name = "api-public"
paths = ["/api/public"]
upstream = "app"
access = "public"

[[route]]
name = "probes"
paths = ["/.git", "/.env", "/.svn", "/.htpasswd", "/wp-admin", "/wp-login.php", "/xmlrpc.php", "/wp-config.php", "/administrator", "/phpmyadmin", "/server-status", "/server-info"]
access = "deny"
"#;

fn with(extra: &str) -> String {
    format!("{BASE}\n{extra}")
}

/// Lints `text` (which must parse) and returns `code@line` for each finding.
fn lint_codes(text: &str) -> Vec<String> {
    let p = parse("p.toml", text).unwrap_or_else(|d| panic!("{d}"));
    lint(&p, "p.toml", text)
        .iter()
        .map(|f| format!("{}@{}", f.code, f.line))
        .collect()
}

/// Runs the tests written in `text` and returns (name, passed, got).
fn run(text: &str) -> Vec<(String, bool, Outcome, String)> {
    let p = parse("p.toml", text).unwrap_or_else(|d| panic!("{d}"));
    let tests = read_tests("p.toml", text, false).unwrap_or_else(|d| panic!("{d}"));
    run_tests(&p, &tests)
        .into_iter()
        .map(|r| (r.name, r.passed, r.got, r.reason))
        .collect()
}

#[test]
fn base_lints_with_only_the_intended_hole() {
    // api-public is public under the protected /api: a hole a reviewer must see.
    assert_eq!(lint_codes(BASE), ["weaker-nested-route@43"]);
}

#[test]
fn lint_finds_each_class_with_its_place() {
    let cases: &[(&str, &str)] = &[
        (
            "[[route]]\nname = \"open\"\npaths = [\"/ops\"]\nupstream = \"app\"\naccess = \"protected\"\nsecond_factor = [\"totp\"]\n",
            "protected-route-open-to-all@",
        ),
        (
            "[[route]]\nname = \"open\"\npaths = [\"/ops\"]\nupstream = \"app\"\naccess = \"protected\"\nallow_ips = [\"0.0.0.0/0\", \"::/0\"]\nrequire_device = true\nsecond_factor = [\"totp\"]\n",
            "protected-route-open-to-all@",
        ),
        (
            "[[route]]\nname = \"v4\"\npaths = [\"/ops\"]\nupstream = \"app\"\naccess = \"protected\"\nallow_ips = [\"203.0.113.0/24\"]\nsecond_factor = [\"totp\"]\n",
            "ipv4-only-allowlist@",
        ),
        (
            "[[route]]\nname = \"twice\"\npaths = [\"/ops\", \"/ops/x\"]\naccess = \"deny\"\n",
            "redundant-path@",
        ),
        (
            "[[route]]\nname = \"hole\"\npaths = [\"/admin/css\"]\nupstream = \"app\"\naccess = \"public\"\n",
            "weaker-nested-route@",
        ),
        (
            "[[route]]\nname = \"git-web\"\npaths = [\"/.git/web\"]\nupstream = \"app\"\naccess = \"public\"\n",
            "weaker-nested-route@",
        ),
        (
            "[[route]]\nname = \"again\"\npaths = [\"/.git/objects\"]\naccess = \"deny\"\n",
            "shadowed-route@",
        ),
        (
            "[[upstream]]\nname = \"far\"\nurl = \"http://10.0.0.5:80\"\n",
            "plain-http-upstream@",
        ),
        ("[[user]]\nname = \"nomail\"\n", "user-without-email@"),
        (
            "[session]\nidle_timeout = \"12h\"\nabsolute_timeout = \"20h\"\n",
            "timeout-out-of-bounds@",
        ),
        ("[lockout]\nmax_failures = 50\n", "timeout-out-of-bounds@"),
        ("[limits]\nheader_read_timeout = \"5m\"\n", "timeout-out-of-bounds@"),
        ("[log]\nretention_days = 90\n", "log-retention-too-short@"),
        ("[log]\ndanger_disable_audit = true\n", "danger-audit-disabled@"),
        // Secrets: in a value, in a test name, in a comment.
        (
            "[[user]]\nname = \"AKIAIOSFODNN7EXAMPLE\"\nemail = \"a@b.jp\"\n",
            "secret-in-policy@",
        ),
        (
            "[[test]]\nname = \"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig\"\nrequest = { ip = \"1.2.3.4\", path = \"/\" }\nexpect = \"allow\"\n",
            "secret-in-policy@",
        ),
        (
            "# -----BEGIN PRIVATE KEY----- MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n",
            "secret-in-policy@",
        ),
        (
            "# the old upstream token was wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
            "",
        ),
        (
            "[[route]]\nname = \"open-admin\"\npaths = [\"/phpmyadmin/setup\"]\nupstream = \"app\"\naccess = \"public\"\n",
            "",
        ),
    ];
    for (extra, expect) in cases {
        let text = with(extra);
        let codes: Vec<String> = lint_codes(&text)
            .into_iter()
            .filter(|c| c != "weaker-nested-route@43")
            .collect();
        if expect.is_empty() {
            // Comments are scanned for unmistakable shapes only; a deny route's child that is
            // public is caught as a hole, not as an admin path.
            assert!(!codes.iter().any(|c| c.starts_with("secret")), "{extra}: {codes:?}");
            continue;
        }
        let first_line = BASE.lines().count() + 2;
        assert!(
            codes.iter().any(|c| c.starts_with(expect)
                && c.rsplit('@')
                    .next()
                    .and_then(|l| l.parse::<usize>().ok())
                    .is_some_and(|l| l >= first_line)),
            "{extra}\nexpected {expect} at or after line {first_line}, got {codes:?}"
        );
    }
}

#[test]
fn a_short_log_retention_is_an_error_with_its_place_and_remedy() {
    let text = with("[log]\nretention_days = 90\n");
    let p = parse("p.toml", &text).unwrap_or_else(|d| panic!("{d}"));
    let f = lint(&p, "p.toml", &text)
        .into_iter()
        .find(|f| f.code == "log-retention-too-short")
        .expect("a retention finding");
    assert_eq!(f.severity, sekisho_policy::Severity::Error);
    assert_eq!((f.line, f.column), (BASE.lines().count() + 3, 18));
    assert!(f.help.contains("retention_days = 365"), "{}", f.help);
    // A year or more is fine.
    assert!(
        !lint_codes(&with("[log]\nretention_days = 400\n"))
            .iter()
            .any(|c| c.starts_with("log-"))
    );
}

#[test]
fn a_public_route_over_admin_paths_is_an_error_and_names_them() {
    let text = BASE.replace("\"/wp-admin\", ", "").replace("\"/.env\", ", "");
    let p = parse("p.toml", &text).unwrap();
    let f: Vec<_> = lint(&p, "p.toml", &text)
        .into_iter()
        .filter(|f| f.code == "public-admin-path")
        .collect();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].severity, Severity::Error);
    assert!(
        f[0].message.contains("`/wp-admin`") && f[0].message.contains("`/.env`"),
        "{}",
        f[0]
    );
    assert!(
        f[0].to_string().starts_with("p.toml:27:10: error[public-admin-path]"),
        "{}",
        f[0]
    );
}

#[test]
fn reference_policy_lints_with_the_public_admin_error() {
    // The shared reference serves `/` publicly and denies only /.git and /wp-config.php, so
    // /admin, /phpmyadmin, /.env … reach the shop: lint says so. It stays verbatim (it defines
    // format 1); deploy/policies holds lint-clean examples.
    let p = parse("reference.toml", crate::REFERENCE).unwrap();
    let errors: Vec<_> = lint(&p, "reference.toml", crate::REFERENCE)
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.code)
        .collect();
    assert_eq!(errors, ["public-admin-path"]);
}

#[test]
fn policy_tests_run_through_decide() {
    let text = with(
        r#"
[[test]]
name = "site"
request = { ip = "198.51.100.1", path = "/shop" }
expect = "allow"

[[test]]
name = "admin needs the second factor"
request = { ip = "203.0.113.9", path = "/admin/", device = "tanaka" }
expect = "login"
reason = "second_factor_required"

[[test]]
name = "tanaka is in"
request = { ip = "::ffff:203.0.113.9", path = "/admin/x", device = "tanaka", user = "tanaka", factors = ["totp"] }
expect = "allow"

[[test]]
name = "wrong expectation"
request = { ip = "198.51.100.1", path = "/admin/" }
expect = "allow"

[[test]]
name = "reserved"
request = { ip = "203.0.113.9", path = "/.sekisho/login" }
expect = "deny"
reason = "reserved_path"

[[test]]
name = "other host"
request = { ip = "203.0.113.9", path = "/", host = "evil.test" }
expect = "deny"
reason = "host_not_served"
"#,
    );
    let results = run(&text);
    let summary: Vec<(&str, bool)> = results.iter().map(|(n, ok, _, _)| (n.as_str(), *ok)).collect();
    assert_eq!(
        summary,
        [
            ("site", true),
            ("admin needs the second factor", true),
            ("tanaka is in", true),
            ("wrong expectation", false),
            ("reserved", true),
            ("other host", true),
        ]
    );
    let p = parse("p.toml", &text).unwrap();
    let tests = read_tests("p.toml", &text, false).unwrap();
    let failed = &run_tests(&p, &tests)[3];
    assert_eq!(failed.got, Outcome::Deny);
    assert!(
        failed.explanation.contains("outside allow_ips"),
        "{}",
        failed.explanation
    );
    assert!(failed.place.starts_with("p.toml:"), "{}", failed.place);
}

#[test]
fn mistyped_tests_are_reported_by_check_with_their_place() {
    let text = with("[[test]]\nrequest = { ip = \"1.2.3.4\", pth = \"/\" }\nexpect = \"alow\"\n");
    let d = parse("p.toml", &text).unwrap_err().to_string();
    assert!(
        d.contains("unknown key `pth`") && d.contains("did you mean `path`"),
        "{d}"
    );
    assert!(d.contains("unknown outcome `alow`"), "{d}");
    let side = "[[test]]\nrequest = { ip = \"1.2.3.4\", path = \"/\" }\nexpect = \"deny\"\n[server]\n";
    let d = read_tests("side.toml", side, true).unwrap_err().to_string();
    assert!(d.contains("unknown key `server`"), "{d}");
}

/// POL-001: a host rule written as a regex with an unescaped `.` matched `adminXgw.test`.
/// Sekisho compares host names literally and refuses patterns in the policy.
#[test]
fn pol_001_host_names_match_literally() {
    let p = parse("p.toml", BASE).unwrap();
    assert!(p.serves_host("admin.gw.test"));
    for host in ["adminXgw.test", "admin.gw.testevil.example", "xadmin.gw.test"] {
        assert!(!p.serves_host(host), "{host}");
    }
    for pattern in ["admin.gw.*", "*.gw.test", "admin\\.gw\\.test", "^admin.gw.test$"] {
        let text = BASE.replace("hostnames = [\"admin.gw.test\"]", &format!("hostnames = [{pattern:?}]"));
        assert!(parse("p.toml", &text).is_err(), "{pattern} accepted as a hostname");
    }
}

/// POL-003: a public rule matched against path + query let `/api/private/secret?path=/status`
/// through. Sekisho routes the canonical path only; a route path cannot hold a query.
#[test]
fn pol_003_routes_see_only_the_canonical_path() {
    let text = with(
        r#"
[[test]]
name = "the query does not make a protected path public"
request = { ip = "198.51.100.1", path = "/api/private/secret?path=/api/public" }
expect = "deny"
reason = "address_not_allowed"

[[test]]
name = "the public API itself is public"
request = { ip = "198.51.100.1", path = "/api/public/status?x=1" }
expect = "allow"
"#,
    );
    assert!(run(&text).iter().all(|(_, ok, _, _)| *ok), "{:?}", run(&text));
    let bad = BASE.replace("paths = [\"/api/public\"]", "paths = [\"/api/status?x=1\"]");
    assert!(parse("p.toml", &bad).is_err());
}

/// POL-004: an empty string in an allowed-groups list admitted users with no group.
#[test]
fn pol_004_an_empty_group_entry_is_refused() {
    let bad = BASE.replace(
        "groups = [\"admins\"]\n\n[[route]]",
        "groups = [\"admins\", \"\"]\n\n[[route]]",
    );
    assert_ne!(bad, BASE);
    let d = parse("p.toml", &bad).unwrap_err().to_string();
    assert!(d.contains("empty string in `groups`"), "{d}");
    // And a user outside the groups is denied.
    let text = with(
        "[[test]]\nrequest = { ip = \"203.0.113.9\", path = \"/admin/\", device = \"guest\", user = \"guest\" }\nexpect = \"deny\"\nreason = \"not_in_group\"\n",
    );
    assert!(run(&text).iter().all(|(_, ok, _, _)| *ok));
}

/// POL-005: an invalid policy push (syntax error, unknown key, duplicate route) is refused
/// as a whole; the gateway keeps the last good policy (tests/tests/policy_reload.rs runs it
/// against the real binary, by rename, under load).
#[test]
fn pol_005_invalid_pushes_are_refused_whole() {
    for bad in [
        with("[[route]\nname = \"x\"\n"),
        with("allow_everything = true\n"),
        with("[[route]]\nname = \"site\"\npaths = [\"/dup\"]\naccess = \"deny\"\n"),
        with("[[route]]\nname = \"dup-path\"\npaths = [\"/ADMIN\"]\naccess = \"deny\"\n"),
    ] {
        assert!(parse("p.toml", &bad).is_err(), "{bad}");
    }
}

#[test]
fn diff_says_who_gains_and_loses_what() {
    let old = parse("old.toml", BASE).unwrap();
    let new_text = BASE
        .replace(
            "allow_ips = [\"203.0.113.0/24\", \"2001:db8::/32\"]",
            "allow_ips = [\"203.0.113.0/24\", \"198.51.100.0/24\"]",
        )
        .replace("groups = [\"guests\"]", "groups = [\"guests\", \"admins\"]")
        .replace(
            "second_factor = [\"webauthn\", \"totp\"]",
            "second_factor = [\"webauthn\"]",
        )
        .replace(
            "paths = [\"/api/public\"]\nupstream = \"app\"\naccess = \"public\"",
            "paths = [\"/api/public\"]\naccess = \"deny\"",
        );
    let new = parse("new.toml", &new_text).unwrap_or_else(|d| panic!("{d}"));
    let changes: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
    let expected = [
        "+ route 'admin' allow_ips widened: now also 198.51.100.0/24",
        "- route 'admin' allow_ips narrowed: no longer 2001:db8::/32",
        "- route 'admin' no longer accepts totp",
        "+ guest gain access to route 'admin' (/admin, /api)",
        "- route 'api-public' (/api/public) changes from public to deny",
        "+ user 'guest' joins group 'admins'",
    ];
    for e in expected {
        assert!(changes.iter().any(|c| c == e), "missing {e:?} in {changes:#?}");
    }
    assert!(diff(&old, &old).is_empty());
    let removed = parse(
        "r.toml",
        &BASE.replace(
            "[[user]]\nname = \"guest\"\nemail = \"guest@gw.test\"\ngroups = [\"guests\"]\n",
            "",
        ),
    )
    .unwrap();
    let d = diff(&old, &removed);
    assert!(
        d.iter()
            .any(|c| c.effect == Effect::Narrows && c.text.contains("user 'guest' removed")),
        "{d:?}"
    );
    assert_eq!(sekisho_policy::identities_losing_access(&old, &removed), ["guest"]);
}

#[test]
fn schema_is_json_with_exactly_the_parser_keys() {
    let schema = json_schema();
    assert!(schema.contains("\"$schema\": \"https://json-schema.org/draft/2020-12/schema\""));
    // Every key the reference uses is offered, and additional properties are refused.
    for key in [
        "listen",
        "client_certificates",
        "second_factor",
        "allow_ips",
        "policy_poll_interval",
        "expect",
        "notify",
        "admin_email",
        "smtp_tls",
        "smtp_password_file",
        "webhook_url",
        "retention_days",
        "public_when_unwritable",
        "remote",
        "syslog",
        "ca_file",
    ] {
        assert!(schema.contains(&format!("\"{key}\":")), "{key}");
    }
    assert!(schema.contains("\"additionalProperties\": false"));
    // Balanced and quote-safe (serde_json is not a dependency of the pure crate; the gateway
    // test parses it as JSON).
    let opens = schema.matches('{').count();
    assert_eq!(opens, schema.matches('}').count());
}
