//! `lint(policy, file, text)`: what a valid policy may still get wrong. Each finding has a
//! severity, a stable code, a place (file:line:column of the value or table concerned) and a
//! remedy. Errors are what Sekisho exists to prevent (an admin path open to everyone, a
//! secret in git); warnings are risky choices a reviewer should see. Pure.
//!
//! Exact shadowing (two routes with the same path on one host) is not a lint: the parser
//! refuses it. What lint calls shadowing is a route nested under another that weakens it.

mod secrets;

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use crate::model::{Access, Policy, Route};
use crate::parse::position;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// Stable kebab-case name, e.g. `public-admin-path`.
    pub code: &'static str,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub help: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {sev}[{}]: {}\n  help: {}",
            self.file, self.line, self.column, self.code, self.message, self.help
        )
    }
}

/// Well-known admin and leak paths that a public route must not cover.
pub const WELL_KNOWN_ADMIN_PATHS: &[&str] = &[
    "/wp-admin",
    "/wp-login.php",
    "/xmlrpc.php",
    "/wp-config.php",
    "/admin",
    "/administrator",
    "/phpmyadmin",
    "/.git",
    "/.env",
    "/.svn",
    "/.htpasswd",
    "/server-status",
    "/server-info",
];

/// Sane upper bounds for time settings (key, table, bound): longer than this is a warning.
const MAX_TIMES: &[(&str, &str, u64)] = &[
    ("session", "idle_timeout", 3600),
    ("session", "absolute_timeout", 24 * 3600),
    ("limits", "header_read_timeout", 30),
    ("limits", "tls_handshake_timeout", 30),
    ("limits", "idle_timeout", 300),
    ("limits", "upstream_connect_timeout", 30),
    ("limits", "upstream_response_timeout", 300),
    ("limits", "revocation_poll_interval", 300),
    ("limits", "policy_poll_interval", 60),
    ("limits", "shutdown_grace", 300),
    ("limits", "acme_order_timeout", 1800),
    ("limits", "acme_request_timeout", 120),
];

/// Lints a valid policy. `text` must be the text `policy` was parsed from (for places and
/// for what the model does not keep, such as comments).
pub fn lint(policy: &Policy, file_name: &str, text: &str) -> Vec<Finding> {
    let (root, _) = DeTable::parse_recoverable(text);
    let mut by_path: std::collections::HashMap<String, Vec<_>> = std::collections::HashMap::new();
    for r in &policy.routes {
        for (i, path) in r.paths.iter().enumerate() {
            by_path.entry(path.to_lowercase()).or_default().push((r.id, i));
        }
    }
    let mut l = Linter {
        by_path,
        file: file_name,
        text,
        root: root.get_ref(),
        found: Vec::new(),
    };
    for r in &policy.routes {
        l.open_protected(r);
        l.address_family(policy, r);
        l.redundant_paths(r);
        l.nested(policy, r);
    }
    l.public_admin_paths(policy);
    l.plain_http(policy);
    l.timeouts(policy);
    l.log(policy);
    for (i, u) in policy.users.iter().enumerate() {
        if u.email.is_none() {
            let span = l.span(&[S::K("user"), S::I(i)]);
            l.push(
                Severity::Warning,
                "user-without-email",
                span,
                format!(
                    "user '{}' has no email, so no notice (new device, lockout, reload) reaches them",
                    u.name
                ),
                "add `email = \"NAME@example.jp\"`".into(),
            );
        }
    }
    l.secrets();
    l.found
        .sort_by(|a, b| (a.line, a.column, a.code).cmp(&(b.line, b.column, b.code)));
    l.found.dedup();
    l.found
}

/// What the gateway learned by reading the files a policy names (this crate reads none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileFacts {
    /// `tls_cert`'s first certificate is self-signed (issuer equal to subject); the
    /// subject, for the message.
    pub tls_cert_self_signed: Option<String>,
}

/// A line starting with this marks a demonstration policy (`sekisho demo` writes it):
/// its self-signed certificate is then a warning, not an error.
pub const DEMO_MARKER: &str = "# sekisho:demo";

/// Findings that need the files a policy names, from facts the gateway gathered: error
/// `self-signed-certificate` when `tls_cert` is self-signed (browsers warn, staff learn to
/// click through warnings); a warning in a policy marked [`DEMO_MARKER`]. A production
/// policy takes a CA's certificate or `acme`.
pub fn lint_files(file_name: &str, text: &str, facts: &FileFacts) -> Vec<Finding> {
    let (root, _) = DeTable::parse_recoverable(text);
    let mut l = Linter {
        by_path: std::collections::HashMap::new(),
        file: file_name,
        text,
        root: root.get_ref(),
        found: Vec::new(),
    };
    if let Some(subject) = &facts.tls_cert_self_signed {
        let span = l.span(&[S::K("server"), S::K("tls_cert")]);
        let demo = text.lines().any(|line| line.starts_with(DEMO_MARKER));
        l.push(
            if demo { Severity::Warning } else { Severity::Error },
            "self-signed-certificate",
            span,
            format!("`tls_cert` is self-signed ({subject}): browsers warn, and staff learn to click warnings away"),
            "use a certificate from a CA, or let the gateway obtain one: `acme = { directory = \"https://acme-v02.api.letsencrypt.org/directory\", contact = \"mailto:…\" }`".into(),
        );
    }
    l.found
}

/// One step into the TOML tree.
#[derive(Clone, Copy)]
enum S<'a> {
    K(&'a str),
    I(usize),
}

struct Linter<'t, 'i> {
    /// Lower-cased route path → (route, index of the path in the route).
    by_path: std::collections::HashMap<String, Vec<(crate::model::RouteId, usize)>>,
    file: &'t str,
    text: &'t str,
    root: &'t DeTable<'i>,
    found: Vec<Finding>,
}

fn under(path: &str, prefix: &str) -> bool {
    let (p, q) = (path.to_lowercase(), prefix.to_lowercase());
    q == "/" || p == q || p.starts_with(&format!("{q}/"))
}

fn strictly_under(path: &str, prefix: &str) -> bool {
    under(path, prefix) && !path.eq_ignore_ascii_case(prefix)
}

impl Linter<'_, '_> {
    fn push(&mut self, severity: Severity, code: &'static str, span: Range<usize>, message: String, help: String) {
        let (line, column) = position(self.text, span.start);
        self.found.push(Finding {
            severity,
            code,
            file: self.file.to_string(),
            line,
            column,
            message,
            help,
        });
    }

    /// The span of the deepest step found along `steps` (the file start when none).
    fn span(&self, steps: &[S<'_>]) -> Range<usize> {
        let mut best = 0..0;
        let mut table = Some(self.root);
        let mut array: Option<&[toml::Spanned<DeValue<'_>>]> = None;
        for step in steps {
            let value = match (*step, table, array) {
                (S::K(k), Some(t), _) => t.get(k),
                (S::I(i), _, Some(a)) => a.get(i),
                _ => None,
            };
            let Some(v) = value else { break };
            best = v.span();
            (table, array) = match v.get_ref() {
                DeValue::Table(t) => (Some(t), None),
                DeValue::Array(a) => (None, Some(&a[..])),
                _ => (None, None),
            };
        }
        best
    }

    fn route_span(&self, r: &Route, key: Option<&str>) -> Range<usize> {
        match key {
            Some(k) => self.span(&[S::K("route"), S::I(r.id.0), S::K(k)]),
            None => self.span(&[S::K("route"), S::I(r.id.0)]),
        }
    }

    fn open_protected(&mut self, r: &Route) {
        if r.access != Access::Protected {
            return;
        }
        let everywhere = r.allow_ips.iter().find(|n| n.prefix_len() == 0);
        if !r.allow_ips.is_empty() && everywhere.is_none() {
            return;
        }
        let from = everywhere.map_or("every address (no allow_ips)".to_string(), |n| n.to_string());
        let (severity, rest) = if r.require_device {
            (
                Severity::Warning,
                "only the device certificate and the second factor stand",
            )
        } else {
            (Severity::Error, "only the second factor stands")
        };
        let span = self.route_span(r, everywhere.map(|_| "allow_ips"));
        self.push(
            severity,
            "protected-route-open-to-all",
            span,
            format!("protected route '{}' is reachable from {from}: {rest}", r.name),
            "list the networks your staff work from in `allow_ips` (office, VPN), e.g. [\"203.0.113.0/24\"]".into(),
        );
    }

    fn address_family(&mut self, p: &Policy, r: &Route) {
        if r.access == Access::Deny || r.allow_ips.is_empty() {
            return;
        }
        let v6_listener = p
            .server
            .listen
            .iter()
            .find(|a| matches!(a.ip(), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none()));
        let v4_listener = p.server.listen.iter().find(|a| a.is_ipv4());
        let has_v4 = r.allow_ips.iter().any(|n| matches!(n, ipnet::IpNet::V4(_)));
        let has_v6 = r.allow_ips.iter().any(|n| matches!(n, ipnet::IpNet::V6(_)));
        let span = self.route_span(r, Some("allow_ips"));
        if let (Some(l), false) = (v6_listener, has_v6) {
            self.push(
                Severity::Warning,
                "ipv4-only-allowlist",
                span.clone(),
                format!("route '{}' allows only IPv4 networks, but the gateway listens on IPv6 ({l}): every IPv6 client is denied", r.name),
                "add your IPv6 prefixes to `allow_ips` (e.g. \"2001:db8:1::/48\"), or stop listening on IPv6".into(),
            );
        }
        if let (Some(l), false) = (v4_listener, has_v4) {
            self.push(
                Severity::Warning,
                "ipv6-only-allowlist",
                span,
                format!("route '{}' allows only IPv6 networks, but the gateway listens on IPv4 ({l}): every IPv4 client is denied", r.name),
                "add your IPv4 networks to `allow_ips`, or stop listening on IPv4".into(),
            );
        }
    }

    fn redundant_paths(&mut self, r: &Route) {
        for (i, p) in r.paths.iter().enumerate() {
            if let Some(outer) = r.paths.iter().find(|q| strictly_under(p, q)) {
                let span = self.span(&[S::K("route"), S::I(r.id.0), S::K("paths"), S::I(i)]);
                self.push(
                    Severity::Warning,
                    "redundant-path",
                    span,
                    format!(
                        "path `{p}` of route '{}' is already covered by its path `{outer}`",
                        r.name
                    ),
                    format!("remove `{p}`"),
                );
            }
        }
    }

    /// `inner` sits under another route (the nearest one whose path strictly covers one of
    /// its paths on a shared host: what would take those requests without it). Fine when it
    /// is at least as strict; a warning when it opens a hole or merely repeats that rule.
    fn nested(&mut self, p: &Policy, inner: &Route) {
        let hosts = |r: &Route| -> Vec<String> {
            if r.hosts.is_empty() {
                p.server.hostnames.clone()
            } else {
                r.hosts.clone()
            }
        };
        let ih = hosts(inner);
        let mut nearest: Vec<(&Route, &String, &String)> = Vec::new();
        for ip in &inner.paths {
            // The strict whole-segment prefixes of `ip`, longest first: the first that some
            // other route on a shared host lists is the enclosing route.
            let lower = ip.to_lowercase();
            let mut cuts: Vec<&str> = lower
                .rmatch_indices('/')
                .map(|(i, _)| lower.get(..i).unwrap_or(""))
                .collect();
            if let Some(last) = cuts.last_mut()
                && last.is_empty()
            {
                *last = "/";
            }
            if lower == "/" {
                cuts.clear();
            }
            let best = cuts.iter().find_map(|cut| {
                self.by_path.get(*cut)?.iter().find_map(|&(id, pi)| {
                    let o = p.route(id);
                    (o.id != inner.id && hosts(o).iter().any(|h| ih.contains(h)))
                        .then(|| (o, o.paths.get(pi)))
                        .and_then(|(o, op)| op.map(|op| (o, op)))
                })
            });
            if let Some((o, op)) = best {
                nearest.push((o, op, ip));
            }
        }
        for &(outer, op, ip) in &nearest {
            if let Some(what) = weaker(p, outer, inner) {
                let span = self.route_span(inner, Some("paths"));
                self.push(
                    Severity::Warning,
                    "weaker-nested-route",
                    span,
                    format!("route '{}' {what} '{}': `{ip}` is under `{op}`", inner.name, outer.name),
                    "make sure this hole is intended (e.g. a login page's assets); otherwise remove the route or make it as strict".into(),
                );
                return;
            }
        }
        let all_covered = nearest.len() == inner.paths.len();
        if let Some(&(outer, _, _)) = nearest.first()
            && all_covered
            && nearest.iter().all(|(o, _, _)| o.id == outer.id)
            && same_rule(outer, inner)
        {
            let span = self.route_span(inner, Some("paths"));
            self.push(
                Severity::Warning,
                "shadowed-route",
                span,
                format!(
                    "route '{}' only repeats route '{}' for paths it already covers",
                    inner.name, outer.name
                ),
                format!("remove route '{}'", inner.name),
            );
        }
    }

    fn public_admin_paths(&mut self, p: &Policy) {
        for host in &p.server.hostnames {
            // Per public route, the well-known paths it ends up serving on this host.
            let mut open: Vec<(crate::model::RouteId, Vec<&str>)> = Vec::new();
            for w in WELL_KNOWN_ADMIN_PATHS {
                let Some(id) = p.route_for(host, w) else { continue };
                if p.route(id).access != Access::Public {
                    continue;
                }
                match open.iter_mut().find(|(r, _)| *r == id) {
                    Some((_, ws)) => ws.push(w),
                    None => open.push((id, vec![w])),
                }
            }
            for (id, ws) in open {
                let r = p.route(id);
                let index = r.paths.iter().position(|q| ws.iter().any(|w| under(w, q)));
                let span = match index {
                    Some(i) => self.span(&[S::K("route"), S::I(r.id.0), S::K("paths"), S::I(i)]),
                    None => self.route_span(r, Some("paths")),
                };
                let list = ws.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", ");
                self.push(
                    Severity::Error,
                    "public-admin-path",
                    span,
                    format!("public route '{}' covers well-known admin paths on {host}: {list}", r.name),
                    format!(
                        "put them in a protected route, or in a deny route: name = \"probes\", paths = [{}], access = \"deny\"",
                        ws.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
    }

    fn plain_http(&mut self, p: &Policy) {
        for (i, u) in p.upstreams.iter().enumerate() {
            if u.scheme_https {
                continue;
            }
            let host = u.authority.rsplit_once(':').map_or(u.authority.as_str(), |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                let span = self.span(&[S::K("upstream"), S::I(i), S::K("url")]);
                self.push(
                    Severity::Warning,
                    "plain-http-upstream",
                    span,
                    format!("upstream '{}' is plain HTTP to {host}, which is not loopback: identity headers and cookies cross the network in clear", u.name),
                    "use https://, or run the upstream on the same host (127.0.0.1)".into(),
                );
            }
        }
    }

    /// The access log: kept a year, and never switched off outside a benchmark.
    fn log(&mut self, p: &Policy) {
        let days = p.log.retention_days;
        if days < crate::limits::MIN_RECOMMENDED_RETENTION_DAYS {
            let span = self.span(&[S::K("log"), S::K("retention_days")]);
            self.push(
                Severity::Error,
                "log-retention-too-short",
                span,
                format!(
                    "[log] retention_days = {days}: access records would be deleted before they are a year old, and after a breach they are the only witness"
                ),
                format!(
                    "keep at least a year, as IPA asks: retention_days = {} (or remove the key for the default)",
                    crate::limits::MIN_RECOMMENDED_RETENTION_DAYS
                ),
            );
        }
        if p.log.danger_disable_audit {
            let span = self.span(&[S::K("log"), S::K("danger_disable_audit")]);
            self.push(
                Severity::Error,
                "danger-audit-disabled",
                span,
                "[log] danger_disable_audit = true: no access record is written at all".into(),
                "this switch exists for the log-on/log-off benchmark only: remove it".into(),
            );
        }
    }

    fn timeouts(&mut self, p: &Policy) {
        let l = &p.limits;
        let value = |table: &str, key: &str| -> Duration {
            match (table, key) {
                ("session", "idle_timeout") => p.session.idle_timeout,
                ("session", "absolute_timeout") => p.session.absolute_timeout,
                ("limits", "header_read_timeout") => l.header_read_timeout,
                ("limits", "tls_handshake_timeout") => l.tls_handshake_timeout,
                ("limits", "idle_timeout") => l.idle_timeout,
                ("limits", "upstream_connect_timeout") => l.upstream_connect_timeout,
                ("limits", "upstream_response_timeout") => l.upstream_response_timeout,
                ("limits", "revocation_poll_interval") => l.revocation_poll_interval,
                ("limits", "policy_poll_interval") => l.policy_poll_interval,
                ("limits", "shutdown_grace") => l.shutdown_grace,
                _ => Duration::ZERO,
            }
        };
        for (table, key, max) in MAX_TIMES {
            let v = value(table, key);
            if v > Duration::from_secs(*max) {
                let span = self.span(&[S::K(table), S::K(key)]);
                self.push(
                    Severity::Warning,
                    "timeout-out-of-bounds",
                    span,
                    format!("[{table}] {key} is {}s, longer than a sane {max}s", v.as_secs()),
                    format!("use at most \"{max}s\""),
                );
            }
        }
        if p.lockout.max_failures > 10 {
            let span = self.span(&[S::K("lockout"), S::K("max_failures")]);
            self.push(
                Severity::Warning,
                "timeout-out-of-bounds",
                span,
                format!(
                    "[lockout] max_failures = {} lets an attacker guess many codes",
                    p.lockout.max_failures
                ),
                "use at most 10".into(),
            );
        }
        if p.lockout.duration < Duration::from_secs(300) {
            let span = self.span(&[S::K("lockout"), S::K("duration")]);
            self.push(
                Severity::Warning,
                "timeout-out-of-bounds",
                span,
                format!(
                    "[lockout] duration is {}s: a lockout that short barely slows guessing",
                    p.lockout.duration.as_secs()
                ),
                "use at least \"5m\"".into(),
            );
        }
    }

    /// Every key and string value in the tree, then the comments.
    fn secrets(&mut self) {
        let mut hits: Vec<(Range<usize>, String)> = Vec::new();
        walk(self.root, &mut |key, key_span, value| {
            if secrets::secret_key_name(key) {
                hits.push((key_span.clone(), format!("key `{key}` names a secret")));
            }
            if let Some((s, span)) = value
                && let Some(kind) = secrets::looks_secret(s, false)
            {
                hits.push((span, format!("the value of `{key}` looks like {kind}")));
            }
        });
        let mut lines_hit: Vec<usize> = hits.iter().map(|(s, _)| position(self.text, s.start).0).collect();
        for (span, message) in hits {
            self.push_secret(span, message);
        }
        let mut offset = 0;
        for (n, line) in self.text.split_inclusive('\n').enumerate() {
            if !lines_hit.contains(&(n + 1))
                && let Some(kind) = secrets::looks_secret(line, true)
            {
                lines_hit.push(n + 1);
                self.push_secret(offset..offset, format!("this line looks like it holds {kind}"));
            }
            offset += line.len();
        }
    }

    fn push_secret(&mut self, span: Range<usize>, message: String) {
        self.push(
            Severity::Error,
            "secret-in-policy",
            span,
            message,
            "a policy is read by everyone with the repository: keep secrets in a file (0600) the policy names, and rotate this one".into(),
        );
    }
}

/// Calls `f(key, key span, Some((string, span)))` for every key (strings inside arrays
/// and the array's key), recursively.
fn walk(t: &DeTable<'_>, f: &mut impl FnMut(&str, &Range<usize>, Option<(&str, Range<usize>)>)) {
    for (k, v) in t.iter() {
        let key: &str = k.get_ref();
        let key_span = k.span();
        visit(key, &key_span, v, f);
    }
}

fn visit(
    key: &str,
    key_span: &Range<usize>,
    v: &toml::Spanned<DeValue<'_>>,
    f: &mut impl FnMut(&str, &Range<usize>, Option<(&str, Range<usize>)>),
) {
    match v.get_ref() {
        DeValue::String(s) => f(key, key_span, Some((s, v.span()))),
        DeValue::Table(t) => {
            f(key, key_span, None);
            walk(t, f);
        }
        DeValue::Array(a) => {
            f(key, key_span, None);
            for item in a.iter() {
                match item.get_ref() {
                    DeValue::String(s) => f(key, key_span, Some((s, item.span()))),
                    _ => visit(key, key_span, item, f),
                }
            }
        }
        _ => f(key, key_span, None),
    }
}

/// How `inner` weakens the route it sits under, if it does.
fn weaker(p: &Policy, outer: &Route, inner: &Route) -> Option<&'static str> {
    match (outer.access, inner.access) {
        (Access::Deny, Access::Public | Access::Protected) => Some("re-opens a path under deny route"),
        (Access::Protected, Access::Public) => Some("makes a path public under protected route"),
        (Access::Protected, Access::Protected) => {
            let wider_ips = !outer.allow_ips.is_empty()
                && (inner.allow_ips.is_empty()
                    || inner
                        .allow_ips
                        .iter()
                        .any(|n| !outer.allow_ips.iter().any(|o| o.contains(n))));
            let less_device = outer.require_device && !inner.require_device;
            let more_factors = inner.second_factor.iter().any(|f| !outer.second_factor.contains(f));
            // Judged by who is admitted, not by group names.
            let admits = |r: &Route, u: &crate::model::User| {
                r.groups.is_empty() || r.groups.iter().any(|g| u.groups.contains(g))
            };
            let more_people = p.users.iter().any(|u| admits(inner, u) && !admits(outer, u));
            (wider_ips || less_device || more_factors || more_people)
                .then_some("is less strict than the protected route it sits under,")
        }
        _ => None,
    }
}

fn same_rule(a: &Route, b: &Route) -> bool {
    a.access == b.access
        && a.upstream == b.upstream
        && a.allow_ips == b.allow_ips
        && a.require_device == b.require_device
        && a.second_factor == b.second_factor
        && a.groups == b.groups
        && a.hosts == b.hosts
}
