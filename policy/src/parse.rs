//! `parse(file_name, text)`: policy TOML text → validated [`Policy`], or every problem at once.
//! Walks the spanned TOML tree itself (rather than serde derive, which stops at the first
//! error). Must not touch the filesystem: `file_name` is only used in messages.

mod diagnostic;
pub(crate) mod keys;
mod log;
mod notify;
mod routes;
mod server;
mod values;
mod walk;

use sha2::{Digest, Sha256};
use toml::de::DeTable;

pub use diagnostic::{Diagnostic, Diagnostics};
pub(crate) use diagnostic::{Sink, position};
pub(crate) use walk::Table;

use crate::matcher::{Entry, Matcher};
use crate::model::{Access, LockoutSettings, Policy, SessionSettings};

/// Parses and validates a format-1 policy. `file_name` only labels diagnostics.
pub fn parse(file_name: &str, text: &str) -> Result<Policy, Diagnostics> {
    let mut sink = Sink::new(file_name, text);
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        // A damaged tree would add noise (missing keys that are really mistyped): report the
        // syntax errors only.
        for e in syntax_errors {
            let span = e.span().unwrap_or(0..0);
            sink.error_help(span, format!("TOML syntax: {}", e.message()), "fix the TOML syntax");
        }
        return Err(sink.finish());
    }
    let root_span = root.span();
    let root = Table::new(root.get_ref(), 0..root_span.end.min(1), "the policy file");
    root.check_keys(&mut sink, keys::ROOT);

    let version = read_version(&mut sink, &root);
    let server = match root.table(&mut sink, "server", "[server]") {
        Some(t) => server::read(&mut sink, &t),
        None => {
            if root.table.get("server").is_none() {
                root.missing(&mut sink, "server", "add a [server] table (see the reference policy)");
            }
            server::placeholder()
        }
    };
    let t = root.table(&mut sink, "session", "[session]");
    let session = read_session(&mut sink, t.as_ref());
    let t = root.table(&mut sink, "lockout", "[lockout]");
    let lockout = read_lockout(&mut sink, t.as_ref());
    let t = root.table(&mut sink, "notify", "[notify]");
    let notify = notify::read(&mut sink, t.as_ref());
    let t = root.table(&mut sink, "limits", "[limits]");
    let limits = crate::limits::read(&mut sink, t.as_ref());
    let t = root.table(&mut sink, "log", "[log]");
    let log = log::read(&mut sink, t.as_ref());

    let t = root.tables(&mut sink, "upstream", "[[upstream]]");
    let (upstreams, upstream_names) = routes::read_upstreams(&mut sink, &t);
    let t = root.tables(&mut sink, "user", "[[user]]");
    let users = routes::read_users(&mut sink, &t);
    let route_tables = root.tables(&mut sink, "route", "[[route]]");
    let routes = routes::read_routes(&mut sink, &route_tables, &server, &upstream_names, &users);
    // `[[test]]` tables do not change the model, but a mistyped test is still an error here.
    let test_tables = root.tables(&mut sink, "test", "[[test]]");
    crate::cases::read(&mut sink, file_name, text, &test_tables);

    if !sink.is_empty() {
        return Err(sink.finish());
    }

    let case_insensitive = |upstream: Option<&String>| {
        upstream
            .and_then(|name| upstreams.iter().find(|u| &u.name == name))
            .is_none_or(|u| u.case_insensitive)
    };
    let matcher = Matcher::build(routes.iter().flat_map(|r| {
        let hosts: &[String] = if r.hosts.is_empty() {
            &server.hostnames
        } else {
            &r.hosts
        };
        let ci = case_insensitive(r.upstream.as_ref());
        hosts.iter().flat_map(move |h| {
            r.paths.iter().map(move |p| Entry {
                host: h,
                path: p,
                route: r.id,
                case_insensitive: ci,
            })
        })
    }));
    let open_to_all = routes
        .iter()
        .any(|r| r.access != Access::Deny && r.allow_ips.is_empty());

    Ok(Policy {
        version,
        server,
        session,
        lockout,
        notify,
        limits,
        log,
        upstreams,
        routes,
        users,
        id: sha256_hex(text.as_bytes()),
        matcher,
        open_to_all,
    })
}

fn read_version(sink: &mut Sink<'_>, root: &Table<'_, '_>) -> u32 {
    let Some(v) = root.table.get("version") else {
        root.missing(sink, "version", "start the file with `version = 1`");
        return 1;
    };
    let is_one = matches!(v.get_ref(), toml::de::DeValue::Integer(i)
        if i.radix() == 10 && i.as_str() == "1");
    if !is_one {
        sink.error_help(
            v.span(),
            "unsupported policy format: `version` must be 1",
            "this Sekisho reads `version = 1`",
        );
    }
    1
}

fn read_session(sink: &mut Sink<'_>, t: Option<&Table<'_, '_>>) -> SessionSettings {
    let mut s = SessionSettings::default();
    let Some(t) = t else { return s };
    t.check_keys(sink, keys::SESSION);
    let (min, max) = (
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(30 * 86_400),
    );
    if let Some(d) = t.duration(sink, "idle_timeout", min, max) {
        s.idle_timeout = d;
    }
    if let Some(d) = t.duration(sink, "absolute_timeout", min, max) {
        s.absolute_timeout = d;
    }
    if s.idle_timeout > s.absolute_timeout {
        sink.error_help(
            t.span_of("idle_timeout"),
            "`idle_timeout` is longer than `absolute_timeout`",
            "make idle_timeout at most absolute_timeout",
        );
    }
    s
}

fn read_lockout(sink: &mut Sink<'_>, t: Option<&Table<'_, '_>>) -> LockoutSettings {
    let mut l = LockoutSettings::default();
    let Some(t) = t else { return l };
    t.check_keys(sink, keys::LOCKOUT);
    if let Some(n) = t
        .integer(sink, "max_failures", 1, 1000)
        .and_then(|n| u32::try_from(n).ok())
    {
        l.max_failures = n;
    }
    let (min, max) = (
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(30 * 86_400),
    );
    if let Some(d) = t.duration(sink, "window", min, max) {
        l.window = d;
    }
    if let Some(d) = t.duration(sink, "duration", min, max) {
        l.duration = d;
    }
    l
}

/// Lower-case hex SHA-256 of `bytes` (the policy id of a file with these bytes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}
