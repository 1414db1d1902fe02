//! The `[notify]` table: the admin's address, the mail server and the webhook. Unencrypted
//! delivery (`smtp_tls = "none"`, an `http://` webhook) is only accepted towards a loopback
//! host, where it never crosses a network. Paths stay strings: no IO here.

use std::net::IpAddr;

use super::diagnostic::Sink;
use super::keys;
use super::values::hostname;
use super::walk::Table;
use crate::model::{NotifySettings, Smtp, SmtpTls};

pub(crate) fn read(sink: &mut Sink<'_>, t: Option<&Table<'_, '_>>) -> NotifySettings {
    let mut n = NotifySettings::default();
    let Some(t) = t else { return n };
    t.check_keys(sink, keys::NOTIFY);

    if let Some(s) = t.string(sink, "admin_email") {
        if email(&s.value) {
            n.admin_email = Some(s.value);
        } else {
            bad_email(sink, "admin_email", &s.value, s.span);
        }
    }

    if let Some(s) = t.string(sink, "webhook_url") {
        match webhook_url("webhook_url", &s.value) {
            Ok(()) => n.webhook_url = Some(s.value),
            Err((message, help)) => sink.error_help(s.span, message, help),
        }
    }

    let tls = t.string(sink, "smtp_tls").and_then(|s| match s.value.as_str() {
        "starttls" => Some((SmtpTls::StartTls, s.span)),
        "tls" => Some((SmtpTls::Tls, s.span)),
        "none" => Some((SmtpTls::None, s.span)),
        other => {
            sink.error_help(
                s.span,
                format!(
                    "`smtp_tls` = \"{}\" is not one of starttls, tls, none",
                    other.escape_debug()
                ),
                "write \"starttls\" (default), \"tls\" or \"none\" (loopback only)",
            );
            None
        }
    });
    let port = t
        .integer(sink, "smtp_port", 1, 65_535)
        .and_then(|p| u16::try_from(p).ok());
    let user = t.string(sink, "smtp_user");
    let password_file = t.string(sink, "smtp_password_file");
    let from = t.string(sink, "from");
    let host = t.string(sink, "smtp_host");

    let Some(host) = host else {
        // Mail settings without a server would silently send nothing.
        for key in ["smtp_port", "smtp_tls", "smtp_user", "smtp_password_file", "from"] {
            if t.table.get(key).is_some() {
                sink.error_help(
                    t.span_of(key),
                    format!("`{key}` is set but `smtp_host` is not"),
                    "add `smtp_host` (the mail server), or remove the mail settings",
                );
            }
        }
        return n;
    };
    let host_ok = host.value.parse::<IpAddr>().is_ok() || hostname(&host.value).is_ok();
    if !host_ok {
        sink.error_help(
            host.span.clone(),
            format!(
                "`smtp_host` = \"{}\" is not a host name or address",
                host.value.escape_debug()
            ),
            "write a lower-case DNS name or an IP address (IPv6 without brackets), without a port",
        );
    }
    let tls_mode = tls.as_ref().map_or(SmtpTls::StartTls, |(m, _)| *m);
    if let Some((SmtpTls::None, span)) = &tls
        && host_ok
        && !loopback(&host.value)
    {
        sink.error_help(
            span.clone(),
            format!(
                "`smtp_tls = \"none\"` is only allowed for a loopback `smtp_host`, not \"{}\"",
                host.value
            ),
            "use \"starttls\" or \"tls\" (mail crosses the network), or relay through a local server on 127.0.0.1",
        );
    }
    match (&user, &password_file) {
        (Some(u), None) => sink.error_help(
            u.span.clone(),
            "`smtp_user` is set but `smtp_password_file` is not",
            "add `smtp_password_file` (a file holding the password), or remove `smtp_user`",
        ),
        (None, Some(p)) => sink.error_help(
            p.span.clone(),
            "`smtp_password_file` is set but `smtp_user` is not",
            "add `smtp_user` (the login name), or remove `smtp_password_file`",
        ),
        _ => {}
    }
    for s in [&user, &password_file].into_iter().flatten() {
        if s.value.is_empty() || s.value.chars().any(char::is_control) {
            sink.error_help(
                s.span.clone(),
                "empty value or control characters in an SMTP setting",
                "write the login name or the password file's path",
            );
        }
    }
    let from = match from {
        Some(f) if email(&f.value) => Some(f.value),
        Some(f) => {
            bad_email(sink, "from", &f.value, f.span);
            None
        }
        None => {
            t.missing(
                sink,
                "from",
                "add the sender address of notice mail, e.g. from = \"sekisho@example.jp\"",
            );
            None
        }
    };
    if let Some(from) = from
        && host_ok
    {
        n.smtp = Some(Smtp {
            host: host.value,
            port: port.unwrap_or(tls_mode.default_port()),
            tls: tls_mode,
            user: user.map(|u| u.value),
            password_file: password_file.map(|p| p.value),
            from,
        });
    }
    n
}

fn bad_email(sink: &mut Sink<'_>, key: &str, value: &str, span: std::ops::Range<usize>) {
    sink.error_help(
        span,
        format!("`{key}` = \"{}\" is not a mail address", value.escape_debug()),
        "write a plain address such as \"admin@example.jp\" (no name, no angle brackets)",
    );
}

/// A plain `local@domain` address: one `@`, no spaces, controls, brackets or separators (the
/// value goes into SMTP commands and mail headers).
pub(crate) fn email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && s.len() <= 254
        && !domain.contains('@')
        && domain.contains('.')
        && s.chars().all(|c| c.is_ascii_graphic() && !"<>()[]\\,;:\"".contains(c))
}

/// `localhost` or a loopback address.
fn loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `https://host[:port]/path` or, for a loopback host only, `http://…` (`key` names the
/// setting in messages).
pub(crate) fn webhook_url(key: &str, s: &str) -> Result<(), (String, &'static str)> {
    let help = "write `https://host[:port]/path` (or `http://127.0.0.1:port/path` for a local receiver)";
    let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else {
        return Err((format!("`{key}` `{}` must start with https://", s.escape_debug()), help));
    };
    let (authority, _path) = rest.split_once('/').unwrap_or((rest, ""));
    let malformed = || {
        (
            format!("`{key}` `{}` has a malformed host or port", s.escape_debug()),
            help,
        )
    };
    if s.chars().any(|c| !c.is_ascii_graphic()) || s.contains('#') || authority.contains(['@', '?']) {
        return Err(malformed());
    }
    let (host, port) = if authority.starts_with('[') {
        let Some(close) = authority.find(']') else {
            return Err(malformed());
        };
        let (h, after) = authority.split_at(close + 1);
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(malformed()),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|p| p != 0)
    {
        return Err(malformed());
    }
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let ok = bare
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_ipv6() == host.starts_with('['))
        || hostname(host).is_ok();
    if !ok {
        return Err(malformed());
    }
    if !https && !loopback(bare) {
        return Err((
            format!(
                "`{key}` `{}` is plain http to a host that is not loopback",
                s.escape_debug()
            ),
            "use https:// (notices name users and addresses); http:// is only for a receiver on 127.0.0.1 or ::1",
        ));
    }
    Ok(())
}
