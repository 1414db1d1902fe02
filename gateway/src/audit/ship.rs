//! The remote copy: every record (or only the log's own records: checkpoints, file headers,
//! retention and drop notes) sent off the host, as RFC 5424 syslog messages over TLS with
//! RFC 5425 octet-counting framing, or as JSON batches POSTed over HTTPS, so that deleting
//! or cutting the whole local log is noticed (`sekisho log verify DIR --remote COPY`).
//!
//! The writer offers each line once it is fsynced ([`Shipper::offer`]): a `try_send` on a
//! bounded queue, never a wait, so shipping can neither block nor slow the request path.
//! A full queue drops the line and says so (the writer counts drops and writes them as a
//! `remote_dropped` record, which is shipped in turn). One thread with its own small tokio
//! runtime drains the queue: connect (rustls with ring, the CA of `ca_file` or the system's
//! roots), send batches, and on any failure reconnect after a doubling pause
//! (`REMOTE_RETRY_MIN` up to `[log] remote_retry_max`), sending again the batch that
//! failed. HTTPS acknowledges each batch (2xx), so nothing taken from the queue is lost;
//! syslog has no acknowledgement, so what a connection had accepted just before it died
//! can be lost (the next checkpoint is sent either way).
//!
//! Must never: block the writer, hold more than the queue's limit, or send anything but
//! lines the writer already made durable.

use super::AuditError;
use super::chain;
use super::limits::{
    REMOTE_CONNECT_TIMEOUT, REMOTE_FLUSH_AT_STOP, REMOTE_MAX_WRITE_BYTES, REMOTE_RETRY_MIN, REMOTE_WRITE_TIMEOUT,
};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use sekisho_policy::{RemoteTarget, Ship};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

/// Where and how the log is shipped (the policy's `[log.remote]` with the gateway's name).
#[derive(Debug, Clone)]
pub struct Remote {
    pub target: RemoteTarget,
    pub ca_file: Option<PathBuf>,
    pub ship: Ship,
    /// Lines waiting to be sent, at most.
    pub queue: usize,
    pub retry_max: Duration,
    /// The syslog HOSTNAME field: the gateway's first served host name.
    pub hostname: String,
}

impl Remote {
    /// The policy's `[log.remote]`, if any.
    pub fn from_policy(policy: &sekisho_policy::Policy) -> Option<Remote> {
        let r = policy.log.remote.as_ref()?;
        Some(Remote {
            target: r.target.clone(),
            ca_file: r.ca_file.as_ref().map(PathBuf::from),
            ship: r.ship,
            queue: policy.log.remote_queue,
            retry_max: policy.log.remote_retry_max,
            hostname: policy.server.hostnames.first().cloned().unwrap_or_default(),
        })
    }
}

/// The writer's end of the shipping queue.
#[derive(Debug)]
pub(crate) struct Shipper {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    ship: Ship,
    thread: Option<std::thread::JoinHandle<()>>,
    done: std::sync::mpsc::Receiver<()>,
    queue: usize,
}

impl Shipper {
    /// Builds the TLS client (reading `ca_file` now, so a wrong path stops the start) and
    /// starts the shipping thread.
    pub(crate) fn start(remote: Remote) -> Result<Shipper, AuditError> {
        let bad = |what: String| AuditError::new(Path::new("[log.remote]"), std::io::Error::other(what));
        let (host, port, protocol) = match &remote.target {
            RemoteTarget::Syslog { host, port } => (host.clone(), *port, Protocol::Syslog),
            RemoteTarget::Https { url } => {
                let parsed = url::Url::parse(url).map_err(|e| bad(format!("https {url}: {e}")))?;
                let host = parsed.host_str().ok_or_else(|| bad(format!("https {url}: no host")))?;
                let port = parsed
                    .port_or_known_default()
                    .ok_or_else(|| bad(format!("https {url}: no port")))?;
                let authority = match parsed.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host.to_owned(),
                };
                let path = match parsed.query() {
                    Some(q) => format!("{}?{q}", parsed.path()),
                    None => parsed.path().to_owned(),
                };
                let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
                (bare, port, Protocol::Https { authority, path })
            }
        };
        let config = client_config(remote.ca_file.as_deref())
            .map_err(|e| AuditError::new(remote.ca_file.as_deref().unwrap_or(Path::new("[log.remote]")), e))?;
        let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| bad(format!("{host}: {e}")))?;
        let (tx, rx) = mpsc::channel(remote.queue.max(1));
        let (done_tx, done) = std::sync::mpsc::channel();
        let what = match &protocol {
            Protocol::Syslog => "syslog over TLS",
            Protocol::Https { .. } => "HTTPS",
        };
        let peer = Peer {
            host,
            port,
            name,
            connector: tokio_rustls::TlsConnector::from(config),
            hostname: remote.hostname.clone(),
            retry_max: remote.retry_max.max(REMOTE_RETRY_MIN),
            protocol,
        };
        let receiver = peer.addr();
        let thread = std::thread::Builder::new()
            .name("sekisho-ship".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt.block_on(peer.run(rx)),
                    Err(e) => tracing::error!(error = %e, "the log shipper cannot start its runtime"),
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| AuditError::new(Path::new("[log.remote]"), e))?;
        tracing::info!(%receiver, protocol = what, "the access log is shipped to a remote receiver");
        Ok(Shipper {
            tx: Some(tx),
            ship: remote.ship,
            thread: Some(thread),
            done,
            queue: remote.queue,
        })
    }

    /// Offers the durable lines in `bytes` (each ending in `\n`); returns how many were
    /// dropped because the queue was full. Never waits.
    pub(crate) fn offer(&self, bytes: &[u8]) -> u64 {
        let Some(tx) = &self.tx else { return 0 };
        let mut dropped = 0;
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if self.ship == Ship::Checkpoints
                && !chain::envelope(line).is_some_and(|e| chain::META_KINDS.contains(&e.kind))
            {
                continue;
            }
            if tx.try_send(line.to_vec()).is_err() {
                dropped += 1;
            }
        }
        dropped
    }

    /// The queue's limit (named in `remote_dropped` records).
    pub(crate) fn queue(&self) -> usize {
        self.queue
    }

    /// Closes the queue and gives what is left [`REMOTE_FLUSH_AT_STOP`] to reach the
    /// receiver.
    pub(crate) fn finish(mut self) {
        self.tx = None;
        match self.done.recv_timeout(REMOTE_FLUSH_AT_STOP) {
            Ok(()) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
            Err(_) => tracing::error!(
                "the remote log receiver did not take the last records in time; they are only in the local log"
            ),
        }
    }
}

/// How the receiver is spoken to.
enum Protocol {
    /// RFC 5425 frames of RFC 5424 messages on one long TLS connection.
    Syslog,
    /// One POST per batch on a keep-alive HTTP/1.1 connection over TLS.
    Https { authority: String, path: String },
}

/// The receiver, as the shipping thread sees it.
struct Peer {
    host: String,
    port: u16,
    name: rustls_pki_types::ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    hostname: String,
    retry_max: Duration,
    protocol: Protocol,
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// An open connection to the receiver.
enum Conn {
    Syslog(Box<Tls>),
    Https {
        sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        driver: tokio::task::JoinHandle<()>,
    },
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Conn::Https { driver, .. } = self {
            driver.abort();
        }
    }
}

/// The JSON body of one HTTPS batch: each record as a string holding its exact line, so a
/// receiver keeps the bytes the chain hashed whatever its JSON library does.
#[derive(serde::Serialize)]
struct Batch<'a> {
    gateway: &'a str,
    records: Vec<std::borrow::Cow<'a, str>>,
}

impl Peer {
    async fn run(self, mut rx: mpsc::Receiver<Vec<u8>>) {
        let pid = std::process::id();
        let mut pause = REMOTE_RETRY_MIN;
        // Lines taken from the queue but not yet acknowledged (HTTPS) or written (syslog);
        // kept across a reconnect.
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut failing = false;
        let mut conn: Option<Conn> = None;
        let mut stopping_since: Option<std::time::Instant> = None;
        loop {
            if pending.is_empty() {
                match rx.recv().await {
                    Some(line) => pending.push(line),
                    None => {
                        if let Some(Conn::Syslog(tls)) = conn.as_mut() {
                            let _ = tokio::time::timeout(REMOTE_WRITE_TIMEOUT, tls.shutdown()).await;
                        }
                        return;
                    }
                }
                let mut bytes = pending.iter().map(Vec::len).sum::<usize>();
                while bytes < REMOTE_MAX_WRITE_BYTES {
                    match rx.try_recv() {
                        Ok(line) => {
                            bytes += line.len();
                            pending.push(line);
                        }
                        Err(_) => break,
                    }
                }
            }
            let sent = match conn.as_mut() {
                Some(c) => self.send(c, &pending, pid).await,
                None => match self.connect().await {
                    Ok(mut c) => {
                        let r = self.send(&mut c, &pending, pid).await;
                        conn = Some(c);
                        r
                    }
                    Err(e) => Err(format!("connect: {e}")),
                },
            };
            match sent {
                Ok(()) => {
                    pending.clear();
                    if failing {
                        tracing::warn!(receiver = %self.addr(), "remote log receiver reachable again");
                    }
                    failing = false;
                    pause = REMOTE_RETRY_MIN;
                }
                Err(e) => {
                    conn = None;
                    if !failing || pause >= self.retry_max {
                        tracing::error!(
                            receiver = %self.addr(),
                            error = %e,
                            retry_in_ms = pause.as_millis() as u64,
                            "REMOTE LOG RECEIVER UNREACHABLE: records wait in the queue (dropped and counted when it is full)"
                        );
                    }
                    failing = true;
                    // Stopping: what is left gets a bounded time, then only the local log has it.
                    if rx.is_closed() {
                        let since = *stopping_since.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() >= REMOTE_FLUSH_AT_STOP {
                            return;
                        }
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.retry_max);
                }
            }
        }
    }

    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    async fn connect(&self) -> std::io::Result<Conn> {
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
            tcp.set_nodelay(true)?;
            let tls = self.connector.connect(self.name.clone(), tcp).await?;
            match self.protocol {
                Protocol::Syslog => Ok(Conn::Syslog(Box::new(tls))),
                Protocol::Https { .. } => {
                    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                        .await
                        .map_err(std::io::Error::other)?;
                    let driver = tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    Ok(Conn::Https { sender, driver })
                }
            }
        };
        match tokio::time::timeout(REMOTE_CONNECT_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
        }
    }

    /// Sends one batch; `Ok` only once it was written (syslog) or acknowledged with a 2xx
    /// (HTTPS).
    async fn send(&self, conn: &mut Conn, lines: &[Vec<u8>], pid: u32) -> Result<(), String> {
        let sending = async {
            match (conn, &self.protocol) {
                (Conn::Syslog(tls), _) => {
                    let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 96).sum());
                    for line in lines {
                        frame(&mut buf, line, &self.hostname, pid);
                    }
                    tls.write_all(&buf).await.map_err(|e| e.to_string())?;
                    tls.flush().await.map_err(|e| e.to_string())
                }
                (Conn::Https { sender, .. }, Protocol::Https { authority, path }) => {
                    let batch = Batch {
                        gateway: &self.hostname,
                        records: lines.iter().map(|l| String::from_utf8_lossy(l)).collect(),
                    };
                    let body = serde_json::to_vec(&batch).map_err(|e| e.to_string())?;
                    let request = http::Request::post(path.as_str())
                        .header(http::header::HOST, authority.as_str())
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .header(http::header::USER_AGENT, "sekisho-log")
                        .body(Full::new(Bytes::from(body)))
                        .map_err(|e| e.to_string())?;
                    sender.ready().await.map_err(|e| e.to_string())?;
                    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
                    let status = response.status();
                    // Read the answer so the connection can carry the next batch.
                    let _ = response.into_body().collect().await;
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(format!("the receiver answered {status}"))
                    }
                }
                (Conn::Https { .. }, Protocol::Syslog) => Err("connection of another protocol".into()),
            }
        };
        match tokio::time::timeout(REMOTE_WRITE_TIMEOUT, sending).await {
            Ok(r) => r,
            Err(_) => Err("the receiver stopped reading".into()),
        }
    }
}

/// Facility 13 (log audit), RFC 5424 §6.2.1.
const FACILITY_LOG_AUDIT: u8 = 13;

/// Appends one record as an RFC 5425 frame: `MSG-LEN SP SYSLOG-MSG`, where SYSLOG-MSG is
/// `<PRI>1 TIMESTAMP HOSTNAME sekisho PROCID MSGID - BOM MSG` (RFC 5424) and MSG is the
/// record's exact line. MSGID is the record's kind; the log's own records (checkpoints,
/// file headers) are notices (severity 5), the others informational (6).
pub(crate) fn frame(out: &mut Vec<u8>, line: &[u8], hostname: &str, pid: u32) {
    let env = chain::envelope(line);
    let kind = env.as_ref().map_or("-", |e| e.kind);
    let severity = if chain::META_KINDS.contains(&kind) { 5 } else { 6 };
    let time = env.as_ref().map_or_else(|| "-".to_owned(), |e| rfc3339(e.time));
    let msg = format!(
        "<{}>1 {time} {} sekisho {pid} {} - \u{feff}",
        FACILITY_LOG_AUDIT * 8 + severity,
        header_field(hostname, 255),
        header_field(kind, 32),
    );
    out.extend_from_slice((msg.len() + line.len()).to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg.as_bytes());
    out.extend_from_slice(line);
}

/// A header field: printable US-ASCII only, at most `max` characters, `-` when empty.
fn header_field(s: &str, max: usize) -> String {
    let f: String = s.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if f.is_empty() { "-".into() } else { f }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC).
pub(crate) fn rfc3339(unix: i64) -> String {
    crate::clock::format_utc(unix, 'T', "Z")
}

/// rustls with ring only: the CA of `ca_file`, else the system's roots.
fn client_config(ca_file: Option<&Path>) -> std::io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(std::io::Error::other)? {
                let cert = cert.map_err(std::io::Error::other)?;
                roots.add(cert).map_err(std::io::Error::other)?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(std::io::Error::other(
            "no CA certificate to trust for the remote log receiver",
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_framed_as_rfc5425_around_an_rfc5424_message() {
        let line = format!(
            r#"{{"seq":7,"prev":"{}","time":1767225600,"kind":"checkpoint","epoch":0,"sig":"ab"}}"#,
            "0".repeat(64)
        );
        let line = line.as_bytes();
        let mut out = Vec::new();
        frame(&mut out, line, "gw.example.jp", 42);
        let text = String::from_utf8(out).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert_eq!(
            msg,
            format!(
                "<109>1 2026-01-01T00:00:00Z gw.example.jp sekisho 42 checkpoint - \u{feff}{}",
                std::str::from_utf8(line).unwrap()
            )
        );
        let mut out = Vec::new();
        let access = format!(r#"{{"seq":8,"prev":"{}","time":0,"kind":"access"}}"#, "0".repeat(64));
        frame(&mut out, access.as_bytes(), "", 1);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains(" <110>1 1970-01-01T00:00:00Z - sekisho 1 access - ")
        );
    }
}
