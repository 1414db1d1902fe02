//! Driving the gateway's own pages as a browser would, with raw requests: GET and form
//! POSTs on the admin host, reading hidden inputs, the host console (`sekisho user`) and an
//! independent TOTP (Debian's `oathtool`).

use std::process::Command;

use crate::client::Response;
use crate::contexts::{ADMIN_HOST, Stack, pki};
use crate::pki::DeviceKind;

/// Sends `request` from `source` (with the valid device certificate when `device`) and
/// returns the first response, or panics with the gateway's stderr.
pub async fn send_from(stack: &Stack, source: &str, device: bool, request: String) -> Response {
    let mut client = stack.client(source, ADMIN_HOST);
    if device {
        client = client.with_device(pki(), pki().device(DeviceKind::Valid));
    }
    let ex = client.exchange(request.as_bytes(), 1).await;
    ex.responses
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("no response: {}\n{}", ex.describe(), stack.gateway.stderr_text()))
}

/// A browser GET on the admin host; `extra` holds further header lines (each ending CRLF).
pub fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {ADMIN_HOST}\r\nAccept: text/html\r\n{extra}\r\n")
}

/// A form POST on the admin host.
pub fn post(path: &str, extra: &str, form: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {ADMIN_HOST}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n{extra}\r\n{form}",
        form.len()
    )
}

/// Percent-encodes a form value.
pub fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The value of `<input … name="NAME" … value="V">` in a page.
pub fn input(page: &str, name: &str) -> String {
    let at = page
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no input {name} in:\n{page}"));
    let rest = page.get(at..).unwrap_or_default();
    let v = rest
        .find("value=\"")
        .unwrap_or_else(|| panic!("input {name} has no value"))
        + 7;
    let end = rest
        .get(v..)
        .and_then(|r| r.find('"'))
        .unwrap_or_else(|| panic!("input {name}: unterminated value"));
    rest.get(v..v + end).unwrap_or_default().replace("&amp;", "&")
}

/// `sekisho user --policy P ARGS…` on the host; returns stdout.
pub fn sekisho_user(stack: &Stack, args: &[&str]) -> String {
    let out = Command::new(crate::gateway::binary())
        .arg("user")
        .arg("--policy")
        .arg(&stack.gateway.policy_path)
        .args(args)
        .output()
        .expect("run sekisho user");
    assert!(
        out.status.success(),
        "sekisho user {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The TOTP code for a base32 `secret` at `now` (as `oathtool -N` reads it: "now",
/// "+30 seconds" …), made by an implementation independent of ours.
pub fn oathtool(secret: &str, now: &str) -> String {
    let out = Command::new("oathtool")
        .args(["--totp", "-b", "-N", now, secret])
        .output()
        .expect("oathtool must be installed (Debian package oathtool); .ci/run installs it");
    assert!(
        out.status.success(),
        "oathtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output").trim().to_owned()
}

/// The session cookie (`__Host-sekisho=…`) a response sets.
pub fn session_cookie(r: &Response) -> Option<String> {
    r.headers
        .iter()
        .find(|(n, v)| n.eq_ignore_ascii_case("set-cookie") && v.starts_with("__Host-sekisho="))
        .and_then(|(_, v)| v.split(';').next())
        .map(str::to_owned)
}

/// Invites `user`, enrols TOTP from the admin address with the valid device, and returns
/// (the TOTP secret, the session cookie the enrolment made). Asserts on the way what every
/// enrolment must show: a QR code, and a cookie with `Secure`, `HttpOnly`,
/// `SameSite=Strict` and `Path=/`.
pub async fn enrol_totp(stack: &Stack, user: &str) -> (String, String) {
    use crate::contexts::ADMIN_IP;
    let printed = sekisho_user(stack, &["invite", user]);
    let link = printed
        .lines()
        .find(|l| l.contains("/.sekisho/invite?t="))
        .expect("an invitation link");
    let path = link.get(link.find("/.sekisho/").unwrap_or(0)..).unwrap_or_default();
    let page = send_from(stack, ADMIN_IP, true, get(path, "")).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let form = format!(
        "csrf={}&t={}",
        enc(&input(&page.text(), "csrf")),
        enc(&input(&page.text(), "t"))
    );
    let enrol = send_from(stack, ADMIN_IP, true, post("/.sekisho/invite", "", &form)).await;
    assert_eq!(enrol.status, 200, "{}", enrol.text());
    let text = enrol.text();
    assert!(text.contains("<svg"), "a QR code");
    let uri = text
        .get(text.find("otpauth://").expect("an otpauth URI")..)
        .unwrap_or_default();
    let uri = uri.get(..uri.find('<').unwrap_or(uri.len())).unwrap_or_default();
    let secret = uri
        .split("secret=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .expect("a secret")
        .to_owned();
    let form = format!(
        "csrf={}&enrol={}&code={}",
        enc(&input(&text, "csrf")),
        enc(&input(&text, "enrol")),
        oathtool(&secret, "now")
    );
    let done = send_from(stack, ADMIN_IP, true, post("/.sekisho/enrol/totp", "", &form)).await;
    assert_eq!(done.status, 303, "{}\n{}", done.text(), stack.gateway.stderr_text());
    let cookie = session_cookie(&done).expect("a session cookie after enrolment");
    let set = done.header("set-cookie").unwrap_or_default();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "cookie lacks {attr}: {set}");
    }
    (secret, cookie)
}
