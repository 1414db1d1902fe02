//! The client's address. It is the TCP peer, unless the peer is a trusted proxy: then it
//! is the right-most `X-Forwarded-For` entry that is not itself a trusted proxy. Nothing
//! else a client sends (Forwarded, X-Real-IP, True-Client-IP …) is ever believed.

use crate::error::Refusal;
use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// Decides the client address for one request.
pub fn client_address(peer: IpAddr, trusted: &[IpNet], headers: &HeaderMap) -> Result<IpAddr, Refusal> {
    if !is_trusted(peer, trusted) {
        return Ok(peer);
    }
    let mut entries: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let text = value.to_str().map_err(|_| Refusal::BadRequest("bad_x_forwarded_for"))?;
        for item in text.split(',') {
            let item = item.trim();
            // An unparsable entry from a trusted peer means the chain cannot be read: refuse
            // rather than skip it (HDR-006).
            let ip: IpAddr = item.parse().map_err(|_| Refusal::BadRequest("bad_x_forwarded_for"))?;
            entries.push(canonical(ip));
            if entries.len() > 64 {
                return Err(Refusal::BadRequest("x_forwarded_for_too_long"));
            }
        }
    }
    // Right to left: the first address that is not one of our proxies is the client.
    for ip in entries.iter().rev() {
        if !is_trusted(*ip, trusted) {
            return Ok(*ip);
        }
    }
    // Every hop is a trusted proxy (or there is no header): the left-most is the client,
    // or the peer itself.
    Ok(entries.first().copied().unwrap_or(peer))
}

/// IPv4-mapped IPv6 addresses are compared as IPv4, so `::ffff:127.0.0.10` cannot slip
/// past an IPv4 allowlist or into one.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Whether `ip` is one of the trusted proxies (never banned or rate-limited itself).
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(peer: &str, xff: &[&str]) -> Result<String, u16> {
        let trusted: Vec<IpNet> = vec!["127.0.0.2/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        client_address(peer.parse().unwrap(), &trusted, &h)
            .map(|ip| ip.to_string())
            .map_err(|r| r.status().as_u16())
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        assert_eq!(check("127.0.0.1", &["127.0.0.10"]), Ok("127.0.0.1".into()));
    }

    #[test]
    fn trusted_peer_yields_the_rightmost_untrusted_entry() {
        assert_eq!(
            check("127.0.0.2", &["127.0.0.10, 198.51.100.7"]),
            Ok("198.51.100.7".into())
        );
        assert_eq!(
            check("127.0.0.2", &["127.0.0.10", "198.51.100.7"]),
            Ok("198.51.100.7".into())
        );
        assert_eq!(
            check("127.0.0.2", &["198.51.100.7, 10.1.2.3"]),
            Ok("198.51.100.7".into())
        );
        assert_eq!(check("127.0.0.2", &[]), Ok("127.0.0.2".into()));
        assert_eq!(check("127.0.0.2", &["::ffff:203.0.113.5"]), Ok("203.0.113.5".into()));
    }

    #[test]
    fn unparsable_chain_is_refused() {
        assert_eq!(check("127.0.0.2", &["a"]), Err(400));
        assert_eq!(check("127.0.0.2", &["198.51.100.7:443"]), Err(400));
        assert_eq!(check("127.0.0.2", &["198.51.100.7,"]), Err(400));
    }
}
