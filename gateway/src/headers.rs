//! Header hygiene on the way upstream and back. The request is re-framed: hop-by-hop
//! headers and those `Connection` names are dropped, framing headers are dropped (hyper
//! frames the body anew), and every header a client could use to claim an identity, an
//! address, a scheme, a host or a path is removed in every spelling before the gateway
//! sets its own. The gateway's session cookie never travels upstream.

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// The name of the gateway's session cookie.
pub const SESSION_COOKIE: &str = "__Host-sekisho";

/// Headers the gateway itself sets on requests it forwards.
pub const DEVICE_HEADER: &str = "x-sekisho-device";
pub const ROUTE_HEADER: &str = "x-sekisho-route";
pub const USER_HEADER: &str = "x-sekisho-user";
/// The authenticated user's groups (comma-separated), set by the gateway.
pub const GROUPS_HEADER: &str = "x-sekisho-groups";

/// Hop-by-hop and framing headers: never forwarded in either direction.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "content-length",
];

/// Headers through which clients and other proxies claim who or where the client is, or
/// which host, scheme or path the request "really" had. Compared after normalising the
/// name (lower case, `_` and `.` as `-`).
const CLAIMS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-forwarded-client-cert",
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-host",
    "x-original-host",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-original-method",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "remote-user",
    "remote-addr",
    "x-remote-user",
    "x-authenticated-user",
    "x-webauth-user",
    "x-user",
    "x-client-cert",
    "x-client-verify",
    "x-scheme",
    "x-url-scheme",
    "front-end-https",
    "expect",
];

/// Prefixes of header families with the same meaning.
const CLAIM_PREFIXES: &[&str] = &[
    "x-sekisho-",
    "x-auth-request-",
    "x-ssl-client-",
    "x-tls-client-",
    "ssl-client-",
];

/// Cleans a client's request headers for the upstream, in place.
pub fn sanitise_request(headers: &mut HeaderMap) {
    let named_by_connection = connection_tokens(headers);
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            // Any `_` in a name is dropped outright: servers that map `_` to `-` would
            // read `x_sekisho_user` as ours (the nginx/Apache lesson).
            n.contains('_') || is_hop_by_hop(n) || is_claim(n) || named_by_connection.iter().any(|t| t == n)
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
    strip_session_cookie(headers);
}

/// Cleans an upstream's response headers for the client, in place.
pub fn sanitise_response(headers: &mut HeaderMap) {
    let named_by_connection = connection_tokens(headers);
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            (is_hop_by_hop(n) && n != "content-length") || named_by_connection.iter().any(|t| t == n)
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

fn is_claim(name: &str) -> bool {
    let normalised: String = name
        .chars()
        .map(|c| match c {
            '_' | '.' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    CLAIMS.contains(&normalised.as_str()) || CLAIM_PREFIXES.iter().any(|p| normalised.starts_with(p))
}

fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Removes the gateway's own cookie from every Cookie header, keeping the application's.
fn strip_session_cookie(headers: &mut HeaderMap) {
    let cookies: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
            !name.eq_ignore_ascii_case(SESSION_COOKIE)
        })
        .map(str::to_owned)
        .collect();
    let had_non_utf8 = headers.get_all(header::COOKIE).iter().any(|v| v.to_str().is_err());
    headers.remove(header::COOKIE);
    if had_non_utf8 {
        // A cookie header that is not text cannot be filtered safely: drop it whole.
        return;
    }
    if !cookies.is_empty()
        && let Ok(v) = HeaderValue::from_str(&cookies.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn identity_headers_go_in_every_spelling() {
        let mut h = headers(&[
            ("X-Sekisho-User", "root"),
            ("x_sekisho_user", "root"),
            ("X.Sekisho.User", "root"),
            ("X-SEKISHO-GROUPS", "admins"),
            ("X-Real-IP", "127.0.0.10"),
            ("Forwarded", "for=127.0.0.10"),
            ("X-Auth-Request-User", "admin"),
            ("X-SSL-Client-Verify", "SUCCESS"),
            ("Transfer_Encoding", "chunked"),
            ("Accept", "text/html"),
        ]);
        sanitise_request(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["accept"]);
    }

    #[test]
    fn connection_named_headers_and_hop_by_hop_go() {
        let mut h = headers(&[
            ("Connection", "close, X-App-Secret"),
            ("X-App-Secret", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Upgrade", "h2c"),
            ("Content-Length", "5"),
            ("Transfer-Encoding", "chunked"),
            ("X-Kept", "yes"),
        ]);
        sanitise_request(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-kept"]);
    }

    #[test]
    fn session_cookie_is_removed_and_others_kept() {
        let mut h = headers(&[
            ("Cookie", "app=1; __Host-sekisho=abc; other=2"),
            ("Cookie", "__host-SEKISHO=x"),
        ]);
        sanitise_request(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h.get(header::COOKIE).unwrap(), "app=1; other=2");
    }
}
