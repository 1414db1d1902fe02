//! The HTTPS client instant-acme talks through: one TCP + TLS (tokio-rustls, ring) + HTTP/1.1
//! connection per request, with the whole exchange — connect, handshake, answer and body —
//! under one deadline (`[limits] acme_request_timeout`) and the body capped. No pool (an
//! issuance is a dozen requests every few weeks), no second TLS stack, no platform
//! verifier: the roots are the policy's `directory_ca` or the system's.

use bytes::Bytes;
use http::header::HOST;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use rustls_pki_types::ServerName;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The largest answer body accepted from the CA (certificate chains are a few KB).
const MAX_BODY: usize = 1 << 20;

/// A one-connection-per-request HTTPS client.
#[derive(Clone)]
pub struct Https {
    tls: TlsConnector,
    timeout: Duration,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Https")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Https {
    /// A client trusting `roots`, each request bounded by `timeout`.
    pub fn new(roots: rustls::RootCertStore, timeout: Duration) -> Result<Https, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Https {
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }
}

impl HttpClient for Https {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let tls = self.tls.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, send(tls, req)).await {
                Ok(r) => r,
                Err(_) => Err(Error::Str(
                    "the ACME server did not answer in time (acme_request_timeout)",
                )),
            }
        })
    }
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Other(Box::new(e))
}

async fn send(tls: TlsConnector, req: http::Request<BodyWrapper<Bytes>>) -> Result<BytesResponse, Error> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(Error::Str("the ACME server named a URL that is not https"));
    }
    let Some(authority) = uri.authority().cloned() else {
        return Err(Error::Str("the ACME server named a URL without a host"));
    };
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(443);
    let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(other)?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(host).map_err(other)?;
    let stream = tls.connect(name, tcp).await.map_err(other)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(other)?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let (mut parts, body) = req.into_parts();
    let target = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    parts.uri = target.parse().map_err(other)?;
    let host_header = http::HeaderValue::from_str(authority.as_str()).map_err(other)?;
    parts.headers.insert(HOST, host_header);
    let answer = sender
        .send_request(http::Request::from_parts(parts, body))
        .await
        .map_err(other);
    let result = match answer {
        Ok(rsp) => {
            let (parts, body) = rsp.into_parts();
            match Limited::new(body, MAX_BODY).collect().await {
                Ok(collected) => Ok(BytesResponse::from(http::Response::from_parts(
                    parts,
                    Full::new(collected.to_bytes()),
                ))),
                Err(e) => Err(Error::Other(e)),
            }
        }
        Err(e) => Err(e),
    };
    driver.abort();
    result
}
