//! The HTML of the gateway's own pages: server-rendered, no external resources, one small
//! script and one stylesheet served from `/.sekisho/`, under a strict CSP. Japanese or
//! English by `Accept-Language`. Every value put into HTML goes through [`esc`].

/// The pages' language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ja,
}

impl Lang {
    /// Japanese when the client's first preference is Japanese, else English.
    pub fn from_headers(h: &http::HeaderMap) -> Lang {
        let first = h
            .get(http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|t| t.trim().to_ascii_lowercase());
        match first {
            Some(t) if t.starts_with("ja") => Lang::Ja,
            _ => Lang::En,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }
}

/// Every text of the pages, per language.
fn t(lang: Lang, key: &str) -> &'static str {
    let ja = lang == Lang::Ja;
    match key {
        "title" => {
            if ja {
                "関所 — サインイン"
            } else {
                "Sekisho — sign in"
            }
        }
        "user" => {
            if ja {
                "ユーザー名"
            } else {
                "User name"
            }
        }
        "code" => {
            if ja {
                "認証アプリの6桁のコード"
            } else {
                "6-digit code from your authenticator app"
            }
        }
        "sign_in_totp" => {
            if ja {
                "コードでサインイン"
            } else {
                "Sign in with code"
            }
        }
        "sign_in_passkey" => {
            if ja {
                "パスキーでサインイン"
            } else {
                "Sign in with a passkey"
            }
        }
        "failed" => {
            if ja {
                "サインインできませんでした。もう一度お試しください。"
            } else {
                "Sign-in failed. Please try again."
            }
        }
        "or" => {
            if ja {
                "または"
            } else {
                "or"
            }
        }
        "invite_title" => {
            if ja {
                "関所 — 登録"
            } else {
                "Sekisho — enrolment"
            }
        }
        "invite_intro" => {
            if ja {
                "このリンクは一度だけ使えます。登録を始めますか？"
            } else {
                "This link works once. Start enrolment now?"
            }
        }
        "invite_start" => {
            if ja {
                "登録を始める"
            } else {
                "Start enrolment"
            }
        }
        "invite_bad" => {
            if ja {
                "この招待は使えません。管理者に新しい招待を依頼してください。"
            } else {
                "This invitation cannot be used. Ask an administrator for a new one."
            }
        }
        "enrol_passkey" => {
            if ja {
                "パスキーまたはセキュリティキーを登録"
            } else {
                "Register a passkey or security key"
            }
        }
        "enrol_totp" => {
            if ja {
                "または認証アプリでQRコードを読み取り、表示されたコードを入力してください。"
            } else {
                "Or scan the QR code with an authenticator app and enter the code it shows."
            }
        }
        "enrol_confirm" => {
            if ja {
                "コードを確認して登録"
            } else {
                "Confirm code and enrol"
            }
        }
        "enrol_failed" => {
            if ja {
                "登録できませんでした。もう一度お試しください。"
            } else {
                "Enrolment failed. Please try again."
            }
        }
        "signed_in_as" => {
            if ja {
                "サインイン中のユーザー:"
            } else {
                "Signed in as"
            }
        }
        "logout" => {
            if ja {
                "サインアウト"
            } else {
                "Sign out"
            }
        }
        "not_signed_in" => {
            if ja {
                "サインインしていません。"
            } else {
                "Not signed in."
            }
        }
        "continue" => {
            if ja {
                "続ける"
            } else {
                "Continue"
            }
        }
        _ => "",
    }
}

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(lang: Lang, title_key: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/.sekisho/app.css\">\
         <script src=\"/.sekisho/app.js\" defer></script></head><body><main>{body}</main></body></html>\n",
        lang.code(),
        t(lang, title_key)
    )
}

/// The login page. `failed` shows the one message every failure gets.
pub fn login(lang: Lang, user: &str, ret: &str, csrf: &str, failed: bool) -> String {
    let msg = if failed {
        format!("<p class=\"error\" role=\"alert\">{}</p>", t(lang, "failed"))
    } else {
        String::new()
    };
    let body = format!(
        "<h1>関所 Sekisho</h1>{msg}\
         <form method=\"post\" action=\"/.sekisho/login/totp\" id=\"login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"return\" value=\"{ret}\">\
         <label>{lu}<input name=\"user\" id=\"user\" autocomplete=\"username webauthn\" required value=\"{user}\"></label>\
         <button type=\"button\" id=\"passkey-login\">{lp}</button>\
         <p class=\"or\">{or}</p>\
         <label>{lc}<input name=\"code\" inputmode=\"numeric\" pattern=\"[0-9]{{6}}\" maxlength=\"6\" autocomplete=\"one-time-code\"></label>\
         <button type=\"submit\">{lt}</button></form>",
        csrf = esc(csrf),
        ret = esc(ret),
        user = esc(user),
        lu = t(lang, "user"),
        lp = t(lang, "sign_in_passkey"),
        or = t(lang, "or"),
        lc = t(lang, "code"),
        lt = t(lang, "sign_in_totp"),
    );
    page(lang, "title", &body)
}

/// The invitation page: a button, so that link previews cannot use the invitation.
pub fn invite(lang: Lang, token: Option<&str>, csrf: &str) -> String {
    let body = match token {
        None => format!("<h1>関所 Sekisho</h1><p class=\"error\">{}</p>", t(lang, "invite_bad")),
        Some(tok) => format!(
            "<h1>関所 Sekisho</h1><p>{}</p><form method=\"post\" action=\"/.sekisho/invite\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"t\" value=\"{}\">\
             <button type=\"submit\" id=\"start-enrolment\">{}</button></form>",
            t(lang, "invite_intro"),
            esc(csrf),
            esc(tok),
            t(lang, "invite_start")
        ),
    };
    page(lang, "invite_title", &body)
}

/// The enrolment page: passkey registration, or TOTP by QR code and a confirming code.
pub fn enrol(lang: Lang, e: &super::Enrolment, csrf: &str, failed: bool) -> String {
    let msg = if failed {
        format!("<p class=\"error\" role=\"alert\">{}</p>", t(lang, "enrol_failed"))
    } else {
        String::new()
    };
    let body = format!(
        "<h1>関所 Sekisho</h1>{msg}<p><strong>{user}</strong></p>\
         <form method=\"post\" action=\"/.sekisho/enrol/totp\" id=\"enrol\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"enrol\" id=\"enrol-id\" value=\"{id}\">\
         <button type=\"button\" id=\"passkey-enrol\">{lp}</button>\
         <p>{lt}</p><div class=\"qr\">{svg}</div><p class=\"uri\"><code>{uri}</code></p>\
         <label>{lc}<input name=\"code\" inputmode=\"numeric\" pattern=\"[0-9]{{6}}\" maxlength=\"6\" autocomplete=\"one-time-code\"></label>\
         <button type=\"submit\">{lconf}</button></form>",
        user = esc(&e.user),
        csrf = esc(csrf),
        id = esc(&e.id),
        lp = t(lang, "enrol_passkey"),
        lt = t(lang, "enrol_totp"),
        svg = e.qr_svg,
        uri = esc(&e.otpauth),
        lc = t(lang, "code"),
        lconf = t(lang, "enrol_confirm"),
    );
    page(lang, "invite_title", &body)
}

/// `/.sekisho/`: who is signed in, and the sign-out button.
pub fn whoami(lang: Lang, user: Option<&str>, csrf: &str) -> String {
    let body = match user {
        None => format!(
            "<h1>関所 Sekisho</h1><p>{}</p><p><a href=\"/.sekisho/login\">{}</a></p>",
            t(lang, "not_signed_in"),
            t(lang, "continue")
        ),
        Some(u) => format!(
            "<h1>関所 Sekisho</h1><p>{} <strong id=\"who\">{}</strong></p>\
             <form method=\"post\" action=\"/.sekisho/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\" id=\"logout\">{}</button></form>",
            t(lang, "signed_in_as"),
            esc(u),
            esc(csrf),
            t(lang, "logout")
        ),
    };
    page(lang, "title", &body)
}

/// The stylesheet (small, readable on a phone).
pub const CSS: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f6f4ef;color:#222}\
main{max-width:28rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:.5rem}\
label{display:block;margin:1rem 0 .3rem}input{display:block;width:100%;box-sizing:border-box;font-size:1.2rem;padding:.5rem}\
button{display:block;width:100%;font-size:1.1rem;padding:.7rem;margin:1rem 0}\
.error{color:#a00;font-weight:bold}.qr svg{display:block;margin:auto;max-width:100%}.uri{word-break:break-all;font-size:.8rem}.or{text-align:center}\n";

/// The script: WebAuthn calls and their base64url plumbing. No other behaviour.
pub const JS: &str = include_str!("app.js");
