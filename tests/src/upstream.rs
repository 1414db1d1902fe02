//! An echo upstream: a plain HTTP/1.1 server on 127.0.0.1 that records, byte for byte, what
//! the gateway forwarded (request-target, header list, body, trailers) and answers 200 with
//! a JSON echo.
//!
//! It parses by hand on purpose: a library server would normalise what we want to see.
//! It runs on its own thread and runtime, so it outlives any one test's runtime.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Order of arrival over the upstream's whole life.
    pub seq: usize,
    pub method: String,
    /// The request-target exactly as sent (lossy UTF-8 of the raw bytes).
    pub target: String,
    pub version: String,
    /// Header fields in order, names as sent, values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body, if any.
    pub trailers: Vec<(String, Vec<u8>)>,
    /// The peer address of the gateway's connection (to tell pooled connections apart).
    pub peer: SocketAddr,
}

impl Request {
    /// Values of every header named `name` (case-insensitive).
    pub fn header_values(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// The only value of header `name`, as text, if exactly one is present.
    pub fn header(&self, name: &str) -> Option<String> {
        match self.header_values(name).as_slice() {
            [one] => Some(String::from_utf8_lossy(one).into_owned()),
            _ => None,
        }
    }

    /// Whether any header is named `name` (case-insensitive).
    pub fn has_header(&self, name: &str) -> bool {
        !self.header_values(name).is_empty()
    }
}

/// The shared log of requests one upstream received.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    inner: Arc<Mutex<Vec<Request>>>,
}

impl Recorded {
    /// Every request so far.
    pub fn all(&self) -> Vec<Request> {
        self.inner.lock().expect("recorder lock").clone()
    }

    /// How many requests so far (a mark for [`Recorded::since`]).
    pub fn mark(&self) -> usize {
        self.inner.lock().expect("recorder lock").len()
    }

    /// Requests received after `mark`.
    pub fn since(&self, mark: usize) -> Vec<Request> {
        self.inner
            .lock()
            .expect("recorder lock")
            .iter()
            .skip(mark)
            .cloned()
            .collect()
    }

    /// Requests whose target starts with `prefix`.
    pub fn with_target_prefix(&self, prefix: &str) -> Vec<Request> {
        self.all()
            .into_iter()
            .filter(|r| r.target.starts_with(prefix))
            .collect()
    }

    fn push(&self, mut request: Request) {
        let mut log = self.inner.lock().expect("recorder lock");
        request.seq = log.len();
        log.push(request);
    }
}

/// A running echo upstream. Dropping it stops it.
#[derive(Debug)]
pub struct EchoUpstream {
    pub addr: SocketAddr,
    pub recorded: Recorded,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl EchoUpstream {
    /// Starts an echo upstream on a free port of 127.0.0.1, named `name` in its JSON answers.
    pub fn start(name: &str) -> EchoUpstream {
        let recorded = Recorded::default();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let log = recorded.clone();
        let name = name.to_string();
        std::thread::Builder::new()
            .name(format!("echo-{name}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("echo runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
                    addr_tx
                        .send(listener.local_addr().expect("echo address"))
                        .expect("report echo address");
                    let accept = async {
                        loop {
                            let Ok((stream, peer)) = listener.accept().await else {
                                continue;
                            };
                            tokio::spawn(serve(stream, peer, log.clone(), name.clone()));
                        }
                    };
                    tokio::select! {
                        () = accept => {}
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawn the echo thread");
        let addr = addr_rx.recv().expect("echo address");
        EchoUpstream {
            addr,
            recorded,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The largest head or body the echo accepts; more closes the connection.
const MAX_MESSAGE: usize = 8 * 1024 * 1024;

async fn serve(mut stream: TcpStream, peer: SocketAddr, log: Recorded, name: String) {
    let mut buf = Vec::new();
    loop {
        let Some(head_end) = read_until(&mut stream, &mut buf, b"\r\n\r\n").await else {
            return;
        };
        let head = buf[..head_end].to_vec();
        buf.drain(..head_end + 4);
        let Some(mut request) = parse_head(&head, peer) else {
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            return;
        };
        let chunked = request
            .header_values("transfer-encoding")
            .iter()
            .any(|v| String::from_utf8_lossy(v).to_ascii_lowercase().contains("chunked"));
        let length = request
            .header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok());
        if chunked {
            match read_chunked(&mut stream, &mut buf).await {
                Some((body, trailers)) => {
                    request.body = body;
                    request.trailers = trailers;
                }
                None => {
                    log.push(request);
                    return;
                }
            }
        } else if let Some(length) = length {
            if length > MAX_MESSAGE || !fill(&mut stream, &mut buf, length).await {
                log.push(request);
                return;
            }
            request.body = buf.drain(..length).collect();
        }
        let answer = echo_json(&request, &name);
        log.push(request);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() || stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn echo_json(request: &Request, name: &str) -> String {
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    serde_json::json!({
        "upstream": name,
        "method": request.method,
        "target": request.target,
        "headers": headers,
        "body_len": request.body.len(),
    })
    .to_string()
}

/// Reads until `delimiter` is in `buf`; returns its offset, or `None` at EOF/overflow.
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, delimiter: &[u8]) -> Option<usize> {
    loop {
        if let Some(at) = buf.windows(delimiter.len()).position(|w| w == delimiter) {
            return Some(at);
        }
        if buf.len() > MAX_MESSAGE {
            return None;
        }
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads until `buf` holds at least `len` bytes.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, len: usize) -> bool {
    while buf.len() < len {
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(Vec<u8>, Vec<(String, Vec<u8>)>)> {
    let mut body = Vec::new();
    loop {
        let line_end = read_until(stream, buf, b"\r\n").await?;
        let line: Vec<u8> = buf.drain(..line_end + 2).take(line_end).collect();
        let size_text = String::from_utf8_lossy(&line);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        if size == 0 {
            let mut trailers = Vec::new();
            loop {
                let end = read_until(stream, buf, b"\r\n").await?;
                let line: Vec<u8> = buf.drain(..end + 2).take(end).collect();
                if line.is_empty() {
                    return Some((body, trailers));
                }
                if let Some((name, value)) = split_field(&line) {
                    trailers.push((name, value));
                }
            }
        }
        if size > MAX_MESSAGE || !fill(stream, buf, size + 2).await {
            return None;
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

fn parse_head(head: &[u8], peer: SocketAddr) -> Option<Request> {
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next()?;
    let mut parts = request_line.splitn(3, |&b| b == b' ');
    let method = String::from_utf8_lossy(parts.next()?).into_owned();
    let target = String::from_utf8_lossy(parts.next()?).into_owned();
    let version = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let headers = lines.filter_map(split_field).collect();
    Some(Request {
        seq: 0,
        method,
        target,
        version,
        headers,
        body: Vec::new(),
        trailers: Vec::new(),
        peer,
    })
}

fn split_field(line: &[u8]) -> Option<(String, Vec<u8>)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = String::from_utf8_lossy(&line[..colon]).into_owned();
    let value = line[colon + 1..].trim_ascii().to_vec();
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut out = vec![0u8; 4096];
        let n = stream.read(&mut out).await.unwrap();
        String::from_utf8_lossy(&out[..n]).into_owned()
    }

    #[tokio::test]
    async fn records_target_headers_and_body_exactly() {
        let echo = EchoUpstream::start("test");
        let answer = exchange(
            echo.addr,
            b"POST /a%2Fb?q=1 HTTP/1.1\r\nHost: x\r\nX_Odd.Name: v\x01\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let [request] = echo.recorded.all().try_into().unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.target, "/a%2Fb?q=1");
        assert_eq!(request.header_values("x_odd.name"), vec![b"v\x01".as_slice()]);
        assert_eq!(request.body, b"hello");
    }

    #[tokio::test]
    async fn records_chunked_bodies_with_their_trailers() {
        let echo = EchoUpstream::start("test");
        let answer = exchange(
            echo.addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let [request] = echo.recorded.all().try_into().unwrap();
        assert_eq!(request.body, b"hello");
        assert_eq!(request.trailers, vec![("X-Trailer".to_string(), b"t".to_vec())]);
    }

    #[tokio::test]
    async fn keeps_connections_alive_and_marks_work() {
        let echo = EchoUpstream::start("test");
        let mut stream = TcpStream::connect(echo.addr).await.unwrap();
        stream
            .write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        crate::assert_eventually_async!(std::time::Duration::from_secs(5), echo.recorded.mark() == 2);
        let targets: Vec<String> = echo.recorded.since(1).into_iter().map(|r| r.target).collect();
        assert_eq!(targets, vec!["/2"]);
    }
}
