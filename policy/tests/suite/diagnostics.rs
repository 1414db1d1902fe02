//! Diagnostics, table-driven through one `check` helper: each class of problem, with place
//! (line:column) asserted where it matters, and all problems reported at once.

use sekisho_policy::parse;

/// A valid base policy; cases append to it or replace parts of it.
const BASE: &str = r#"version = 1

[server]
listen = ["127.0.0.1:8443"]
hostnames = ["admin.example.jp", "shop.example.jp"]
tls_cert = "/c.pem"
tls_key = "/k.pem"
device_ca = "/ca.pem"
client_certificates = "request"

[[upstream]]
name = "app"
url = "http://127.0.0.1:9000"

[[user]]
name = "tanaka"
groups = ["admins"]

[[route]]
name = "public"
paths = ["/"]
upstream = "app"
access = "public"
"#;

/// Parses `input` and asserts that it fails with exactly one diagnostic per expected entry, in
/// file order; an entry is `|`-separated substrings that must all appear in that diagnostic
/// (rendered with its `file:line:column` and help).
#[track_caller]
fn check(input: &str, expected: &[&str]) {
    if let Err(why) = try_check(input, expected) {
        panic!("{why}");
    }
}

fn try_check(input: &str, expected: &[&str]) -> Result<(), String> {
    let diagnostics = match parse("p.toml", input) {
        Ok(_) => {
            return Err(format!("expected diagnostics, got a valid policy for:\n{input}"));
        }
        Err(d) => d,
    };
    if diagnostics.len() != expected.len() {
        return Err(format!(
            "wrong number of problems:\n{diagnostics}\n--- expected: {expected:?}"
        ));
    }
    for (d, e) in diagnostics.iter().zip(expected) {
        let rendered = d.to_string();
        for part in e.split('|') {
            if !rendered.contains(part) {
                return Err(format!("missing `{part}` in:\n{rendered}\n(all: {diagnostics})"));
            }
        }
    }
    Ok(())
}

fn with(extra: &str) -> String {
    format!("{BASE}\n{extra}")
}

#[test]
fn base_is_valid() {
    parse("p.toml", BASE).unwrap_or_else(|d| panic!("{d}"));
}

#[test]
fn one_problem_each() {
    let cases: &[(&str, String, &[&str])] = &[
        (
            "syntax",
            with("[[route]\nname = 1"),
            &["p.toml:25:9: error: TOML syntax"],
        ),
        (
            "version missing",
            BASE.replace("version = 1\n", ""),
            &["missing key `version`|help: start the file with `version = 1`"],
        ),
        (
            "version 2",
            BASE.replace("version = 1", "version = 2"),
            &["p.toml:1:11: error: unsupported policy format: `version` must be 1"],
        ),
        (
            "version string",
            BASE.replace("version = 1", "version = \"1\""),
            &["`version` must be 1"],
        ),
        (
            "unknown root key",
            format!("verison = 1\n{BASE}"),
            &["unknown key `verison`|did you mean `version`?"],
        ),
        (
            "unknown server key",
            BASE.replace("tls_key =", "tls_kye ="),
            &[
                "p.toml:3:1: error: missing key `tls_key` in [server]",
                "p.toml:7:1: error: unknown key `tls_kye` in [server]|help: did you mean `tls_key`?",
            ],
        ),
        (
            "unknown route key",
            with(
                "[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"public\"\nallowips = [\"10.0.0.0/8\"]",
            ),
            &["unknown key `allowips` in [[route]]|did you mean `allow_ips`?"],
        ),
        (
            "wrong type",
            BASE.replace("listen = [\"127.0.0.1:8443\"]", "listen = \"127.0.0.1:8443\""),
            &["p.toml:4:10: error: `listen` must be a list of strings, found string"],
        ),
        (
            "wrong type bool",
            with(
                "[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"public\"\nrequire_device = \"yes\"",
            ),
            &["`require_device` must be true or false"],
        ),
        (
            "unknown upstream",
            with("[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"ap\"\naccess = \"public\""),
            &["p.toml:28:12: error: unknown upstream `ap`|did you mean `app`?"],
        ),
        (
            "unknown group",
            with(
                "[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"protected\"\nsecond_factor = [\"totp\"]\ngroups = [\"admin\"]",
            ),
            &["unknown group `admin`|did you mean `admins`?"],
        ),
        (
            "same path twice on a host",
            with("[[route]]\nname = \"x\"\npaths = [\"/\"]\nupstream = \"app\"\naccess = \"public\""),
            &["path `/` on host `admin.example.jp` is already routed by `public`"],
        ),
        (
            "same path, other case",
            with(
                "[[route]]\nname = \"x\"\npaths = [\"/A\"]\nupstream = \"app\"\naccess = \"public\"\n[[route]]\nname = \"y\"\npaths = [\"/a\"]\nupstream = \"app\"\naccess = \"public\"",
            ),
            &["path `/a` on host `admin.example.jp` is already routed by `x`"],
        ),
        (
            "protected without factor",
            with("[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"protected\""),
            &["protected route `x` has no `second_factor`|help: add `second_factor = [\"webauthn\", \"totp\"]`"],
        ),
        (
            "protected with empty factor",
            with(
                "[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"protected\"\nsecond_factor = []",
            ),
            &["protected route `x` has an empty `second_factor`"],
        ),
        (
            "unknown factor",
            with(
                "[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"protected\"\nsecond_factor = [\"webauth\"]",
            ),
            &["unknown factor `webauth`|did you mean \"webauthn\"?"],
        ),
        (
            "public with factor",
            with(
                "[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"public\"\nsecond_factor = [\"totp\"]",
            ),
            &["public route `x` sets `second_factor`"],
        ),
        (
            "public with groups",
            with(
                "[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"public\"\ngroups = [\"admins\"]",
            ),
            &["public route `x` sets `groups`"],
        ),
        (
            "deny with upstream",
            with("[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"deny\""),
            &["deny route `x` has an upstream"],
        ),
        (
            "non-deny without upstream",
            with("[[route]]\nname = \"x\"\npaths = [\"/x\"]\naccess = \"public\""),
            &["p.toml:25:1: error: route `x` has no `upstream`"],
        ),
        (
            "unknown access",
            with("[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"protect\""),
            &["unknown access `protect`|did you mean \"protected\"?"],
        ),
        (
            "allowlist host bits",
            with(
                "[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"public\"\nallow_ips = [\"10.0.0.1/24\"]",
            ),
            &["`10.0.0.1/24` has host bits set|help: write `10.0.0.0/24`"],
        ),
        (
            "allowlist unparsable",
            with(
                "[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"public\"\nallow_ips = [\"10.0.0.0/33\"]",
            ),
            &["`10.0.0.0/33` is not an IP network"],
        ),
        (
            "trusted proxy host bits",
            BASE.replace(
                "client_certificates",
                "trusted_proxies = [\"2001:db8::1/64\"]\nclient_certificates",
            ),
            &["`2001:db8::1/64` has host bits set|write `2001:db8::/64`"],
        ),
        (
            "empty group string",
            BASE.replace("groups = [\"admins\"]", "groups = [\"admins\", \"\"]"),
            &["p.toml:17:21: error: empty string in `groups`"],
        ),
        (
            "empty path string",
            with("[[route]]\nname = \"x\"\npaths = [\"\"]\nupstream = \"app\"\naccess = \"public\""),
            &["empty string in `paths`"],
        ),
        (
            "empty hostname",
            BASE.replace("\"shop.example.jp\"]", "\"\"]"),
            &["empty string in `hostnames`"],
        ),
        (
            "path dotdot",
            with("[[route]]\nname = \"x\"\npaths = [\"/a/../b\"]\nupstream = \"app\"\naccess = \"public\""),
            &["route path `/a/../b` is not canonical: dot segment"],
        ),
        (
            "path under the reserved prefix",
            with("[[route]]\nname = \"x\"\npaths = [\"/.Sekisho/login\"]\nupstream = \"app\"\naccess = \"public\""),
            &["route path `/.Sekisho/login` is under `/.sekisho`|no route can shadow"],
        ),
        (
            "path is the reserved prefix",
            with("[[route]]\nname = \"x\"\npaths = [\"/.sekisho\"]\nupstream = \"app\"\naccess = \"public\""),
            &["reserves for its own pages"],
        ),
        (
            "path not absolute",
            with("[[route]]\nname = \"x\"\npaths = [\"admin\"]\nupstream = \"app\"\naccess = \"public\""),
            &["route path `admin` is not canonical"],
        ),
        (
            "path double slash",
            with("[[route]]\nname = \"x\"\npaths = [\"/a//b\"]\nupstream = \"app\"\naccess = \"public\""),
            &["empty segment"],
        ),
        (
            "path percent",
            with("[[route]]\nname = \"x\"\npaths = [\"/a%62\"]\nupstream = \"app\"\naccess = \"public\""),
            &["is percent-encoded|write it decoded: `/ab`"],
        ),
        (
            "path semicolon",
            with("[[route]]\nname = \"x\"\npaths = [\"/a;b\"]\nupstream = \"app\"\naccess = \"public\""),
            &["semicolon"],
        ),
        (
            "path backslash",
            with("[[route]]\nname = \"x\"\npaths = [\"/a\\\\b\"]\nupstream = \"app\"\naccess = \"public\""),
            &["backslash"],
        ),
        (
            "path trailing slash",
            with("[[route]]\nname = \"x\"\npaths = [\"/admin/\"]\nupstream = \"app\"\naccess = \"public\""),
            &["route path `/admin/` ends with `/`|write `/admin`"],
        ),
        (
            "path single dot",
            with("[[route]]\nname = \"x\"\npaths = [\"/./a\"]\nupstream = \"app\"\naccess = \"public\""),
            &["dot segment"],
        ),
        (
            "path control",
            with("[[route]]\nname = \"x\"\npaths = [\"/a\\tb\"]\nupstream = \"app\"\naccess = \"public\""),
            &["route path `/a\\tb` is not canonical: encoded control"],
        ),
        (
            "duplicate route name",
            with("[[route]]\nname = \"public\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"public\""),
            &["duplicate route name `public`"],
        ),
        (
            "duplicate upstream",
            with("[[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:9001\""),
            &["duplicate upstream name `app`"],
        ),
        (
            "duplicate user",
            with("[[user]]\nname = \"tanaka\""),
            &["duplicate user name `tanaka`"],
        ),
        (
            "upstream with path",
            BASE.replace("http://127.0.0.1:9000", "http://127.0.0.1:9000/app"),
            &["upstream url `http://127.0.0.1:9000/app` is not `scheme://host:port`"],
        ),
        (
            "upstream with userinfo",
            BASE.replace("http://127.0.0.1:9000", "http://u:p@127.0.0.1:9000"),
            &["is not `scheme://host:port`"],
        ),
        (
            "upstream scheme",
            BASE.replace("http://127.0.0.1:9000", "ftp://127.0.0.1:9000"),
            &["must start with http:// or https://"],
        ),
        (
            "bad duration",
            with("[session]\nidle_timeout = \"15 minutes\""),
            &["`idle_timeout` = \"15 minutes\" is not a duration"],
        ),
        (
            "bad limit duration",
            with("[limits]\nheader_read_timeout = \"0s\""),
            &["`header_read_timeout` = \"0s\" is out of range"],
        ),
        (
            "limit too small",
            with("[limits]\nmax_header_bytes = 4096"),
            &["`max_header_bytes` is out of range|from 8192"],
        ),
        (
            "limit zero",
            with("[limits]\nmax_connections = 0"),
            &["`max_connections` is out of range"],
        ),
        (
            "unknown limit",
            with("[limits]\nmax_header = 9000"),
            &["unknown key `max_header` in [limits]|did you mean `max_headers`?"],
        ),
        (
            "client cert mode",
            BASE.replace("\"request\"", "\"optional\""),
            &["`client_certificates` = \"optional\" is not a mode|\"require\", \"request\" or \"off\""],
        ),
        (
            "require_device with off",
            BASE.replace("\"request\"", "\"off\"")
                + "\n[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"public\"\nrequire_device = true",
            &["route `x` requires a device certificate, but the server never asks for one"],
        ),
        (
            "require_device without ca",
            BASE.replace("device_ca = \"/ca.pem\"\nclient_certificates = \"request\"\n", "")
                + "\n[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"public\"\nrequire_device = true",
            &["requires a device certificate"],
        ),
        (
            "require mode without ca",
            BASE.replace("device_ca = \"/ca.pem\"\n", ""),
            &["`client_certificates` = \"request\" without `device_ca`"],
        ),
        (
            "listen unparsable",
            BASE.replace("127.0.0.1:8443", "localhost:8443"),
            &["p.toml:4:11: error: `localhost:8443` is not a socket address"],
        ),
        (
            "hostname upper case",
            BASE.replace("\"shop.example.jp\"", "\"Shop.example.jp\""),
            &["hostname `Shop.example.jp` is not lower-case|write `shop.example.jp`"],
        ),
        (
            "hostname with port",
            BASE.replace("\"shop.example.jp\"", "\"shop.example.jp:443\""),
            &["`shop.example.jp:443` is not a DNS hostname"],
        ),
        (
            "route host not served",
            with(
                "[[route]]\nname = \"x\"\npaths = [\"/x\"]\nhosts = [\"other.example.jp\"]\nupstream = \"app\"\naccess = \"public\"",
            ),
            &["route host `other.example.jp` is not a server hostname"],
        ),
        (
            "duplicate toml key",
            BASE.replace("tls_key = \"/k.pem\"", "tls_key = \"/k.pem\"\ntls_key = \"/k2.pem\""),
            &["p.toml:8:1: error: TOML syntax"],
        ),
        (
            "idle longer than absolute",
            with("[session]\nidle_timeout = \"9h\"\nabsolute_timeout = \"8h\""),
            &["`idle_timeout` is longer than `absolute_timeout`"],
        ),
        (
            "per-ip above total",
            with("[limits]\nmax_connections = 10\nmax_connections_per_ip = 11"),
            &["`max_connections_per_ip` is larger than `max_connections`"],
        ),
        (
            "metrics on a public address",
            BASE.replace("client_certificates", "metrics = \"0.0.0.0:9901\"\nclient_certificates"),
            &[
                "p.toml:9:11: error: `metrics` = \"0.0.0.0:9901\" is not a loopback address|\"127.0.0.1:9901\"|Unix socket path",
            ],
        ),
        (
            "metrics on a TLS listener",
            BASE.replace(
                "client_certificates",
                "metrics = \"127.0.0.1:8443\"\nclient_certificates",
            ),
            &["`metrics` = \"127.0.0.1:8443\" is also in `listen`"],
        ),
        (
            "metrics neither address nor path",
            BASE.replace(
                "client_certificates",
                "metrics = \"localhost:9901\"\nclient_certificates",
            ),
            &["`metrics` = \"localhost:9901\" is neither a socket address nor an absolute path"],
        ),
        (
            "ban window out of range",
            with("[limits]\nban_window = \"0s\""),
            &["`ban_window` = \"0s\" is out of range"],
        ),
        (
            "login burst zero",
            with("[limits]\nlogin_burst = 0"),
            &["`login_burst` is out of range"],
        ),
        ("missing server", "version = 1\n".to_string(), &["missing key `server`"]),
        (
            "empty allow_ips",
            with("[[route]]\nname = \"x\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"public\"\nallow_ips = []"),
            &["`allow_ips` is empty"],
        ),
        (
            "bad name",
            with("[[route]]\nname = \"my route\"\npaths = [\"/x\"]\nupstream = \"app\"\naccess = \"public\""),
            &["route `my route` is not a valid name"],
        ),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(what, input, expected)| try_check(input, expected).err().map(|e| format!("case `{what}`: {e}")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn five_problems_are_all_reported() {
    let input = r#"version = 1

[server]
listen = ["127.0.0.1:8443"]
hostnames = ["admin.example.jp"]
tls_cert = "/c.pem"
tls_key = "/k.pem"
colour = "blue"

[[upstream]]
name = "app"
url = "http://127.0.0.1:9000"

[[route]]
name = "a"
paths = ["/admin/"]
upstream = "nope"
access = "protected"
allow_ips = ["10.0.0.1/8"]
"#;
    check(
        input,
        &[
            "p.toml:8:1: error: unknown key `colour` in [server]",
            "p.toml:14:1: error: protected route `a` has no `second_factor`",
            "p.toml:16:10: error: route path `/admin/` ends with `/`",
            "p.toml:17:12: error: unknown upstream `nope`",
            "p.toml:19:14: error: `10.0.0.1/8` has host bits set",
        ],
    );
}

#[test]
fn display_format() {
    let d = parse("dir/p.toml", &BASE.replace("version = 1", "version = 2")).unwrap_err();
    assert_eq!(
        d.to_string(),
        "dir/p.toml:1:11: error: unsupported policy format: `version` must be 1\n  help: this Sekisho reads `version = 1`"
    );
    let first = &d[0];
    assert_eq!((first.line, first.column), (1, 11));
    let _: &dyn std::error::Error = &d;
}

#[test]
fn non_ascii_route_paths_are_written_decoded() {
    let ok = with("[[route]]\nname = \"x\"\npaths = [\"/日本/管理\"]\nupstream = \"app\"\naccess = \"public\"");
    let p = parse("p.toml", &ok).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(p.routes[1].paths, ["/日本/管理"]);
    check(
        &ok.replace("/日本/管理", "/%E6%97%A5%E6%9C%AC"),
        &["route path `/%E6%97%A5%E6%9C%AC` is percent-encoded|write it decoded: `/日本`"],
    );
    check(
        &ok.replace("/日本/管理", "/ａｄｍｉｎ"),
        &["route path `/ａｄｍｉｎ` is not canonical: path is not in NFKC normal form"],
    );
}

#[test]
fn public_url_is_an_https_origin_of_a_served_host() {
    let with_url = |u: &str| {
        BASE.replace(
            "client_certificates = \"request\"\n",
            &format!("client_certificates = \"request\"\npublic_url = \"{u}\"\n"),
        )
    };
    for good in [
        "https://admin.example.jp",
        "https://admin.example.jp/",
        "https://shop.example.jp:8443",
    ] {
        let p = parse("p.toml", &with_url(good)).unwrap_or_else(|d| panic!("{good}: {d}"));
        assert!(p.server.public_url.is_some(), "{good}");
    }
    let p = parse("p.toml", &with_url("https://shop.example.jp:8443")).unwrap();
    assert_eq!(p.server.public_url.unwrap().origin(), "https://shop.example.jp:8443");
    check(
        &with_url("http://admin.example.jp"),
        &["p.toml:10:|is not an https:// URL|https://admin.example.jp"],
    );
    check(
        &with_url("https://evil.example"),
        &["not in `hostnames`|admin.example.jp"],
    );
    check(
        &with_url("https://admin.example.jp/admin"),
        &["more than a host and a port"],
    );
    check(
        &with_url("https://x@admin.example.jp"),
        &["more than a host and a port"],
    );
    check(&with_url("https://admin.example.jp:0"), &["no valid port"]);
}

/// Corpus SESS-011: `attacker@evil.example@example.jp` passed a domain allowlist elsewhere;
/// here every address has exactly one `@` (notices go to it).
#[test]
fn corpus_sess_011_an_address_with_two_at_signs_is_refused() {
    for bad in [
        "attacker@evil.example@example.jp",
        "tanaka",
        "tanaka@",
        "<tanaka@example.jp>",
    ] {
        check(
            &BASE.replace(
                "name = \"tanaka\"\n",
                &format!("name = \"tanaka\"\nemail = \"{bad}\"\n"),
            ),
            &["is not an email address|tanaka@example.jp"],
        );
    }
}

#[test]
fn corpus_pol_004_empty_group_is_refused() {
    check(
        &BASE.replace("groups = [\"admins\"]", "groups = [\"admins\", \"\"]"),
        &["empty string in `groups`"],
    );
}

#[test]
fn deny_route_may_omit_upstream_and_defaults_hold() {
    let p = parse(
        "p.toml",
        &with("[[route]]\nname = \"x\"\npaths = [\"/x\"]\naccess = \"deny\""),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(p.routes.len(), 2);
    assert_eq!(p.session, sekisho_policy::SessionSettings::default());
    assert_eq!(p.lockout, sekisho_policy::LockoutSettings::default());
}

#[test]
fn notify_table_is_read_with_defaults() {
    let p = parse(
        "p.toml",
        &with(
            "[notify]\nadmin_email = \"admin@example.jp\"\nsmtp_host = \"mail.example.jp\"\n\
             smtp_user = \"sekisho\"\nsmtp_password_file = \"/etc/sekisho/smtp.password\"\n\
             from = \"sekisho@example.jp\"\nwebhook_url = \"https://hooks.example.jp/sekisho\"\n",
        ),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let smtp = p.notify.smtp.as_ref().unwrap();
    assert_eq!(smtp.tls, sekisho_policy::SmtpTls::StartTls);
    assert_eq!(smtp.port, 587);
    assert_eq!(smtp.password_file.as_deref(), Some("/etc/sekisho/smtp.password"));
    assert_eq!(p.notify.admin_email.as_deref(), Some("admin@example.jp"));
    assert_eq!(
        p.notify.webhook_url.as_deref(),
        Some("https://hooks.example.jp/sekisho")
    );

    for (tls, port) in [("tls", 465), ("none", 25)] {
        let p = parse(
            "p.toml",
            &with(&format!(
                "[notify]\nsmtp_host = \"127.0.0.1\"\nsmtp_tls = \"{tls}\"\nfrom = \"gw@example.jp\"\n\
                 webhook_url = \"http://[::1]:8080/hook\"\n"
            )),
        )
        .unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(p.notify.smtp.as_ref().unwrap().port, port);
    }
    let p = parse(
        "p.toml",
        &with("[notify]\nsmtp_host = \"localhost\"\nsmtp_tls = \"none\"\nsmtp_port = 2525\nfrom = \"gw@example.jp\"\n"),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(p.notify.smtp.as_ref().unwrap().port, 2525);
    assert_eq!(
        parse("p.toml", BASE).unwrap().notify,
        sekisho_policy::NotifySettings::default()
    );
}

#[test]
fn notify_table_problems() {
    let n = |body: &str| with(&format!("[notify]\n{body}"));
    let cases: &[(&str, String, &[&str])] = &[
        (
            "unknown key",
            n("smtp_hots = \"mail.example.jp\"\n"),
            &["unknown key `smtp_hots` in [notify]|did you mean `smtp_host`?"],
        ),
        (
            "plain smtp to a remote host",
            n("smtp_host = \"mail.example.jp\"\nsmtp_tls = \"none\"\nfrom = \"gw@example.jp\"\n"),
            &["p.toml:27:12: error: `smtp_tls = \"none\"` is only allowed for a loopback `smtp_host`"],
        ),
        (
            "plain smtp to a remote address",
            n("smtp_host = \"192.0.2.1\"\nsmtp_tls = \"none\"\nfrom = \"gw@example.jp\"\n"),
            &["only allowed for a loopback `smtp_host`, not \"192.0.2.1\""],
        ),
        (
            "unknown tls mode",
            n("smtp_host = \"mail.example.jp\"\nsmtp_tls = \"ssl\"\nfrom = \"gw@example.jp\"\n"),
            &["`smtp_tls` = \"ssl\" is not one of starttls, tls, none"],
        ),
        (
            "port out of range",
            n("smtp_host = \"mail.example.jp\"\nsmtp_port = 70000\nfrom = \"gw@example.jp\"\n"),
            &["`smtp_port` is out of range"],
        ),
        (
            "user without password file",
            n("smtp_host = \"mail.example.jp\"\nsmtp_user = \"gw\"\nfrom = \"gw@example.jp\"\n"),
            &["`smtp_user` is set but `smtp_password_file` is not"],
        ),
        (
            "password file without user",
            n("smtp_host = \"mail.example.jp\"\nsmtp_password_file = \"/p\"\nfrom = \"gw@example.jp\"\n"),
            &["`smtp_password_file` is set but `smtp_user` is not"],
        ),
        (
            "mail without a sender",
            n("smtp_host = \"mail.example.jp\"\n"),
            &["missing key `from` in [notify]"],
        ),
        (
            "mail settings without a server",
            n("from = \"gw@example.jp\"\nsmtp_port = 25\n"),
            &[
                "`from` is set but `smtp_host` is not",
                "`smtp_port` is set but `smtp_host` is not",
            ],
        ),
        (
            "bad host",
            n("smtp_host = \"mail.example.jp:25\"\nfrom = \"gw@example.jp\"\n"),
            &["`smtp_host` = \"mail.example.jp:25\" is not a host name or address"],
        ),
        (
            "bad addresses",
            n("admin_email = \"Admin <admin@example.jp>\"\nsmtp_host = \"mail.example.jp\"\nfrom = \"gw\"\n"),
            &[
                "`admin_email` = \"Admin <admin@example.jp>\" is not a mail address",
                "`from` = \"gw\" is not a mail address",
            ],
        ),
        (
            "plain http webhook to a remote host",
            n("webhook_url = \"http://hooks.example.jp/x\"\n"),
            &["plain http to a host that is not loopback|use https://"],
        ),
        (
            "webhook with credentials",
            n("webhook_url = \"https://user@hooks.example.jp/x\"\n"),
            &["has a malformed host or port"],
        ),
        (
            "webhook of another scheme",
            n("webhook_url = \"ftp://hooks.example.jp/x\"\n"),
            &["must start with https://"],
        ),
        ("wrong type", n("smtp_host = 25\n"), &["`smtp_host`"]),
    ];
    let mut failures = Vec::new();
    for (name, input, expected) in cases {
        if let Err(why) = try_check(input, expected) {
            failures.push(format!("--- {name}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// BASE with `tls_cert`/`tls_key` replaced by `acme = { … }` (written as given).
fn acme(table: &str) -> String {
    BASE.replace(
        "tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"",
        &format!("acme = {table}"),
    )
}

#[test]
fn acme_is_read_with_defaults() {
    let p = parse(
        "p.toml",
        &acme(r#"{ directory = "https://ca.example/dir", contact = "mailto:ops@example.jp" }"#),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let a = p.server.acme().expect("acme settings");
    assert_eq!(a.directory, "https://ca.example/dir");
    assert_eq!(a.contact, ["mailto:ops@example.jp"]);
    assert_eq!(a.challenge, sekisho_policy::AcmeChallenge::Http01);
    assert_eq!(a.directory_ca, None);
    // http-01 needs port 80: the default plain listener.
    assert_eq!(p.server.http_listen, ["0.0.0.0:80".parse().unwrap()]);

    let p = parse(
        "p.toml",
        &acme(r#"{ directory = "https://127.0.0.1:14000/dir", challenge = "tls-alpn-01", directory_ca = "/ca.pem" }"#),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let a = p.server.acme().expect("acme settings");
    assert_eq!(a.challenge, sekisho_policy::AcmeChallenge::TlsAlpn01);
    assert_eq!(a.directory_ca.as_deref(), Some("/ca.pem"));
    assert!(p.server.http_listen.is_empty(), "tls-alpn-01 needs no plain listener");

    let p = parse(
        "p.toml",
        &acme(r#"{ directory = "https://ca.example/dir" }"#).replace(
            "client_certificates",
            "http_listen = [\"127.0.0.1:8080\"]\nclient_certificates",
        ),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(p.server.http_listen, ["127.0.0.1:8080".parse().unwrap()]);
}

#[test]
fn acme_problems() {
    let cases: &[(&str, String, &[&str])] = &[
        (
            "no certificate at all",
            BASE.replace("tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n", ""),
            &["p.toml:3:1: error: [server] names no certificate|help: add `tls_cert` and `tls_key`|or `acme = {"],
        ),
        (
            "both files and acme",
            BASE.replace(
                "tls_key = \"/k.pem\"",
                "tls_key = \"/k.pem\"\nacme = { directory = \"https://ca.example/dir\" }",
            ),
            &["p.toml:6:12: error: `tls_cert` and `acme` are both given|help: remove `tls_cert` and `tls_key`"],
        ),
        (
            "directory not https",
            acme(r#"{ directory = "http://ca.example/dir" }"#),
            &["p.toml:6:22: error: `directory` = \"http://ca.example/dir\" is not an https:// URL"],
        ),
        (
            "directory missing",
            acme(r#"{ contact = "mailto:a@b.jp" }"#),
            &["missing key `directory` in [server] acme|help: add `directory = \"https://"],
        ),
        (
            "contact not mailto",
            acme(r#"{ directory = "https://ca.example/dir", contact = "ops@example.jp" }"#),
            &["`contact` = \"ops@example.jp\" is not a mailto: address|help: write `contact = \"mailto:"],
        ),
        (
            "unknown challenge",
            acme(r#"{ directory = "https://ca.example/dir", challenge = "dns-01" }"#),
            &["`challenge` = \"dns-01\" is not a challenge type|help: write \"http-01\" or \"tls-alpn-01\""],
        ),
        (
            "unknown acme key",
            acme(r#"{ directory = "https://ca.example/dir", contacts = "mailto:a@b.jp" }"#),
            &["unknown key `contacts` in [server] acme|did you mean `contact`?"],
        ),
        (
            "tls-alpn-01 with require",
            acme(r#"{ directory = "https://ca.example/dir", challenge = "tls-alpn-01" }"#)
                .replace("client_certificates = \"request\"", "client_certificates = \"require\""),
            &[
                "p.toml:6:8: error: `challenge = \"tls-alpn-01\"` cannot be answered with `client_certificates = \"require\"`|help: use `challenge = \"http-01\"`",
            ],
        ),
        (
            "http-01 with an empty http_listen",
            acme(r#"{ directory = "https://ca.example/dir" }"#)
                .replace("client_certificates", "http_listen = []\nclient_certificates"),
            &["`http_listen` is empty but the ACME challenge is http-01"],
        ),
        (
            "http_listen on the TLS port",
            acme(r#"{ directory = "https://ca.example/dir" }"#).replace(
                "client_certificates",
                "http_listen = [\"127.0.0.1:8443\"]\nclient_certificates",
            ),
            &["`127.0.0.1:8443` is in both `listen` and `http_listen`"],
        ),
        (
            "retry bounds crossed",
            with("[limits]\nacme_retry_min = \"2h\"\nacme_retry_max = \"1h\""),
            &["`acme_retry_min` is longer than `acme_retry_max`"],
        ),
        (
            "renew percent out of range",
            with("[limits]\nacme_renew_percent = 95"),
            &["`acme_renew_percent` is out of range|use an integer from 10 to 90"],
        ),
    ];
    for (name, input, expected) in cases {
        if let Err(why) = try_check(input, expected) {
            panic!("case {name:?}: {why}");
        }
    }
}

#[test]
fn metrics_on_loopback_or_a_unix_socket_is_accepted() {
    use sekisho_policy::MetricsListen;
    let cases = [
        ("127.0.0.1:9901", MetricsListen::Tcp("127.0.0.1:9901".parse().unwrap())),
        ("[::1]:9901", MetricsListen::Tcp("[::1]:9901".parse().unwrap())),
        (
            "/run/sekisho/metrics.sock",
            MetricsListen::Unix("/run/sekisho/metrics.sock".into()),
        ),
    ];
    for (value, want) in cases {
        let text = BASE.replace(
            "client_certificates",
            &format!("metrics = \"{value}\"\nclient_certificates"),
        );
        let policy = parse("p.toml", &text).unwrap_or_else(|d| panic!("{value}: {d}"));
        assert_eq!(policy.server.metrics, Some(want));
    }
    assert_eq!(
        parse("p.toml", BASE).unwrap().server.metrics,
        None,
        "off unless asked for"
    );
}

#[test]
fn admin_addresses_are_those_a_protected_route_names() {
    let policy = parse(
        "p.toml",
        &with(
            "[[route]]\nname = \"admin\"\npaths = [\"/admin\"]\nupstream = \"app\"\naccess = \"protected\"\n\
             allow_ips = [\"203.0.113.0/24\"]\nsecond_factor = [\"totp\"]\ngroups = [\"admins\"]\n\
             [[route]]\nname = \"shop\"\npaths = [\"/shop\"]\nupstream = \"app\"\naccess = \"public\"\n\
             allow_ips = [\"198.51.100.0/24\"]\n",
        ),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert!(policy.is_admin_address("203.0.113.5".parse().unwrap()));
    assert!(
        policy.is_admin_address("::ffff:203.0.113.5".parse().unwrap()),
        "mapped IPv4"
    );
    assert!(
        !policy.is_admin_address("198.51.100.1".parse().unwrap()),
        "a public route's list"
    );
    assert!(!policy.is_admin_address("192.0.2.1".parse().unwrap()));
}

#[test]
fn log_table_is_read_with_defaults() {
    let p = parse("p.toml", BASE).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(p.log, sekisho_policy::LogSettings::default());
    assert_eq!(p.log.retention_days, 365);
    assert!(p.log.public_waits_for_fsync);
    assert_eq!(
        p.log.public_when_unwritable,
        sekisho_policy::PublicWhenUnwritable::Serve
    );
    let p = parse(
        "p.toml",
        &with(
            "[log]\nretention_days = 400\ncheckpoint_records = 10\ncheckpoint_interval = \"500ms\"\n\
             seal_epoch = \"15m\"\nmax_batch = 64\npublic_waits_for_fsync = false\n\
             public_when_unwritable = \"refuse\"\nremote_queue = 100\nremote_retry_max = \"5s\"\n\
             [log.remote]\nsyslog = \"[2001:db8::7]:10514\"\nca_file = \"/etc/sekisho/log-ca.pem\"\nship = \"checkpoints\"\n",
        ),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let l = &p.log;
    assert_eq!(
        (l.retention_days, l.checkpoint_records, l.max_batch, l.remote_queue),
        (400, 10, 64, 100)
    );
    assert_eq!(l.checkpoint_interval, std::time::Duration::from_millis(500));
    assert_eq!(l.seal_epoch, std::time::Duration::from_secs(900));
    assert_eq!(l.remote_retry_max, std::time::Duration::from_secs(5));
    assert!(!l.public_waits_for_fsync);
    assert_eq!(l.public_when_unwritable, sekisho_policy::PublicWhenUnwritable::Refuse);
    let r = l.remote.as_ref().unwrap();
    assert_eq!(
        r.target,
        sekisho_policy::RemoteTarget::Syslog {
            host: "2001:db8::7".into(),
            port: 10514
        }
    );
    assert_eq!(r.ca_file.as_deref(), Some("/etc/sekisho/log-ca.pem"));
    assert_eq!(r.ship, sekisho_policy::Ship::Checkpoints);
    let p = parse(
        "p.toml",
        &with("[log.remote]\nhttps = \"https://logs.example.jp:8443/in\"\n"),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        p.log.remote.unwrap().target,
        sekisho_policy::RemoteTarget::Https {
            url: "https://logs.example.jp:8443/in".into()
        }
    );
    let p = parse("p.toml", &with("[log.remote]\nsyslog = \"logs.example.jp\"\n")).unwrap_or_else(|d| panic!("{d}"));
    let r = p.log.remote.unwrap();
    assert_eq!(r.ship, sekisho_policy::Ship::Records);
    assert_eq!(
        r.target,
        sekisho_policy::RemoteTarget::Syslog {
            host: "logs.example.jp".into(),
            port: 6514
        }
    );
}

#[test]
fn log_table_problems() {
    let l = |body: &str| with(&format!("[log]\n{body}"));
    let first = BASE.lines().count() + 3;
    let cases: &[(&str, String, &[&str])] = &[
        (
            "unknown key",
            l("retention_day = 400\n"),
            &["unknown key `retention_day` in [log]|did you mean `retention_days`?"],
        ),
        (
            "retention zero",
            l("retention_days = 0\n"),
            &[&format!(
                "p.toml:{first}:18: error: `retention_days` is out of range|use an integer from 1 to 36500"
            )],
        ),
        (
            "checkpoint interval not a duration",
            l("checkpoint_interval = \"often\"\n"),
            &["`checkpoint_interval` = \"often\" is not a duration|help: write a number and a unit"],
        ),
        (
            "seal epoch too short",
            l("seal_epoch = \"10s\"\n"),
            &["`seal_epoch` = \"10s\" is out of range|use a duration from \"1m\" to \"1d\""],
        ),
        (
            "checkpoint interval longer than the epoch",
            l("seal_epoch = \"1m\"\ncheckpoint_interval = \"2m\"\n"),
            &["`checkpoint_interval` is longer than `seal_epoch`|help: seal at least once per epoch"],
        ),
        (
            "public behaviour misspelt",
            l("public_when_unwritable = \"503\"\n"),
            &["`public_when_unwritable` = \"503\" is not one of serve, refuse|help: write \"serve\""],
        ),
        (
            "wrong type",
            l("public_waits_for_fsync = \"yes\"\n"),
            &["`public_waits_for_fsync` must be true or false"],
        ),
        (
            "remote without a receiver",
            with("[log.remote]\nship = \"records\"\n"),
            &["missing key `syslog` in [log.remote]|help: add the receiver"],
        ),
        (
            "remote receiver malformed",
            with("[log.remote]\nsyslog = \"logs.example.jp:syslog\"\n"),
            &[&format!(
                "p.toml:{}:10: error: `syslog` = \"logs.example.jp:syslog\" is not host:port",
                first
            )],
        ),
        (
            "remote over plain http",
            with("[log.remote]\nhttps = \"http://logs.example.jp/in\"\n"),
            &["`https` `http://logs.example.jp/in` must start with https://"],
        ),
        (
            "remote https malformed",
            with("[log.remote]\nhttps = \"https://user@logs.example.jp/in\"\n"),
            &["`https` `https://user@logs.example.jp/in` has a malformed host or port"],
        ),
        (
            "two receivers",
            with("[log.remote]\nsyslog = \"192.0.2.7\"\nhttps = \"https://logs.example.jp/in\"\n"),
            &["[log.remote] names both `syslog` and `https`|help: ship to one receiver"],
        ),
        (
            "remote ship misspelt and unknown key",
            with("[log.remote]\nsyslog = \"192.0.2.7\"\nship = \"all\"\ncafile = \"x\"\n"),
            &[
                "`ship` = \"all\" is not one of records, checkpoints",
                "unknown key `cafile` in [log.remote]|did you mean `ca_file`?",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (name, input, expected) in cases {
        if let Err(why) = try_check(input, expected) {
            failures.push(format!("--- {name}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
