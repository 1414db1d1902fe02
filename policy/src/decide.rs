//! The access decision. One evaluation function, generic over a tracer: [`decide`] runs it with
//! a tracer that compiles to nothing (no allocation on the hot path), [`explain`] with one that
//! records each step in plain English. They cannot disagree. Pure: the gateway gathers the
//! facts (certificate checks, session lookup, client address) and acts on the decision.

use std::fmt;
use std::net::IpAddr;

use crate::model::{Access, Factor, Policy, RouteId};

/// What the gateway knows about a request when it asks for a decision.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Lower-case, without port, already checked with [`Policy::serves_host`].
    pub host: &'a str,
    /// Canonical path ([`crate::CanonicalTarget::path`]).
    pub path: &'a str,
    /// The client address (the peer, or the right-most untrusted forwarded address).
    pub client_ip: IpAddr,
    /// Present only for a valid device certificate (chained, clientAuth, in validity,
    /// unrevoked).
    pub device: Option<&'a DeviceFacts>,
    /// Present only for a live session with a completed second factor.
    pub session: Option<&'a SessionFacts>,
}

/// A valid device certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    /// SHA-256 fingerprint of the certificate.
    pub fingerprint: String,
    /// The user the device was enrolled for, if any.
    pub user: Option<String>,
    /// The device name (from the certificate).
    pub name: String,
}

/// A session with a completed second factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFacts {
    pub user: String,
    /// The factors completed in this session.
    pub factors: Vec<Factor>,
}

/// What to do with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub reason: Reason,
    /// The matched route, if any.
    pub route: Option<RouteId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forward upstream.
    Allow,
    /// Send to the second-factor login.
    Login,
    /// Refuse.
    Deny,
}

impl Outcome {
    /// Stable snake_case name, for audit logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Login => "login",
            Outcome::Deny => "deny",
        }
    }
}

/// Why; stable names (see [`Reason::as_str`]) go into the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    NoRoute,
    DenyRoute,
    AddressNotAllowed,
    DeviceRequired,
    SecondFactorRequired,
    FactorNotAccepted,
    NotInGroup,
    UnknownUser,
    DeviceUserMismatch,
    Public,
    Authenticated,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 11] = [
        Reason::NoRoute,
        Reason::DenyRoute,
        Reason::AddressNotAllowed,
        Reason::DeviceRequired,
        Reason::SecondFactorRequired,
        Reason::FactorNotAccepted,
        Reason::NotInGroup,
        Reason::UnknownUser,
        Reason::DeviceUserMismatch,
        Reason::Public,
        Reason::Authenticated,
    ];

    /// Stable snake_case name, used in audit logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::NoRoute => "no_route",
            Reason::DenyRoute => "deny_route",
            Reason::AddressNotAllowed => "address_not_allowed",
            Reason::DeviceRequired => "device_required",
            Reason::SecondFactorRequired => "second_factor_required",
            Reason::FactorNotAccepted => "factor_not_accepted",
            Reason::NotInGroup => "not_in_group",
            Reason::UnknownUser => "unknown_user",
            Reason::DeviceUserMismatch => "device_user_mismatch",
            Reason::Public => "public",
            Reason::Authenticated => "authenticated",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.outcome, self.reason)
    }
}

/// A decision with the steps that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub decision: Decision,
    pub steps: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "decision: {}", self.decision)?;
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "  {}. {step}", i + 1)?;
        }
        Ok(())
    }
}

/// Decides a request. Allocates nothing beyond the route lookup.
pub fn decide(policy: &Policy, facts: &Facts<'_>) -> Decision {
    evaluate(policy, facts, &mut Silent)
}

/// Decides a request and says why, step by step (the same evaluation as [`decide`]).
pub fn explain(policy: &Policy, facts: &Facts<'_>) -> Explanation {
    let mut steps = Steps(Vec::new());
    let decision = evaluate(policy, facts, &mut steps);
    Explanation {
        decision,
        steps: steps.0,
    }
}

/// Receives the steps of an evaluation. Messages are built lazily so `Silent` costs nothing.
trait Tracer {
    fn step(&mut self, message: impl FnOnce() -> String);
}

struct Silent;

impl Tracer for Silent {
    #[inline]
    fn step(&mut self, _message: impl FnOnce() -> String) {}
}

struct Steps(Vec<String>);

impl Tracer for Steps {
    fn step(&mut self, message: impl FnOnce() -> String) {
        self.0.push(message());
    }
}

fn factor_list(factors: &[Factor]) -> String {
    let names: Vec<&str> = factors.iter().map(Factor::as_str).collect();
    names.join(", ")
}

/// The one evaluation. The order is the policy's meaning; change it only with the docs.
fn evaluate(policy: &Policy, facts: &Facts<'_>, t: &mut impl Tracer) -> Decision {
    let decision = |outcome, reason, route| Decision { outcome, reason, route };

    // 1. Route lookup: no route means deny.
    let Some(id) = policy.route_for(facts.host, facts.path) else {
        t.step(|| format!("no route matches {} on host {} → deny", facts.path, facts.host));
        return decision(Outcome::Deny, Reason::NoRoute, None);
    };
    let route = policy.route(id);
    t.step(|| {
        let candidates = policy.route_candidates(facts.host, facts.path);
        let by = route
            .paths
            .iter()
            .filter(|p| {
                let p = p.to_lowercase();
                let path = facts.path.to_lowercase();
                p == "/" || path == p || path.starts_with(&format!("{p}/"))
            })
            .max_by_key(|p| p.len())
            .map_or("?", String::as_str);
        format!(
            "route '{}' matched by {by} (longest of {} candidate{})",
            route.name,
            candidates.len(),
            if candidates.len() == 1 { "" } else { "s" }
        )
    });
    let some = Some(id);

    // 2. Deny routes are never forwarded.
    if route.access == Access::Deny {
        t.step(|| format!("route '{}' is a deny route → deny", route.name));
        return decision(Outcome::Deny, Reason::DenyRoute, some);
    }

    // 3. allow_ips only narrow; an empty list is no restriction.
    if route.allow_ips.is_empty() {
        t.step(|| "the route has no allow_ips: any client address may continue".to_string());
    } else if let Some(net) = route
        .allow_ips
        .iter()
        .find(|n| n.contains(&crate::model::canonical_ip(facts.client_ip)))
    {
        t.step(|| format!("client {} is inside allow_ips {net}", facts.client_ip));
    } else {
        t.step(|| {
            let nets: Vec<String> = route.allow_ips.iter().map(ToString::to_string).collect();
            format!(
                "client {} is outside allow_ips [{}] → deny",
                facts.client_ip,
                nets.join(", ")
            )
        });
        return decision(Outcome::Deny, Reason::AddressNotAllowed, some);
    }

    // 4. Device certificate.
    if route.require_device {
        match facts.device {
            None => {
                t.step(|| "no device certificate, but the route requires one → deny".to_string());
                return decision(Outcome::Deny, Reason::DeviceRequired, some);
            }
            Some(d) => t.step(|| {
                format!(
                    "device certificate '{}' ({}) is valid, as the route requires",
                    d.name, d.fingerprint
                )
            }),
        }
    }

    // 5. Public routes pass.
    if route.access == Access::Public {
        t.step(|| "the route is public → allow".to_string());
        return decision(Outcome::Allow, Reason::Public, some);
    }

    // 6. Protected: session, user, groups, factor, device owner.
    let Some(session) = facts.session else {
        t.step(|| {
            format!(
                "the route is protected and there is no second-factor session → login with {}",
                factor_list(&route.second_factor)
            )
        });
        return decision(Outcome::Login, Reason::SecondFactorRequired, some);
    };
    let Some(user) = policy.user(&session.user) else {
        t.step(|| format!("session user '{}' is not in the policy → deny", session.user));
        return decision(Outcome::Deny, Reason::UnknownUser, some);
    };
    if !route.groups.is_empty() {
        match route.groups.iter().find(|g| user.groups.contains(g)) {
            Some(g) => t.step(|| format!("user '{}' is in group '{g}'", user.name)),
            None => {
                t.step(|| {
                    format!(
                        "user '{}' is in none of the route's groups [{}] → deny",
                        user.name,
                        route.groups.join(", ")
                    )
                });
                return decision(Outcome::Deny, Reason::NotInGroup, some);
            }
        }
    }
    match session.factors.iter().find(|f| route.second_factor.contains(f)) {
        Some(f) => t.step(|| format!("session completed {}, which the route accepts", f.as_str())),
        None => {
            t.step(|| {
                format!(
                    "session factors [{}] include none the route accepts [{}] → login",
                    factor_list(&session.factors),
                    factor_list(&route.second_factor)
                )
            });
            return decision(Outcome::Login, Reason::FactorNotAccepted, some);
        }
    }
    if let Some(owner) = facts.device.and_then(|d| d.user.as_deref()) {
        if owner != session.user {
            t.step(|| {
                format!(
                    "the device belongs to '{owner}', not to session user '{}' → deny",
                    session.user
                )
            });
            return decision(Outcome::Deny, Reason::DeviceUserMismatch, some);
        }
        t.step(|| format!("the device belongs to '{owner}', the session user"));
    }
    t.step(|| format!("user '{}' is authenticated → allow", user.name));
    decision(Outcome::Allow, Reason::Authenticated, some)
}
