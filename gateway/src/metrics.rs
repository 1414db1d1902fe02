//! Prometheus metrics (text format 0.0.4, written by hand) on a listener of their own that
//! the policy can only put on loopback or a Unix socket (`[server] metrics`).
//!
//! Counted on the request path: requests by route and decision, request latency, and how
//! long awaited access records took to become durable. Everything else (connections,
//! sessions, lockouts, bans, rate limits, the log's health, the policy version, CRL and
//! certificate expiry) is read from the gateway's state at scrape time.
//!
//! This module must never: be served on the TLS listeners, keep a series per client
//! input (route names come from the policy, and their series are bounded by
//! [`MAX_ROUTE_SERIES`]), or block a request.

use crate::gateway::Gateway;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use sekisho_policy::MetricsListen;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// Route names kept at most (each with its decisions); beyond, new names count under route
/// `_other` (only a long run of reloads that rename routes gets there).
pub const MAX_ROUTE_SERIES: usize = 1024;
/// Scrapes served at once; more connections are closed at once.
pub const MAX_SCRAPERS: usize = 4;
/// Time a scraper gets to send its request head.
pub const SCRAPE_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The decisions an access record can carry, in the order of [`Metrics::requests`]' arrays.
const DECISIONS: [&str; 4] = ["allow", "deny", "login", "gateway"];

/// The counters the request path moves.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Per route name: one count per decision of [`DECISIONS`]. Looked up by `&str`, so
    /// counting a request allocates nothing once its route has been seen.
    requests: Mutex<HashMap<String, [u64; DECISIONS.len()]>>,
    latency: Histogram,
    audit_commit: Histogram,
    audit_waiting: AtomicI64,
}

/// Counts per bucket are kept apart (one atomic add per observation) and summed into
/// Prometheus' cumulative buckets when rendered.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| secs <= *bound)
            && let Some(n) = self.buckets.get(i)
        {
            n.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

impl Metrics {
    /// One answered request: its route (empty when none matched) and decision.
    pub fn request(&self, route: &str, decision: &'static str, took: Duration) {
        self.latency.observe(took);
        let Some(d) = DECISIONS.iter().position(|x| *x == decision) else {
            return;
        };
        let mut map = lock(&self.requests);
        let counts = if map.contains_key(route) {
            map.get_mut(route)
        } else if map.len() < MAX_ROUTE_SERIES {
            Some(map.entry(route.to_owned()).or_default())
        } else {
            Some(map.entry("_other".to_owned()).or_default())
        };
        if let Some(n) = counts.and_then(|c| c.get_mut(d)) {
            *n += 1;
        }
    }

    /// An awaited access record is about to be submitted: it counts as waiting until the
    /// returned guard is dropped (also when the request is abandoned mid-way), and its wait
    /// is observed then.
    pub fn audit_wait(&self) -> AuditWait<'_> {
        self.audit_waiting.fetch_add(1, Ordering::Relaxed);
        AuditWait {
            metrics: self,
            since: Instant::now(),
        }
    }

    /// The whole exposition, read from `gw` now.
    pub fn render(&self, gw: &Gateway) -> String {
        let mut out = String::with_capacity(8192);
        let active = gw.active();
        let now = gw.clock.unix_seconds();

        let _ = writeln!(
            out,
            "# HELP sekisho_requests_total Requests answered, by route (empty: none matched) and decision.\n\
             # TYPE sekisho_requests_total counter"
        );
        let mut series: Vec<(String, [u64; DECISIONS.len()])> =
            lock(&self.requests).iter().map(|(k, v)| (k.clone(), *v)).collect();
        series.sort();
        for (route, counts) in series {
            for (decision, n) in DECISIONS.iter().zip(counts) {
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "sekisho_requests_total{{route=\"{}\",decision=\"{decision}\"}} {n}",
                        escape(&route)
                    );
                }
            }
        }
        self.latency.render(
            &mut out,
            "sekisho_request_duration_seconds",
            "Time from the request head to the answer (record durable).",
        );

        gauge(
            &mut out,
            "sekisho_connections_open",
            "Client connections open now.",
            gw.conns.total(),
        );
        if let Some(auth) = gw.auth.get() {
            if let Ok(n) = auth.count_sessions(&active.policy) {
                gauge(
                    &mut out,
                    "sekisho_sessions_active",
                    "Second-factor sessions within their timeouts.",
                    n,
                );
            }
            counter(
                &mut out,
                "sekisho_lockouts_total",
                "Lockouts begun (user names and addresses) since start.",
                auth.lockouts_started(),
            );
        }

        let g = gw.guard.stats(Instant::now());
        counter(
            &mut out,
            "sekisho_bans_total",
            "Client addresses banned after repeated denials since start.",
            g.bans_total,
        );
        gauge(&mut out, "sekisho_banned_addresses", "Addresses banned now.", g.banned);
        gauge(
            &mut out,
            "sekisho_tracked_addresses",
            "Addresses in the bounded ban and rate-limit table.",
            g.tracked,
        );
        let _ = writeln!(
            out,
            "# HELP sekisho_rate_limited_total Requests refused with 429 by a rate limit.\n\
             # TYPE sekisho_rate_limited_total counter\n\
             sekisho_rate_limited_total{{scope=\"login\"}} {}\n\
             sekisho_rate_limited_total{{scope=\"request\"}} {}",
            g.login_limited_total, g.request_limited_total
        );
        counter(
            &mut out,
            "sekisho_banned_connections_closed_total",
            "Connections from banned addresses closed at accept.",
            g.closed_at_accept_total,
        );

        let audit = gw.audit.health();
        gauge(
            &mut out,
            "sekisho_audit_writable",
            "1 when the access log is being written, 0 when protected requests fail closed.",
            usize::from(audit.writable),
        );
        if let Some(seq) = audit.last_seq {
            gauge(
                &mut out,
                "sekisho_audit_last_seq",
                "Sequence number of the last durable log record.",
                seq,
            );
        }
        gauge(
            &mut out,
            "sekisho_audit_waiting_records",
            "Access records submitted and not yet durable (requests waiting for fsync).",
            self.audit_waiting.load(Ordering::Relaxed).max(0),
        );
        self.audit_commit.render(
            &mut out,
            "sekisho_audit_commit_seconds",
            "Durability lag: from submitting an access record to its batch being fsynced.",
        );

        let _ = writeln!(
            out,
            "# HELP sekisho_policy_info The active policy (value always 1).\n\
             # TYPE sekisho_policy_info gauge\n\
             sekisho_policy_info{{sha256=\"{}\",commit=\"{}\"}} 1",
            escape(&active.version.sha256),
            escape(active.version.git_commit.as_deref().unwrap_or("unknown"))
        );
        gauge(
            &mut out,
            "sekisho_policy_generation",
            "Configuration generation (policy reloads and CRL changes).",
            active.generation,
        );
        if let Some(next) = active.tls.crl.next_update() {
            gauge(
                &mut out,
                "sekisho_device_crl_expiry_seconds",
                "Seconds until the device CRL's nextUpdate (negative: stale, no device is identified).",
                next - now,
            );
        }
        if let Some(not_after) = active.tls.server_not_after {
            gauge(
                &mut out,
                "sekisho_server_certificate_expiry_seconds",
                "Seconds until the server certificate expires.",
                not_after - now,
            );
        }
        out
    }
}

/// One access record waiting to be durable (see [`Metrics::audit_wait`]).
#[derive(Debug)]
pub struct AuditWait<'a> {
    metrics: &'a Metrics,
    since: Instant,
}

impl Drop for AuditWait<'_> {
    fn drop(&mut self) {
        self.metrics.audit_waiting.fetch_sub(1, Ordering::Relaxed);
        self.metrics.audit_commit.observe(self.since.elapsed());
    }
}

fn gauge(out: &mut String, name: &str, help: &str, v: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
}

/// A label value: backslash, double quote and line feed escaped (format 0.0.4).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A bound metrics listener.
#[derive(Debug)]
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, std::path::PathBuf),
}

/// The metrics listener bound before the runtime (and before the process narrows itself:
/// after Landlock and the uid drop it could not create a socket file where the owner asked).
#[derive(Debug)]
pub enum StdListener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener, std::path::PathBuf),
}

impl StdListener {
    /// The listener for the runtime (call inside it).
    pub fn into_tokio(self) -> std::io::Result<Listener> {
        Ok(match self {
            StdListener::Tcp(l) => Listener::Tcp(tokio::net::TcpListener::from_std(l)?),
            StdListener::Unix(l, path) => {
                l.set_nonblocking(true)?;
                Listener::Unix(tokio::net::UnixListener::from_std(l)?, path)
            }
        })
    }
}

/// Binds the metrics listener. A Unix socket left by a previous run is replaced; any other
/// file at that path is refused.
pub fn bind(at: &MetricsListen) -> anyhow::Result<Listener> {
    Ok(bind_std(at)?.into_tokio()?)
}

/// [`bind`] without a runtime.
pub fn bind_std(at: &MetricsListen) -> anyhow::Result<StdListener> {
    use anyhow::Context as _;
    match at {
        // Bound like the TLS listeners (SO_REUSEADDR: a restart is not refused while old
        // scrape connections linger in TIME_WAIT).
        MetricsListen::Tcp(addr) => Ok(StdListener::Tcp(
            crate::server::bind_std(*addr).with_context(|| format!("cannot listen on {addr} for metrics"))?,
        )),
        MetricsListen::Unix(path) => {
            use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
            let path = std::path::PathBuf::from(path);
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                anyhow::ensure!(
                    meta.file_type().is_socket(),
                    "{}: exists and is not a socket; refusing to replace it with the metrics socket",
                    path.display()
                );
                std::fs::remove_file(&path).with_context(|| format!("removing the old {}", path.display()))?;
            }
            let l = std::os::unix::net::UnixListener::bind(&path)
                .with_context(|| format!("cannot listen on {} for metrics", path.display()))?;
            // Owner and group (give the scraper the group), nobody else.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
            Ok(StdListener::Unix(l, path))
        }
    }
}

/// Serves `GET /metrics` until `stop` turns true; anything else gets 404.
pub async fn serve(gw: Arc<Gateway>, listener: Listener, mut stop: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(MAX_SCRAPERS));
    loop {
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            _ = stop.changed() => break,
        };
        let Some(io) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let gw = gw.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let gw = gw.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&gw, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(SCRAPE_HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(io, service);
            let _ = tokio::time::timeout(SCRAPE_HEADER_TIMEOUT * 2, conn).await;
            drop(permit);
        });
    }
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
}

type Io = TokioIo<Box<dyn IoStream>>;

trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> IoStream for T {}

async fn accept(listener: &Listener) -> Option<Io> {
    match listener {
        Listener::Tcp(l) => l
            .accept()
            .await
            .ok()
            .map(|(s, _)| TokioIo::new(Box::new(s) as Box<dyn IoStream>)),
        Listener::Unix(l, _) => l
            .accept()
            .await
            .ok()
            .map(|(s, _)| TokioIo::new(Box::new(s) as Box<dyn IoStream>)),
    }
}

fn answer(gw: &Gateway, req: &Request<Incoming>) -> Response<Full<bytes::Bytes>> {
    let (status, kind, body) = if req.uri().path() == "/metrics" && req.method() == http::Method::GET {
        (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            gw.metrics.render(gw),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: GET /metrics\n".to_owned(),
        )
    };
    let mut r = Response::new(Full::new(bytes::Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(20));
        let mut out = String::new();
        h.render(&mut out, "x", "h");
        assert!(out.contains("x_bucket{le=\"0.001\"} 0\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"10\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 2\n"), "{out}");
        assert!(out.contains("x_count 2\n"), "{out}");
    }

    #[test]
    fn route_series_are_bounded() {
        let m = Metrics::default();
        for i in 0..MAX_ROUTE_SERIES + 10 {
            m.request(&format!("r{i}"), "allow", Duration::ZERO);
        }
        let map = lock(&m.requests);
        assert_eq!(map.len(), MAX_ROUTE_SERIES + 1);
        assert_eq!(map.get("_other").map(|c| c[0]), Some(10));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
