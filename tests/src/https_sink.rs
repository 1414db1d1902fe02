//! An HTTPS receiver of the log's JSON batches on loopback: `POST` with
//! `{"gateway": HOST, "records": ["<line>", …]}`. It keeps every record of every batch it
//! accepts, answers 204, and can refuse the first batches with 503 (the sender must send
//! them again). Anything else (another method, a body that is not such a batch) is
//! answered 400 and noted as an error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::syslog::{RECEIVER_IP, receiver_tls};

#[derive(Debug, Default)]
struct Inbox {
    /// (gateway, record line) in arrival order.
    records: Vec<(String, String)>,
    errors: Vec<String>,
    batches: usize,
}

/// A running HTTPS receiver. Dropping it stops it.
#[derive(Debug)]
pub struct HttpsLogSink {
    pub addr: SocketAddr,
    pub ca_file: PathBuf,
    inbox: Arc<Mutex<Inbox>>,
    refused: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl HttpsLogSink {
    /// Starts on a free port of [`RECEIVER_IP`]; the first `refuse` batches get 503.
    pub fn start_refusing_first(refuse: usize) -> HttpsLogSink {
        let (config, ca_file) = receiver_tls("https-sink");
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let refused = Arc::new(AtomicUsize::new(0));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (inbox2, refused2) = (inbox.clone(), refused.clone());
        std::thread::Builder::new()
            .name("https-log-sink".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("https sink runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::bind((RECEIVER_IP, 0)).await.expect("bind the https sink");
                    addr_tx
                        .send(listener.local_addr().expect("sink address"))
                        .expect("report the sink address");
                    let accept = async {
                        loop {
                            let Ok((tcp, _)) = listener.accept().await else {
                                continue;
                            };
                            let (acceptor, inbox, refused) = (acceptor.clone(), inbox2.clone(), refused2.clone());
                            tokio::spawn(async move {
                                let Ok(tls) = acceptor.accept(tcp).await else { return };
                                let service = service_fn(move |req| {
                                    let (inbox, refused) = (inbox.clone(), refused.clone());
                                    async move {
                                        Ok::<_, std::convert::Infallible>(handle(req, &inbox, &refused, refuse).await)
                                    }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(tls), service)
                                    .await;
                            });
                        }
                    };
                    tokio::select! {
                        () = accept => {}
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawn the https sink");
        let addr = addr_rx.recv().expect("https sink address");
        HttpsLogSink {
            addr,
            ca_file,
            inbox,
            refused,
            stop: Some(stop),
        }
    }

    /// The URL to put in `[log.remote] https`.
    pub fn url(&self) -> String {
        format!("https://{}/sekisho/log", self.addr)
    }

    /// The record lines accepted so far, in order (with the gateway each batch named).
    pub fn records(&self) -> Vec<(String, String)> {
        self.inbox.lock().expect("sink inbox").records.clone()
    }

    /// Batches accepted (2xx) and refused (503) so far.
    pub fn batches(&self) -> (usize, usize) {
        (
            self.inbox.lock().expect("sink inbox").batches,
            self.refused.load(Ordering::SeqCst),
        )
    }

    pub fn errors(&self) -> Vec<String> {
        self.inbox.lock().expect("sink inbox").errors.clone()
    }

    /// The remote copy as a collector keeps it: one record per line.
    pub fn write_copy(&self, path: &std::path::Path) {
        let mut text = String::new();
        for (_, line) in self.records() {
            text.push_str(&line);
            text.push('\n');
        }
        std::fs::write(path, text).expect("write the remote copy");
    }
}

impl Drop for HttpsLogSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    inbox: &Mutex<Inbox>,
    refused: &AtomicUsize,
    refuse: usize,
) -> hyper::Response<Full<Bytes>> {
    let answer = |status: u16| {
        hyper::Response::builder()
            .status(status)
            .body(Full::new(Bytes::new()))
            .expect("a response")
    };
    let ok_head = req.method() == hyper::Method::POST
        && req.uri().path() == "/sekisho/log"
        && req
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .is_some_and(|v| v == "application/json");
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return answer(400);
    };
    if !ok_head {
        inbox
            .lock()
            .expect("sink inbox")
            .errors
            .push("not a POST of JSON to /sekisho/log".into());
        return answer(400);
    }
    if refused.load(Ordering::SeqCst) < refuse {
        refused.fetch_add(1, Ordering::SeqCst);
        return answer(503);
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch {
        gateway: String,
        records: Vec<String>,
    }
    match serde_json::from_slice::<Batch>(&body) {
        Ok(b) if !b.records.is_empty() => {
            let mut inbox = inbox.lock().expect("sink inbox");
            inbox.batches += 1;
            for r in b.records {
                inbox.records.push((b.gateway.clone(), r));
            }
            answer(204)
        }
        _ => {
            inbox
                .lock()
                .expect("sink inbox")
                .errors
                .push(format!("not a batch: {}", String::from_utf8_lossy(&body)));
            answer(400)
        }
    }
}
