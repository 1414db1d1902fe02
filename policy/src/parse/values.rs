//! Checks for single values of the policy — names, DNS hostnames, CIDRs, socket addresses,
//! upstream URLs, route paths — each returning the parsed value or a message and a remedy.
//! Pure string work; nothing here knows which table a value came from.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::canon::{canonicalize_target, encode_path};

/// A problem with one value: what is wrong and what to write instead.
#[derive(Debug)]
pub(crate) struct Bad {
    pub message: String,
    pub help: String,
}

pub(crate) fn bad(message: impl Into<String>, help: impl Into<String>) -> Bad {
    Bad {
        message: message.into(),
        help: help.into(),
    }
}

/// Names of routes, upstreams, users and groups: they end up in logs and identity headers, so
/// only a safe ASCII set is allowed.
pub(crate) fn name(what: &str, s: &str) -> Result<(), Bad> {
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(bad(
            format!("{what} `{}` is not a valid name", s.escape_debug()),
            "use 1 to 128 ASCII letters, digits, `-`, `_`, `.` or `@`",
        ))
    }
}

/// A lower-case ASCII DNS name without a trailing dot.
pub(crate) fn hostname(s: &str) -> Result<(), Bad> {
    let lower = s.to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if s.len() <= 253 && s.split('.').all(label_ok) {
        if s == lower {
            return Ok(());
        }
        return Err(bad(
            format!("hostname `{s}` is not lower-case"),
            format!("write `{lower}`"),
        ));
    }
    Err(bad(
        format!("`{}` is not a DNS hostname", s.escape_debug()),
        "write a lower-case ASCII name such as `admin.example.jp` (no port, scheme, trailing dot or `*`)",
    ))
}

/// A CIDR without host bits (a bare address means the single host).
pub(crate) fn net(s: &str) -> Result<IpNet, Bad> {
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(bad(
                    format!("`{}` is not an IP network", s.escape_debug()),
                    "write a CIDR such as `203.0.113.0/24` or `2001:db8::/48`",
                ));
            }
        },
    };
    if net.trunc() != net {
        return Err(bad(
            format!("`{s}` has host bits set"),
            format!("write `{}`", net.trunc()),
        ));
    }
    Ok(net)
}

/// A listen address such as `0.0.0.0:8443` or `[::]:8443`.
pub(crate) fn socket_addr(s: &str) -> Result<SocketAddr, Bad> {
    s.parse().map_err(|_| {
        bad(
            format!("`{}` is not a socket address", s.escape_debug()),
            "write an address and a port, such as \"0.0.0.0:8443\" or \"[::]:8443\"",
        )
    })
}

/// A parsed upstream URL.
#[derive(Debug)]
pub(crate) struct UpstreamUrl {
    pub https: bool,
    pub authority: String,
}

/// `http://host:port` (or `https://`), optionally ending in `/`; the port defaults to 80/443.
pub(crate) fn upstream_url(s: &str) -> Result<UpstreamUrl, Bad> {
    let help = "write `http://host:port` with no path, query or user name, e.g. `http://127.0.0.1:8080`";
    let (https, rest) = if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(bad(
            format!("upstream url `{s}` must start with http:// or https://"),
            help,
        ));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) || authority.is_empty() {
        return Err(bad(format!("upstream url `{s}` is not `scheme://host:port`"), help));
    }
    let default_port = if https { 443 } else { 80 };
    let (host, port) = split_host_port(authority)
        .ok_or_else(|| bad(format!("upstream url `{s}` has a malformed host or port"), help))?;
    let port = port.unwrap_or(default_port);
    let host_ok = host.parse::<std::net::Ipv4Addr>().is_ok()
        || (host.starts_with('[') && host.ends_with(']'))
        || hostname(host).is_ok();
    if !host_ok || port == 0 {
        return Err(bad(format!("upstream url `{s}` has a malformed host or port"), help));
    }
    Ok(UpstreamUrl {
        https,
        authority: format!("{host}:{port}"),
    })
}

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        let host = authority.get(..v6.len() + 2)?;
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.split_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((authority, None)),
    }
}

/// A route path: written decoded and already canonical, so the policy says exactly what the
/// matcher compares. Checked by encoding it with the upstream encoder and canonicalising that:
/// the result must be the path itself.
pub(crate) fn route_path(s: &str) -> Result<(), Bad> {
    let help = "write a decoded path starting with `/`, without `.` or `..` segments, `//`, `%`, `;`, `\\`, \
                `?`, `#`, control characters or a trailing `/` (only the root is `/`)";
    let lower = s.to_lowercase();
    if lower == crate::RESERVED_PREFIX || lower.starts_with(&format!("{}/", crate::RESERVED_PREFIX)) {
        return Err(bad(
            format!(
                "route path `{s}` is under `{}`, which the gateway reserves for its own pages",
                crate::RESERVED_PREFIX
            ),
            "choose another path: no route can shadow the login and enrolment pages",
        ));
    }
    if let Some(c) = s.contains('%').then(|| canonicalize_target(s).ok()).flatten() {
        return Err(bad(
            format!("route path `{}` is percent-encoded", s.escape_debug()),
            format!("write it decoded: `{}`", c.path),
        ));
    }
    match canonicalize_target(&encode_path(s)) {
        Ok(c) if c.path != s => Err(bad(format!("route path `{}` is not canonical", s.escape_debug()), help)),
        Ok(c) if c.path.len() > 1 && c.path.ends_with('/') => Err(bad(
            format!("route path `{s}` ends with `/`"),
            format!(
                "write `{}`: paths match whole segments, so it also matches `{s}` and everything below",
                c.path.trim_end_matches('/')
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(bad(
            format!("route path `{}` is not canonical: {e}", s.escape_debug()),
            help,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let a = |s: &str| upstream_url(s).map(|u| (u.https, u.authority)).map_err(|b| b.message);
        assert_eq!(a("http://127.0.0.1:8080").ok(), Some((false, "127.0.0.1:8080".into())));
        assert_eq!(a("http://127.0.0.1:8080/").ok(), Some((false, "127.0.0.1:8080".into())));
        assert_eq!(a("https://app.internal").ok(), Some((true, "app.internal:443".into())));
        assert_eq!(a("http://[::1]:9000").ok(), Some((false, "[::1]:9000".into())));
        for bad in [
            "ftp://x:1",
            "http://",
            "http://u@h:1",
            "http://h:1/app",
            "http://h:1?x",
            "http://h:99999",
            "http://h:0",
            "http://H:1",
            "127.0.0.1:8080",
        ] {
            assert!(a(bad).is_err(), "{bad}");
        }
    }
}
