//! A tiny SMTP server on loopback that records every message it accepts (envelope, AUTH
//! credentials, raw data), for the notice tests. It speaks just enough ESMTP for a real
//! client (lettre): EHLO with 8BITMIME and AUTH PLAIN/LOGIN, MAIL, RCPT, DATA with
//! dot-unstuffing, RSET, NOOP, QUIT. No TLS: the policy allows `smtp_tls = "none"` only for
//! loopback, which is where this listens.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One accepted message.
#[derive(Clone, Debug, Default)]
pub struct Mail {
    /// `(user, password)` of AUTH on this connection, if any.
    pub auth: Option<(String, String)>,
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body, CRLF line ends, dots unstuffed).
    pub data: String,
}

impl Mail {
    /// The value of the first header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut lines = head.split("\r\n").peekable();
        while let Some(line) = lines.next() {
            let Some((n, v)) = line.split_once(':') else { continue };
            if n.eq_ignore_ascii_case(name) {
                let mut value = v.trim().to_string();
                while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
                    value.push(' ');
                    value.push_str(next.trim());
                    lines.next();
                }
                return Some(value);
            }
        }
        None
    }

    /// The body (after the blank line), decoded when `Content-Transfer-Encoding` is base64
    /// (7bit and 8bit bodies are returned as sent).
    pub fn body(&self) -> String {
        let raw = self
            .data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        let encoding = self.header("content-transfer-encoding").unwrap_or_default();
        if encoding.eq_ignore_ascii_case("base64") {
            let compact: String = raw.split_whitespace().collect();
            b64(&compact)
        } else if encoding.eq_ignore_ascii_case("quoted-printable") {
            quoted_printable(&raw)
        } else {
            raw
        }
    }
}

/// A running SMTP sink. Dropping it stops it.
#[derive(Debug)]
pub struct SmtpSink {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SmtpSink {
    /// Starts on a free port of 127.0.0.1.
    pub fn start() -> SmtpSink {
        let mails = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let log = mails.clone();
        std::thread::Builder::new()
            .name("smtp-sink".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("smtp runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
                    addr_tx
                        .send(listener.local_addr().expect("smtp address"))
                        .expect("report smtp address");
                    let accept = async {
                        loop {
                            let Ok((stream, _)) = listener.accept().await else {
                                continue;
                            };
                            let log = log.clone();
                            tokio::spawn(async move {
                                let _ = session(stream, log).await;
                            });
                        }
                    };
                    tokio::select! {
                        () = accept => {}
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawn smtp sink");
        let addr = addr_rx.recv().expect("smtp sink address");
        SmtpSink {
            addr,
            mails,
            stop: Some(stop),
        }
    }

    /// Every message accepted so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().expect("smtp log").clone()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

/// Decodes a quoted-printable body (soft breaks and `=XX`).
fn quoted_printable(s: &str) -> String {
    let joined = s.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `\0user\0password` → (user, password).
fn plain(s: &str) -> (String, String) {
    let decoded = b64(s);
    let mut parts = decoded.split('\0').skip(1);
    (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    )
}

/// `<addr>` (with optional parameters after it) → addr.
fn path(s: &str) -> String {
    let s = s.trim();
    match (s.find('<'), s.find('>')) {
        (Some(a), Some(b)) if a < b => s[a + 1..b].to_string(),
        _ => s.split_whitespace().next().unwrap_or_default().to_string(),
    }
}

async fn session(stream: TcpStream, log: Arc<Mutex<Vec<Mail>>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP test sink\r\n").await?;
    let mut auth = None;
    let mut mail = Mail::default();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end_matches(['\r', '\n']).to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 AUTH PLAIN LOGIN\r\n"
        } else if upper.starts_with("HELO") {
            b"250 sink.test\r\n"
        } else if upper.starts_with("AUTH PLAIN") {
            let initial = cmd.get(10..).unwrap_or_default().trim().to_string();
            let response = if initial.is_empty() {
                write.write_all(b"334 \r\n").await?;
                let mut r = String::new();
                lines.read_line(&mut r).await?;
                r
            } else {
                initial
            };
            auth = Some(plain(&response));
            b"235 2.7.0 Authentication successful\r\n"
        } else if upper.starts_with("AUTH LOGIN") {
            write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
            let mut user = String::new();
            lines.read_line(&mut user).await?;
            write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
            let mut pass = String::new();
            lines.read_line(&mut pass).await?;
            auth = Some((b64(&user), b64(&pass)));
            b"235 2.7.0 Authentication successful\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            mail = Mail {
                auth: auth.clone(),
                from: path(&cmd[10..]),
                ..Mail::default()
            };
            b"250 2.1.0 Ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(path(&cmd[8..]));
            b"250 2.1.5 Ok\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if lines.read_line(&mut l).await? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" || l == ".\n" {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            mail.data = data;
            log.lock().expect("smtp log").push(std::mem::take(&mut mail));
            b"250 2.0.0 Ok: queued\r\n"
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 2.0.0 Ok\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            b"502 5.5.2 Command not recognized\r\n"
        };
        write.write_all(reply).await?;
    }
}
