//! The request pipeline, one request at a time, read top-down:
//!
//! 1. [`judge`]: method and size limits → framing → host and SNI → canonical target →
//!    reserved prefix → client address → device identity → `sekisho_policy::decide`;
//! 2. the answer: a refusal made here, or the upstream's response through [`crate::proxy`];
//! 3. the access record, written before the response leaves (fail closed if it cannot be
//!    written on anything but a public route).
//!
//! Every later step uses the one canonical request made in step 1.

use crate::abuse::{self, Unban};
use crate::audit::{AccessRecord, Event};
use crate::body::ResponseBody;
use crate::error::Refusal;
use crate::forwarded;
use crate::gateway::{Active, Gateway};
use crate::host;
use crate::listener::ConnInfo;
use crate::proxy::Forward;
use http::{Method, Request, Response, Version, header};
use hyper::body::Incoming;
use sekisho_policy::{Access, CanonicalTarget, DeviceFacts, Facts, Outcome, PublicWhenUnwritable, Reason, RouteId};
use std::net::IpAddr;
use std::time::Instant;

use sekisho_policy::RESERVED_PREFIX;

/// What step 1 established about an admitted request.
#[derive(Debug)]
struct Admitted {
    route: RouteId,
    host: String,
    target: CanonicalTarget,
    client_ip: IpAddr,
    device: Option<DeviceFacts>,
    /// The live second-factor session, if any (its user goes upstream as identity).
    session: Option<crate::auth::Live>,
}

/// What step 1 established about any request, admitted or not, for the record.
#[derive(Debug, Default)]
struct Findings {
    host: Option<String>,
    path: Option<String>,
    changed: bool,
    client_ip: Option<IpAddr>,
    route: Option<RouteId>,
    device: Option<String>,
    device_problem: Option<&'static str>,
    reason: Option<&'static str>,
    /// The session's (or a ceremony's) user.
    user: Option<String>,
    /// Set when the request is for the gateway's own pages under `/.sekisho/`.
    own_page: Option<crate::auth::http::PageRequest>,
}

/// Handles one request end to end.
pub async fn handle(gw: &Gateway, conn: &ConnInfo, req: Request<Incoming>) -> Response<ResponseBody> {
    let started = Instant::now();
    let active = gw.active();
    let mut findings = Findings::default();
    let method = req.method().clone();
    let raw_target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().to_string(), |pq| pq.as_str().to_owned());

    let judged = judge(gw, &active, conn, &req, &mut findings);
    let (response, outcome, upstream_ms) = match judged {
        Err(_) if findings.own_page.is_some() => {
            let page = findings.own_page.take();
            let (response, served) = crate::auth::serve_page(gw, &active.policy, page, req).await;
            findings.reason = Some(served.reason);
            findings.user = served.user;
            (response, "gateway", None)
        }
        Err(refusal) => {
            let outcome = match refusal {
                Refusal::Login { .. } | Refusal::Unauthorized => "login",
                _ => "deny",
            };
            findings.reason.get_or_insert(refusal.reason());
            (refusal.into_response(), outcome, None)
        }
        Ok(admitted) => {
            let policy = &active.policy;
            let route = policy.route(admitted.route);
            let forwarded = match route.upstream.as_deref().and_then(|name| policy.upstream(name)) {
                // Invariant: validation guarantees every non-deny route names a known
                // upstream; if it ever did not, refuse rather than guess.
                None => Err(Refusal::BadGateway),
                Some(upstream) => {
                    let started = Instant::now();
                    let fwd = Forward {
                        upstream,
                        route_name: &route.name,
                        path_and_query: admitted.target.upstream_path_and_query(),
                        host: &admitted.host,
                        client_ip: admitted.client_ip,
                        device: admitted.device.as_ref().map(|d| d.fingerprint.as_str()),
                        user: crate::auth::identity(policy, admitted.session.as_ref()),
                        limits: &policy.limits,
                    };
                    let r = gw.upstreams.forward(fwd, req).await;
                    Ok::<_, Refusal>((r, u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)))
                }
            };
            match forwarded {
                Ok((Ok(resp), ms)) => (resp, "allow", Some(ms)),
                Ok((Err(refusal), ms)) => {
                    findings.reason = Some(refusal.reason());
                    (refusal.into_response(), "allow", Some(ms))
                }
                Err(refusal) => {
                    findings.reason = Some(refusal.reason());
                    (refusal.into_response(), "deny", None)
                }
            }
        }
    };

    let response = finish(
        gw,
        &active,
        conn,
        &method,
        &raw_target,
        &findings,
        outcome,
        upstream_ms,
        response,
    )
    .await;
    let route = findings.route.map(|id| active.policy.route(id).name.as_str());
    answered(
        gw,
        &active,
        conn,
        findings.client_ip,
        route,
        outcome,
        response.status().as_u16(),
        started,
    );
    response
}

/// After an answer: the metrics, and the denial count of the client address (which may
/// ban it). The client is the peer when the request was refused before its address was
/// read.
#[allow(
    clippy::too_many_arguments,
    reason = "the facts of one answer, gathered from three places"
)]
fn answered(
    gw: &Gateway,
    active: &Active,
    conn: &ConnInfo,
    client: Option<IpAddr>,
    route: Option<&str>,
    outcome: &'static str,
    status: u16,
    started: Instant,
) {
    gw.metrics.request(route.unwrap_or(""), outcome, started.elapsed());
    if abuse::counts_as_denial(outcome, status) {
        let ip = client.unwrap_or_else(|| forwarded::canonical(conn.peer.ip()));
        count_denial(gw, active, ip);
    }
}

/// Counts a denial against `ip` (never a trusted proxy) and records the ban it begins.
fn count_denial(gw: &Gateway, active: &Active, ip: IpAddr) {
    let policy = &active.policy;
    if forwarded::is_trusted(ip, &policy.server.trusted_proxies) {
        return;
    }
    let (ban, evicted) = gw.guard.deny(ip, &policy.limits, Instant::now());
    record_unbans(gw, &evicted);
    if let Some(ban) = ban {
        let seconds = ban.duration.as_secs();
        tracing::warn!(address = %ban.subject, seconds, repeat = ban.repeat, "banned after repeated denials");
        gw.audit.record_detached(&Event::Ban {
            address: ban.subject.to_string(),
            denials: policy.limits.ban_after_denials,
            seconds,
            repeat: ban.repeat,
        });
    }
}

/// Records bans that ended (expired, or evicted from the full table).
pub fn record_unbans(gw: &Gateway, ended: &[Unban]) {
    for u in ended {
        tracing::info!(address = %u.subject, reason = u.reason, "ban ended");
        gw.audit.record_detached(&Event::Unban {
            address: u.subject.to_string(),
            reason: u.reason,
        });
    }
}

/// Answers a request with a refusal decided outside the pipeline (e.g. by the connection
/// layer), with its access record. The record is queued, not awaited: the answer is a
/// refusal that reveals nothing, and the connection layer calls this synchronously.
pub fn refuse(gw: &Gateway, conn: &ConnInfo, req: &Request<Incoming>, refusal: Refusal) -> Response<ResponseBody> {
    let active = gw.active();
    let findings = Findings {
        reason: Some(refusal.reason()),
        ..Findings::default()
    };
    let raw_target = target_text(req);
    let response = refusal.into_response();
    answered(
        gw,
        &active,
        conn,
        None,
        None,
        "deny",
        response.status().as_u16(),
        Instant::now(),
    );
    let record = access_record(
        &active,
        conn,
        req.method(),
        &raw_target,
        &findings,
        "deny",
        None,
        &response,
    );
    gw.audit.record_detached(&Event::Access(record));
    response
}

/// Records a request that hyper refused before it reached the pipeline (it could not be
/// parsed, its header block was too large, or it did not arrive in time). Queued, not
/// awaited: the connection is already refused.
pub fn record_protocol_error(gw: &Gateway, conn: &ConnInfo, reason: &'static str, status: u16) {
    let active = gw.active();
    let record = AccessRecord {
        peer: conn.peer.ip().to_string(),
        client: None,
        method: "-",
        host: conn.sni.as_deref(),
        path: None,
        raw_target: None,
        route: None,
        outcome: "deny",
        reason,
        status,
        bytes: None,
        device: conn.device.as_ref().map(|d| d.fingerprint.as_str()),
        device_problem: None,
        user: None,
        upstream_ms: None,
        policy: &active.policy.id,
        policy_commit: active.version.git_commit.as_deref(),
    };
    gw.audit.record_detached(&Event::Access(record));
    answered(gw, &active, conn, None, None, "deny", status, Instant::now());
}

fn target_text(req: &Request<Incoming>) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| req.uri().to_string(), |pq| pq.as_str().to_owned())
}

/// Step 3: the access record, durable, then the response (or 503 if the record cannot be
/// kept for anything but a public route).
#[allow(
    clippy::too_many_arguments,
    reason = "one call site per outcome; a struct would only rename them"
)]
async fn finish(
    gw: &Gateway,
    active: &Active,
    conn: &ConnInfo,
    method: &Method,
    raw_target: &str,
    findings: &Findings,
    outcome: &'static str,
    upstream_ms: Option<u64>,
    response: Response<ResponseBody>,
) -> Response<ResponseBody> {
    let record = access_record(
        active,
        conn,
        method,
        raw_target,
        findings,
        outcome,
        upstream_ms,
        &response,
    );
    let public = findings
        .route
        .is_some_and(|id| active.policy.route(id).access == Access::Public);
    let log = &active.policy.log;
    if public && !log.public_waits_for_fsync {
        // Refused while the log is known to be failing, when the owner asked for that (no
        // record: it could not be kept, and it would name the upstream's status, not 503).
        if log.public_when_unwritable == PublicWhenUnwritable::Refuse && !gw.audit.health().writable {
            return Refusal::Unavailable("audit_log_unwritable").into_response();
        }
        gw.audit.record_detached(&Event::Access(record));
        return response;
    }
    let waiting = gw.metrics.audit_wait();
    let kept = gw.audit.record(&Event::Access(record)).await;
    drop(waiting);
    if let Err(e) = kept {
        tracing::error!(error = %e, "cannot write the access record");
        // A protected route never answers without its record. Public routes carry on,
        // unless `[log] public_when_unwritable = "refuse"`.
        if !public || log.public_when_unwritable == PublicWhenUnwritable::Refuse {
            return Refusal::Unavailable("audit_log_unwritable").into_response();
        }
    }
    response
}

/// The access record of a decision.
#[allow(
    clippy::too_many_arguments,
    reason = "the facts of one decision, gathered from three places"
)]
fn access_record<'a>(
    active: &'a Active,
    conn: &ConnInfo,
    method: &'a Method,
    raw_target: &'a str,
    findings: &'a Findings,
    outcome: &'static str,
    upstream_ms: Option<u64>,
    response: &Response<ResponseBody>,
) -> AccessRecord<'a> {
    let policy = &active.policy;
    let route = findings.route.map(|id| policy.route(id));
    AccessRecord {
        peer: conn.peer.ip().to_string(),
        client: findings.client_ip.map(|ip| ip.to_string()),
        method: method.as_str(),
        host: findings.host.as_deref(),
        path: findings.path.as_deref(),
        raw_target: (findings.changed || findings.path.is_none()).then_some(raw_target),
        route: route.map(|r| r.name.as_str()),
        outcome,
        reason: findings.reason.unwrap_or("public"),
        status: response.status().as_u16(),
        bytes: hyper::body::Body::size_hint(response.body()).exact(),
        device: findings.device.as_deref(),
        device_problem: findings.device_problem,
        user: findings.user.as_deref(),
        upstream_ms,
        policy: &policy.id,
        policy_commit: active.version.git_commit.as_deref(),
    }
}

/// Step 1: everything that can be decided before talking to the upstream.
fn judge(
    gw: &Gateway,
    active: &Active,
    conn: &ConnInfo,
    req: &Request<Incoming>,
    found: &mut Findings,
) -> Result<Admitted, Refusal> {
    let policy = &active.policy;
    let limits = &policy.limits;

    // Methods that turn the gateway into a tunnel or a mirror are never forwarded.
    if req.method() == Method::CONNECT || req.method() == Method::TRACE {
        return Err(Refusal::MethodNotAllowed);
    }
    let uri = req.uri();
    let target = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("");
    if target.len() > limits.max_request_line_bytes {
        return Err(Refusal::UriTooLong);
    }

    // Framing: hyper has parsed the framing; refuse what a less careful upstream could
    // read differently (request smuggling).
    let h = req.headers();
    let has_te = h.contains_key(header::TRANSFER_ENCODING);
    if has_te && (h.contains_key(header::CONTENT_LENGTH) || req.version() == Version::HTTP_10) {
        return Err(Refusal::BadRequest("ambiguous_framing"));
    }
    if h.contains_key(header::UPGRADE) {
        // No protocol switches through the gateway (h2c smuggling, SMUG-020).
        return Err(Refusal::BadRequest("upgrade_refused"));
    }

    let host = host::request_host(req.version(), uri, h, conn.sni.as_deref(), |name| {
        policy.serves_host(name)
    })?;
    found.host = Some(host.clone());

    let canonical = sekisho_policy::canonicalize_target(target).map_err(|_| Refusal::BadRequest("ambiguous_target"))?;
    found.path = Some(canonical.path.clone());
    found.changed = canonical.changed;

    // The gateway's own pages (login, enrolment) live here; nothing under this prefix is
    // ever forwarded, and no route can shadow it.
    let reserved = is_reserved(&canonical.path);

    let peer = forwarded::canonical(conn.peer.ip());
    let client_ip = forwarded::client_address(peer, &policy.server.trusted_proxies, h)?;
    found.client_ip = Some(client_ip);

    // Bans and rate limits (`crate::abuse`), by client address; a trusted proxy itself is
    // never limited. Before the gateway's own pages, so a login flood meets 429 first.
    if !forwarded::is_trusted(client_ip, &policy.server.trusted_proxies) {
        let own_page_post = reserved && req.method() == Method::POST;
        let (verdict, evicted) = gw.guard.admit(client_ip, own_page_post, limits, Instant::now());
        record_unbans(gw, &evicted);
        if let Err(limited) = verdict {
            return Err(Refusal::TooManyRequests(limited.reason()));
        }
    }

    let device = match &conn.device {
        None => None,
        Some(cert) => {
            found.device = Some(cert.fingerprint.clone());
            let now = gw.clock.unix_seconds();
            let verdict = if conn.device_ca_id != active.tls.device_ca_id {
                Err("device_ca_changed")
            } else {
                cert.check_now(now, &active.tls.crl)
            };
            match verdict {
                Ok(()) => Some(DeviceFacts {
                    fingerprint: cert.fingerprint.clone(),
                    user: cert.user.clone(),
                    name: cert.name.clone(),
                }),
                Err(problem) => {
                    found.device_problem = Some(problem);
                    None
                }
            }
        }
    };

    if policy.server.client_certificates == sekisho_policy::ClientCertMode::Require && device.is_none() {
        // The listener requires a device for every request: a certificate revoked or
        // expired since the handshake ends access here too.
        return Err(Refusal::Forbidden("device_required_by_listener"));
    }

    let client = crate::auth::Client { ip: client_ip, device };
    if reserved {
        found.own_page = crate::auth::page_request(req.method(), uri, h, &host, &canonical, client);
        return Err(Refusal::NotFound);
    }
    let session = gw.auth.get().and_then(|auth| auth.session(policy, h, &client));
    found.user = session.as_ref().map(|s| s.facts.user.clone());
    let device = client.device;
    let facts = Facts {
        host: &host,
        path: &canonical.path,
        client_ip,
        device: device.as_ref(),
        session: session.as_ref().map(|s| &s.facts),
    };
    let decision = sekisho_policy::decide(policy, &facts);
    found.route = decision.route;
    found.reason = Some(decision.reason.as_str());
    match decision.outcome {
        Outcome::Allow => match decision.route {
            Some(route) => Ok(Admitted {
                route,
                host,
                target: canonical,
                client_ip,
                device,
                session,
            }),
            None => Err(Refusal::NotFound),
        },
        Outcome::Login => {
            if wants_html(h) {
                Err(Refusal::Login {
                    location: login_location(&canonical),
                })
            } else {
                Err(Refusal::Unauthorized)
            }
        }
        Outcome::Deny => match decision.reason {
            Reason::NoRoute => Err(Refusal::NotFound),
            other => Err(Refusal::Forbidden(other.as_str())),
        },
    }
}

fn is_reserved(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower == RESERVED_PREFIX
        || lower
            .strip_prefix(RESERVED_PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A browser gets the login redirect; anything else a 401.
fn wants_html(h: &http::HeaderMap) -> bool {
    h.get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// `/.sekisho/login?return=…`: a relative URL into this gateway, carrying the canonical
/// path and query, every byte outside the unreserved set percent-encoded.
fn login_location(target: &CanonicalTarget) -> String {
    let back = target.upstream_path_and_query();
    let mut out = String::from("/.sekisho/login?return=");
    for b in back.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
