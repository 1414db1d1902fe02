//! Everything that can stop a request, and the one function that turns it into what the
//! client sees. Clients never see internals: the reason is logged and audited, the
//! response carries only a short, fixed text.

use crate::body::{self, ResponseBody};
use http::{HeaderValue, Response, StatusCode, header};

/// Why the gateway answered a request itself instead of forwarding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request is malformed or ambiguous (downstream's fault).
    BadRequest(&'static str),
    /// The request (its body) did not arrive in time (downstream's fault).
    RequestTimeout(&'static str),
    /// The request-target is longer than the limit.
    UriTooLong,
    /// The body is larger than the limit.
    PayloadTooLarge,
    /// Host and SNI disagree, or the host is not served here.
    MisdirectedRequest(&'static str),
    /// The method is never forwarded (CONNECT, TRACE).
    MethodNotAllowed,
    /// The policy denies the request.
    Forbidden(&'static str),
    /// No route matches the path.
    NotFound,
    /// A protected route without a completed second factor, for a non-browser client.
    Unauthorized,
    /// A protected route without a completed second factor, for a browser: go and log in.
    Login { location: String },
    /// The upstream could not be reached or answered garbage (upstream's fault).
    BadGateway,
    /// The upstream did not answer in time.
    GatewayTimeout,
    /// The client address is banned or over a rate limit (`crate::abuse`).
    TooManyRequests(&'static str),
    /// The gateway cannot keep its promises right now (e.g. the audit log cannot be
    /// written): protected requests fail closed.
    Unavailable(&'static str),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Refusal::UriTooLong => StatusCode::URI_TOO_LONG,
            Refusal::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::MisdirectedRequest(_) => StatusCode::MISDIRECTED_REQUEST,
            Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::Login { .. } => StatusCode::FOUND,
            Refusal::BadGateway => StatusCode::BAD_GATEWAY,
            Refusal::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Refusal::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable, short word for the audit record and diagnostics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::BadRequest(why) => why,
            Refusal::RequestTimeout(why) => why,
            Refusal::UriTooLong => "uri_too_long",
            Refusal::PayloadTooLarge => "body_too_large",
            Refusal::MisdirectedRequest(why) => why,
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::Forbidden(why) => why,
            Refusal::NotFound => "no_route",
            Refusal::Unauthorized | Refusal::Login { .. } => "second_factor_required",
            Refusal::BadGateway => "upstream_unreachable",
            Refusal::GatewayTimeout => "upstream_timeout",
            Refusal::TooManyRequests(why) => why,
            Refusal::Unavailable(why) => why,
        }
    }

    /// Whether the connection must be closed after this answer (the framing of what the
    /// client sent cannot be trusted any more).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Refusal::BadRequest(_) | Refusal::PayloadTooLarge | Refusal::RequestTimeout(_)
        )
    }

    /// The one place a refusal becomes a response.
    pub fn into_response(self) -> Response<ResponseBody> {
        let status = self.status();
        let text: &'static str = match &self {
            Refusal::BadRequest(_) => "bad request\n",
            Refusal::RequestTimeout(_) => "request timeout\n",
            Refusal::UriTooLong => "request-target too long\n",
            Refusal::PayloadTooLarge => "request body too large\n",
            Refusal::MisdirectedRequest(_) => "misdirected request\n",
            Refusal::MethodNotAllowed => "method not allowed\n",
            Refusal::Forbidden(_) => "forbidden\n",
            Refusal::NotFound => "not found\n",
            Refusal::Unauthorized => "authentication required\n",
            Refusal::Login { .. } => "authentication required\n",
            Refusal::BadGateway => "bad gateway\n",
            Refusal::GatewayTimeout => "gateway timeout\n",
            Refusal::TooManyRequests(_) => "too many requests\n",
            Refusal::Unavailable(_) => "service unavailable\n",
        };
        let mut response = Response::new(body::full(text));
        *response.status_mut() = status;
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        match &self {
            Refusal::Login { location } => {
                // The location is built by the gateway from the canonical path, re-encoded:
                // it is always a relative URL under /.sekisho/ and valid in a header.
                if let Ok(v) = HeaderValue::from_str(location) {
                    h.insert(header::LOCATION, v);
                }
            }
            Refusal::Unauthorized => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Sekisho"));
            }
            _ => {}
        }
        if self.closes_connection() {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
