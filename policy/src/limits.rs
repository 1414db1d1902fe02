//! Every size, timeout and count Sekisho enforces, in one place: each with a doc comment, a
//! safe default and a key in the policy's optional `[limits]` table (key = field name,
//! durations as strings such as `"10s"`). Reading and bounds-checking the table is here too;
//! enforcing the limits is the gateway's job.

use std::time::Duration;

use crate::parse::{Sink, Table};

/// Resource limits. `Limits::default()` is the safe setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method, target, version) in bytes; longer gets 414. Default 8192.
    pub max_request_line_bytes: usize,
    /// Largest header block in bytes, all headers together; larger gets 431. At least 8192
    /// (hyper's smallest read buffer). Default 16384.
    pub max_header_bytes: usize,
    /// Most header fields in one request. Default 64.
    pub max_headers: usize,
    /// Largest request body in bytes. Default 10 MiB.
    pub max_body_bytes: u64,
    /// Time allowed to receive the whole request head. Default 10s.
    pub header_read_timeout: Duration,
    /// Idle keep-alive connection lifetime. Default 60s.
    pub idle_timeout: Duration,
    /// Time allowed for the TLS handshake. Default 10s.
    pub tls_handshake_timeout: Duration,
    /// Open client connections in total. Default 4096.
    pub max_connections: usize,
    /// Open client connections per source address. Default 64.
    pub max_connections_per_ip: usize,
    /// Time allowed to connect to an upstream. Default 5s.
    pub upstream_connect_timeout: Duration,
    /// Time allowed for an upstream's response head. Default 60s.
    pub upstream_response_timeout: Duration,
    /// Idle pooled connections kept per upstream. Default 64.
    pub upstream_idle_pool_per_host: usize,
    /// HTTP/2 concurrent streams per connection. Default 100.
    pub h2_max_concurrent_streams: u32,
    /// How often the device CRL file is checked for changes. Default 2s.
    pub revocation_poll_interval: Duration,
    /// Time in-flight requests get to finish on shutdown. Default 10s.
    pub shutdown_grace: Duration,
    /// How often the policy file is checked for changes (identity, then content hash), in
    /// addition to SIGHUP. Default 1s.
    pub policy_poll_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_line_bytes: 8192,
            max_header_bytes: 16384,
            max_headers: 64,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_ip: 64,
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_response_timeout: Duration::from_secs(60),
            upstream_idle_pool_per_host: 64,
            h2_max_concurrent_streams: 100,
            revocation_poll_interval: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(10),
            policy_poll_interval: Duration::from_secs(1),
        }
    }
}

/// File descriptors the process keeps for itself beyond its connections: listeners, the
/// audit log, the state store, the control socket, policy and certificate reads, notices.
pub const OPEN_FILES_MARGIN: u64 = 512;

impl Limits {
    /// The open-file limit (`RLIMIT_NOFILE`) the gateway sets for itself: every client
    /// connection may hold one upstream connection too, plus the idle pool and a margin.
    pub fn open_files(&self) -> u64 {
        let conns = u64::try_from(self.max_connections).unwrap_or(u64::MAX);
        let pool = u64::try_from(self.upstream_idle_pool_per_host).unwrap_or(u64::MAX);
        conns
            .saturating_mul(2)
            .saturating_add(pool)
            .saturating_add(OPEN_FILES_MARGIN)
    }
}

const MIB: u64 = 1024 * 1024;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Reads `[limits]`: absent keys keep their default; out-of-bounds values are reported.
pub(crate) fn read(sink: &mut Sink<'_>, table: Option<&Table<'_, '_>>) -> Limits {
    let mut l = Limits::default();
    let Some(t) = table else {
        return l;
    };
    t.check_keys(sink, crate::parse::keys::LIMITS);

    let size = |sink: &mut Sink<'_>, key: &str, min: u64, max: u64, into: &mut usize| {
        if let Some(n) = t.integer(sink, key, min, max).and_then(|n| usize::try_from(n).ok()) {
            *into = n;
        }
    };
    size(sink, "max_request_line_bytes", 256, MIB, &mut l.max_request_line_bytes);
    size(sink, "max_header_bytes", 8192, MIB, &mut l.max_header_bytes);
    size(sink, "max_headers", 1, 1024, &mut l.max_headers);
    size(sink, "max_connections", 1, 1_000_000, &mut l.max_connections);
    size(
        sink,
        "max_connections_per_ip",
        1,
        1_000_000,
        &mut l.max_connections_per_ip,
    );
    size(
        sink,
        "upstream_idle_pool_per_host",
        1,
        10_000,
        &mut l.upstream_idle_pool_per_host,
    );
    if let Some(n) = t.integer(sink, "max_body_bytes", 1, 64 * 1024 * MIB) {
        l.max_body_bytes = n;
    }
    if let Some(n) = t
        .integer(sink, "h2_max_concurrent_streams", 1, 10_000)
        .and_then(|n| u32::try_from(n).ok())
    {
        l.h2_max_concurrent_streams = n;
    }

    let ms = Duration::from_millis;
    let duration = |sink: &mut Sink<'_>, key: &str, min: Duration, max: Duration, into: &mut Duration| {
        if let Some(d) = t.duration(sink, key, min, max) {
            *into = d;
        }
    };
    duration(
        sink,
        "header_read_timeout",
        ms(100),
        secs(300),
        &mut l.header_read_timeout,
    );
    duration(sink, "idle_timeout", secs(1), secs(3600), &mut l.idle_timeout);
    duration(
        sink,
        "tls_handshake_timeout",
        ms(100),
        secs(300),
        &mut l.tls_handshake_timeout,
    );
    duration(
        sink,
        "upstream_connect_timeout",
        ms(10),
        secs(300),
        &mut l.upstream_connect_timeout,
    );
    duration(
        sink,
        "upstream_response_timeout",
        ms(100),
        secs(3600),
        &mut l.upstream_response_timeout,
    );
    duration(
        sink,
        "revocation_poll_interval",
        ms(100),
        secs(3600),
        &mut l.revocation_poll_interval,
    );
    duration(sink, "shutdown_grace", ms(1), secs(3600), &mut l.shutdown_grace);
    duration(
        sink,
        "policy_poll_interval",
        ms(100),
        secs(3600),
        &mut l.policy_poll_interval,
    );

    if l.max_connections_per_ip > l.max_connections {
        sink.error_help(
            t.span_of("max_connections_per_ip"),
            "`max_connections_per_ip` is larger than `max_connections`",
            format!("use at most {}", l.max_connections),
        );
    }
    if l.max_request_line_bytes > l.max_header_bytes {
        sink.error_help(
            t.span_of("max_request_line_bytes"),
            "`max_request_line_bytes` is larger than `max_header_bytes`",
            "the request line is read into the header buffer: raise `max_header_bytes` or lower this",
        );
    }
    l
}
