//! Scraping the gateway's metrics listener with a plain HTTP/1.1 GET (TCP on loopback or a
//! Unix socket) and reading single samples out of the text format.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// `GET path` on a loopback TCP address: (status, body), or `None` if nothing answered.
pub fn get_tcp(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    exchange(&mut s, path)
}

/// `GET path` on a Unix socket.
pub fn get_unix(socket: &Path, path: &str) -> Option<(u16, String)> {
    let mut s = std::os::unix::net::UnixStream::connect(socket).ok()?;
    exchange(&mut s, path)
}

fn exchange<S: std::io::Read + std::io::Write>(s: &mut S, path: &str) -> Option<(u16, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// The value of the sample whose name and labels are exactly `series` (e.g.
/// `sekisho_requests_total{route="site",decision="allow"}`), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn samples_are_found_by_exact_series() {
        let text = "# HELP x y\nx_total{a=\"1\"} 3\nx_total{a=\"12\"} 4\nx 7\n";
        assert_eq!(super::sample(text, "x_total{a=\"1\"}"), Some(3.0));
        assert_eq!(super::sample(text, "x"), Some(7.0));
        assert_eq!(super::sample(text, "x_total{a=\"2\"}"), None);
    }
}
