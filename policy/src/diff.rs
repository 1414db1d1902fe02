//! `diff(old, new)`: what a policy change means, in words — who gains or loses access to
//! what — rather than a text diff. Routes are matched by name, users by name. Pure.

use std::collections::BTreeSet;
use std::fmt;

use ipnet::IpNet;

use crate::model::{Access, Policy, Route};

/// One consequence of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Does this open access (`+`), close it (`-`), or neither (`~`)?
    pub effect: Effect,
    pub text: String,
}

/// The direction of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Widens,
    Narrows,
    Neutral,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.effect {
            Effect::Widens => "+",
            Effect::Narrows => "-",
            Effect::Neutral => "~",
        };
        write!(f, "{mark} {}", self.text)
    }
}

struct Out(Vec<Change>);

impl Out {
    fn push(&mut self, effect: Effect, text: String) {
        self.0.push(Change { effect, text });
    }
}

/// The changes from `old` to `new`, routes first, then users, then the server settings.
pub fn diff(old: &Policy, new: &Policy) -> Vec<Change> {
    let mut out = Out(Vec::new());
    for r in &new.routes {
        match old.routes.iter().find(|o| o.name == r.name) {
            None => out.push(
                if r.access == Access::Deny {
                    Effect::Narrows
                } else {
                    Effect::Widens
                },
                format!("route '{}' added: {}", r.name, describe(new, r)),
            ),
            Some(o) => route_changes(&mut out, old, o, new, r),
        }
    }
    for o in old
        .routes
        .iter()
        .filter(|o| !new.routes.iter().any(|r| r.name == o.name))
    {
        out.push(
            if o.access == Access::Deny {
                Effect::Widens
            } else {
                Effect::Narrows
            },
            format!(
                "route '{}' removed: {} now fall to a shorter route or are denied",
                o.name,
                o.paths.join(", ")
            ),
        );
    }
    user_changes(&mut out, old, new);
    server_changes(&mut out, old, new);
    out.0
}

/// Users the new policy removed or took a group from: their sessions must end.
pub fn identities_losing_access(old: &Policy, new: &Policy) -> Vec<String> {
    old.users
        .iter()
        .filter(|u| match new.user(&u.name) {
            None => true,
            Some(n) => u.groups.iter().any(|g| !n.groups.contains(g)),
        })
        .map(|u| u.name.clone())
        .collect()
}

fn access_name(a: Access) -> &'static str {
    match a {
        Access::Public => "public",
        Access::Protected => "protected",
        Access::Deny => "deny",
    }
}

fn nets(n: &[IpNet]) -> String {
    if n.is_empty() {
        "every address".to_string()
    } else {
        n.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}

fn describe(p: &Policy, r: &Route) -> String {
    let mut s = format!("{} is {}", r.paths.join(", "), access_name(r.access));
    if r.access == Access::Deny {
        return s;
    }
    s.push_str(&format!(" from {}", nets(&r.allow_ips)));
    if r.require_device {
        s.push_str(", with a device certificate");
    }
    if r.access == Access::Protected {
        let f: Vec<&str> = r.second_factor.iter().map(|f| f.as_str()).collect();
        s.push_str(&format!(", factors {}", f.join("/")));
        s.push_str(&format!(", for {}", who(p, r)));
    }
    s
}

/// The users a protected route admits, in words.
fn who(p: &Policy, r: &Route) -> String {
    let users: Vec<&str> = admitted(p, r).into_iter().collect();
    let groups = if r.groups.is_empty() {
        "every user".to_string()
    } else {
        format!("groups {}", r.groups.join(", "))
    };
    format!(
        "{groups} ({})",
        if users.is_empty() {
            "nobody".into()
        } else {
            users.join(", ")
        }
    )
}

fn admitted<'p>(p: &'p Policy, r: &Route) -> BTreeSet<&'p str> {
    p.users
        .iter()
        .filter(|u| r.groups.is_empty() || r.groups.iter().any(|g| u.groups.contains(g)))
        .map(|u| u.name.as_str())
        .collect()
}

fn set<T: Ord + Clone>(v: &[T]) -> BTreeSet<T> {
    v.iter().cloned().collect()
}

fn route_changes(out: &mut Out, old_p: &Policy, o: &Route, new_p: &Policy, r: &Route) {
    let name = &r.name;
    let (op, np) = (set(&o.paths), set(&r.paths));
    let added: Vec<_> = np.difference(&op).cloned().collect();
    let removed: Vec<_> = op.difference(&np).cloned().collect();
    let opens = r.access != Access::Deny;
    if !added.is_empty() {
        let effect = if opens { Effect::Widens } else { Effect::Narrows };
        out.push(
            effect,
            format!(
                "route '{name}' now also covers {} ({})",
                added.join(", "),
                access_name(r.access)
            ),
        );
    }
    if !removed.is_empty() {
        let effect = if opens { Effect::Narrows } else { Effect::Widens };
        out.push(
            effect,
            format!(
                "route '{name}' no longer covers {} (they fall to a shorter route or are denied)",
                removed.join(", ")
            ),
        );
    }
    if o.hosts != r.hosts {
        let h = |v: &[String]| {
            if v.is_empty() {
                "every hostname".to_string()
            } else {
                v.join(", ")
            }
        };
        out.push(
            Effect::Neutral,
            format!("route '{name}' hosts: {} → {}", h(&o.hosts), h(&r.hosts)),
        );
    }
    if o.access != r.access {
        let rank = |a| match a {
            Access::Public => 2,
            Access::Protected => 1,
            Access::Deny => 0,
        };
        let effect = if rank(r.access) > rank(o.access) {
            Effect::Widens
        } else {
            Effect::Narrows
        };
        out.push(
            effect,
            format!(
                "route '{name}' ({}) changes from {} to {}",
                r.paths.join(", "),
                access_name(o.access),
                access_name(r.access)
            ),
        );
    }
    if o.upstream != r.upstream {
        out.push(
            Effect::Neutral,
            format!(
                "route '{name}' upstream: {} → {}",
                o.upstream.as_deref().unwrap_or("none"),
                r.upstream.as_deref().unwrap_or("none")
            ),
        );
    }
    if o.allow_ips != r.allow_ips && r.access != Access::Deny {
        let (on, nn) = (set(&o.allow_ips), set(&r.allow_ips));
        let widened: Vec<String> = nn.difference(&on).map(ToString::to_string).collect();
        let narrowed: Vec<String> = on.difference(&nn).map(ToString::to_string).collect();
        if r.allow_ips.is_empty() {
            out.push(
                Effect::Widens,
                format!("route '{name}' is now reachable from every address (allow_ips removed)"),
            );
        } else if o.allow_ips.is_empty() {
            out.push(
                Effect::Narrows,
                format!("route '{name}' is now reachable only from {}", nets(&r.allow_ips)),
            );
        } else {
            if !widened.is_empty() {
                out.push(
                    Effect::Widens,
                    format!("route '{name}' allow_ips widened: now also {}", widened.join(", ")),
                );
            }
            if !narrowed.is_empty() {
                out.push(
                    Effect::Narrows,
                    format!("route '{name}' allow_ips narrowed: no longer {}", narrowed.join(", ")),
                );
            }
        }
    }
    if o.require_device != r.require_device {
        let (effect, what) = if r.require_device {
            (Effect::Narrows, "now requires")
        } else {
            (Effect::Widens, "no longer requires")
        };
        out.push(effect, format!("route '{name}' {what} a device certificate"));
    }
    if o.second_factor != r.second_factor && r.access == Access::Protected {
        let (of, nf) = (
            set(&o.second_factor.iter().map(|f| f.as_str()).collect::<Vec<_>>()),
            set(&r.second_factor.iter().map(|f| f.as_str()).collect::<Vec<_>>()),
        );
        for f in nf.difference(&of) {
            out.push(Effect::Widens, format!("route '{name}' now also accepts {f}"));
        }
        for f in of.difference(&nf) {
            out.push(Effect::Narrows, format!("route '{name}' no longer accepts {f}"));
        }
    }
    if r.access == Access::Protected {
        let (ou, nu) = (admitted(old_p, o), admitted(new_p, r));
        let gain: Vec<&str> = nu.difference(&ou).copied().collect();
        let lose: Vec<&str> = ou.difference(&nu).copied().collect();
        if o.groups != r.groups {
            let g = |v: &[String]| {
                if v.is_empty() {
                    "every user".to_string()
                } else {
                    v.join(", ")
                }
            };
            out.push(
                Effect::Neutral,
                format!("route '{name}' groups: {} → {}", g(&o.groups), g(&r.groups)),
            );
        }
        if !gain.is_empty() {
            out.push(
                Effect::Widens,
                format!(
                    "{} gain access to route '{name}' ({})",
                    gain.join(", "),
                    r.paths.join(", ")
                ),
            );
        }
        if !lose.is_empty() {
            out.push(
                Effect::Narrows,
                format!(
                    "{} lose access to route '{name}' ({})",
                    lose.join(", "),
                    r.paths.join(", ")
                ),
            );
        }
    }
}

fn user_changes(out: &mut Out, old: &Policy, new: &Policy) {
    for u in &new.users {
        match old.user(&u.name) {
            None => out.push(
                Effect::Widens,
                format!("user '{}' added (groups: {})", u.name, u.groups.join(", ")),
            ),
            Some(o) => {
                for g in u.groups.iter().filter(|g| !o.groups.contains(g)) {
                    out.push(Effect::Widens, format!("user '{}' joins group '{g}'", u.name));
                }
                for g in o.groups.iter().filter(|g| !u.groups.contains(g)) {
                    out.push(Effect::Narrows, format!("user '{}' leaves group '{g}'", u.name));
                }
                if o.email != u.email {
                    out.push(Effect::Neutral, format!("user '{}' email changed", u.name));
                }
            }
        }
    }
    for o in old.users.iter().filter(|o| new.user(&o.name).is_none()) {
        out.push(
            Effect::Narrows,
            format!("user '{}' removed: their sessions end", o.name),
        );
    }
}

fn server_changes(out: &mut Out, old: &Policy, new: &Policy) {
    let (o, n) = (&old.server, &new.server);
    if o.hostnames != n.hostnames {
        out.push(
            Effect::Neutral,
            format!("hostnames: {} → {}", o.hostnames.join(", "), n.hostnames.join(", ")),
        );
    }
    if o.listen != n.listen {
        let l = |v: &[std::net::SocketAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        out.push(
            Effect::Neutral,
            format!("listen: {} → {} (takes effect at restart)", l(&o.listen), l(&n.listen)),
        );
    }
    let (ot, nt) = (set(&o.trusted_proxies), set(&n.trusted_proxies));
    for p in nt.difference(&ot) {
        out.push(
            Effect::Widens,
            format!("X-Forwarded-For from {p} is now believed (trusted proxy added)"),
        );
    }
    for p in ot.difference(&nt) {
        out.push(Effect::Narrows, format!("{p} is no longer a trusted proxy"));
    }
    if o.client_certificates != n.client_certificates {
        out.push(
            Effect::Neutral,
            format!(
                "client_certificates: {:?} → {:?}",
                o.client_certificates, n.client_certificates
            )
            .to_lowercase(),
        );
    }
    if o.device_ca != n.device_ca || o.device_crl != n.device_crl {
        out.push(Effect::Neutral, "the device CA or its CRL file changed".to_string());
    }
    if old.session != new.session {
        out.push(
            Effect::Neutral,
            format!("session timeouts: {:?} → {:?}", old.session, new.session),
        );
    }
    if old.lockout != new.lockout {
        out.push(
            Effect::Neutral,
            format!("lockout: {:?} → {:?}", old.lockout, new.lockout),
        );
    }
    if old.limits != new.limits {
        out.push(Effect::Neutral, "limits changed".to_string());
    }
    for u in &new.upstreams {
        match old.upstream(&u.name) {
            None => out.push(Effect::Neutral, format!("upstream '{}' added ({})", u.name, u.url)),
            Some(ou) if ou.url != u.url || ou.case_insensitive != u.case_insensitive => {
                out.push(
                    Effect::Neutral,
                    format!("upstream '{}': {} → {}", u.name, ou.url, u.url),
                );
            }
            Some(_) => {}
        }
    }
    for u in old.upstreams.iter().filter(|u| new.upstream(&u.name).is_none()) {
        out.push(Effect::Neutral, format!("upstream '{}' removed", u.name));
    }
}
