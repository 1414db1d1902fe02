//! Accepting connections: the peer address is judged before TLS (an address no route
//! admits is closed at once), connection caps apply (in total and per address), the TLS
//! handshake runs under a deadline, and each connection is served by hyper (HTTP/1.1 or
//! HTTP/2) with an idle deadline, until it ends or the gateway stops.

use crate::device::DeviceCert;
use crate::error::Refusal;
use crate::forwarded::canonical;
use crate::gateway::Gateway;
use crate::pipeline;
use crate::request_line::FragmentWatch;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::UnixTime;
use sekisho_policy::ClientCertMode;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the pipeline knows about the connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The SNI the client sent, lower-case.
    pub sni: Option<String>,
    /// The end-entity client certificate, if one was presented and passed the handshake.
    pub device: Option<DeviceCert>,
    /// The configuration generation the handshake was made under.
    pub generation: u64,
    /// The device CA that verified `device` (its file's SHA-256), to notice a CA change.
    pub device_ca_id: Option<String>,
    pub http2: bool,
}

/// Live connection counts, in total and per address. Entries exist only while a
/// connection does, so the map is bounded by twice `max_connections` (admin networks may go
/// past it; see `Policy::is_admin_address`).
#[derive(Debug, Default)]
pub struct ConnCounts {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Releases one connection's place when dropped.
#[derive(Debug)]
pub struct ConnSlot {
    counts: Arc<ConnCounts>,
    ip: IpAddr,
}

impl ConnCounts {
    pub fn try_take(self: &Arc<Self>, ip: IpAddr, max_total: usize, max_per_ip: usize) -> Option<ConnSlot> {
        let mut map = match self.per_ip.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if self.total.load(Ordering::Relaxed) >= max_total {
            return None;
        }
        let n = map.entry(ip).or_insert(0);
        if *n >= max_per_ip {
            return None;
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(ConnSlot {
            counts: self.clone(),
            ip,
        })
    }

    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut map = match self.counts.per_ip.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
        self.counts.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts on one listener until `stop` turns true.
pub async fn accept_loop(
    gw: Arc<Gateway>,
    listener: TcpListener,
    counts: Arc<ConnCounts>,
    stop: watch::Receiver<bool>,
) {
    let mut stop_accept = stop.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop_accept.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let active = gw.active();
        let ip = canonical(peer.ip());
        let admitted = active.policy.admits_peer(ip);
        // The CA's tls-alpn-01 validation comes from addresses no route names: with that
        // challenge, a peer that is not admitted still gets its ClientHello read, and only
        // an `acme-tls/1` hello is answered (see `serve_connection`).
        let alpn_challenge = active
            .policy
            .server
            .acme()
            .is_some_and(|a| a.challenge == sekisho_policy::AcmeChallenge::TlsAlpn01);
        if !admitted && !alpn_challenge {
            tracing::debug!(peer = %ip, "closed at accept: no route admits this address");
            drop(stream);
            continue;
        }
        if gw.guard.is_banned(ip, Instant::now()) {
            // A banned address gets nothing, not even a TLS handshake. (A banned client
            // behind a trusted proxy is refused with 429 by the pipeline instead.)
            tracing::debug!(peer = %ip, "closed at accept: banned");
            gw.guard.closed_at_accept();
            drop(stream);
            continue;
        }
        let limits = &active.policy.limits;
        // Admin networks keep their share when everyone else's connections are taken.
        let ceiling = if active.policy.is_admin_address(ip) {
            limits.max_connections.saturating_mul(2)
        } else {
            limits.max_connections
        };
        let Some(slot) = counts.try_take(ip, ceiling, limits.max_connections_per_ip) else {
            tracing::debug!(peer = %ip, "closed at accept: connection limit");
            drop(stream);
            continue;
        };
        let gw = gw.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(gw, stream, peer, admitted, stop).await;
            drop(slot);
        });
    }
}

/// The TLS handshake, with the ClientHello read first: an `acme-tls/1` hello during an open
/// tls-alpn-01 challenge gets the challenge configuration and is closed after the
/// handshake; any other hello from a peer no route admits is closed; the rest get the
/// active configuration. `None`: the connection is over.
async fn handshake(
    gw: &Gateway,
    active: &crate::gateway::Active,
    stream: TcpStream,
    peer: SocketAddr,
    admitted: bool,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let handshake = async {
        // No TLS state exists until the client sends its first byte: a connection that
        // sends nothing costs its socket and this future, not rustls' buffers.
        stream.readable().await?;
        let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
        if crate::acme::is_acme_alpn(start.client_hello().alpn()) {
            if let Some(config) = gw.acme.challenge_config().filter(|_| gw.acme.alpn_open()) {
                let mut tls = start.into_stream(config).await?;
                tracing::info!(peer = %peer, "answered an ACME tls-alpn-01 validation");
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
            }
            return Ok(None);
        }
        if !admitted {
            return Ok(None);
        }
        start.into_stream(active.tls.server_config.clone()).await.map(Some)
    };
    match tokio::time::timeout(active.policy.limits.tls_handshake_timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            // Under TLS 1.3 a refused client certificate shows on the client only at its
            // first read: say here why.
            tracing::info!(peer = %peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(peer = %peer, "TLS handshake timed out");
            None
        }
    }
}

async fn serve_connection(
    gw: Arc<Gateway>,
    stream: TcpStream,
    peer: SocketAddr,
    admitted: bool,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    // A second handle on the socket, so that after hyper refused a request (400, 431) and
    // dropped its side, the answer is not destroyed by a TCP reset (see `linger_close`).
    let linger = socket2::SockRef::from(&stream).try_clone().ok();
    let active = gw.active();
    let Some(tls) = handshake(&gw, &active, stream, peer, admitted).await else {
        return;
    };
    // The HTTP side's state (hyper's connection, the service) is allocated only now, on
    // the heap: the future of a connection still in its handshake stays small.
    Box::pin(serve_tls(gw, tls, peer, local, linger, active, stop)).await;
}

/// Serves one connection whose handshake is done: device identity, then hyper until the
/// connection ends, goes idle, or the gateway stops.
async fn serve_tls(
    gw: Arc<Gateway>,
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
    local: SocketAddr,
    linger: Option<socket2::Socket>,
    active: Arc<crate::gateway::Active>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = active.policy.limits;
    let (_, conn) = tls.get_ref();
    let device = match conn.peer_certificates() {
        None => None,
        Some(chain) => {
            let mut cert = match chain.first() {
                Some(ee) => DeviceCert::from_der(ee.as_ref()),
                None => return,
            };
            let now =
                UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(gw.clock.unix_seconds()).unwrap_or(0)));
            if let Err((why, e)) = active.tls.verify_device_chain(chain, now) {
                tracing::info!(peer = %peer, reason = why, error = %e, fingerprint = %cert.fingerprint, "device certificate refused");
                cert.refuse(why);
            }
            Some(cert)
        }
    };
    if active.policy.server.client_certificates == ClientCertMode::Require
        && device.as_ref().is_none_or(|d| d.defect.is_some())
    {
        // A `require` listener serves nobody without a valid device certificate, whatever
        // the route says; rustls checked the chain, this adds the EKU the handshake lets by.
        tracing::info!(peer = %peer, "closed: this listener requires a valid device certificate");
        return;
    }
    let info = Arc::new(ConnInfo {
        peer,
        local,
        sni: conn.server_name().map(str::to_ascii_lowercase),
        device,
        generation: active.generation,
        device_ca_id: active.tls.device_ca_id.clone(),
        http2: conn.alpn_protocol() == Some(b"h2"),
    });
    drop(active);

    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(ActivityIo {
        inner: tls,
        activity: activity.clone(),
        fragments: (!info.http2).then(|| FragmentWatch::new(limits.max_request_line_bytes)),
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(64))
        .keep_alive_interval(None);
    if info.http2 {
        builder = builder.http2_only();
    } else {
        builder = builder.http1_only();
    }

    let svc_activity = activity.clone();
    let gw_for_errors = gw.clone();
    let info_for_errors = info.clone();
    let service = service_fn(move |req| {
        let gw = gw.clone();
        let info = info.clone();
        let activity = svc_activity.clone();
        async move {
            activity.begin();
            let response = if activity.fragment_seen.load(Ordering::Relaxed) {
                pipeline::refuse(&gw, &info, &req, Refusal::BadRequest("fragment_in_target"))
            } else {
                pipeline::handle(&gw, &info, req).await
            };
            activity.end();
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let idle_limit = limits.idle_timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(500).min(idle_limit));
    let mut stopping = false;
    // When the gateway said goodbye to an idle connection. An HTTP/2 client that never
    // answers the PING of a graceful shutdown (or an HTTP/1 one that never reads) would
    // otherwise keep it open for ever.
    let mut idle_goodbye: Option<Instant> = None;
    let grace = limits.shutdown_grace;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    // hyper answers what it cannot parse by itself (400, 431) without
                    // calling the pipeline: record those refusals too.
                    if let Some(refused) = protocol_refusal(e.as_ref()) {
                        pipeline::record_protocol_error(&gw_for_errors, &info_for_errors, refused.0, refused.1);
                        if let Some(socket) = linger {
                            linger_close(socket).await;
                        }
                    }
                }
                return;
            }
            _ = tick.tick() => {
                if !stopping && activity.idle_for() > idle_limit {
                    tracing::debug!(peer = %peer, "idle timeout");
                    stopping = true;
                    idle_goodbye = Some(Instant::now());
                    conn.as_mut().graceful_shutdown();
                } else if idle_goodbye.is_some_and(|at| at.elapsed() > grace) && activity.idle_for() > grace {
                    tracing::debug!(peer = %peer, "closed: the idle connection ignored its shutdown");
                    return;
                }
            }
            changed = stop.changed(), if !stopping => {
                let _ = changed;
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Closes a socket without destroying what was just written to it. Closing while the
/// client is still sending (a 70 KB header block, say) makes the kernel answer with a
/// reset, and the client loses the 431 it was sent. So: stop sending (FIN), read and
/// discard what the client still sends for a short, bounded while, then close.
async fn linger_close(socket: socket2::Socket) {
    /// How long, and how much, to keep draining a refused client.
    const LINGER: Duration = Duration::from_secs(2);
    const LINGER_BYTES: usize = 1 << 20;
    let _ = socket.shutdown(std::net::Shutdown::Write);
    if socket.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(mut stream) = TcpStream::from_std(socket.into()) else {
        return;
    };
    let drain = async {
        let mut buf = [0u8; 16 * 1024];
        let mut total = 0;
        while total < LINGER_BYTES {
            match tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// The refusal hyper made itself, if the connection ended on one: (reason, status).
fn protocol_refusal(e: &(dyn std::error::Error + 'static)) -> Option<(&'static str, u16)> {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_parse_too_large() {
                return Some(("header_too_large", 431));
            }
            if h.is_parse() || h.is_parse_status() {
                return Some(("malformed_request", 400));
            }
            if h.is_timeout() {
                return Some(("header_read_timeout", 408));
            }
            return None;
        }
        source = err.source();
    }
    None
}

/// When a connection last began or ended a request or wrote bytes, and whether a request
/// is being handled.
#[derive(Debug)]
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// A request line with a `#` in its target was read on this connection.
    fragment_seen: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            fragment_seen: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.touch();
    }

    /// How long the connection has been idle; zero while a request is being handled.
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let now = self.start.elapsed();
        now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// An IO wrapper that records when bytes were last written (and watches request lines).
struct ActivityIo<T> {
    inner: T,
    activity: Arc<Activity>,
    fragments: Option<FragmentWatch>,
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        // Reading does not count as activity: bytes that never become a request (an HTTP/2
        // header block trickled in CONTINUATION frames, which has no header-read deadline)
        // must not keep a connection alive. Requests and what the gateway writes do.
        if buf.filled().len() > before {
            let this = &mut *self;
            if let (Some(watch), Some(new)) = (this.fragments.as_mut(), buf.filled().get(before..))
                && watch.feed(new)
            {
                this.activity.fragment_seen.store(true, Ordering::Relaxed);
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
