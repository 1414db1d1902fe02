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
