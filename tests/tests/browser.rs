//! A real browser against the real gateway: headless Chromium (DevTools protocol, a virtual
//! platform authenticator, a device certificate in its NSS database) goes from an
//! invitation made on the host to a passkey, logs out, logs in with the passkey and reaches
//! the upstream admin page. The same browser without a device certificate gets nowhere.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step must stop the test with its message"
)]

use std::time::Duration;

use sekisho_tests::browser::{Browser, Profile};
use sekisho_tests::contexts::{ADMIN_HOST, Context, Stack, pki};
use sekisho_tests::login::sekisho_user;
use sekisho_tests::pki::DeviceKind;

/// Generous: a cold headless Chromium renders a page in well under a second here, but the
/// whole suite runs beside it on two cores (hundreds of connections in the abuse tests).
const PAGE: Duration = Duration::from_secs(60);

/// `CTX-A`, with the browser's source address (Chromium connects to loopback from
/// 127.0.0.1 and cannot be bound elsewhere) admitted to the protected route.
fn stack() -> Stack {
    Stack::start(Context::A, |mut spec| {
        for route in &mut spec.routes {
            if route.name == "admin" {
                route.allow_ips.push("127.0.0.1/32".to_owned());
            }
        }
        spec
    })
}

async fn browser(stack: &Stack, with_device: bool) -> (Browser, String) {
    let origin = format!("https://{ADMIN_HOST}:{}", stack.gateway.addr.port());
    let profile = Profile {
        pki: pki(),
        device: with_device.then(|| pki().device(DeviceKind::Valid)),
        origin: origin.clone(),
        hosts: vec![(ADMIN_HOST.to_owned(), stack.gateway.addr.ip().to_string())],
    };
    (Browser::launch(&profile).await, origin)
}

fn invitation(stack: &Stack) -> String {
    let printed = sekisho_user(stack, &["invite", "alice"]);
    printed
        .split_whitespace()
        .find(|w| w.starts_with("https://") && w.contains("/.sekisho/invite?t="))
        .unwrap_or_else(|| panic!("no invitation link in:\n{printed}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_passkey_enrolment_logout_login_reaches_the_admin_page() {
    let stack = stack();
    let (browser, origin) = browser(&stack, true).await;
    let authenticator = browser.add_virtual_authenticator().await;

    // Invitation: the link opens a page that spends nothing until the user starts.
    let link = invitation(&stack);
    assert_eq!(browser.navigate(&link).await, None);
    let page = browser
        .wait_for("/.sekisho/invite", "document.querySelector('#start-enrolment')", PAGE)
        .await;
    assert_eq!(page.status, 200, "{page:?}");
    browser.click("#start-enrolment").await;

    // Enrolment: a passkey made by the platform authenticator, then the session page.
    browser
        .wait_for("/.sekisho/invite", "document.querySelector('#passkey-enrol')", PAGE)
        .await;
    browser.click("#passkey-enrol").await;
    let whoami = browser
        .wait_for("/.sekisho/", "document.querySelector('#who')", PAGE)
        .await;
    assert!(whoami.text.contains("alice"), "{whoami:?}");
    let credentials = browser.credentials(&authenticator).await;
    assert_eq!(credentials.len(), 1, "one passkey: {credentials:?}");
    assert_eq!(credentials[0]["rpId"], ADMIN_HOST);

    // Logout ends the session: the admin page sends the browser back to login.
    browser.click("#logout").await;
    browser
        .wait_for("/.sekisho/login", "document.querySelector('#passkey-login')", PAGE)
        .await;
    let before = stack.admin.recorded.mark();
    assert_eq!(browser.navigate(&format!("{origin}/admin/")).await, None);
    browser
        .wait_for(
            "/.sekisho/login",
            "new URLSearchParams(location.search).get('return') === '/admin/'",
            PAGE,
        )
        .await;
    let reached = stack.admin.recorded.since(before);
    assert!(
        !reached.iter().any(|r| r.target.starts_with("/admin")),
        "nothing reaches the upstream's admin pages without a session: {reached:?}"
    );

    // Login with the passkey returns the browser to the admin page, through the upstream.
    browser.fill("#user", "alice").await;
    browser.click("#passkey-login").await;
    let admin = browser.wait_for("/admin/", "true", PAGE).await;
    assert_eq!(admin.status, 200, "{admin:?}");
    assert!(admin.text.contains("\"upstream\":\"admin-app\""), "{admin:?}");
    let reached = stack.admin.recorded.since(before);
    let request = reached
        .iter()
        .find(|r| r.target == "/admin/")
        .unwrap_or_else(|| panic!("the upstream saw no /admin/: {reached:?}"));
    assert_eq!(request.header("x-sekisho-user").as_deref(), Some("alice"));
    assert_eq!(
        request.header("x-sekisho-device").as_deref(),
        Some(pki().device(DeviceKind::Valid).sha256_hex().as_str())
    );
    let credentials = browser.credentials(&authenticator).await;
    assert!(
        credentials[0]["signCount"].as_u64() >= Some(2),
        "the login used the enrolled passkey: {credentials:?}"
    );

    // The access log has the whole story, attributed to alice.
    let log = std::fs::read_to_string(stack.gateway.access_log()).unwrap();
    for reason in ["invitation_used", "logged_in", "logout"] {
        assert!(log.contains(reason), "no {reason} in the access log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_device_certificate_the_browser_gets_neither_enrolment_nor_the_admin_page() {
    let stack = stack();
    let (browser, origin) = browser(&stack, false).await;
    browser.add_virtual_authenticator().await;
    let before = stack.admin.recorded.mark();

    // The invitation is refused where alice could not reach a protected route.
    let link = invitation(&stack);
    assert_eq!(browser.navigate(&link).await, None);
    let page = browser.wait_for("/.sekisho/invite", "true", PAGE).await;
    assert_eq!(page.status, 403, "{page:?}");
    assert_eq!(
        browser
            .eval("!!document.querySelector('#start-enrolment') || !!document.querySelector('#passkey-enrol')")
            .await,
        serde_json::json!(false),
        "no way to enrol: {page:?}"
    );

    // The admin page is refused before any login is offered.
    assert_eq!(browser.navigate(&format!("{origin}/admin/")).await, None);
    let admin = browser.wait_for("/admin/", "true", PAGE).await;
    assert_eq!(admin.status, 403, "{admin:?}");
    assert!(!admin.text.contains("admin-app"), "{admin:?}");
    let reached = stack.admin.recorded.since(before);
    assert!(
        !reached.iter().any(|r| r.target.starts_with("/admin")),
        "nothing reached the upstream's admin pages: {reached:?}"
    );
}
