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
    /// Time allowed to receive the whole request body (a body trickled slower is cut off
    /// with 408). Raise it for large uploads over slow links. Default 120s.
    pub body_read_timeout: Duration,
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
    /// Time in-flight requests get to finish on shutdown, and an idle connection gets to
    /// close after the gateway said goodbye (then it is dropped). Default 10s.
    pub shutdown_grace: Duration,
    /// How often the policy file is checked for changes (identity, then content hash), in
    /// addition to SIGHUP. Default 1s.
    pub policy_poll_interval: Duration,
    /// An ACME certificate is renewed once this percentage of its lifetime (notBefore to
    /// notAfter) has passed: 67 is two thirds (30 days left of Let's Encrypt's 90). 10 to 90.
    pub acme_renew_percent: u8,
    /// The wait after the first failed ACME attempt; each further failure doubles it, up to
    /// `acme_retry_max`. The old certificate keeps serving meanwhile. Default 1m.
    pub acme_retry_min: Duration,
    /// The longest wait between failed ACME attempts. Default 6h (with 67 % of 90 days,
    /// a failing CA still gets dozens of attempts before the certificate expires).
    pub acme_retry_max: Duration,
    /// Time one issuance may take, from the new order to the downloaded certificate
    /// (challenge validation included). Default 5m.
    pub acme_order_timeout: Duration,
    /// Time one HTTP request to the ACME CA may take (connect, TLS, answer). Default 30s.
    pub acme_request_timeout: Duration,
    /// Denials from one client address (refusals the pipeline records: 400, 403, 404, 405,
    /// 408, 413, 414, 421, 431 and failed or refused logins; never 401/302 to the login, 429
    /// or 5xx) within `ban_window` that ban the address for `ban_duration`. 0 disables
    /// bans. Default 30.
    pub ban_after_denials: u32,
    /// The sliding window denials are counted in. Default 60s.
    pub ban_window: Duration,
    /// How long a ban lasts; a ban that follows another within `ban_duration` of its end
    /// lasts twice as long as the one before (up to 32×). Default 5m.
    pub ban_duration: Duration,
    /// Client addresses tracked at once for bans and rate limits (IPv6 by /64). A full
    /// table forgets the least recently seen unbanned address first; it never grows.
    /// Default 10000.
    pub max_tracked_addresses: usize,
    /// POSTs to the gateway's own pages (`/.sekisho/`: logins, invitations, enrolment) per
    /// minute and client address; more get 429. 0 disables. Default 30.
    pub login_rate_per_minute: u32,
    /// How many of those POSTs may come at once before the rate applies. Default 10.
    pub login_burst: u32,
    /// Requests of any kind per second and client address; more get 429. 0 (the default)
    /// disables: the connection caps already bound what one address holds open, and a
    /// busy NAT or a benchmark would meet a default rate first.
    pub request_rate_per_second: u32,
    /// How many requests may come at once before `request_rate_per_second` applies.
    /// Default 200.
    pub request_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_line_bytes: 8192,
            max_header_bytes: 16384,
            max_headers: 64,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(120),
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
            acme_renew_percent: 67,
            acme_retry_min: Duration::from_secs(60),
            acme_retry_max: Duration::from_secs(6 * 3600),
            acme_order_timeout: Duration::from_secs(300),
            acme_request_timeout: Duration::from_secs(30),
            ban_after_denials: 30,
            ban_window: Duration::from_secs(60),
            ban_duration: Duration::from_secs(300),
            max_tracked_addresses: 10_000,
            login_rate_per_minute: 30,
            login_burst: 10,
            request_rate_per_second: 0,
            request_burst: 200,
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
    size(
        sink,
        "max_tracked_addresses",
        16,
        1_000_000,
        &mut l.max_tracked_addresses,
    );
    let count = |sink: &mut Sink<'_>, key: &str, min: u64, max: u64, into: &mut u32| {
        if let Some(n) = t.integer(sink, key, min, max).and_then(|n| u32::try_from(n).ok()) {
            *into = n;
        }
    };
    count(sink, "ban_after_denials", 0, 100_000, &mut l.ban_after_denials);
    count(sink, "login_rate_per_minute", 0, 100_000, &mut l.login_rate_per_minute);
    count(sink, "login_burst", 1, 100_000, &mut l.login_burst);
    count(
        sink,
        "request_rate_per_second",
        0,
        1_000_000,
        &mut l.request_rate_per_second,
    );
    count(sink, "request_burst", 1, 1_000_000, &mut l.request_burst);
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
    duration(
        sink,
        "body_read_timeout",
        ms(100),
        secs(86_400),
        &mut l.body_read_timeout,
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
    duration(sink, "ban_window", secs(1), secs(86_400), &mut l.ban_window);
    duration(sink, "ban_duration", secs(1), secs(7 * 86_400), &mut l.ban_duration);
    duration(
        sink,
        "policy_poll_interval",
        ms(100),
        secs(3600),
        &mut l.policy_poll_interval,
    );

    if let Some(n) = t
        .integer(sink, "acme_renew_percent", 10, 90)
        .and_then(|n| u8::try_from(n).ok())
    {
        l.acme_renew_percent = n;
    }
    duration(sink, "acme_retry_min", ms(100), secs(86_400), &mut l.acme_retry_min);
    duration(sink, "acme_retry_max", ms(100), secs(7 * 86_400), &mut l.acme_retry_max);
    duration(
        sink,
        "acme_order_timeout",
        secs(1),
        secs(3600),
        &mut l.acme_order_timeout,
    );
    duration(
        sink,
        "acme_request_timeout",
        ms(100),
        secs(300),
        &mut l.acme_request_timeout,
    );
    if l.acme_retry_min > l.acme_retry_max {
        sink.error_help(
            t.span_of("acme_retry_min"),
            "`acme_retry_min` is longer than `acme_retry_max`",
            "make acme_retry_min at most acme_retry_max",
        );
    }

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

/// The `[log]` table: the signed access log's limits and its behaviour when it cannot be
/// written. `LogSettings::default()` is the safe setting. Read at start: the writer keeps
/// the values it was opened with until the next start (a reload that changes them says so),
/// except `public_waits_for_fsync` and `public_when_unwritable`, which every request reads
/// from the active policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Closed files are kept at least this many days after their last possible record;
    /// nothing younger is ever deleted. At least 1 (parser); below 365 is a lint error (IPA
    /// asks for web logs kept one year). Default 365.
    pub retention_days: u64,
    /// A checkpoint is sealed at least every this many records. Smaller means a tighter
    /// window an intruder could rewrite before the next seal; each seal costs one Ed25519
    /// signature (~20 µs). 1 to 1,000,000. Default 1000.
    pub checkpoint_records: u64,
    /// … and at least this often while records wait to be sealed (an idle log is not
    /// sealed again). 100ms to 1h. Default 10s.
    pub checkpoint_interval: Duration,
    /// The sealing key evolves (and the previous one is erased) this often: an intruder
    /// who takes the host can rewrite at most the records since the current epoch began.
    /// Used only when the log is initialised (the epoch length is part of its first file).
    /// 1m to 1d. Default 1h.
    pub seal_epoch: Duration,
    /// The most records written and fsynced as one batch. 1 to 65,536. Default 4096.
    pub max_batch: usize,
    /// Whether a response on a public route waits for its record to be durable. Default
    /// true: every response waits.
    pub public_waits_for_fsync: bool,
    /// What public routes do while the log cannot be written (protected routes always get
    /// 503). Default `Serve`.
    pub public_when_unwritable: PublicWhenUnwritable,
    /// Records waiting to be shipped to `[log.remote]` (besides the one batch, at most
    /// 256 KiB, being sent); when full, new records are not queued (counted, and the count
    /// is written to the log as a `remote_dropped` record). 16 to 1,000,000. Default 16384
    /// (a few MiB).
    pub remote_queue: usize,
    /// The longest pause between two attempts to reach `[log.remote]` (the pause doubles
    /// from 100ms up to this). 1s to 1h. Default 30s.
    pub remote_retry_max: Duration,
    /// Where records and checkpoints are shipped off the host, if anywhere. Default none.
    pub remote: Option<crate::model::LogRemote>,
    /// Benchmark only: no access log at all. A lint error, and `sekisho run` refuses it
    /// unless `SEKISHO_DANGER_BENCHMARK=1` is set. Default false.
    pub danger_disable_audit: bool,
}

impl LogSettings {
    /// Whether `self` differs from `old` in a setting that the log's writer or shipper
    /// only reads at start (everything but the two public-route keys).
    pub fn reload_needs_restart(&self, old: &LogSettings) -> bool {
        let live = |l: &LogSettings| LogSettings {
            public_waits_for_fsync: true,
            public_when_unwritable: PublicWhenUnwritable::Serve,
            ..l.clone()
        };
        live(self) != live(old)
    }
}

/// `public_when_unwritable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicWhenUnwritable {
    /// Public routes are served without their record (the failure is logged loudly and
    /// protected routes get 503). A full disk does not take the public site down.
    Serve,
    /// Public routes get 503 too: nothing is served that is not recorded.
    Refuse,
}

/// The retention IPA asks for: one year.
pub const MIN_RECOMMENDED_RETENTION_DAYS: u64 = 365;

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            retention_days: MIN_RECOMMENDED_RETENTION_DAYS,
            checkpoint_records: 1000,
            checkpoint_interval: secs(10),
            seal_epoch: secs(3600),
            max_batch: 4096,
            public_waits_for_fsync: true,
            public_when_unwritable: PublicWhenUnwritable::Serve,
            remote_queue: 16_384,
            remote_retry_max: secs(30),
            remote: None,
            danger_disable_audit: false,
        }
    }
}

/// Fixed limits of the access log and its remote copy: not policy keys, because no owner
/// has a reason to change them (each says why). The gateway's `audit::limits` re-exports
/// them.
pub mod log_fixed {
    use std::time::Duration;

    /// How long the writer waits before trying again after a write error while nothing
    /// new arrives (new records always retry at once).
    pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

    /// Strings of events that are not client-controlled but can be long (a rejected
    /// policy's diagnostics) are cut to this many bytes.
    pub const MAX_EVENT_TEXT: usize = 8 * 1024;

    /// How much of the end of the last file is read at start to find the chain's head and
    /// the last key handover. A checkpoint is always within it unless a thousand records
    /// exceed it.
    pub const RECOVERY_TAIL_BYTES: u64 = 8 * 1024 * 1024;

    /// Time allowed to connect to the remote receiver, TLS handshake included.
    pub const REMOTE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Time allowed for one write to the remote receiver; a receiver that stops reading
    /// is treated as gone (the connection is dropped and made again).
    pub const REMOTE_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

    /// The first pause after a failed attempt to reach the receiver (it doubles up to
    /// `[log] remote_retry_max`).
    pub const REMOTE_RETRY_MIN: Duration = Duration::from_millis(100);

    /// Most bytes of framed messages sent to the receiver in one write.
    pub const REMOTE_MAX_WRITE_BYTES: usize = 256 * 1024;

    /// At stop, how long what is still queued may take to reach the receiver (the final
    /// checkpoint is in it) before the gateway exits anyway.
    pub const REMOTE_FLUSH_AT_STOP: Duration = Duration::from_secs(5);
}
