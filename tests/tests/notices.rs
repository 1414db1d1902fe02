//! Notices end to end: the real `sekisho` binary with a `[notify]` table sends its notices
//! by SMTP (lettre, AUTH with the password from `smtp_password_file`) to a real SMTP server
//! on loopback (the harness's recording sink, `sekisho_tests::smtp`) and as JSON POSTs to a
//! webhook (the echo upstream). Driven through invitation → TOTP enrolment → login from a
//! new device and address → lockout → factor removed → user disabled; every notice must
//! reach the user and the admin, name the user and the event, and carry no secret.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step must stop the test with its message"
)]

use std::time::Duration;

use sekisho_tests::client::Response;
use sekisho_tests::contexts::{ADMIN_IP, Context, Stack};
use sekisho_tests::login::{enc, get, input, oathtool, post, sekisho_user, send_from};
use sekisho_tests::smtp::{Mail, SmtpSink};
use sekisho_tests::upstream::EchoUpstream;

async fn send(stack: &Stack, request: String) -> Response {
    send_from(stack, ADMIN_IP, true, request).await
}

const SMTP_PASSWORD: &str = "smtp-pw-Zq8vR3kT";
const EVENTS: [(&str, &str); 7] = [
    ("invitation_used", "An invitation for alice was used from"),
    ("factor_enrolled", "alice enrolled a totp factor"),
    ("new_device", "alice signed in from a new device certificate"),
    ("new_address", "alice signed in from a new address"),
    ("lockout", "Sign-in for 'alice' from"),
    ("factor_removed", "of alice was removed"),
    ("user_disabled", "alice was disabled"),
];

fn mails_for(mails: &[Mail], event: &str, to: &str) -> Vec<Mail> {
    mails
        .iter()
        .filter(|m| {
            m.to == [to]
                && m.header("subject")
                    .is_some_and(|s| s.contains(&format!("{event}: alice")))
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn notices_reach_a_real_smtp_server_and_a_webhook_without_secrets() {
    let smtp = SmtpSink::start();
    let hook = EchoUpstream::start("webhook");
    let dir = sekisho_tests::scratch::dir("notify");
    let password_file = dir.join("smtp.password");
    std::fs::write(&password_file, format!("{SMTP_PASSWORD}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let stack = Stack::start(Context::A, |s| {
        s.notify("admin_email", &q("admin@gw.test"))
            .notify("smtp_host", &q("127.0.0.1"))
            .notify("smtp_port", &smtp.addr.port().to_string())
            .notify("smtp_tls", &q("none"))
            .notify("smtp_user", &q("sekisho"))
            .notify("smtp_password_file", &q(&password_file.to_string_lossy()))
            .notify("from", &q("sekisho@gw.test"))
            .notify("webhook_url", &q(&format!("{}/notify?k=1", hook.url())))
    });

    // Invitation and TOTP enrolment.
    let printed = sekisho_user(&stack, &["invite", "alice"]);
    let link = printed.lines().find(|l| l.contains("/.sekisho/invite?t=")).unwrap();
    let invite_token = link.split("t=").nth(1).unwrap().trim().to_owned();
    let path = &link[link.find("/.sekisho/").unwrap()..];
    let page = send(&stack, get(path, "")).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let form = format!(
        "csrf={}&t={}",
        enc(&input(&page.text(), "csrf")),
        enc(&input(&page.text(), "t"))
    );
    let enrol = send(&stack, post("/.sekisho/invite", "", &form)).await;
    assert_eq!(enrol.status, 200, "{}", enrol.text());
    let text = enrol.text();
    let uri = &text[text.find("otpauth://").unwrap()..];
    let uri = &uri[..uri.find('<').unwrap()];
    let secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let code = oathtool(&secret, "now");
    let form = format!(
        "csrf={}&enrol={}&code={code}",
        enc(&input(&text, "csrf")),
        enc(&input(&text, "enrol"))
    );
    let done = send(&stack, post("/.sekisho/enrol/totp", "", &form)).await;
    assert_eq!(done.status, 303, "{}\n{}", done.text(), stack.gateway.stderr_text());

    // A login with the next step's code (new device and address, if the enrolment did not
    // already count them).
    let login = send(&stack, get("/.sekisho/login", "")).await;
    let csrf = input(&login.text(), "csrf");
    let next = oathtool(&secret, "+30 seconds");
    let ok = send(
        &stack,
        post(
            "/.sekisho/login/totp",
            "",
            &format!("csrf={}&user=alice&code={next}&return=%2Fadmin%2F", enc(&csrf)),
        ),
    )
    .await;
    assert_eq!(ok.status, 303, "{}\n{}", ok.text(), stack.gateway.stderr_text());
    let cookie = ok.header("set-cookie").unwrap_or_default();

    // Lockout: five wrong codes (policy max_failures = 5).
    let wrong = if code == "000000" || next == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        let r = send(
            &stack,
            post(
                "/.sekisho/login/totp",
                "",
                &format!("csrf={}&user=alice&code={wrong}&return=%2Fadmin%2F", enc(&csrf)),
            ),
        )
        .await;
        assert_eq!(r.status, 401);
    }

    // Factor removed, user disabled (host console).
    let shown = sekisho_user(&stack, &["show", "alice"]);
    let id = shown
        .lines()
        .find(|l| l.contains("\ttotp\t"))
        .unwrap_or_else(|| panic!("no totp factor in:\n{shown}"))
        .split('\t')
        .next()
        .unwrap()
        .trim()
        .to_owned();
    sekisho_user(&stack, &["remove-factor", "alice", &id]);
    sekisho_user(&stack, &["disable", "alice"]);

    // Every event reaches the user and the admin by mail, and the webhook.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mails = smtp.mails();
        let hooks = hook.recorded.all();
        let missing: Vec<String> = EVENTS
            .iter()
            .flat_map(|(event, _)| {
                let mut m = Vec::new();
                for to in ["alice@gw.test", "admin@gw.test"] {
                    if mails_for(&mails, event, to).is_empty() {
                        m.push(format!("mail {event} to {to}"));
                    }
                }
                let hooked = hooks
                    .iter()
                    .any(|r| String::from_utf8_lossy(&r.body).contains(&format!("\"event\":\"{event}\"")));
                if !hooked {
                    m.push(format!("webhook {event}"));
                }
                m
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "notices missing: {missing:?}\nmails: {mails:#?}\ngateway log:\n{}",
            stack.gateway.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mails = smtp.mails();
    for (event, english) in EVENTS {
        for to in ["alice@gw.test", "admin@gw.test"] {
            for m in mails_for(&mails, event, to) {
                assert_eq!(m.from, "sekisho@gw.test");
                assert_eq!(
                    m.auth,
                    Some(("sekisho".to_owned(), SMTP_PASSWORD.to_owned())),
                    "AUTH with the file's password"
                );
                assert_eq!(m.header("to").as_deref(), Some(to), "one recipient per mail");
                let body = m.body();
                assert!(body.contains(english), "{event}: {body}");
                assert!(body.contains(&format!("event: {event}")), "{body}");
                assert!(body.contains("user: alice"), "{body}");
                assert!(
                    body.contains("さん") || body.contains("「alice」"),
                    "a Japanese line: {body}"
                );
            }
        }
    }
    let enrolled = &mails_for(&mails, "factor_enrolled", "admin@gw.test")[0];
    assert!(
        enrolled.body().contains("alice さんが二要素認証の totp を登録しました"),
        "{}",
        enrolled.body()
    );

    let hooks = hook.recorded.all();
    for r in &hooks {
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/notify?k=1");
        assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["user"], "alice", "{v}");
        assert!(v["text"].as_str().unwrap().contains("alice"), "{v}");
        assert!(!v["text_ja"].as_str().unwrap().is_empty(), "{v}");
    }

    // No secret in any notice: the TOTP secret, the codes, the invitation token, the
    // session cookie, the SMTP password.
    let session = cookie
        .split(';')
        .next()
        .and_then(|c| c.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    let mut secrets = vec![
        secret.clone(),
        code.clone(),
        next.clone(),
        invite_token,
        SMTP_PASSWORD.to_owned(),
    ];
    if !session.is_empty() {
        secrets.push(session);
    }
    let everything: Vec<String> = mails
        .iter()
        .flat_map(|m| [m.data.clone(), m.body()])
        .chain(hooks.iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()))
        .collect();
    for text in &everything {
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "a secret ({s}) leaked into a notice:\n{text}"
            );
        }
    }
}

#[tokio::test]
async fn a_refused_policy_reload_is_mailed_to_the_admin() {
    let smtp = SmtpSink::start();
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let stack = Stack::start(Context::A, |s| {
        s.notify("admin_email", &q("admin@gw.test"))
            .notify("smtp_host", &q("127.0.0.1"))
            .notify("smtp_port", &smtp.addr.port().to_string())
            .notify("smtp_tls", &q("none"))
            .notify("from", &q("sekisho@gw.test"))
    });
    let good = std::fs::read_to_string(&stack.gateway.policy_path).unwrap();
    std::fs::write(&stack.gateway.policy_path, format!("{good}\nskip_mfa = true\n")).unwrap();
    stack.gateway.reload();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mail = loop {
        let found = smtp
            .mails()
            .into_iter()
            .find(|m| m.to == ["admin@gw.test"] && m.header("subject").is_some_and(|s| s.contains("policy_rejected")));
        if let Some(m) = found {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no policy_rejected mail; gateway log:\n{}",
            stack.gateway.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let body = mail.body();
    assert!(body.contains("the previous policy keeps serving"), "{body}");
    assert!(body.contains("skip_mfa"), "the problem is named: {body}");
    assert!(body.contains("以前のポリシー"), "a Japanese line: {body}");
}
