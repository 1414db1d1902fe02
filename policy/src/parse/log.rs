//! The `[log]` table (the signed access log's limits and failure behaviour) and its
//! `[log.remote]` sub-table (a copy off the host). Bounds here, defaults and meanings in
//! [`crate::limits::LogSettings`]. Paths stay strings: no IO here.

use std::net::IpAddr;
use std::time::Duration;

use super::diagnostic::Sink;
use super::keys;
use super::values::hostname;
use super::walk::Table;
use crate::limits::{LogSettings, PublicWhenUnwritable};
use crate::model::{LogRemote, RemoteTarget, Ship};

/// The syslog-over-TLS port of RFC 5425.
const SYSLOG_TLS_PORT: u16 = 6514;

pub(crate) fn read(sink: &mut Sink<'_>, t: Option<&Table<'_, '_>>) -> LogSettings {
    let mut l = LogSettings::default();
    let Some(t) = t else { return l };
    t.check_keys(sink, keys::LOG);
    let secs = Duration::from_secs;

    if let Some(n) = t.integer(sink, "retention_days", 1, 36_500) {
        l.retention_days = n;
    }
    if let Some(n) = t.integer(sink, "checkpoint_records", 1, 1_000_000) {
        l.checkpoint_records = n;
    }
    if let Some(d) = t.duration(sink, "checkpoint_interval", Duration::from_millis(100), secs(3600)) {
        l.checkpoint_interval = d;
    }
    if let Some(d) = t.duration(sink, "seal_epoch", secs(60), secs(86_400)) {
        if d.subsec_nanos() == 0 {
            l.seal_epoch = d;
        } else {
            sink.error_help(
                t.span_of("seal_epoch"),
                "`seal_epoch` must be whole seconds",
                "write e.g. \"1h\" or \"15m\"",
            );
        }
    }
    if let Some(n) = t
        .integer(sink, "max_batch", 1, 65_536)
        .and_then(|n| usize::try_from(n).ok())
    {
        l.max_batch = n;
    }
    if let Some(b) = t.boolean(sink, "public_waits_for_fsync") {
        l.public_waits_for_fsync = b;
    }
    if let Some(s) = t.string(sink, "public_when_unwritable") {
        match s.value.as_str() {
            "serve" => l.public_when_unwritable = PublicWhenUnwritable::Serve,
            "refuse" => l.public_when_unwritable = PublicWhenUnwritable::Refuse,
            other => sink.error_help(
                s.span,
                format!(
                    "`public_when_unwritable` = \"{}\" is not one of serve, refuse",
                    other.escape_debug()
                ),
                "write \"serve\" (public pages stay up, default) or \"refuse\" (503 like protected routes)",
            ),
        }
    }
    if let Some(n) = t
        .integer(sink, "remote_queue", 16, 1_000_000)
        .and_then(|n| usize::try_from(n).ok())
    {
        l.remote_queue = n;
    }
    if let Some(d) = t.duration(sink, "remote_retry_max", secs(1), secs(3600)) {
        l.remote_retry_max = d;
    }
    if let Some(b) = t.boolean(sink, "danger_disable_audit") {
        l.danger_disable_audit = b;
    }
    if l.checkpoint_interval > l.seal_epoch {
        sink.error_help(
            t.span_of("checkpoint_interval"),
            "`checkpoint_interval` is longer than `seal_epoch`",
            "seal at least once per epoch: make checkpoint_interval at most seal_epoch",
        );
    }
    if let Some(r) = t.table(sink, "remote", "[log.remote]") {
        l.remote = read_remote(sink, &r);
    }
    l
}

fn read_remote(sink: &mut Sink<'_>, t: &Table<'_, '_>) -> Option<LogRemote> {
    t.check_keys(sink, keys::LOG_REMOTE);
    let ship = match t.string(sink, "ship") {
        None => Ship::Records,
        Some(s) => match s.value.as_str() {
            "records" => Ship::Records,
            "checkpoints" => Ship::Checkpoints,
            other => {
                sink.error_help(
                    s.span,
                    format!(
                        "`ship` = \"{}\" is not one of records, checkpoints",
                        other.escape_debug()
                    ),
                    "write \"records\" (every record, default) or \"checkpoints\" (seals only)",
                );
                Ship::Records
            }
        },
    };
    let ca_file = t.string(sink, "ca_file").and_then(|s| {
        if s.value.is_empty() || s.value.chars().any(char::is_control) {
            sink.error_help(
                s.span,
                "`ca_file` is empty or has control characters",
                "write the PEM file's path",
            );
            None
        } else {
            Some(s.value)
        }
    });
    let https = t.string(sink, "https");
    let syslog = t.string(sink, "syslog");
    let syslog = match (syslog, https) {
        (Some(_), Some(h)) => {
            sink.error_help(
                h.span,
                "[log.remote] names both `syslog` and `https`",
                "ship to one receiver: keep `syslog` or `https`",
            );
            return None;
        }
        (None, None) => {
            t.missing(
                sink,
                "syslog",
                "add the receiver, e.g. syslog = \"logs.example.jp:6514\" (RFC 5425 syslog over TLS) or https = \"https://logs.example.jp/sekisho\"",
            );
            return None;
        }
        (None, Some(h)) => {
            if !h.value.starts_with("https://") {
                sink.error_help(
                    h.span,
                    format!("`https` `{}` must start with https://", h.value.escape_debug()),
                    "the log leaves the host: write https://host[:port]/path",
                );
                return None;
            }
            if let Err((message, help)) = super::notify::webhook_url("https", &h.value) {
                sink.error_help(h.span, message, help);
                return None;
            }
            return Some(LogRemote {
                target: RemoteTarget::Https { url: h.value },
                ca_file,
                ship,
            });
        }
        (Some(s), None) => s,
    };
    let Some((host, port)) = host_port(&syslog.value) else {
        sink.error_help(
            syslog.span,
            format!(
                "`syslog` = \"{}\" is not host:port",
                syslog.value.escape_debug()
            ),
            "write a DNS name or an IP address and an optional port: \"logs.example.jp:6514\", \"192.0.2.7\", \"[2001:db8::7]:6514\"",
        );
        return None;
    };
    Some(LogRemote {
        target: RemoteTarget::Syslog { host, port },
        ca_file,
        ship,
    })
}

/// `host[:port]`, `[v6][:port]` or a bare IPv6 address; the port defaults to 6514.
fn host_port(s: &str) -> Option<(String, u16)> {
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0);
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((ip.to_string(), SYSLOG_TLS_PORT));
    }
    let (host, p) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let ip: std::net::Ipv6Addr = h.parse().ok()?;
        let p = match after {
            "" => SYSLOG_TLS_PORT,
            a => port(a.strip_prefix(':')?)?,
        };
        return Some((ip.to_string(), p));
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, port(p)?),
            None => (s, SYSLOG_TLS_PORT),
        }
    };
    let ok = host.parse::<std::net::Ipv4Addr>().is_ok() || hostname(host).is_ok();
    ok.then(|| (host.to_owned(), p))
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn syslog_addresses() {
        assert_eq!(host_port("127.0.0.1:6514"), Some(("127.0.0.1".into(), 6514)));
        assert_eq!(host_port("logs.example.jp"), Some(("logs.example.jp".into(), 6514)));
        assert_eq!(host_port("[::1]:10514"), Some(("::1".into(), 10514)));
        assert_eq!(host_port("::1"), Some(("::1".into(), 6514)));
        assert_eq!(host_port("logs.example.jp:0"), None);
        assert_eq!(host_port("logs example:1"), None);
        assert_eq!(host_port("[::1]x"), None);
        assert_eq!(host_port(""), None);
    }
}
