//! Reads the `[server]` table into a [`Server`], reporting every problem. Paths stay strings:
//! nothing here checks that a file exists.

use super::diagnostic::Sink;
use super::values;
use super::walk::Table;
use crate::model::{Acme, AcmeChallenge, ClientCertMode, MetricsListen, PublicUrl, Server, ServerCertificate};
use std::net::SocketAddr;

/// A server value used only to keep walking after `[server]` was missing; `parse` never
/// returns it because the missing table is an error.
pub(super) fn placeholder() -> Server {
    Server {
        listen: Vec::new(),
        hostnames: Vec::new(),
        certificate: ServerCertificate::Files {
            cert: String::new(),
            key: String::new(),
        },
        http_listen: Vec::new(),
        device_ca: None,
        device_crl: None,
        client_certificates: ClientCertMode::Off,
        trusted_proxies: Vec::new(),
        public_url: None,
        state_dir: String::new(),
        log_dir: String::new(),
        metrics: None,
    }
}

pub(super) fn read(sink: &mut Sink<'_>, t: &Table<'_, '_>) -> Server {
    t.check_keys(sink, super::keys::SERVER);

    let mut listen = Vec::new();
    match t.string_list(sink, "listen") {
        None if t.table.get("listen").is_some() => {}
        None => t.missing(sink, "listen", "add `listen = [\"0.0.0.0:8443\"]`"),
        Some(items) => {
            if items.is_empty() {
                sink.error_help(
                    t.span_of("listen"),
                    "`listen` is empty",
                    "add `listen = [\"0.0.0.0:8443\"]`",
                );
            }
            for s in items {
                match values::socket_addr(&s.value) {
                    Ok(a) if listen.contains(&a) => {
                        sink.error_help(s.span, format!("`{a}` is listed twice"), "remove one");
                    }
                    Ok(a) => listen.push(a),
                    Err(b) => sink.error_help(s.span, b.message, b.help),
                }
            }
        }
    }

    let mut hostnames: Vec<String> = Vec::new();
    match t.string_list(sink, "hostnames") {
        None if t.table.get("hostnames").is_some() => {}
        None => t.missing(sink, "hostnames", "add `hostnames = [\"admin.example.jp\"]`"),
        Some(items) => {
            if items.is_empty() {
                sink.error_help(
                    t.span_of("hostnames"),
                    "`hostnames` is empty",
                    "add `hostnames = [\"admin.example.jp\"]`",
                );
            }
            for s in items {
                match values::hostname(&s.value) {
                    Ok(()) if hostnames.contains(&s.value) => {
                        sink.error_help(s.span, format!("hostname `{}` is listed twice", s.value), "remove one");
                    }
                    Ok(()) => hostnames.push(s.value),
                    Err(b) => sink.error_help(s.span, b.message, b.help),
                }
            }
        }
    }

    let optional_path = |sink: &mut Sink<'_>, key: &str| {
        let s = t.string(sink, key)?;
        if s.value.is_empty() {
            sink.error_help(
                s.span,
                format!("`{key}` is empty"),
                format!("remove `{key}` or name a file"),
            );
            return None;
        }
        Some(s.value)
    };
    let device_ca = optional_path(sink, "device_ca");
    let device_crl = optional_path(sink, "device_crl");
    if device_crl.is_some() && device_ca.is_none() && t.table.get("device_ca").is_none() {
        sink.error_help(
            t.span_of("device_crl"),
            "`device_crl` without `device_ca`",
            "add `device_ca`, or remove `device_crl`",
        );
    }

    let certificate = read_certificate(sink, t);

    let client_certificates = match t.string(sink, "client_certificates") {
        None if device_ca.is_some() => ClientCertMode::Request,
        None => ClientCertMode::Off,
        Some(s) => {
            let mode = match s.value.as_str() {
                "require" => Some(ClientCertMode::Require),
                "request" => Some(ClientCertMode::Request),
                "off" => Some(ClientCertMode::Off),
                _ => {
                    sink.error_help(
                        s.span.clone(),
                        format!("`client_certificates` = \"{}\" is not a mode", s.value.escape_debug()),
                        "write \"require\", \"request\" or \"off\"",
                    );
                    None
                }
            };
            if mode.is_some_and(|m| m != ClientCertMode::Off) && device_ca.is_none() {
                sink.error_help(
                    s.span,
                    format!("`client_certificates` = \"{}\" without `device_ca`", s.value),
                    "add `device_ca = \"/etc/sekisho/device-ca.pem\"`, or write \"off\"",
                );
            }
            mode.unwrap_or(ClientCertMode::Off)
        }
    };

    if let (ServerCertificate::Acme(acme), ClientCertMode::Require) = (&certificate, client_certificates)
        && acme.challenge == AcmeChallenge::TlsAlpn01
    {
        // The CA's validation connects without a device certificate; a `require` listener
        // refuses such handshakes before the ALPN could be looked at.
        let span = t.table.get("acme").map_or_else(|| t.span.clone(), |a| a.span());
        sink.error_help(
            span,
            "`challenge = \"tls-alpn-01\"` cannot be answered with `client_certificates = \"require\"`",
            "use `challenge = \"http-01\"` (with `http_listen`), or `client_certificates = \"request\"`",
        );
    }

    let http_listen = read_http_listen(sink, t, &listen, &certificate);

    let mut trusted_proxies = Vec::new();
    for s in t.string_list(sink, "trusted_proxies").unwrap_or_default() {
        match values::net(&s.value) {
            Ok(n) => trusted_proxies.push(n),
            Err(b) => sink.error_help(s.span, b.message, b.help),
        }
    }

    let public_url = t
        .string(sink, "public_url")
        .and_then(|s| match public_url(&s.value, &hostnames) {
            Ok(u) => Some(u),
            Err((message, help)) => {
                sink.error_help(s.span, message, help);
                None
            }
        });

    let dir =
        |sink: &mut Sink<'_>, key: &str, default: &str| optional_path(sink, key).unwrap_or_else(|| default.to_string());
    let state_dir = dir(sink, "state_dir", "/var/lib/sekisho");
    let log_dir = dir(sink, "log_dir", "/var/log/sekisho");

    let metrics = t
        .string(sink, "metrics")
        .and_then(|s| match metrics_listen(&s.value, &listen) {
            Ok(m) => Some(m),
            Err(b) => {
                sink.error_help(s.span, b.message, b.help);
                None
            }
        });

    Server {
        metrics,
        listen,
        hostnames,
        certificate,
        http_listen,
        device_ca,
        device_crl,
        client_certificates,
        trusted_proxies,
        public_url,
        state_dir,
        log_dir,
    }
}

/// `https://HOST[:PORT]` with HOST one of `hostnames`: nothing else (no path, user, query).
fn public_url(text: &str, hostnames: &[String]) -> Result<PublicUrl, (String, String)> {
    let bad = |why: &str| {
        (
            format!("`public_url` = \"{}\" {why}", text.escape_debug()),
            "write the address browsers use, such as \"https://admin.example.jp\" or \"https://admin.example.jp:8443\""
                .to_string(),
        )
    };
    let rest = text
        .strip_prefix("https://")
        .ok_or_else(|| bad("is not an https:// URL"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@', '\\']) || rest.is_empty() {
        return Err(bad("has more than a host and a port"));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("has no valid port"))?,
        ),
        None => (rest, 443),
    };
    if !hostnames.iter().any(|h| h == host) {
        return Err((
            format!(
                "`public_url` names `{}`, which is not in `hostnames`",
                host.escape_debug()
            ),
            format!("use one of {hostnames:?}, or add it to `hostnames`"),
        ));
    }
    Ok(PublicUrl {
        host: host.to_owned(),
        port,
    })
}

/// `tls_cert` + `tls_key`, or `acme`: exactly one of the two.
fn read_certificate(sink: &mut Sink<'_>, t: &Table<'_, '_>) -> ServerCertificate {
    let has = |k: &str| t.table.get(k).is_some();
    if has("acme") {
        if has("tls_cert") || has("tls_key") {
            let key = if has("tls_cert") { "tls_cert" } else { "tls_key" };
            sink.error_help(
                t.span_of(key),
                format!("`{key}` and `acme` are both given; the certificate comes from one of them"),
                "remove `tls_cert` and `tls_key` to have the certificate issued by ACME, or remove `acme`",
            );
        }
        let acme = t.table(sink, "acme", "[server] acme").map(|a| read_acme(sink, &a));
        return match acme {
            Some(a) => ServerCertificate::Acme(a),
            None => ServerCertificate::Files {
                cert: String::new(),
                key: String::new(),
            },
        };
    }
    if !has("tls_cert") && !has("tls_key") {
        sink.error_help(
            t.span.clone(),
            "[server] names no certificate",
            "add `tls_cert` and `tls_key` (PEM files), or `acme = { directory = \"https://…/directory\", contact = \"mailto:…\" }`",
        );
        return ServerCertificate::Files {
            cert: String::new(),
            key: String::new(),
        };
    }
    let cert = t
        .required_string(sink, "tls_cert", "add `tls_cert = \"/etc/sekisho/tls/cert.pem\"`")
        .map(|s| s.value)
        .unwrap_or_default();
    let key = t
        .required_string(sink, "tls_key", "add `tls_key = \"/etc/sekisho/tls/key.pem\"`")
        .map(|s| s.value)
        .unwrap_or_default();
    ServerCertificate::Files { cert, key }
}

fn read_acme(sink: &mut Sink<'_>, t: &Table<'_, '_>) -> Acme {
    t.check_keys(sink, super::keys::ACME);
    let directory = t
        .required_string(
            sink,
            "directory",
            "add `directory = \"https://acme-v02.api.letsencrypt.org/directory\"`",
        )
        .map(|s| {
            if !directory_url_ok(&s.value) {
                sink.error_help(
                    s.span.clone(),
                    format!("`directory` = \"{}\" is not an https:// URL", s.value.escape_debug()),
                    "write the CA's directory URL, e.g. \"https://acme-v02.api.letsencrypt.org/directory\"",
                );
            }
            s.value
        })
        .unwrap_or_default();
    let mut contact = Vec::new();
    if let Some(s) = t.string(sink, "contact") {
        let ok = s.value.strip_prefix("mailto:").is_some_and(|addr| {
            addr.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        }) && !s.value.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',');
        if ok {
            contact.push(s.value);
        } else {
            sink.error_help(
                s.span,
                format!("`contact` = \"{}\" is not a mailto: address", s.value.escape_debug()),
                "write `contact = \"mailto:admin@example.jp\"`",
            );
        }
    }
    let challenge = match t.string(sink, "challenge") {
        None => AcmeChallenge::Http01,
        Some(s) => match s.value.as_str() {
            "http-01" => AcmeChallenge::Http01,
            "tls-alpn-01" => AcmeChallenge::TlsAlpn01,
            other => {
                sink.error_help(
                    s.span,
                    format!("`challenge` = \"{}\" is not a challenge type", other.escape_debug()),
                    "write \"http-01\" or \"tls-alpn-01\"",
                );
                AcmeChallenge::Http01
            }
        },
    };
    let directory_ca = match t.string(sink, "directory_ca") {
        Some(s) if s.value.is_empty() => {
            sink.error_help(
                s.span,
                "`directory_ca` is empty",
                "remove `directory_ca` or name a PEM file",
            );
            None
        }
        other => other.map(|s| s.value),
    };
    Acme {
        directory,
        contact,
        challenge,
        directory_ca,
    }
}

/// `https://host[:port]/…` with a non-empty host and no whitespace.
fn directory_url_ok(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    !host.is_empty() && !host.starts_with(':') && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `http_listen`: plain-HTTP addresses, none shared with `listen`. With http-01 and no
/// `http_listen`, `0.0.0.0:80` (the port the CA connects to).
fn read_http_listen(
    sink: &mut Sink<'_>,
    t: &Table<'_, '_>,
    listen: &[SocketAddr],
    certificate: &ServerCertificate,
) -> Vec<SocketAddr> {
    let http01 = matches!(certificate, ServerCertificate::Acme(a) if a.challenge == AcmeChallenge::Http01);
    let Some(items) = t.string_list(sink, "http_listen") else {
        if http01 && t.table.get("http_listen").is_none() {
            return vec![SocketAddr::from(([0, 0, 0, 0], 80))];
        }
        return Vec::new();
    };
    if items.is_empty() && http01 {
        sink.error_help(
            t.span_of("http_listen"),
            "`http_listen` is empty but the ACME challenge is http-01",
            "add `http_listen = [\"0.0.0.0:80\"]` (the CA connects to port 80), or use `challenge = \"tls-alpn-01\"`",
        );
    }
    let mut out = Vec::new();
    for s in items {
        match super::values::socket_addr(&s.value) {
            Ok(a) if out.contains(&a) => sink.error_help(s.span, format!("`{a}` is listed twice"), "remove one"),
            Ok(a) if listen.contains(&a) => sink.error_help(
                s.span,
                format!("`{a}` is in both `listen` and `http_listen`"),
                "plain HTTP and TLS need different ports: use port 80 here",
            ),
            Ok(a) => out.push(a),
            Err(b) => sink.error_help(s.span, b.message, b.help),
        }
    }
    out
}

/// `metrics = "127.0.0.1:9901"` or `"/run/sekisho/metrics.sock"`: loopback or a Unix
/// socket, never an address other hosts can reach, and not one of the TLS listeners.
fn metrics_listen(value: &str, listen: &[std::net::SocketAddr]) -> Result<MetricsListen, values::Bad> {
    let help = "metrics are for this host only: write \"127.0.0.1:9901\", \"[::1]:9901\" or a Unix socket path such as \"/run/sekisho/metrics.sock\"";
    if value.starts_with('/') {
        return Ok(MetricsListen::Unix(value.to_owned()));
    }
    let addr = values::socket_addr(value).map_err(|_| {
        values::bad(
            format!(
                "`metrics` = \"{}\" is neither a socket address nor an absolute path",
                value.escape_debug()
            ),
            help,
        )
    })?;
    if !addr.ip().is_loopback() {
        return Err(values::bad(
            format!(
                "`metrics` = \"{addr}\" is not a loopback address: anyone who can reach it would read the gateway's counters"
            ),
            help,
        ));
    }
    if listen.contains(&addr) {
        return Err(values::bad(
            format!("`metrics` = \"{addr}\" is also in `listen`"),
            "give metrics a port of its own",
        ));
    }
    Ok(MetricsListen::Tcp(addr))
}
