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

/// Runs the gateway until it is told to stop. With `hardening` (every `sekisho run`), the
/// process binds its listeners, then narrows itself ([`crate::harden`]) before it starts any
/// thread; the demo, which runs its upstream on a thread of its own, passes `None`.
pub fn run(policy_path: PathBuf, clock: SharedClock, hardening: Option<&crate::harden::Options>) -> anyhow::Result<()> {
    let acme = Arc::new(crate::acme::Certs::default());
    // What the process must know before it narrows itself: the policy (one that would not
    // start is refused before anything happens) and its listeners (ports below 1024, such
    // as the ACME http-01 port 80, need root, which the process is about to give up).
    let (policy, _) = load_candidate(&policy_path, &acme)?;
    let mut bound = Vec::new();
    for addr in &policy.server.listen {
        bound.push(bind_std(*addr).with_context(|| format!("cannot listen on {addr}"))?);
    }
    let mut plain_bound = Vec::new();
    for addr in &policy.server.http_listen {
        plain_bound.push(bind_std(*addr).with_context(|| format!("cannot listen on {addr} (http_listen)"))?);
    }
    let metrics_bound = policy
        .server
        .metrics
        .as_ref()
        .map(crate::metrics::bind_std)
        .transpose()?;
    let (policy, tls) = match hardening {
        Some(opts) => {
            crate::harden::apply(&policy_path, &policy, opts)?;
            // Loaded again, under the restrictions every reload will have: a file the
            // hardened process cannot read fails now, not at the first reload.
            load_candidate(&policy_path, &acme)
                .context("the policy loads, but not after hardening (as the --user user, under Landlock)")?
        }
        None => load_candidate(&policy_path, &acme)?,
    };
    if policy.server.acme().is_some() {
        // A certificate kept from an earlier run serves at once; the renewal task decides
        // whether it is due.
        acme.load_stored(std::path::Path::new(&policy.server.state_dir), clock.unix_seconds());
    }
    let audit = open_audit(&policy, clock.clone())?;
    let auth = crate::auth::Auth::open(std::path::Path::new(&policy.server.state_dir), clock.clone())
        .context("opening the state (sessions and factors)")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sekisho")
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let gw = Arc::new(Gateway::new(policy_path, policy, tls, clock, audit, acme));
        crate::auth::install(&gw, auth);
        let mut listeners = Vec::new();
        for l in bound {
            listeners.push(TcpListener::from_std(l)?);
        }
        if crate::harden::is_init() {
            tokio::spawn(crate::harden::reap_children());
        }
        let mut plain = Vec::new();
        for l in plain_bound {
            plain.push(TcpListener::from_std(l)?);
        }
        let metrics = metrics_bound.map(crate::metrics::StdListener::into_tokio).transpose()?;
        serve_with(gw, listeners, plain, metrics).await
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
    let metrics = match gw.active().policy.server.metrics.clone() {
        Some(at) => Some(crate::metrics::bind(&at)?),
        None => None,
    };
    serve_with(gw, listeners, plain, metrics).await
}

/// [`serve_all`] with the metrics listener already bound (before the process narrowed itself).
async fn serve_with(
    gw: Arc<Gateway>,
    listeners: Vec<TcpListener>,
    plain: Vec<TcpListener>,
    metrics: Option<crate::metrics::Listener>,
) -> anyhow::Result<()> {
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
    if let Some(listener) = metrics {
        tracing::info!(metrics = ?gw.active().policy.server.metrics, "serving metrics");
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
    Ok(TcpListener::from_std(bind_std(addr)?)?)
}

/// [`bind`] without a runtime: the socket is bound and listening, non-blocking, ready for
/// [`TcpListener::from_std`] once the runtime runs.
pub fn bind_std(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let domain = Domain::for_address(addr);
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
