//! `sekisho run`: load the policy (refusing to start on any error), open the audit log,
//! bind every listener, then serve until SIGTERM/SIGINT, reloading on SIGHUP and picking
//! up device CRL changes as they happen.

use crate::audit::{self, AuditLog, Event};
use crate::clock::SharedClock;
use crate::gateway::{Gateway, load_candidate};
use crate::listener::accept_loop;
use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Runs the gateway until it is told to stop.
pub fn run(policy_path: PathBuf, clock: SharedClock) -> anyhow::Result<()> {
    let acme = Arc::new(crate::acme::Certs::default());
    let (policy, tls) = load_candidate(&policy_path, &acme)?;
    if policy.server.acme().is_some() {
        // A certificate kept from an earlier run serves at once; the renewal task decides
        // whether it is due.
        acme.load_stored(std::path::Path::new(&policy.server.state_dir), clock.unix_seconds());
    }
    let audit = open_audit(&policy, clock.clone())?;
    let auth = crate::auth::Auth::open(std::path::Path::new(&policy.server.state_dir), clock.clone())
        .context("opening the state (sessions and factors)")?;
    let listen = policy.server.listen.clone();
    let http_listen = policy.server.http_listen.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sekisho")
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let gw = Arc::new(Gateway::new(policy_path, policy, tls, clock, audit, acme));
        crate::auth::install(&gw, auth);
        let mut listeners = Vec::new();
        for addr in &listen {
            listeners.push(bind(*addr).with_context(|| format!("cannot listen on {addr}"))?);
        }
        let mut plain = Vec::new();
        for addr in &http_listen {
            plain.push(bind(*addr).with_context(|| format!("cannot listen on {addr} (http_listen)"))?);
        }
        serve_all(gw, listeners, plain).await
    })
}

/// The access log as `[log]` says, shipped to `[log.remote]` if set. The benchmark-only
/// switch that turns it off is refused unless the environment says this is a benchmark.
fn open_audit(policy: &sekisho_policy::Policy, clock: SharedClock) -> anyhow::Result<AuditLog> {
    let log_dir = std::path::Path::new(&policy.server.log_dir);
    if policy.log.danger_disable_audit {
        if std::env::var("SEKISHO_DANGER_BENCHMARK").as_deref() != Ok("1") {
            anyhow::bail!(
                "[log] danger_disable_audit = true turns the access log off; it is for the benchmark only (set SEKISHO_DANGER_BENCHMARK=1 there), never for a gateway in service"
            );
        }
        tracing::error!(
            "DANGER: the access log is OFF ([log] danger_disable_audit, benchmark only): nothing is recorded"
        );
        eprintln!("sekisho: DANGER: the access log is off (benchmark only)");
        return Ok(AuditLog::danger_disabled(log_dir));
    }
    Ok(AuditLog::open_shipping(
        log_dir,
        std::path::Path::new(&policy.server.state_dir),
        clock,
        audit::Settings::from_policy(&policy.log),
        audit::Remote::from_policy(policy),
    )?)
}

/// Serves on already-bound listeners until SIGTERM or SIGINT.
pub async fn serve(gw: Arc<Gateway>, listeners: Vec<TcpListener>) -> anyhow::Result<()> {
    serve_all(gw, listeners, Vec::new()).await
}

/// Serves on already-bound TLS listeners and plain (`http_listen`) ones until SIGTERM or
/// SIGINT, keeping an ACME policy's certificate valid meanwhile.
pub async fn serve_all(gw: Arc<Gateway>, listeners: Vec<TcpListener>, plain: Vec<TcpListener>) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let counts = gw.conns.clone();
    let mut bound = Vec::new();
    for l in listeners {
        let addr = l.local_addr()?;
        tracing::info!(addr = %addr, "listening");
        bound.push(addr);
        tokio::spawn(accept_loop(gw.clone(), l, counts.clone(), stop_rx.clone()));
    }
    for l in plain {
        let addr = l.local_addr()?;
        tracing::info!(addr = %addr, "listening (plain HTTP: ACME http-01 and redirects)");
        bound.push(addr);
        tokio::spawn(crate::plain::accept_loop(gw.clone(), l, stop_rx.clone()));
    }
    let _ = gw.listening.set(bound);
    tokio::spawn(crate::acme::maintain(gw.clone(), stop_rx.clone()));
    if let Some(at) = gw.active().policy.server.metrics.clone() {
        let listener = crate::metrics::bind(&at)?;
        tracing::info!(metrics = ?at, "serving metrics");
        tokio::spawn(crate::metrics::serve(gw.clone(), listener, stop_rx.clone()));
    }
    tokio::spawn(sweep_bans(gw.clone(), stop_rx.clone()));
    tokio::spawn(sweep_state(gw.clone(), stop_rx.clone()));
    tokio::spawn(watch_device_crl(gw.clone(), stop_rx.clone()));
    tokio::spawn(crate::reload::watch_policy_file(gw.clone(), stop_rx.clone()));
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tracing::info!(policy = %gw.active().policy.id, "policy active");
    record_start(&gw).await?;
    eprintln!("sekisho: ready");
    loop {
        tokio::select! {
            _ = hup.recv() => match gw.reload() {
                Ok(active) => {
                    tracing::info!(policy = %active.policy.id, generation = active.generation, "policy reloaded");
                    gw.audit.record_detached(&Event::PolicyLoaded { policy: &active.policy.id, generation: active.generation, trigger: "sighup" });
                }
                Err(e) => {
                    tracing::error!("policy reload refused; the previous policy keeps serving:\n{e}");
                    gw.audit.record_detached(&Event::PolicyRejected { trigger: "sighup", error: audit::clip(&e.to_string()) });
                    crate::reload::notify_refused(&gw, "sighup", &e.to_string());
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping: no new connections; finishing open requests");
    let _ = stop_tx.send(true);
    let grace = gw.active().policy.limits.shutdown_grace;
    let deadline = Instant::now() + grace;
    while counts.total() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(open = counts.total(), "stopped");
    record_stop(&gw, counts.total()).await;
    Ok(())
}

/// The first records of a run: the start, and the policy it serves. Durable before the
/// gateway says it is ready.
async fn record_start(gw: &Gateway) -> anyhow::Result<()> {
    let active = gw.active();
    let start = Event::Start {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        policy: &active.policy.id,
    };
    gw.audit.record(&start).await.context("cannot write the start record")?;
    let loaded = Event::PolicyLoaded {
        policy: &active.policy.id,
        generation: active.generation,
        trigger: "start",
    };
    gw.audit
        .record(&loaded)
        .await
        .context("cannot write the policy record")?;
    Ok(())
}

/// The last record of a run, then a final seal and fsync.
async fn record_stop(gw: &Gateway, open: usize) {
    if let Err(e) = gw.audit.record(&Event::Stop { open }).await {
        tracing::error!(error = %e, "cannot write the stop record");
    }
    gw.audit.close();
}

/// Ends expired bans (each end is an audit event) and forgets expired counters, once a
/// second.
async fn sweep_bans(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        let limits = gw.active().policy.limits;
        let ended = gw.guard.sweep(&limits, Instant::now());
        crate::pipeline::record_unbans(&gw, &ended);
    }
}

/// Once a minute, removes expired ceremonies and spent lockout counters from the state
/// store (both are made by whatever clients send; see `auth::sweep`).
async fn sweep_state(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stop.changed() => return,
        }
        let Some(auth) = gw.auth.get().cloned() else {
            continue;
        };
        let policy = gw.active().policy.clone();
        match tokio::task::spawn_blocking(move || auth.sweep(&policy)).await {
            Ok(Ok(swept)) => tracing::debug!(?swept, "state swept"),
            Ok(Err(e)) => tracing::warn!(error = %e, "sweeping the state store failed"),
            Err(e) => tracing::warn!(error = %e, "the state sweep panicked"),
        }
    }
}

/// Polls the device CRL file and, when its bytes change, rebuilds the TLS configuration
/// and swaps it in. Open connections are not dropped: their next request is judged
/// against the new CRL. A CRL that fails to load leaves the previous one active.
async fn watch_device_crl(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    loop {
        let interval = gw.active().policy.limits.revocation_poll_interval;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let active = gw.active();
        let Some((path, bytes)) = active.tls.crl_source.as_ref() else {
            continue;
        };
        let path = path.clone();
        let current = tokio::fs::read(&path).await;
        match current {
            Ok(now) if &now == bytes => {}
            Ok(_) => match gw.refresh_tls() {
                Ok(next) => {
                    tracing::info!(crl = %path, revoked = next.tls.crl.len(), "device CRL reloaded");
                    gw.audit.record_detached(&Event::DeviceCrlReloaded {
                        crl: &path,
                        revoked: next.tls.crl.len(),
                    });
                }
                Err(e) => {
                    tracing::error!(crl = %path, error = %e, "device CRL changed but cannot be used; keeping the previous one");
                    gw.audit.record_detached(&Event::DeviceCrlRejected {
                        crl: &path,
                        error: audit::clip(&e.to_string()),
                    });
                }
            },
            Err(e) => tracing::error!(crl = %path, error = %e, "device CRL cannot be read; keeping the previous one"),
        }
    }
}

/// Binds a listening socket. IPv6 sockets are IPv6-only, so `0.0.0.0:P` and `[::]:P`
/// can both be listed.
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let domain = Domain::for_address(addr);
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into())?)
}
