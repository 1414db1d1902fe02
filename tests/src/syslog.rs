//! A syslog-over-TLS receiver on loopback (RFC 5425): it trusts nothing it is sent, checks
//! the octet-counting framing and every RFC 5424 header field strictly, and keeps each
//! message, or the reason it refused one. Its certificate comes from a CA made at test time
//! (rcgen), whose PEM the gateway is told to trust (`[log.remote] ca_file`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::net::TcpListener;

use crate::pki::Authority;
use crate::scratch;

/// The loopback address the receiver listens on (apart from the gateway's 127.0.0.1).
pub const RECEIVER_IP: &str = "127.0.0.3";

/// One RFC 5424 message as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub pri: u8,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    pub structured_data: String,
    /// Whether MSG began with the UTF-8 BOM (RFC 5424 §6.4: MSG-UTF8).
    pub bom: bool,
    /// MSG without the BOM.
    pub msg: String,
}

#[derive(Debug, Default)]
struct Inbox {
    messages: Vec<Message>,
    errors: Vec<String>,
}

/// A running receiver. Dropping it stops it.
#[derive(Debug)]
pub struct SyslogReceiver {
    pub addr: SocketAddr,
    /// The CA certificate (PEM) that issued the receiver's certificate.
    pub ca_file: PathBuf,
    inbox: Arc<Mutex<Inbox>>,
    connections: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SyslogReceiver {
    /// Starts on a free port of [`RECEIVER_IP`].
    pub fn start() -> SyslogReceiver {
        Self::start_with(None)
    }

    /// As [`SyslogReceiver::start`], but the first connection is closed by the receiver
    /// after `n` messages (the sender must reconnect).
    pub fn start_closing_first_after(n: usize) -> SyslogReceiver {
        Self::start_with(Some(n))
    }

    fn start_with(close_first_after: Option<usize>) -> SyslogReceiver {
        let (config, ca_file) = receiver_tls("syslog");
        let acceptor = tokio_rustls::TlsAcceptor::from(config);

        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (inbox2, connections2) = (inbox.clone(), connections.clone());
        std::thread::Builder::new()
            .name("syslog-receiver".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("syslog runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::bind((RECEIVER_IP, 0))
                        .await
                        .expect("bind the syslog receiver");
                    addr_tx
                        .send(listener.local_addr().expect("receiver address"))
                        .expect("report the receiver address");
                    let accept = async {
                        loop {
                            let Ok((tcp, _)) = listener.accept().await else {
                                continue;
                            };
                            let n = connections2.fetch_add(1, Ordering::SeqCst);
                            let limit = if n == 0 { close_first_after } else { None };
                            let (acceptor, inbox) = (acceptor.clone(), inbox2.clone());
                            tokio::spawn(async move {
                                match acceptor.accept(tcp).await {
                                    Ok(tls) => read_frames(tls, &inbox, limit).await,
                                    Err(e) => push_error(&inbox, format!("TLS handshake: {e}")),
                                }
                            });
                        }
                    };
                    tokio::select! {
                        () = accept => {}
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawn the syslog receiver");
        let addr = addr_rx.recv().expect("syslog receiver address");
        SyslogReceiver {
            addr,
            ca_file,
            inbox,
            connections,
            stop: Some(stop),
        }
    }

    /// `host:port` as the policy writes it.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Every message received so far, in order.
    pub fn messages(&self) -> Vec<Message> {
        self.inbox.lock().expect("syslog inbox").messages.clone()
    }

    /// Everything the receiver refused (framing, header, TLS), in order.
    pub fn errors(&self) -> Vec<String> {
        self.inbox.lock().expect("syslog inbox").errors.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The records received (each message's MSG), parsed.
    pub fn records(&self) -> Vec<serde_json::Value> {
        self.messages()
            .iter()
            .filter_map(|m| serde_json::from_str(&m.msg).ok())
            .collect()
    }

    /// Writes the remote copy as a collector would keep it: one MSG per line.
    pub fn write_copy(&self, path: &std::path::Path) {
        let mut text = String::new();
        for m in self.messages() {
            text.push_str(&m.msg);
            text.push('\n');
        }
        std::fs::write(path, text).expect("write the remote copy");
    }
}

impl Drop for SyslogReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A TLS server identity for a log receiver on [`RECEIVER_IP`]: a CA made now (its PEM
/// returned for `ca_file`) and a certificate for the address.
pub(crate) fn receiver_tls(purpose: &str) -> (Arc<rustls::ServerConfig>, PathBuf) {
    let dir = scratch::dir(purpose);
    let ca = Authority::new(&dir, "receiver-ca", "Sekisho Test Log Receiver CA");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("receiver certificate parameters");
    params.subject_alt_names = vec![SanType::IpAddress(RECEIVER_IP.parse().expect("receiver ip"))];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    let cred = ca.issue(params, &dir, "receiver");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cred.key_der.clone()));
    let chain: Vec<CertificateDer<'static>> = vec![cred.cert_der.clone()];
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("receiver certificate");
    (Arc::new(config), ca.cert_pem_path.clone())
}

fn push_error(inbox: &Mutex<Inbox>, e: String) {
    inbox.lock().expect("syslog inbox").errors.push(e);
}

/// The longest message this receiver takes (RFC 5425 asks receivers to take 2048 at least
/// and permits more).
const MAX_MESSAGE: usize = 1 << 20;

/// Reads `MSG-LEN SP SYSLOG-MSG` frames until the peer closes (or `limit` messages).
async fn read_frames<S: AsyncRead + Unpin>(mut s: S, inbox: &Mutex<Inbox>, limit: Option<usize>) {
    let mut count = 0;
    loop {
        if limit.is_some_and(|l| count >= l) {
            return;
        }
        // MSG-LEN = NONZERO-DIGIT 0*9DIGIT, then one SP.
        let mut len_text = String::new();
        loop {
            let mut b = [0u8; 1];
            match s.read(&mut b).await {
                Ok(0) | Err(_) => {
                    if !len_text.is_empty() {
                        push_error(inbox, format!("connection ended inside MSG-LEN {len_text:?}"));
                    }
                    return;
                }
                Ok(_) => {}
            }
            match b[0] {
                b' ' => break,
                b'0' if len_text.is_empty() => {
                    push_error(inbox, "MSG-LEN with a leading zero".into());
                    return;
                }
                d if d.is_ascii_digit() && len_text.len() < 10 => len_text.push(char::from(d)),
                other => {
                    push_error(
                        inbox,
                        format!("not octet-counting framing: byte {other:#04x} in MSG-LEN"),
                    );
                    return;
                }
            }
        }
        let Ok(len) = len_text.parse::<usize>() else {
            push_error(inbox, format!("MSG-LEN {len_text:?}"));
            return;
        };
        if len == 0 || len > MAX_MESSAGE {
            push_error(inbox, format!("MSG-LEN {len} out of range"));
            return;
        }
        let mut msg = vec![0u8; len];
        if let Err(e) = s.read_exact(&mut msg).await {
            push_error(inbox, format!("connection ended inside a {len}-byte message: {e}"));
            return;
        }
        match parse_5424(&msg) {
            Ok(m) => inbox.lock().expect("syslog inbox").messages.push(m),
            Err(e) => push_error(inbox, format!("{e}: {:?}", String::from_utf8_lossy(&msg))),
        }
        count += 1;
    }
}

/// Parses one RFC 5424 SYSLOG-MSG strictly.
pub fn parse_5424(bytes: &[u8]) -> Result<Message, String> {
    let rest = bytes.strip_prefix(b"<").ok_or("no PRI")?;
    let close = rest.iter().position(|&b| b == b'>').ok_or("PRI not closed")?;
    let pri_text = std::str::from_utf8(&rest[..close]).map_err(|_| "PRI not ASCII")?;
    if pri_text.is_empty() || pri_text.len() > 3 || (pri_text.len() > 1 && pri_text.starts_with('0')) {
        return Err(format!("PRI {pri_text:?}"));
    }
    let pri: u8 = pri_text.parse().map_err(|_| format!("PRI {pri_text:?}"))?;
    if pri > 191 {
        return Err(format!("PRI {pri} > 191"));
    }
    let rest = &rest[close + 1..];
    let mut fields = rest.splitn(7, |&b| b == b' ');
    let mut next = |name: &str, max: usize| -> Result<String, String> {
        let f = fields.next().ok_or(format!("no {name}"))?;
        if f.is_empty() || f.len() > max || !f.iter().all(|b| (33..=126).contains(b)) {
            return Err(format!(
                "{name} {:?} is not 1..={max} printable US-ASCII",
                String::from_utf8_lossy(f)
            ));
        }
        Ok(String::from_utf8_lossy(f).into_owned())
    };
    let version = next("VERSION", 2)?;
    if version != "1" {
        return Err(format!("VERSION {version}"));
    }
    let timestamp = next("TIMESTAMP", 64)?;
    if timestamp != "-" && !rfc3339(&timestamp) {
        return Err(format!("TIMESTAMP {timestamp:?}"));
    }
    let hostname = next("HOSTNAME", 255)?;
    let app_name = next("APP-NAME", 48)?;
    let procid = next("PROCID", 128)?;
    let msgid = next("MSGID", 32)?;
    let tail = fields.next().ok_or("no STRUCTURED-DATA")?;
    // This receiver takes only NILVALUE structured data (what Sekisho sends).
    let (sd, msg) = match tail.strip_prefix(b"-") {
        Some([]) => ("-".to_owned(), &[][..]),
        Some([b' ', msg @ ..]) => ("-".to_owned(), msg),
        _ => return Err("STRUCTURED-DATA is not NILVALUE".into()),
    };
    let (bom, msg) = match msg.strip_prefix("\u{feff}".as_bytes()) {
        Some(m) => (true, m),
        None => (false, msg),
    };
    let msg = String::from_utf8(msg.to_vec()).map_err(|_| "MSG is not UTF-8")?;
    Ok(Message {
        pri,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        structured_data: sd,
        bom,
        msg,
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19))
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 6 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':'
            && rest[1..3].bytes().chain(rest[4..6].bytes()).all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_examples_parse_and_bad_headers_are_refused() {
        let m = parse_5424(
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 - \u{feff}hello".as_bytes(),
        )
        .unwrap();
        assert_eq!(
            (m.pri, m.msgid.as_str(), m.bom, m.msg.as_str()),
            (165, "ID47", true, "hello")
        );
        assert!(parse_5424(b"<34>1 2003-10-11T22:14:15.003Z mymachine su - ID47 -").is_ok());
        for bad in [
            &b"<192>1 - h a p m -"[..],
            b"<34>2 - h a p m -",
            b"<34>1 2003-10-11 22:14:15Z h a p m -",
            b"<034>1 - h a p m -",
            b"<34>1 - h a p m",
            b"<34>1 - h a p m [x]",
        ] {
            assert!(parse_5424(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
