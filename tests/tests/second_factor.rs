//! The second factor end to end, against the real `sekisho` binary over TLS: an invitation
//! made with `sekisho user invite` on the host (through the running gateway's control
//! socket), enrolment by TOTP (codes from Debian's `oathtool`), the session cookie, the
//! protected upstream reached with the gateway's identity headers, logout, CSRF, and the
//! corpus classes open-redirect, mfa and session-cookie-csrf where they meet the wire.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step must stop the test with its message"
)]

use sekisho_tests::client::Response;
use sekisho_tests::contexts::{ADMIN_IP, Context, OUTSIDER_IP, Stack};
use sekisho_tests::corpus;
use sekisho_tests::login::{enc, enrol_totp, get, input, oathtool, post, sekisho_user, send_from};

/// Sends `request` from the admin address with the valid device (alice's laptop).
async fn send(stack: &Stack, request: String) -> Response {
    send_from(stack, ADMIN_IP, true, request).await
}

/// Invitation → enrolment page → TOTP confirmation. Returns (secret, session cookie).
async fn enrol_alice(stack: &Stack) -> (String, String) {
    enrol_totp(stack, "alice").await
}

#[tokio::test]
async fn invitation_then_totp_enrolment_opens_the_protected_route_with_identity_headers() {
    let stack = Stack::start(Context::A, |s| s);
    let before = send(&stack, get("/admin/", "")).await;
    assert_eq!(before.status, 302, "no session: login");
    assert!(
        before
            .header("location")
            .unwrap()
            .starts_with("/.sekisho/login?return=")
    );

    let (_, cookie) = enrol_alice(&stack).await;
    let mark = stack.admin.recorded.mark();
    let through = send(&stack, get("/admin/", &format!("Cookie: {cookie}\r\n"))).await;
    assert_eq!(
        through.status,
        200,
        "{}\n{}",
        through.text(),
        stack.gateway.stderr_text()
    );
    let seen = stack.admin.recorded.since(mark);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-sekisho-user").as_deref(), Some("alice"));
    assert_eq!(seen[0].header("x-sekisho-groups").as_deref(), Some("admins"));
    assert!(
        !seen[0].header("cookie").unwrap_or_default().contains("__Host-sekisho"),
        "the session cookie never goes upstream"
    );

    // The same cookie without the device certificate it was made with: no access.
    let stolen = send_from(
        &stack,
        ADMIN_IP,
        false,
        get("/admin/", &format!("Cookie: {cookie}\r\n")),
    )
    .await;
    assert_ne!(stolen.status, 200);
    // And the session is gone now (bound to the device; a mismatch ends it).
    let after = send(&stack, get("/admin/", &format!("Cookie: {cookie}\r\n"))).await;
    assert_eq!(after.status, 302);
}

#[tokio::test]
async fn logout_needs_its_csrf_token_and_deletes_the_session() {
    let stack = Stack::start(Context::A, |s| s);
    let (_, cookie) = enrol_alice(&stack).await;
    let c = format!("Cookie: {cookie}\r\n");
    let forged = send(&stack, post("/.sekisho/logout", &c, "csrf=AAAA")).await;
    assert_eq!(forged.status, 403, "a forged logout is refused");
    let cross = send(
        &stack,
        post(
            "/.sekisho/logout",
            &format!("{c}Origin: https://evil.example\r\n"),
            "csrf=x",
        ),
    )
    .await;
    assert_eq!(cross.status, 403, "a cross-origin post is refused");
    let me = send(&stack, get("/.sekisho/", &c)).await;
    assert!(me.text().contains("alice"));
    let csrf = input(&me.text(), "csrf");
    let out = send(&stack, post("/.sekisho/logout", &c, &format!("csrf={}", enc(&csrf)))).await;
    assert_eq!(out.status, 303);
    assert!(
        out.header("set-cookie").unwrap().contains("Max-Age=0"),
        "the cookie is cleared"
    );
    let after = send(&stack, get("/admin/", &c)).await;
    assert_eq!(after.status, 302, "the old cookie names no session after logout");
}

#[tokio::test]
async fn disable_from_the_host_console_ends_the_session_at_once() {
    let stack = Stack::start(Context::A, |s| s);
    let (_, cookie) = enrol_alice(&stack).await;
    let c = format!("Cookie: {cookie}\r\n");
    assert_eq!(send(&stack, get("/admin/", &c)).await.status, 200);
    let out = sekisho_user(&stack, &["disable", "alice"]);
    assert!(out.contains("disabled"), "{out}");
    assert_eq!(send(&stack, get("/admin/", &c)).await.status, 302);
    let listed = sekisho_user(&stack, &["list"]);
    assert!(listed.contains("alice\tdisabled\ttotp"), "{listed}");
}

#[tokio::test]
async fn login_failures_look_the_same_for_every_user_name() {
    // SESS-008 (status and body), MFA-007 (no factor, no session).
    let stack = Stack::start(Context::A, |s| s.limit("max_request_line_bytes", "8192"));
    let page = send(&stack, get("/.sekisho/login", "")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'"),
        "strict CSP"
    );
    let csrf = input(&page.text(), "csrf");
    let mut bodies = Vec::new();
    for user in ["alice", "nobody", "bob"] {
        let r = send(
            &stack,
            post(
                "/.sekisho/login/totp",
                "",
                &format!("csrf={}&user={user}&code=123456&return=%2Fadmin%2F", enc(&csrf)),
            ),
        )
        .await;
        assert_eq!(r.status, 401, "{user}");
        assert!(r.header("set-cookie").is_none(), "{user}: no session");
        bodies.push(r.text().replace(&format!("value=\"{user}\""), "value=\"\""));
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "identical bodies");
}

#[tokio::test]
async fn a_login_page_in_japanese_when_the_browser_prefers_it() {
    let stack = Stack::shared(Context::A);
    let ja = send(stack, get("/.sekisho/login", "Accept-Language: ja,en;q=0.5\r\n")).await;
    assert!(ja.text().contains("lang=\"ja\"") && ja.text().contains("サインイン"));
    let en = send(stack, get("/.sekisho/login", "Accept-Language: en-GB\r\n")).await;
    assert!(en.text().contains("lang=\"en\"") && en.text().contains("Sign in"));
}

#[tokio::test]
async fn invitations_do_not_work_from_outside_the_allowlist_or_twice() {
    let stack = Stack::start(Context::A, |s| s);
    let printed = sekisho_user(&stack, &["invite", "alice"]);
    let link = printed.lines().find(|l| l.contains("/.sekisho/invite?t=")).unwrap();
    let path = link[link.find("/.sekisho/").unwrap()..].to_owned();
    let outside = send_from(&stack, OUTSIDER_IP, true, get(&path, "")).await;
    assert_eq!(outside.status, 403, "not from an address outside the route's allowlist");
    let no_device = send_from(&stack, ADMIN_IP, false, get(&path, "")).await;
    assert_eq!(
        no_device.status, 403,
        "not without the device certificate the route requires"
    );
    let page = send(&stack, get(&path, "")).await;
    let form = format!(
        "csrf={}&t={}",
        enc(&input(&page.text(), "csrf")),
        enc(&input(&page.text(), "t"))
    );
    assert_eq!(send(&stack, post("/.sekisho/invite", "", &form)).await.status, 200);
    assert_eq!(
        send(&stack, post("/.sekisho/invite", "", &form)).await.status,
        403,
        "used once"
    );
}

/// Corpus open-redirect class: the `return` value of a login (the corpus's `rd`) only ever
/// leads back into this gateway.
#[tokio::test]
async fn open_redirect_corpus_cases_land_inside_the_gateway() {
    let stack = Stack::start(Context::A, |s| s);
    let (secret, _) = enrol_alice(&stack).await;
    let cases: Vec<_> = corpus::corpus()
        .case
        .iter()
        .filter(|c| c.class == "open-redirect")
        .collect();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        // Every payload of the case, its variants too.
        let mut first = None;
        for raw in corpus::payloads(case) {
            let raw = String::from_utf8(raw).unwrap();
            let q = raw
                .split_once("rd=")
                .map(|(_, r)| r.split(' ').next().unwrap_or_default().to_owned())
                .unwrap_or_else(|| panic!("{}: no rd= in {raw:?}", case.id));
            let page = send(&stack, get(&format!("/.sekisho/login?return={q}"), "")).await;
            let kept = input(&page.text(), "return");
            let inside = kept.starts_with('/') && !kept.starts_with("//") && !kept.starts_with("/\\");
            if !inside || kept.contains(['\t', '\r', '\n', '\\']) {
                failures.push(format!("{}: {q} kept as {kept:?}", case.id));
            }
            first.get_or_insert((q, page));
        }
        let (q, page) = first.unwrap();
        // Each login needs a fresh TOTP step: one real login (the first case) and the
        // rest through the login page, whose `return` the login form posts back.
        if i == 0 {
            let csrf = input(&page.text(), "csrf");
            let r = send(
                &stack,
                post(
                    "/.sekisho/login/totp",
                    "",
                    &format!(
                        "csrf={}&user=alice&code={}&return={q}",
                        enc(&csrf),
                        oathtool(&secret, "+30 seconds")
                    ),
                ),
            )
            .await;
            let loc = r.header("location").unwrap_or_default().to_owned();
            if r.status != 303 || loc != "/" {
                failures.push(format!("{}: {} to {loc:?}", case.id, r.status));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Corpus SESS-009: the gateway has no metrics, debug or admin endpoint on its listener (the
/// host console talks over a Unix socket only its own user may open).
#[tokio::test]
async fn no_internal_endpoint_is_reachable_on_the_listener() {
    let stack = Stack::start(Context::A, |s| s);
    let before = stack.admin.recorded.mark();
    for path in [
        "/.sekisho/metrics",
        "/.sekisho/debug",
        "/.sekisho/status",
        "/.sekisho/admin",
        "/.sekisho/control",
        "/.sekisho/api/users",
    ] {
        let r = send(&stack, get(path, "Authorization: Bearer 0000000000\r\n")).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
    assert!(stack.admin.recorded.since(before).is_empty());
    let socket = stack
        .gateway
        .policy_path
        .parent()
        .unwrap()
        .join("state")
        .join("control.sock");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "{}", socket.display());
}
