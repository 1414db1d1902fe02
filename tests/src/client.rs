//! A raw TLS client: connects from a chosen 127.0.0.x source address, with a chosen SNI and
//! optional client certificate, writes exact bytes and reads what comes back, parsed into
//! responses. It never normalises anything it sends.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::pki::{Credential, Pki};

/// How long to wait for a response (or for the peer to close) before giving up.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Who connects, from where, to what, with which certificate.
#[derive(Clone)]
pub struct ClientSpec {
    pub gateway: SocketAddr,
    pub source: IpAddr,
    pub sni: String,
    pub alpn: Vec<Vec<u8>>,
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClientSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSpec")
            .field("gateway", &self.gateway)
            .field("source", &self.source)
            .field("sni", &self.sni)
            .finish_non_exhaustive()
    }
}

/// The ring provider: the only crypto provider this workspace compiles.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client configuration trusting the test server CA, presenting `device` if given,
/// keeping resumption state in `sessions` (or a fresh cache).
pub fn tls_config(
    pki: &Pki,
    device: Option<&Credential>,
    alpn: &[&[u8]],
    sessions: Option<Arc<dyn ClientSessionStore>>,
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.server_ca.cert_der.clone()).expect("trust the server CA");
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3")
        .with_root_certificates(roots);
    let mut config = match device {
        Some(device) => builder
            .with_client_auth_cert(vec![device.cert_der.clone()], device.key())
            .expect("a usable client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = Resumption::store(sessions.unwrap_or_else(|| Arc::new(ClientSessionMemoryCache::new(32))));
    Arc::new(config)
}

impl ClientSpec {
    /// A client of `gateway` from `source` with SNI `sni`, no client certificate, HTTP/1.1.
    pub fn new(pki: &Pki, gateway: SocketAddr, source: &str, sni: &str) -> ClientSpec {
        ClientSpec {
            gateway,
            source: source.parse().expect("a source address"),
            sni: sni.to_string(),
            alpn: vec![b"http/1.1".to_vec()],
            config: tls_config(pki, None, &[b"http/1.1"], None),
        }
    }

    /// Uses this rustls configuration (client certificate, ALPN, session store).
    pub fn with_config(mut self, config: Arc<ClientConfig>) -> ClientSpec {
        self.alpn = config.alpn_protocols.clone();
        self.config = config;
        self
    }

    /// Presents `device` as the client certificate.
    pub fn with_device(self, pki: &Pki, device: &Credential) -> ClientSpec {
        let alpn: Vec<Vec<u8>> = self.alpn.clone();
        let alpn_refs: Vec<&[u8]> = alpn.iter().map(|p| p.as_slice()).collect();
        let config = tls_config(pki, Some(device), &alpn_refs, None);
        self.with_config(config)
    }

    /// A TCP connection from the source address (no TLS yet).
    pub async fn tcp(&self) -> std::io::Result<TcpStream> {
        let socket = match self.source {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(self.source, 0))?;
        socket.connect(self.gateway).await
    }

    /// TCP + TLS handshake.
    pub async fn connect(&self) -> std::io::Result<Connection> {
        let tcp = self.tcp().await?;
        let name = ServerName::try_from(self.sni.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let tls = tokio::time::timeout(
            READ_TIMEOUT,
            TlsConnector::from(Arc::clone(&self.config)).connect(name, tcp),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
        Ok(Connection {
            tls,
            buffer: Vec::new(),
            closed: false,
        })
    }

    /// Connects, sends `bytes`, reads `responses` responses and returns the exchange.
    pub async fn exchange(&self, bytes: &[u8], responses: usize) -> Exchange {
        match self.connect().await {
            Err(error) => Exchange::failed(format!("connect: {error}")),
            Ok(mut connection) => {
                if let Err(error) = connection.send(bytes).await {
                    return Exchange::failed(format!("write: {error}"));
                }
                connection.read_responses(responses, READ_TIMEOUT).await
            }
        }
    }
}

/// One open TLS connection.
pub struct Connection {
    pub tls: TlsStream<TcpStream>,
    buffer: Vec<u8>,
    closed: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// What came back on a connection.
#[derive(Clone, Debug, Default)]
pub struct Exchange {
    /// Final responses (1xx interim responses are skipped), in order.
    pub responses: Vec<Response>,
    /// The peer closed the connection (EOF or reset) while we read.
    pub closed: bool,
    /// A transport error (connect, handshake, write, read), if any.
    pub error: Option<String>,
}

impl Exchange {
    fn failed(error: String) -> Exchange {
        Exchange {
            responses: Vec::new(),
            closed: true,
            error: Some(error),
        }
    }

    /// The first response's status.
    pub fn status(&self) -> Option<u16> {
        self.responses.first().map(|r| r.status)
    }

    /// A one-line account for failure messages.
    pub fn describe(&self) -> String {
        let statuses: Vec<u16> = self.responses.iter().map(|r| r.status).collect();
        format!(
            "statuses {statuses:?}, closed {}, error {:?}, first body {:?}",
            self.closed,
            self.error,
            self.responses
                .first()
                .map(|r| String::from_utf8_lossy(&r.body).chars().take(200).collect::<String>())
        )
    }
}

/// One parsed HTTP/1.1 response.
#[derive(Clone, Debug, Default)]
pub struct Response {
    /// The status line's protocol, e.g. `HTTP/1.1`.
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Connection {
    /// Writes `bytes` exactly.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(bytes).await?;
        self.tls.flush().await
    }

    /// Whether the peer has closed the connection (as far as we have read).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Reads until `count` final responses are complete, the peer closes, or `timeout`.
    pub async fn read_responses(&mut self, count: usize, timeout: Duration) -> Exchange {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut exchange = Exchange::default();
        loop {
            while let Some((response, used)) = parse_response(&self.buffer, self.closed) {
                self.buffer.drain(..used);
                if !(100..200).contains(&response.status) {
                    exchange.responses.push(response);
                }
            }
            if exchange.responses.len() >= count || self.closed {
                exchange.closed = self.closed;
                return exchange;
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match tokio::time::timeout_at(deadline, self.tls.read(&mut chunk)).await {
                Err(_) => {
                    exchange.error = Some("timed out waiting for a response".into());
                    return exchange;
                }
                Ok(Ok(0)) => self.closed = true,
                Ok(Ok(n)) => self.buffer.extend_from_slice(&chunk[..n]),
                Ok(Err(error)) => {
                    self.closed = true;
                    exchange.error = Some(format!("read: {error}"));
                }
            }
        }
    }

    /// Waits up to `timeout` for the peer to close; true if it did.
    pub async fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.closed {
            let mut chunk = vec![0u8; 64 * 1024];
            match tokio::time::timeout_at(deadline, self.tls.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(n)) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
        true
    }

    /// Sends `bytes` and reads one response.
    pub async fn request(&mut self, bytes: &[u8]) -> Exchange {
        if let Err(error) = self.send(bytes).await {
            self.closed = true;
            return Exchange::failed(format!("write: {error}"));
        }
        self.read_responses(1, READ_TIMEOUT).await
    }
}

/// Parses one response from the front of `buf`; `eof` allows a close-delimited body.
/// Returns the response and how many bytes it used.
pub fn parse_response(buf: &[u8], eof: bool) -> Option<(Response, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut response = Response {
        version: status_line.split(' ').next().unwrap_or_default().to_owned(),
        status,
        headers,
        body: Vec::new(),
    };
    let body_start = head_end + 4;
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Some((response, body_start));
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut at = body_start;
        loop {
            let line_end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
            let size_text = String::from_utf8_lossy(&buf[at..line_end]);
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                // Skip trailers up to the empty line.
                loop {
                    let end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
                    let empty = end == at;
                    at = end + 2;
                    if empty {
                        return Some((response, at));
                    }
                }
            }
            response.body.extend_from_slice(buf.get(at..at + size)?);
            at += size + 2;
        }
    }
    if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().ok()?;
        response.body = buf.get(body_start..body_start + length)?.to_vec();
        return Some((response, body_start + length));
    }
    if eof {
        response.body = buf[body_start..].to_vec();
        return Some((response, buf.len()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::parse_response;

    #[test]
    fn parses_pipelined_responses_of_every_framing() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let (first, used) = parse_response(wire, false).unwrap();
        assert_eq!(first.status, 100);
        let (second, used2) = parse_response(&wire[used..], false).unwrap();
        assert_eq!((second.status, second.body.as_slice()), (200, b"ok".as_slice()));
        let (third, _) = parse_response(&wire[used + used2..], false).unwrap();
        assert_eq!((third.status, third.body.as_slice()), (404, b"abc".as_slice()));
    }

    #[test]
    fn waits_for_the_whole_body() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", false).is_none());
        let (r, _) = parse_response(b"HTTP/1.1 200 OK\r\n\r\nabc", true).unwrap();
        assert_eq!(r.body, b"abc");
    }
}
