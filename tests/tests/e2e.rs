//! End-to-end evidence against the real `sekisho` binary: addresses, device certificates,
//! revocation, forwarded-for trust, Host/SNI, deny routes, upstream failure, HTTP/2, limits
//! and keep-alive. Each test names the behaviour it proves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step must stop the test with its message"
)]

use std::time::Duration;

use sekisho_tests::assert_eventually_async;
use sekisho_tests::client::{Exchange, tls_config};
use sekisho_tests::contexts::{ADMIN_HOST, ADMIN_IP, Context, OUTSIDER_IP, PROXY_IP, PUBLIC_HOST, Stack, pki};
use sekisho_tests::h2raw;
use sekisho_tests::pki::{Credential, DeviceKind};
use sekisho_tests::policy::Route;

/// A GET for `path` on the admin host, with extra header lines.
fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {ADMIN_HOST}\r\n{extra}\r\n").into_bytes()
}

/// Sends `request` on a fresh connection from `source` (optionally with `device`) to the
/// admin host of `stack`, and returns what came back.
async fn send(stack: &Stack, source: &str, device: Option<&Credential>, request: &[u8]) -> Exchange {
    let mut client = stack.client(source, ADMIN_HOST);
    if let Some(device) = device {
        client = client.with_device(pki(), device);
    }
    client.exchange(request, 1).await
}

/// One row of a [`check`] table: what it shows, source address, device, request bytes,
/// expected status.
type Row<'a> = (&'a str, &'a str, Option<&'a Credential>, Vec<u8>, u16);

/// The one table helper: sends every row on its own connection and reports every mismatch.
async fn check(stack: &Stack, rows: &[Row<'_>]) {
    let mut failures = Vec::new();
    for (what, source, device, request, expected) in rows {
        let answer = send(stack, source, *device, request).await;
        if answer.status() != Some(*expected) {
            failures.push(format!("{what}: expected {expected}, got {}", answer.describe()));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\ngateway stderr:\n{}",
        failures.join("\n"),
        stack.gateway.stderr_text()
    );
}

#[tokio::test]
async fn protected_routes_admit_only_their_addresses_and_devices() {
    let stack = Stack::shared(Context::A);
    let _serial = stack.lock.lock().await;
    let valid = pki().device(DeviceKind::Valid);
    let mark = stack.admin.recorded.mark();
    check(
        stack,
        &[
            (
                "outsider with a valid device",
                OUTSIDER_IP,
                Some(valid),
                get("/admin/", ""),
                403,
            ),
            (
                "127.0.0.3 with a valid device",
                "127.0.0.3",
                Some(valid),
                get("/admin/", ""),
                403,
            ),
            (
                "admin address without a device",
                ADMIN_IP,
                None,
                get("/admin/", ""),
                403,
            ),
            (
                "admin address with a valid device",
                ADMIN_IP,
                Some(valid),
                get("/admin/", ""),
                401,
            ),
            (
                "and a browser is sent to log in",
                ADMIN_IP,
                Some(valid),
                get("/admin/users", "Accept: text/html,application/xhtml+xml\r\n"),
                302,
            ),
        ],
    )
    .await;
    let hits = stack.admin.recorded.since(mark);
    assert!(hits.is_empty(), "a protected route reached the upstream: {hits:?}");
}

#[tokio::test]
async fn the_login_redirect_is_relative_and_carries_the_canonical_path() {
    let stack = Stack::shared(Context::A);
    let _serial = stack.lock.lock().await;
    let valid = pki().device(DeviceKind::Valid);
    let answer = send(
        stack,
        ADMIN_IP,
        Some(valid),
        &get("/admin/%75sers?x=1", "Accept: text/html\r\n"),
    )
    .await;
    assert_eq!(answer.status(), Some(302), "{}", answer.describe());
    let location = answer.responses[0].header("location").unwrap_or_default().to_string();
    assert!(
        location.starts_with("/.sekisho/login?return=") && !location.starts_with("//"),
        "Location {location:?}"
    );
    assert!(
        location.contains("%2Fadmin%2Fusers") || location.contains("%2fadmin%2fusers"),
        "Location {location:?} does not carry the canonical path percent-encoded"
    );
}

#[tokio::test]
async fn an_address_no_route_admits_is_closed_before_tls() {
    let stack = Stack::start(Context::A, |mut spec| {
        spec.routes = vec![
            Route::protected("admin", &["/admin"])
                .on(&[ADMIN_HOST])
                .to("admin-app")
                .allow(&["127.0.0.10/32"])
                .with_device(),
            Route::public("site", &["/"]).to("admin-app").allow(&["127.0.0.2/32"]),
        ];
        spec
    });
    let stranger = stack.client("127.0.0.3", ADMIN_HOST);
    let result = stranger.connect().await;
    assert!(
        result.is_err(),
        "127.0.0.3 completed a TLS handshake although no route admits it"
    );
    let answer = send(&stack, "127.0.0.2", None, &get("/public/", "")).await;
    assert_eq!(
        answer.status(),
        Some(200),
        "the admitted address: {}",
        answer.describe()
    );
}

#[tokio::test]
async fn a_public_route_requiring_a_device_passes_only_with_a_valid_one() {
    let stack = Stack::shared(Context::A);
    let _serial = stack.lock.lock().await;
    let pki = pki();
    let mut rows = vec![("no certificate".to_string(), None, 403u16)];
    for kind in DeviceKind::ALL {
        // An rfc822-only certificate is still a valid *device* (chain, clientAuth, validity,
        // not revoked); it names no user, which only matters on protected routes.
        let valid_device = matches!(kind, DeviceKind::Valid | DeviceKind::Rfc822SanOnly);
        let expected = if valid_device { 200 } else { 403 };
        rows.push((format!("{kind:?}"), Some(pki.device(kind)), expected));
    }
    let mut failures = Vec::new();
    for (what, device, expected) in rows {
        let mark = stack.admin.recorded.mark();
        let answer = send(stack, OUTSIDER_IP, device, &get("/device/", "")).await;
        let hits = stack.admin.recorded.since(mark);
        if answer.status() != Some(expected) {
            failures.push(format!("{what}: expected {expected}, got {}", answer.describe()));
        }
        if let (200, Some(device)) = (expected, device) {
            let fingerprint = device.sha256_hex();
            let got = hits.first().and_then(|h| h.header("x-sekisho-device"));
            if got.as_ref().map(|g| g.to_ascii_lowercase()) != Some(fingerprint.clone()) {
                failures.push(format!("X-Sekisho-Device {got:?}, expected {fingerprint}"));
            }
        } else if !hits.is_empty() {
            failures.push(format!("{what}: forwarded {:?}", hits[0].target));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_require_listener_completes_no_request_without_a_valid_device() {
    let stack = Stack::start(Context::A, |spec| spec.client_certificates("require"));
    let pki = pki();
    let answer = send(
        &stack,
        OUTSIDER_IP,
        Some(pki.device(DeviceKind::Valid)),
        &get("/device/", ""),
    )
    .await;
    assert_eq!(answer.status(), Some(200), "valid device: {}", answer.describe());
    let mut failures = Vec::new();
    let invalid = [
        None,
        Some(DeviceKind::NoEku),
        Some(DeviceKind::ServerAuthOnly),
        Some(DeviceKind::OtherCa),
        Some(DeviceKind::Expired),
        Some(DeviceKind::NotYetValid),
        Some(DeviceKind::Revoked),
    ];
    for kind in invalid {
        let answer = send(&stack, OUTSIDER_IP, kind.map(|k| pki.device(k)), &get("/", "")).await;
        if !answer.responses.is_empty() {
            failures.push(format!("{kind:?} got an HTTP answer: {}", answer.describe()));
        }
    }
    let hits = stack.admin.recorded.all();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(hits.len(), 1, "only the valid device's request is forwarded: {hits:?}");
}

#[tokio::test]
async fn a_device_revoked_while_connected_is_refused_on_its_open_connection() {
    let pki = pki();
    let stack = Stack::start(Context::A, |spec| spec);
    let doomed = pki.issue_device("laptop-stolen");
    let request = get("/device/", "");
    let connect = |device: &Credential| stack.client(OUTSIDER_IP, ADMIN_HOST).with_device(pki, device);
    let mut holder = connect(&doomed).connect().await.expect("connect");
    let mut bystander = connect(&pki.second_device).connect().await.expect("connect");
    let first = holder.request(&request).await;
    assert_eq!(first.status(), Some(200), "before revocation: {}", first.describe());
    assert_eq!(bystander.request(&request).await.status(), Some(200));

    let mut revoked = pki.initially_revoked();
    revoked.push(doomed.serial);
    pki.device_ca.write_crl(&stack.gateway.crl_path, &revoked);

    assert_eventually_async!(
        Duration::from_secs(15),
        holder.request(&request).await.status() != Some(200),
        "the revoked device still passes on its open connection"
    );
    let still = bystander.request(&request).await;
    assert_eq!(
        still.status(),
        Some(200),
        "the other device's connection: {}",
        still.describe()
    );
    let fresh = connect(&doomed).exchange(&request, 1).await;
    assert_ne!(fresh.status(), Some(200), "a new connection: {}", fresh.describe());
}

#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let valid = pki().device(DeviceKind::Valid);
    {
        let stack = Stack::shared(Context::A);
        let _serial = stack.lock.lock().await;
        let mark = stack.admin.recorded.mark();
        let answer = send(
            stack,
            OUTSIDER_IP,
            None,
            &get("/public/", "X-Forwarded-For: 127.0.0.10\r\n"),
        )
        .await;
        assert_eq!(answer.status(), Some(200), "{}", answer.describe());
        let hits = stack.admin.recorded.since(mark);
        assert_eq!(
            hits[0].header("x-forwarded-for").as_deref(),
            Some(OUTSIDER_IP),
            "{hits:?}"
        );
        check(
            stack,
            &[(
                "untrusted XFF naming the admin address",
                OUTSIDER_IP,
                Some(valid),
                get("/admin/", "X-Forwarded-For: 127.0.0.10\r\n"),
                403,
            )],
        )
        .await;
    }
    let stack = Stack::shared(Context::TrustedLb);
    let _serial = stack.lock.lock().await;
    for (xff, client) in [
        ("198.51.100.7", "198.51.100.7"),
        ("203.0.113.9, 198.51.100.7", "198.51.100.7"),
        ("198.51.100.7, 127.0.0.2", "198.51.100.7"),
    ] {
        let mark = stack.admin.recorded.mark();
        let answer = send(
            stack,
            PROXY_IP,
            None,
            &get("/public/", &format!("X-Forwarded-For: {xff}\r\n")),
        )
        .await;
        assert_eq!(answer.status(), Some(200), "{xff}: {}", answer.describe());
        let hits = stack.admin.recorded.since(mark);
        assert_eq!(
            hits[0].header("x-forwarded-for").as_deref(),
            Some(client),
            "XFF {xff:?} from the trusted proxy: {:?}",
            hits[0].header_values("x-forwarded-for")
        );
    }
    check(
        stack,
        &[
            (
                "trusted XFF naming the admin address",
                PROXY_IP,
                Some(valid),
                get("/admin/", "X-Forwarded-For: 127.0.0.10\r\n"),
                401,
            ),
            (
                "trusted XFF naming an outsider",
                PROXY_IP,
                Some(valid),
                get("/admin/", "X-Forwarded-For: 198.51.100.7\r\n"),
                403,
            ),
            (
                "unparsable XFF from the trusted proxy",
                PROXY_IP,
                None,
                get("/public/", "X-Forwarded-For: a\r\n"),
                400,
            ),
            (
                "X-Real-IP is never believed",
                PROXY_IP,
                Some(valid),
                get("/admin/", "X-Real-IP: 127.0.0.10\r\nX-Forwarded-For: 198.51.100.7\r\n"),
                403,
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn host_and_sni_must_name_the_same_served_host() {
    let stack = Stack::shared(Context::A);
    let _serial = stack.lock.lock().await;
    let mark = stack.admin.recorded.mark();
    let host = |h: &str| format!("GET /public/ HTTP/1.1\r\nHost: {h}\r\n\r\n").into_bytes();
    check(
        stack,
        &[
            (
                "Host of the other served name",
                OUTSIDER_IP,
                None,
                host(PUBLIC_HOST),
                421,
            ),
            ("Host not served at all", OUTSIDER_IP, None, host("evil.example"), 421),
            (
                "Host with the port stripped is fine",
                OUTSIDER_IP,
                None,
                host("admin.gw.test:443"),
                200,
            ),
            ("Host with userinfo", OUTSIDER_IP, None, host("x@admin.gw.test"), 400),
        ],
    )
    .await;
    let answer = send(stack, OUTSIDER_IP, None, &host("evil.example")).await;
    let reflected = answer
        .responses
        .iter()
        .any(|r| r.header("location").is_some_and(|l| l.contains("evil.example")) || r.text().contains("evil.example"));
    assert!(!reflected, "the Host was reflected: {}", answer.describe());
    let hits = stack.admin.recorded.since(mark);
    assert_eq!(hits.len(), 1, "only the matching Host is forwarded: {hits:?}");
}

#[tokio::test]
async fn deny_routes_answer_403_and_never_reach_the_upstream() {
    let stack = Stack::shared(Context::A);
    let _serial = stack.lock.lock().await;
    let mark = stack.admin.recorded.mark();
    let valid = pki().device(DeviceKind::Valid);
    check(
        stack,
        &[
            ("/.git/config", OUTSIDER_IP, None, get("/.git/config", ""), 403),
            ("/blocked", ADMIN_IP, Some(valid), get("/blocked", ""), 403),
            (
                "/BLOCKED/x (case-insensitive upstream)",
                ADMIN_IP,
                Some(valid),
                get("/BLOCKED/x", ""),
                403,
            ),
        ],
    )
    .await;
    let hits = stack.admin.recorded.since(mark);
    assert!(hits.is_empty(), "a deny route was forwarded: {hits:?}");
}

#[tokio::test]
async fn the_login_prefix_is_never_forwarded() {
    let stack = Stack::shared(Context::A);
    let _serial = stack.lock.lock().await;
    let mark = stack.admin.recorded.mark();
    for path in ["/.sekisho/login", "/.sekisho/", "/.sekisho/anything?x=1"] {
        let _ = send(stack, OUTSIDER_IP, None, &get(path, "")).await;
    }
    let hits = stack.admin.recorded.since(mark);
    assert!(hits.is_empty(), "the login prefix reached the upstream: {hits:?}");
}

#[tokio::test]
async fn an_upstream_that_is_down_gives_a_bare_502() {
    // A port bound but never listening: connections are refused, and no other test (or
    // process) can take the port while this socket holds it.
    let holder = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    holder
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let dead_port = holder.local_addr().unwrap().as_socket().unwrap().port();
    let stack = Stack::start(Context::A, |mut spec| {
        spec.upstreams[0].1 = format!("http://127.0.0.1:{dead_port}");
        spec
    });
    let answer = send(&stack, OUTSIDER_IP, None, &get("/public/", "")).await;
    assert_eq!(answer.status(), Some(502), "{}", answer.describe());
    let body = answer.responses[0].text().to_ascii_lowercase();
    for secret in ["127.0.0.1", &dead_port.to_string(), "refused", "connect", "error"] {
        assert!(!body.contains(secret), "the 502 body tells {secret:?}: {body:?}");
    }
}

#[tokio::test]
async fn http2_requests_reach_public_routes() {
    let stack = Stack::shared(Context::A);
    let _serial = stack.lock.lock().await;
    let client =
        stack
            .client(OUTSIDER_IP, ADMIN_HOST)
            .with_config(tls_config(pki(), None, &[b"h2", b"http/1.1"], None));
    let mark = stack.admin.recorded.mark();
    let (status, body) = h2raw::request(
        &client,
        "POST",
        "https://admin.gw.test/public/h2?q=1",
        &[("x-test", "h2")],
        b"hello",
    )
    .await
    .expect("an HTTP/2 answer");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let hits = stack.admin.recorded.since(mark);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].target, "/public/h2?q=1");
    assert_eq!(hits[0].body, b"hello");
    assert_eq!(hits[0].header("x-test").as_deref(), Some("h2"));
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let stack = Stack::start(Context::A, |spec| spec.limit("max_body_bytes", "1024"));
    let post = |n: usize| {
        let mut bytes =
            format!("POST /public/ HTTP/1.1\r\nHost: {ADMIN_HOST}\r\nContent-Length: {n}\r\n\r\n").into_bytes();
        bytes.extend(std::iter::repeat_n(b'x', n));
        bytes
    };
    check(
        &stack,
        &[
            ("1000 bytes", OUTSIDER_IP, None, post(1000), 200),
            ("4000 bytes", OUTSIDER_IP, None, post(4000), 413),
        ],
    )
    .await;
    let chunked = format!(
        "POST /public/ HTTP/1.1\r\nHost: {ADMIN_HOST}\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{}\r\n800\r\n{}\r\n0\r\n\r\n",
        "y".repeat(0x800),
        "y".repeat(0x800)
    );
    let answer = send(&stack, OUTSIDER_IP, None, chunked.as_bytes()).await;
    assert_eq!(answer.status(), Some(413), "chunked 4 KiB: {}", answer.describe());
    let big: Vec<_> = stack
        .admin
        .recorded
        .all()
        .into_iter()
        .filter(|r| r.body.len() > 1024)
        .collect();
    assert!(big.is_empty(), "an oversized body reached the upstream");
}

#[tokio::test]
async fn keep_alive_connections_carry_many_requests() {
    let stack = Stack::shared(Context::A);
    let _serial = stack.lock.lock().await;
    let mut connection = stack.client(OUTSIDER_IP, ADMIN_HOST).connect().await.expect("connect");
    for n in 0..5 {
        let answer = connection.request(&get(&format!("/public/{n}"), "")).await;
        assert_eq!(answer.status(), Some(200), "request {n}: {}", answer.describe());
        assert!(!connection.is_closed(), "closed after request {n}");
    }
}

/// An upstream that answers every request with HTTP/1.0 and closes, as Python's
/// `http.server` and many appliances do. The client's keep-alive connection is the
/// gateway's business and must not end with the upstream's.
#[tokio::test]
async fn an_http_1_0_upstream_does_not_close_the_clients_connection() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    let stack = Stack::start(Context::A, |mut spec| {
        spec.upstreams[0].1 = format!("http://127.0.0.1:{port}");
        spec
    });
    let mut connection = stack.client(OUTSIDER_IP, ADMIN_HOST).connect().await.expect("connect");
    for n in 0..3 {
        let answer = connection.request(&get(&format!("/public/{n}"), "")).await;
        assert_eq!(answer.status(), Some(200), "request {n}: {}", answer.describe());
        let response = &answer.responses[0];
        // An HTTP/1.0 status line would make the client close after this response.
        assert_eq!(response.version, "HTTP/1.1", "{response:?}");
        assert!(
            !response
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("connection")),
            "{response:?}"
        );
        assert!(!connection.is_closed(), "closed after request {n}");
    }
}

#[tokio::test]
async fn the_upstream_sees_the_canonical_target_and_only_the_gateways_identity_headers() {
    let stack = Stack::shared(Context::A);
    let _serial = stack.lock.lock().await;
    let spoofed = [
        "X-Sekisho-User",
        "x_sekisho_user",
        "X.Sekisho.Groups",
        "X-SEKISHO-DEVICE",
        "X-Real-IP",
        "True-Client-IP",
        "Forwarded",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
        "X-Original-URL",
        "X-HTTP-Method-Override",
        "Remote-User",
        "X-Auth-Request-Email",
        "X-Forwarded-Client-Cert",
        "X-SSL-Client-DN",
        "X-Client-Cert",
        "My_Header",
    ];
    let extra: String = spoofed.iter().map(|h| format!("{h}: spoofed\r\n")).collect();
    let extra =
        format!("{extra}Cookie: a=1; __Host-sekisho=abc; b=2\r\nConnection: keep-alive, X-Keep-Me\r\nX-Keep-Me: 1\r\n");
    let mark = stack.admin.recorded.mark();
    let answer = send(stack, OUTSIDER_IP, None, &get("/%70ublic/x?a=%2F&b", &extra)).await;
    assert_eq!(answer.status(), Some(200), "{}", answer.describe());
    let hits = stack.admin.recorded.since(mark);
    let hit = &hits[0];
    assert_eq!(hit.target, "/public/x?a=%2F&b");
    let mut failures = Vec::new();
    for (name, value) in &hit.headers {
        if value.as_slice() == b"spoofed" {
            failures.push(format!("{name} arrived"));
        }
    }
    for (name, expected) in [
        ("x-forwarded-for", OUTSIDER_IP),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", ADMIN_HOST),
        ("x-sekisho-route", "site"),
    ] {
        if hit.header(name).as_deref() != Some(expected) {
            failures.push(format!(
                "{name}: {:?}, expected exactly {expected}",
                hit.header_values(name)
            ));
        }
    }
    if hit.has_header("x-keep-me") {
        failures.push("a header named in Connection was forwarded".into());
    }
    if hit.has_header("x-sekisho-device") {
        failures.push("X-Sekisho-Device without a device certificate".into());
    }
    let cookie = hit.header("cookie").unwrap_or_default();
    if cookie.contains("__Host-sekisho") || !cookie.contains("a=1") || !cookie.contains("b=2") {
        failures.push(format!("Cookie sent upstream: {cookie:?}"));
    }
    assert!(
        failures.is_empty(),
        "{}\nupstream headers: {:?}",
        failures.join("\n"),
        hit.headers
    );
}

#[test]
fn the_binary_is_where_the_harness_looks() {
    let path = sekisho_tests::gateway::binary();
    assert!(path.is_file());
}
