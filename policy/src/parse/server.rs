//! Reads the `[server]` table into a [`Server`], reporting every problem. Paths stay strings:
//! nothing here checks that a file exists.

use super::diagnostic::Sink;
use super::values;
use super::walk::Table;
use crate::model::{ClientCertMode, MetricsListen, Server};

/// A server value used only to keep walking after `[server]` was missing; `parse` never
/// returns it because the missing table is an error.
pub(super) fn placeholder() -> Server {
    Server {
        listen: Vec::new(),
        hostnames: Vec::new(),
        tls_cert: String::new(),
        tls_key: String::new(),
        device_ca: None,
        device_crl: None,
        client_certificates: ClientCertMode::Off,
        trusted_proxies: Vec::new(),
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

    let tls_cert = t
        .required_string(sink, "tls_cert", "add `tls_cert = \"/etc/sekisho/tls/cert.pem\"`")
        .map(|s| s.value)
        .unwrap_or_default();
    let tls_key = t
        .required_string(sink, "tls_key", "add `tls_key = \"/etc/sekisho/tls/key.pem\"`")
        .map(|s| s.value)
        .unwrap_or_default();
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

    let mut trusted_proxies = Vec::new();
    for s in t.string_list(sink, "trusted_proxies").unwrap_or_default() {
        match values::net(&s.value) {
            Ok(n) => trusted_proxies.push(n),
            Err(b) => sink.error_help(s.span, b.message, b.help),
        }
    }

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
        tls_cert,
        tls_key,
        device_ca,
        device_crl,
        client_certificates,
        trusted_proxies,
        state_dir,
        log_dir,
    }
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
