//! The plain-HTTP listeners (`[server] http_listen`, port 80): they answer ACME http-01
//! challenges (`GET /.well-known/acme-challenge/TOKEN`, only while the gateway's own
//! issuance has that token open) and redirect everything else to https on a served
//! hostname. Nothing is ever forwarded from here.
//!
//! The CA validates from addresses no route names, so every peer is accepted (within the
//! connection caps); a peer that no route admits gets the challenge answers and a bare
//! 404 for everything else, never a redirect. Every answer leaves an access record.

use crate::audit::{AccessRecord, Event};
use crate::gateway::{Active, Gateway};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The path prefix of http-01 answers (RFC 8555 §8.3).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Accepts on one plain listener until `stop` turns true.
pub async fn accept_loop(gw: Arc<Gateway>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed (plain listener)");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let active = gw.active();
        let ip = crate::forwarded::canonical(peer.ip());
        let limits = active.policy.limits;
        let Some(slot) = gw
            .conns
            .try_take(ip, limits.max_connections, limits.max_connections_per_ip)
        else {
            drop(stream);
            continue;
        };
        let admitted = active.policy.admits_peer(ip);
        let gw = gw.clone();
        tokio::spawn(async move {
            serve(gw, stream, peer, admitted).await;
            drop(slot);
        });
    }
}

async fn serve(gw: Arc<Gateway>, stream: tokio::net::TcpStream, peer: SocketAddr, admitted: bool) {
    let limits = gw.active().policy.limits;
    let service = service_fn(move |req: Request<Incoming>| {
        let answer = answer(&gw, &req, peer, admitted);
        async move { Ok::<_, std::convert::Infallible>(answer) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    // A plain connection lives for one short exchange.
    let _ = tokio::time::timeout(limits.idle_timeout, conn).await;
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r
}

fn answer(gw: &Gateway, req: &Request<Incoming>, peer: SocketAddr, admitted: bool) -> Response<Full<Bytes>> {
    let active = gw.active();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| crate::host::parse_host(h).ok())
        .map(|h| h.to_ascii_lowercase());
    let (response, outcome, reason) = decide(gw, &active, req, host.as_deref(), admitted);
    if reason == "acme_challenge" {
        tracing::info!(peer = %peer, "answered an ACME http-01 validation");
    }
    // The plain listener decides too, so it leaves an access record like every decision
    // (never waited for: nothing here is protected).
    let path = req.uri().path();
    let record = AccessRecord {
        peer: crate::forwarded::canonical(peer.ip()).to_string(),
        client: None,
        method: req.method().as_str(),
        host: host.as_deref(),
        path: Some(path),
        raw_target: None,
        route: None,
        outcome,
        reason,
        status: response.status().as_u16(),
        bytes: None,
        device: None,
        device_problem: None,
        user: None,
        upstream_ms: None,
        policy: &active.policy.id,
        policy_commit: active.version.git_commit.as_deref(),
    };
    gw.audit.record_detached(&Event::Access(record));
    response
}

/// The answer on the plain listener, with the record's outcome and reason.
fn decide(
    gw: &Gateway,
    active: &Active,
    req: &Request<Incoming>,
    host: Option<&str>,
    admitted: bool,
) -> (Response<Full<Bytes>>, &'static str, &'static str) {
    if let Some(token) = req.uri().path().strip_prefix(CHALLENGE_PREFIX) {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return (text(StatusCode::METHOD_NOT_ALLOWED, ""), "deny", "method_not_allowed");
        }
        return match gw.acme.http_answer(token) {
            Some(key_authorization) => (text(StatusCode::OK, &key_authorization), "allow", "acme_challenge"),
            None => (text(StatusCode::NOT_FOUND, ""), "deny", "acme_challenge_unknown"),
        };
    }
    if !admitted {
        return (text(StatusCode::NOT_FOUND, ""), "deny", "address_not_admitted");
    }
    let Some(host) = host.filter(|h| active.policy.serves_host(h)) else {
        return (
            text(StatusCode::MISDIRECTED_REQUEST, "unknown host\n"),
            "deny",
            "host_not_served",
        );
    };
    let tls_port = active.policy.server.listen.first().map_or(443, SocketAddr::port);
    let authority = if tls_port == 443 {
        host.to_owned()
    } else {
        format!("{host}:{tls_port}")
    };
    // Only an origin-form target is carried over (never `//evil` or an absolute form).
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or("/");
    match header::HeaderValue::from_str(&format!("https://{authority}{target}")) {
        Ok(location) => {
            let mut r = text(StatusCode::PERMANENT_REDIRECT, "");
            r.headers_mut().insert(header::LOCATION, location);
            (r, "allow", "redirect_to_https")
        }
        Err(_) => (text(StatusCode::BAD_REQUEST, ""), "deny", "bad_target"),
    }
}
