//! Forwarding an admitted request to its upstream over a keep-alive pool (HTTP/1.1).
//! The request is rebuilt, not passed through: the canonical target, sanitised headers,
//! the gateway's own identity and forwarding headers, a body limited in size and stripped
//! of trailers, framed anew by hyper (never Content-Length and Transfer-Encoding together).

use crate::body::{BoxError, Deadline, DropTrailers, RequestBodyError, ResponseBody};
use crate::error::Refusal;
use crate::headers::{self, DEVICE_HEADER, GROUPS_HEADER, ROUTE_HEADER, USER_HEADER};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, Version, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use sekisho_policy::{Limits, Upstream};
use std::net::IpAddr;
use std::time::Duration;

type UpstreamBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// The pool of upstream connections, shared by every request.
#[derive(Debug, Clone)]
pub struct Upstreams {
    client: Client<HttpConnector, UpstreamBody>,
}

/// What the gateway decided about a request, to be told to the upstream.
#[derive(Debug)]
pub struct Forward<'a> {
    pub upstream: &'a Upstream,
    pub route_name: &'a str,
    /// The canonical path re-encoded, with the raw query.
    pub path_and_query: String,
    /// The served host, lower-case.
    pub host: &'a str,
    pub client_ip: IpAddr,
    /// Fingerprint of a currently valid device certificate.
    pub device: Option<&'a str>,
    /// The authenticated user and their groups (comma-separated), from a live session.
    pub user: Option<(String, String)>,
    pub limits: &'a Limits,
}

impl Upstreams {
    pub fn new(limits: &Limits) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(limits.upstream_connect_timeout));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(limits.upstream_idle_pool_per_host)
            .http1_max_headers(limits.max_headers.max(100))
            .build(connector);
        Upstreams { client }
    }

    /// Sends the request upstream and returns its response, or the refusal to answer with.
    pub async fn forward(&self, fwd: Forward<'_>, req: Request<Incoming>) -> Result<Response<ResponseBody>, Refusal> {
        let (parts, body) = req.into_parts();
        let client_version = parts.version;
        if let Some(len) = parts.headers.get(header::CONTENT_LENGTH)
            && len
                .to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .is_none_or(|n| n > fwd.limits.max_body_bytes)
        {
            return Err(Refusal::PayloadTooLarge);
        }
        let limit = usize::try_from(fwd.limits.max_body_bytes).unwrap_or(usize::MAX);
        // Errors of the client's body are marked as the client's, so that a malformed chunk
        // is answered with 400, not blamed on the upstream.
        let body = Deadline::new(DropTrailers::new(body), fwd.limits.body_read_timeout).map_err(ClientBodyError);
        let body: UpstreamBody = Limited::new(body, limit).boxed();

        let uri = format!("http://{}{}", fwd.upstream.authority, fwd.path_and_query);
        let mut out = Request::builder()
            .method(parts.method)
            .uri(uri)
            .version(Version::HTTP_11)
            .body(body)
            .map_err(|_| Refusal::BadRequest("unforwardable_request"))?;
        let mut h = parts.headers;
        headers::sanitise_request(&mut h);
        h.remove(header::HOST);
        set(&mut h, header::HOST.as_str(), fwd.host);
        set(&mut h, "x-forwarded-for", &fwd.client_ip.to_string());
        set(&mut h, "x-forwarded-proto", "https");
        set(&mut h, "x-forwarded-host", fwd.host);
        set(&mut h, ROUTE_HEADER, fwd.route_name);
        if let Some(fp) = fwd.device {
            set(&mut h, DEVICE_HEADER, fp);
        }
        if let Some((user, groups)) = &fwd.user {
            set(&mut h, USER_HEADER, user);
            set(&mut h, GROUPS_HEADER, groups);
        }
        *out.headers_mut() = h;

        let sent = tokio::time::timeout(fwd.limits.upstream_response_timeout, self.client.request(out)).await;
        let response = match sent {
            Err(_) => return Err(Refusal::GatewayTimeout),
            Ok(Err(e)) => return Err(classify(&e)),
            Ok(Ok(r)) => r,
        };
        let (mut parts, body) = response.into_parts();
        headers::sanitise_response(&mut parts.headers);
        // The client's connection speaks the client's protocol: an HTTP/1.0 upstream (which
        // closes after every answer) must not turn our status line into HTTP/1.0, or every
        // HTTP/1.1 client would close its keep-alive connection after this response.
        parts.version = client_version;
        let body: ResponseBody = body.map_err(|e| Box::new(e) as BoxError).boxed();
        Ok(Response::from_parts(parts, body))
    }
}

/// An error reading the client's request body.
#[derive(Debug, thiserror::Error)]
#[error("client request body: {0}")]
struct ClientBodyError(#[source] RequestBodyError<hyper::Error>);

fn set(h: &mut http::HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// Whose fault: a body over the limit is the client's (413); anything else the upstream's.
fn classify(e: &hyper_util::client::legacy::Error) -> Refusal {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return Refusal::PayloadTooLarge;
        }
        if let Some(ClientBodyError(why)) = err.downcast_ref::<ClientBodyError>() {
            return match why {
                // Trickled slower than `body_read_timeout` allows (a slowloris body).
                RequestBodyError::TimedOut(_) => Refusal::RequestTimeout("body_read_timeout"),
                // The client's body was malformed or broke off mid-way: its fault.
                RequestBodyError::Read(_) => Refusal::BadRequest("client_body_invalid"),
            };
        }
        source = err.source();
    }
    tracing::warn!(error = %e, "upstream request failed");
    Refusal::BadGateway
}
