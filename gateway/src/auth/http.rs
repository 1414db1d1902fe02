//! The gateway's own pages under `/.sekisho/`: login, logout, invitation and enrolment.
//! Every state-changing request is a POST with a CSRF token (bound to the session, or
//! before login to the client) and, when the browser sends them, an `Origin` equal to this
//! gateway's and `Sec-Fetch-Site: same-origin`. Every failure of a ceremony answers the
//! same status and body, whatever the reason (which goes to the log only).

use super::pages::{self, Lang};
use super::returnpath::{self, param};
use super::{Auth, Client, NewSession, Origin, Refused, session};
use crate::body::{self, ResponseBody};
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use sekisho_policy::Policy;

/// The largest form a page accepts (a WebAuthn answer is a few KiB).
pub const MAX_FORM_BYTES: usize = 32 * 1024;

/// A request for one of the gateway's pages, as the pipeline established it.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub method: Method,
    /// Canonical path, under `/.sekisho`.
    pub path: String,
    pub query: Option<String>,
    pub origin: Origin,
    pub client: Client,
}

/// What the page did, for the access record.
#[derive(Debug, Clone)]
pub struct Served {
    pub reason: &'static str,
    pub user: Option<String>,
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Serves one page.
pub async fn serve<B>(
    auth: &Auth,
    policy: &Policy,
    page: PageRequest,
    req: http::Request<B>,
) -> (Response<ResponseBody>, Served)
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let lang = Lang::from_headers(h);
    let live = auth.session(policy, h, &page.client);
    let path = page.path.to_ascii_lowercase();
    let sub = path.strip_prefix(sekisho_policy::RESERVED_PREFIX).unwrap_or("");
    let query = page.query.clone().unwrap_or_default();

    if page.method == Method::GET || page.method == Method::HEAD {
        let csrf = auth.csrf_token(live.as_ref().map(|l| l.token.as_str()), &page.client);
        return match sub {
            "/login" => {
                let ret = returnpath::safe(param(&query, "return").as_deref());
                let user = page
                    .client
                    .device
                    .as_ref()
                    .and_then(|d| d.user.clone())
                    .unwrap_or_default();
                let pre = auth.csrf_token(None, &page.client);
                (
                    html(StatusCode::OK, pages::login(lang, &user, &ret, &pre, false)),
                    served("login_page", None),
                )
            }
            "" | "/" => {
                let user = live.as_ref().map(|l| l.facts.user.clone());
                (
                    html(StatusCode::OK, pages::whoami(lang, user.as_deref(), &csrf)),
                    served("whoami_page", user),
                )
            }
            "/invite" => {
                let pre = auth.csrf_token(None, &page.client);
                let token = param(&query, "t").unwrap_or_default();
                match auth.invitation(policy, &token, &page.client) {
                    Ok(inv) => (
                        html(StatusCode::OK, pages::invite(lang, Some(&token), &pre)),
                        served("invitation_page", Some(inv.user)),
                    ),
                    Err(why) => (
                        html(StatusCode::FORBIDDEN, pages::invite(lang, None, &pre)),
                        served(why.0, None),
                    ),
                }
            }
            "/app.js" => (
                asset("text/javascript; charset=utf-8", pages::JS),
                served("asset", None),
            ),
            "/app.css" => (asset("text/css; charset=utf-8", pages::CSS), served("asset", None)),
            _ => (
                plain(StatusCode::NOT_FOUND, "not found\n"),
                served("no_such_page", None),
            ),
        };
    }
    if page.method != Method::POST {
        return (
            plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
            served("method_not_allowed", None),
        );
    }
    if !same_origin(h, &page.origin) {
        return (
            plain(StatusCode::FORBIDDEN, "forbidden\n"),
            served("csrf_cross_origin", None),
        );
    }
    let form = match read_form(body, policy.limits.body_read_timeout).await {
        Some(f) => f,
        None => {
            return (
                plain(StatusCode::BAD_REQUEST, "bad request\n"),
                served("form_unreadable", None),
            );
        }
    };
    let f = |name: &str| param(&form, name).unwrap_or_default();
    let csrf = f("csrf");
    let c = &page.client;
    let o = &page.origin;

    // Logout is the only form that needs the session; every other form is pre-session.
    if sub == "/logout" {
        let Some(live) = live else {
            return (
                redirect("/.sekisho/login", None),
                served("logout_without_session", None),
            );
        };
        if !auth.csrf_ok(Some(&live.token), c, &csrf) {
            return (
                plain(StatusCode::FORBIDDEN, "forbidden\n"),
                served("csrf_token_invalid", None),
            );
        }
        let user = Some(live.facts.user.clone());
        return match auth.end_session(&live.token) {
            Ok(()) => (
                redirect("/.sekisho/login", Some(session::clear_cookie())),
                served("logout", user),
            ),
            Err(_) => (
                plain(StatusCode::SERVICE_UNAVAILABLE, "service unavailable\n"),
                served("state_store_failed", user),
            ),
        };
    }
    if !auth.csrf_ok(None, c, &csrf) {
        return (
            plain(StatusCode::FORBIDDEN, "forbidden\n"),
            served("csrf_token_invalid", None),
        );
    }
    let ret = returnpath::safe(param(&form, "return").as_deref());
    let pre = auth.csrf_token(None, c);
    match sub {
        "/login/totp" => match auth.login_totp(policy, &f("user"), &f("code"), c) {
            Ok(s) => logged_in(&s, &ret, false),
            Err(why) => (
                html(
                    StatusCode::UNAUTHORIZED,
                    pages::login(lang, &f("user"), &ret, &pre, true),
                ),
                served(why.0, None),
            ),
        },
        "/login/webauthn/start" => match auth.webauthn_login_start(policy, &f("user"), c, o) {
            Ok((id, options)) => json_ok(
                &serde_json::json!({"ceremony": id, "options": options}),
                "webauthn_challenge",
            ),
            Err(why) => json_fail(why),
        },
        "/login/webauthn/finish" => {
            let answer = serde_json::from_str(&f("credential")).map_err(|_| Refused("webauthn_answer_unreadable"));
            match answer.and_then(|a| auth.webauthn_login_finish(policy, &f("ceremony"), &a, c, o)) {
                Ok(s) => logged_in(&s, &ret, true),
                Err(why) => json_fail(why),
            }
        }
        "/invite" => match auth.claim_invitation(policy, &f("t"), c) {
            Ok(e) => {
                let user = Some(e.user.clone());
                (
                    html(StatusCode::OK, pages::enrol(lang, &e, &pre, false)),
                    served("invitation_used", user),
                )
            }
            Err(why) => (
                html(StatusCode::FORBIDDEN, pages::invite(lang, None, &pre)),
                served(why.0, None),
            ),
        },
        "/enrol/totp" => match auth.enrol_totp(policy, &f("enrol"), &f("code"), c) {
            Ok(s) => logged_in(&s, "/.sekisho/", false),
            Err(why) => (
                plain(StatusCode::UNAUTHORIZED, "enrolment failed\n"),
                served(why.0, None),
            ),
        },
        "/enrol/webauthn/start" => match auth.webauthn_enrol_start(&f("enrol"), c, o) {
            Ok((id, options)) => json_ok(
                &serde_json::json!({"ceremony": id, "options": options}),
                "webauthn_registration_challenge",
            ),
            Err(why) => json_fail(why),
        },
        "/enrol/webauthn/finish" => {
            let answer = serde_json::from_str(&f("credential")).map_err(|_| Refused("webauthn_answer_unreadable"));
            match answer.and_then(|a| auth.webauthn_enrol_finish(policy, &f("ceremony"), &a, c, o)) {
                Ok(s) => logged_in(&s, "/.sekisho/", true),
                Err(why) => json_fail(why),
            }
        }
        _ => (
            plain(StatusCode::NOT_FOUND, "not found\n"),
            served("no_such_page", None),
        ),
    }
}

fn served(reason: &'static str, user: Option<String>) -> Served {
    Served { reason, user }
}

/// `Origin` (when sent) must be this gateway's; `Sec-Fetch-Site` (when sent) same-origin.
fn same_origin(h: &http::HeaderMap, origin: &Origin) -> bool {
    let want = origin.url();
    let origin_ok = h
        .get_all(header::ORIGIN)
        .iter()
        .all(|v| v.as_bytes() == want.as_bytes());
    let site_ok = h
        .get_all("sec-fetch-site")
        .iter()
        .all(|v| v.as_bytes() == b"same-origin");
    origin_ok && site_ok
}

/// The form, if it arrives whole, within [`MAX_FORM_BYTES`] and `within` (a trickled form
/// does not hold the connection longer than `body_read_timeout`).
async fn read_form<B>(body: B, within: std::time::Duration) -> Option<String>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let collected = tokio::time::timeout(within, Limited::new(body, MAX_FORM_BYTES).collect())
        .await
        .ok()?
        .ok()?;
    String::from_utf8(collected.to_bytes().to_vec()).ok()
}

fn logged_in(s: &NewSession, ret: &str, json: bool) -> (Response<ResponseBody>, Served) {
    let user = Some(s.user.clone());
    if json {
        let mut r = json_response(StatusCode::OK, &serde_json::json!({"redirect": ret}));
        set_cookie(&mut r, &s.cookie());
        (r, served("logged_in", user))
    } else {
        (redirect(ret, Some(s.cookie())), served("logged_in", user))
    }
}

fn json_ok(v: &serde_json::Value, reason: &'static str) -> (Response<ResponseBody>, Served) {
    (json_response(StatusCode::OK, v), served(reason, None))
}

/// The one answer every failed JSON ceremony gets.
fn json_fail(why: Refused) -> (Response<ResponseBody>, Served) {
    (
        json_response(StatusCode::UNAUTHORIZED, &serde_json::json!({"error": "failed"})),
        served(why.0, None),
    )
}

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<ResponseBody> {
    let mut r = Response::new(body::full(format!("{v}\n")));
    *r.status_mut() = status;
    common(&mut r, "application/json");
    r
}

fn html(status: StatusCode, text: String) -> Response<ResponseBody> {
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    common(&mut r, "text/html; charset=utf-8");
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    common(&mut r, "text/plain; charset=utf-8");
    r
}

fn asset(kind: &'static str, text: &'static str) -> Response<ResponseBody> {
    let mut r = Response::new(body::full(text));
    common(&mut r, kind);
    r
}

/// 303 to a path made by this gateway (a safe return path or one of its pages).
fn redirect(location: &str, cookie: Option<String>) -> Response<ResponseBody> {
    let mut r = Response::new(body::full(""));
    *r.status_mut() = StatusCode::SEE_OTHER;
    common(&mut r, "text/plain; charset=utf-8");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie {
        set_cookie(&mut r, &c);
    }
    r
}

fn set_cookie(r: &mut Response<ResponseBody>, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn common(r: &mut Response<ResponseBody>, kind: &'static str) {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    // Not `no-referrer`: under it a browser sends `Origin: null` with a form POST, and the
    // origin check above would refuse every real browser. `same-origin` still sends
    // nothing (no referrer, no invitation token) to any other site.
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
}
