//! Reads `[[upstream]]`, `[[user]]` and `[[route]]` and checks what ties them together:
//! unique names, known upstreams and groups, route kinds that make sense, no path routed twice
//! on one host. Builds no matcher (that is `crate::matcher`).

use std::collections::HashMap;
use std::ops::Range;

use super::diagnostic::Sink;
use super::values::{self, Bad};
use super::walk::{Str, Table, nearest};
use crate::model::{Access, ClientCertMode, Factor, Route, RouteId, Server, Upstream, User};

fn report(sink: &mut Sink<'_>, span: Range<usize>, b: Bad) {
    sink.error_help(span, b.message, b.help);
}

/// Reads a required `name`, checking its characters and that no earlier entry has it.
fn read_name(sink: &mut Sink<'_>, t: &Table<'_, '_>, what: &str, seen: &mut Vec<String>) -> Option<String> {
    let s = t.required_string(sink, "name", &format!("give the {what} a `name`"))?;
    if let Err(b) = values::name(what, &s.value) {
        report(sink, s.span, b);
        return None;
    }
    if seen.contains(&s.value) {
        sink.error_help(
            s.span,
            format!("duplicate {what} name `{}`", s.value),
            format!("each {what} needs its own name"),
        );
        return None;
    }
    seen.push(s.value.clone());
    Some(s.value)
}

/// Reads the upstreams; also returns every declared name (valid or not), so that a route naming
/// an upstream with a bad url is not reported a second time as naming an unknown one.
pub(super) fn read_upstreams(sink: &mut Sink<'_>, tables: &[Table<'_, '_>]) -> (Vec<Upstream>, Vec<String>) {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for t in tables {
        t.check_keys(sink, super::keys::UPSTREAM);
        let name = read_name(sink, t, "upstream", &mut seen);
        let url = t.required_string(sink, "url", "add `url = \"http://127.0.0.1:8080\"`");
        let case_insensitive = t.boolean(sink, "case_insensitive").unwrap_or(true);
        let (Some(name), Some(url)) = (name, url) else {
            continue;
        };
        match values::upstream_url(&url.value) {
            Ok(u) => out.push(Upstream {
                name,
                url: url.value,
                scheme_https: u.https,
                authority: u.authority,
                case_insensitive,
            }),
            Err(b) => report(sink, url.span, b),
        }
    }
    (out, seen)
}

/// Reads a list of group names (used on users and routes).
fn read_groups(sink: &mut Sink<'_>, t: &Table<'_, '_>) -> Vec<Str> {
    let mut out: Vec<Str> = Vec::new();
    for s in t.string_list(sink, "groups").unwrap_or_default() {
        if let Err(b) = values::name("group", &s.value) {
            report(sink, s.span, b);
        } else if out.iter().any(|g| g.value == s.value) {
            sink.error_help(s.span, format!("group `{}` is listed twice", s.value), "remove one");
        } else {
            out.push(s);
        }
    }
    out
}

pub(super) fn read_users(sink: &mut Sink<'_>, tables: &[Table<'_, '_>]) -> Vec<User> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for t in tables {
        t.check_keys(sink, super::keys::USER);
        let name = read_name(sink, t, "user", &mut seen);
        let email = t.string(sink, "email").and_then(|s| {
            // One rule for every address: exactly one `@` (corpus SESS-011: a second `@`
            // is how `attacker@evil.example@shop.example` passes a domain check).
            if super::notify::email(&s.value) {
                Some(s.value)
            } else {
                sink.error_help(
                    s.span,
                    format!("`{}` is not an email address", s.value.escape_debug()),
                    "write an ASCII address such as `tanaka@example.jp`, or remove `email`",
                );
                None
            }
        });
        let groups = read_groups(sink, t).into_iter().map(|s| s.value).collect();
        if let Some(name) = name {
            out.push(User { name, email, groups });
        }
    }
    out
}

/// The policy spelling of an access kind.
fn access(sink: &mut Sink<'_>, s: &Str) -> Option<Access> {
    match s.value.as_str() {
        "public" => Some(Access::Public),
        "protected" => Some(Access::Protected),
        "deny" => Some(Access::Deny),
        other => {
            let help = match nearest(other, &["public", "protected", "deny"]) {
                Some(n) => format!("did you mean \"{n}\"?"),
                None => "write \"public\", \"protected\" or \"deny\"".to_string(),
            };
            sink.error_help(
                s.span.clone(),
                format!("unknown access `{}`", other.escape_debug()),
                help,
            );
            None
        }
    }
}

pub(super) fn read_routes(
    sink: &mut Sink<'_>,
    tables: &[Table<'_, '_>],
    server: &Server,
    upstream_names: &[String],
    users: &[User],
) -> Vec<Route> {
    let known_groups: Vec<&str> = users.iter().flat_map(|u| u.groups.iter().map(String::as_str)).collect();
    let upstream_names: Vec<&str> = upstream_names.iter().map(String::as_str).collect();
    let mut seen = Vec::new();
    // (host, lower-cased path) → route name, to refuse a path routed twice on one host.
    let mut routed: HashMap<(String, String), String> = HashMap::new();
    let mut out = Vec::new();

    for t in tables {
        t.check_keys(sink, super::keys::ROUTE);
        let name = read_name(sink, t, "route", &mut seen);
        let label = name.clone().unwrap_or_else(|| "?".to_string());

        let access = match t.required_string(sink, "access", "add `access = \"public\"`, \"protected\" or \"deny\"") {
            Some(s) => access(sink, &s),
            None => None,
        };

        let mut paths: Vec<Str> = Vec::new();
        match t.string_list(sink, "paths") {
            None if t.table.get("paths").is_some() => {}
            None => t.missing(sink, "paths", "add `paths = [\"/admin\"]`"),
            Some(_) if t.is_empty_list("paths") => sink.error_help(
                t.span_of("paths"),
                format!("route `{label}` has no paths"),
                "add at least one path",
            ),
            Some(list) => {
                for s in list {
                    if let Err(b) = values::route_path(&s.value) {
                        report(sink, s.span, b);
                    } else if paths.iter().any(|p| p.value == s.value) {
                        sink.error_help(s.span, format!("path `{}` is listed twice", s.value), "remove one");
                    } else {
                        paths.push(s);
                    }
                }
            }
        }

        let mut hosts: Vec<String> = Vec::new();
        for s in t.string_list(sink, "hosts").unwrap_or_default() {
            if !server.hostnames.contains(&s.value) {
                let help = match values::hostname(&s.value) {
                    Err(b) => b.help,
                    Ok(()) => format!(
                        "add it to [server] hostnames, or use one of: {}",
                        server.hostnames.join(", ")
                    ),
                };
                sink.error_help(
                    s.span,
                    format!("route host `{}` is not a server hostname", s.value.escape_debug()),
                    help,
                );
            } else if !hosts.contains(&s.value) {
                hosts.push(s.value);
            }
        }

        let upstream = t.string(sink, "upstream");
        if let Some(u) = upstream
            .as_ref()
            .filter(|u| !upstream_names.contains(&u.value.as_str()))
        {
            let help = match nearest(&u.value, &upstream_names) {
                Some(n) => format!("did you mean `{n}`?"),
                None if upstream_names.is_empty() => "add an [[upstream]] with this name".to_string(),
                None => format!("known upstreams: {}", upstream_names.join(", ")),
            };
            sink.error_help(
                u.span.clone(),
                format!("unknown upstream `{}`", u.value.escape_debug()),
                help,
            );
        }

        let mut allow_ips = Vec::new();
        for s in t.string_list(sink, "allow_ips").unwrap_or_default() {
            match values::net(&s.value) {
                Ok(n) => allow_ips.push(n),
                Err(b) => report(sink, s.span, b),
            }
        }
        if t.is_empty_list("allow_ips") {
            sink.error_help(
                t.span_of("allow_ips"),
                "`allow_ips` is empty",
                "remove `allow_ips` to allow every address, or list the networks",
            );
        }

        let require_device = t.boolean(sink, "require_device").unwrap_or(false);
        if require_device && (server.device_ca.is_none() || server.client_certificates == ClientCertMode::Off) {
            sink.error_help(
                t.span_of("require_device"),
                format!("route `{label}` requires a device certificate, but the server never asks for one"),
                "set [server] device_ca and client_certificates = \"request\" or \"require\"",
            );
        }

        let factors_raw = t.string_list(sink, "second_factor");
        let mut second_factor = Vec::new();
        for s in factors_raw.iter().flatten() {
            let f = match s.value.as_str() {
                "webauthn" => Factor::Webauthn,
                "totp" => Factor::Totp,
                other => {
                    let help = match nearest(other, &["webauthn", "totp"]) {
                        Some(n) => format!("did you mean \"{n}\"?"),
                        None => "write \"webauthn\" or \"totp\"".to_string(),
                    };
                    sink.error_help(
                        s.span.clone(),
                        format!("unknown factor `{}`", other.escape_debug()),
                        help,
                    );
                    continue;
                }
            };
            if !second_factor.contains(&f) {
                second_factor.push(f);
            }
        }

        let groups = read_groups(sink, t);
        for g in &groups {
            if !known_groups.contains(&g.value.as_str()) {
                let help = match nearest(&g.value, &known_groups) {
                    Some(n) => {
                        format!("did you mean `{n}`? (groups exist only as listed on users)")
                    }
                    None => "list it in some [[user]] groups (groups exist only as listed on users)".to_string(),
                };
                sink.error_help(
                    g.span.clone(),
                    format!("unknown group `{}`", g.value.escape_debug()),
                    help,
                );
            }
        }
        if t.is_empty_list("groups") {
            sink.error_help(
                t.span_of("groups"),
                "`groups` is empty",
                "remove `groups` to admit every enrolled user, or list the groups",
            );
        }

        match access {
            Some(Access::Protected) if second_factor.is_empty() && t.table.get("second_factor").is_none() => sink
                .error_help(
                    t.span.clone(),
                    format!("protected route `{label}` has no `second_factor`"),
                    "add `second_factor = [\"webauthn\", \"totp\"]`",
                ),
            Some(Access::Protected) if t.is_empty_list("second_factor") => sink.error_help(
                t.span_of("second_factor"),
                format!("protected route `{label}` has an empty `second_factor`"),
                "list the accepted factors: `second_factor = [\"webauthn\", \"totp\"]`",
            ),
            Some(kind @ (Access::Public | Access::Deny)) => {
                let kind_name = if kind == Access::Public { "public" } else { "deny" };
                for key in ["second_factor", "groups"] {
                    if t.table.get(key).is_some() {
                        sink.error_help(
                            t.span_of(key),
                            format!("{kind_name} route `{label}` sets `{key}`, which only protected routes use"),
                            format!("remove `{key}`, or make the route `access = \"protected\"`"),
                        );
                    }
                }
            }
            _ => {}
        }
        match (access, &upstream) {
            (Some(Access::Deny), Some(u)) => sink.error_help(
                u.span.clone(),
                format!("deny route `{label}` has an upstream"),
                "remove `upstream`: a deny route is never forwarded",
            ),
            (Some(Access::Public | Access::Protected), None) => sink.error_help(
                t.span.clone(),
                format!("route `{label}` has no `upstream`"),
                "add `upstream = \"NAME\"` naming an [[upstream]], or make it `access = \"deny\"`",
            ),
            _ => {}
        }

        // The same path twice on one host would make the winner depend on file order.
        let effective_hosts: &[String] = if hosts.is_empty() { &server.hostnames } else { &hosts };
        for p in &paths {
            for h in effective_hosts {
                let key = (h.clone(), p.value.to_lowercase());
                if let Some(other) = routed.get(&key) {
                    sink.error_help(
                        p.span.clone(),
                        format!("path `{}` on host `{h}` is already routed by `{other}`", p.value),
                        "each path may belong to one route per host (compared case-insensitively)",
                    );
                    break;
                }
                routed.insert(key, label.clone());
            }
        }

        if let (Some(name), Some(access)) = (name, access) {
            out.push(Route {
                id: RouteId(out.len()),
                name,
                paths: paths.into_iter().map(|s| s.value).collect(),
                hosts,
                upstream: upstream.map(|u| u.value),
                access,
                allow_ips,
                require_device,
                second_factor,
                groups: groups.into_iter().map(|s| s.value).collect(),
            });
        }
    }
    out
}
