//! The key tables of format 1: every table's allowed keys with their kind and a one-line
//! meaning. The parser checks keys against these tables, and `sekisho policy schema` emits
//! its JSON Schema from the very same tables, so the two cannot drift apart.

/// One allowed key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
}

/// What a key holds (as much as a JSON Schema can say; the parser checks the rest).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// The integer 1.
    Version,
    String,
    Bool,
    /// An integer in `min..=max`.
    Integer(u64, u64),
    /// A duration string such as `"15m"`.
    Duration,
    StringList,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A list of these strings.
    ListOf(&'static [&'static str]),
    /// A sub-table with these keys.
    Table(&'static [Key]),
    /// An array of tables with these keys; `required` keys listed.
    Tables(&'static [Key], &'static [&'static str]),
    /// An inline table (the request of a `[[test]]`).
    Inline(&'static [Key]),
    /// `true`, `false` or a user name (the `device` of a test request).
    BoolOrString,
}

const fn key(name: &'static str, kind: Kind, doc: &'static str) -> Key {
    Key { name, kind, doc }
}

/// The names of a table's keys.
pub(crate) fn names(keys: &[Key]) -> Vec<&'static str> {
    keys.iter().map(|k| k.name).collect()
}

pub(crate) const ROOT: &[Key] = &[
    key("version", Kind::Version, "Policy format; always 1."),
    key("server", Kind::Table(SERVER), "Listeners, TLS, device CA, directories."),
    key("session", Kind::Table(SESSION), "Second-factor session timeouts."),
    key(
        "lockout",
        Kind::Table(LOCKOUT),
        "Lockout after failed second-factor attempts.",
    ),
    key(
        "notify",
        Kind::Table(NOTIFY),
        "Where notices (factor changes, new device or address, lockout, ...) are delivered.",
    ),
    key(
        "limits",
        Kind::Table(LIMITS),
        "Sizes, timeouts and counts (each has a safe default).",
    ),
    key(
        "log",
        Kind::Table(LOG),
        "The signed access log: retention, sealing, failure behaviour, remote copy.",
    ),
    key(
        "upstream",
        Kind::Tables(UPSTREAM, &["name", "url"]),
        "An application behind the gateway.",
    ),
    key(
        "route",
        Kind::Tables(ROUTE, &["name", "paths", "access"]),
        "Paths and who may reach them; the longest matching path wins.",
    ),
    key(
        "user",
        Kind::Tables(USER, &["name"]),
        "A person who may pass protected routes.",
    ),
    key(
        "test",
        Kind::Tables(TEST, &["request", "expect"]),
        "A policy test run by `sekisho policy test`; does not change what the gateway decides.",
    ),
];

pub(crate) const SERVER: &[Key] = &[
    key(
        "listen",
        Kind::StringList,
        "Socket addresses, e.g. \"0.0.0.0:8443\", \"[::]:8443\".",
    ),
    key(
        "hostnames",
        Kind::StringList,
        "Host / SNI names served; others get 421.",
    ),
    key(
        "tls_cert",
        Kind::String,
        "PEM certificate chain file (or `acme` instead).",
    ),
    key(
        "tls_key",
        Kind::String,
        "PEM private key file (the key stays in the file).",
    ),
    key(
        "acme",
        Kind::Inline(ACME),
        "Certificates obtained and renewed from an ACME CA, instead of tls_cert/tls_key.",
    ),
    key(
        "http_listen",
        Kind::StringList,
        "Plain-HTTP listeners: ACME http-01 answers, everything else redirected to https (default with http-01: \"0.0.0.0:80\").",
    ),
    key("device_ca", Kind::String, "CA whose certificates identify devices."),
    key(
        "device_crl",
        Kind::String,
        "CRL of the device CA (default: beside device_ca).",
    ),
    key(
        "client_certificates",
        Kind::OneOf(&["require", "request", "off"]),
        "Whether the TLS listener asks for device certificates.",
    ),
    key(
        "trusted_proxies",
        Kind::StringList,
        "CIDRs whose X-Forwarded-For is believed.",
    ),
    key(
        "public_url",
        Kind::String,
        "How browsers reach the gateway (\"https://admin.example.jp\"), for invitation links; \
         default: the first hostname and the first listen port.",
    ),
    key("state_dir", Kind::String, "Sessions, enrolments and counters."),
    key("log_dir", Kind::String, "The signed audit log."),
    key(
        "metrics",
        Kind::String,
        "Prometheus metrics listener: a loopback address (\"127.0.0.1:9901\") or a Unix socket path.",
    ),
];

/// The ACME challenge types, in the policy's (and RFC 8555/8737's) spelling.
pub(crate) const ACME_CHALLENGES: &[&str] = &["http-01", "tls-alpn-01"];

pub(crate) const ACME: &[Key] = &[
    key(
        "directory",
        Kind::String,
        "The ACME directory URL (https://), e.g. Let's Encrypt's.",
    ),
    key(
        "contact",
        Kind::String,
        "Account contact, \"mailto:admin@example.jp\" (the CA's expiry warnings go there).",
    ),
    key(
        "challenge",
        Kind::OneOf(ACME_CHALLENGES),
        "http-01 (port 80, `http_listen`) or tls-alpn-01 (the TLS listener). Default http-01.",
    ),
    key(
        "directory_ca",
        Kind::String,
        "PEM CA certificates trusted for the directory's TLS (a private or test CA); default: the system's roots.",
    ),
];

pub(crate) const SESSION: &[Key] = &[
    key(
        "idle_timeout",
        Kind::Duration,
        "Idle time that ends a session (1m to 30d).",
    ),
    key("absolute_timeout", Kind::Duration, "Lifetime of a session (1m to 30d)."),
];

pub(crate) const LOCKOUT: &[Key] = &[
    key(
        "max_failures",
        Kind::Integer(1, 1000),
        "Failed second-factor attempts …",
    ),
    key("window", Kind::Duration, "… within this window …"),
    key(
        "duration",
        Kind::Duration,
        "… lock the user and the source address for this long.",
    ),
];

pub(crate) const SMTP_TLS: &[&str] = &["starttls", "tls", "none"];

pub(crate) const NOTIFY: &[Key] = &[
    key(
        "admin_email",
        Kind::String,
        "The admin's address; receives every notice.",
    ),
    key(
        "smtp_host",
        Kind::String,
        "Mail server for notices (no mail without it).",
    ),
    key(
        "smtp_port",
        Kind::Integer(1, 65_535),
        "Mail server port (default 587 for starttls, 465 for tls, 25 for none).",
    ),
    key(
        "smtp_tls",
        Kind::OneOf(SMTP_TLS),
        "How mail is protected (default starttls; none only for a loopback smtp_host).",
    ),
    key("smtp_user", Kind::String, "SMTP login (with smtp_password_file)."),
    key(
        "smtp_password_file",
        Kind::String,
        "File holding the SMTP password (the password stays in the file).",
    ),
    key("from", Kind::String, "Sender address of notice mail."),
    key(
        "webhook_url",
        Kind::String,
        "An https:// URL (http:// only on loopback) receiving each notice as a JSON POST.",
    ),
];

pub(crate) const LIMITS: &[Key] = &[
    key(
        "max_request_line_bytes",
        Kind::Integer(256, 1 << 20),
        "Longest request line (414).",
    ),
    key(
        "max_header_bytes",
        Kind::Integer(8192, 1 << 20),
        "Largest header block (431).",
    ),
    key(
        "max_headers",
        Kind::Integer(1, 1024),
        "Most header fields in one request.",
    ),
    key(
        "max_body_bytes",
        Kind::Integer(1, 64 << 30),
        "Largest request body (413).",
    ),
    key(
        "header_read_timeout",
        Kind::Duration,
        "Time to receive the request head.",
    ),
    key(
        "body_read_timeout",
        Kind::Duration,
        "Time to receive the whole request body (408 beyond).",
    ),
    key("idle_timeout", Kind::Duration, "Idle keep-alive connection lifetime."),
    key(
        "tls_handshake_timeout",
        Kind::Duration,
        "Time allowed for the TLS handshake.",
    ),
    key(
        "max_connections",
        Kind::Integer(1, 1_000_000),
        "Open client connections in total.",
    ),
    key(
        "max_connections_per_ip",
        Kind::Integer(1, 1_000_000),
        "Open connections per address.",
    ),
    key(
        "upstream_connect_timeout",
        Kind::Duration,
        "Time to connect to an upstream.",
    ),
    key(
        "upstream_response_timeout",
        Kind::Duration,
        "Time for an upstream's response head.",
    ),
    key(
        "upstream_idle_pool_per_host",
        Kind::Integer(1, 10_000),
        "Idle pooled upstream connections.",
    ),
    key(
        "h2_max_concurrent_streams",
        Kind::Integer(1, 10_000),
        "HTTP/2 streams per connection.",
    ),
    key(
        "revocation_poll_interval",
        Kind::Duration,
        "How often the device CRL is checked.",
    ),
    key("shutdown_grace", Kind::Duration, "Time open requests get on shutdown."),
    key(
        "policy_poll_interval",
        Kind::Duration,
        "How often the policy file is checked for changes.",
    ),
    key(
        "acme_renew_percent",
        Kind::Integer(10, 90),
        "Renew an ACME certificate when this percentage of its lifetime has passed (default 67).",
    ),
    key(
        "acme_retry_min",
        Kind::Duration,
        "First wait after a failed ACME attempt; doubled per failure.",
    ),
    key(
        "acme_retry_max",
        Kind::Duration,
        "Longest wait between failed ACME attempts.",
    ),
    key(
        "acme_order_timeout",
        Kind::Duration,
        "Time one ACME issuance (order, challenges, certificate) may take.",
    ),
    key(
        "acme_request_timeout",
        Kind::Duration,
        "Time one request to the ACME CA may take.",
    ),
    key(
        "ban_after_denials",
        Kind::Integer(0, 100_000),
        "Denials from one address within ban_window that ban it (0: no bans).",
    ),
    key("ban_window", Kind::Duration, "The window denials are counted in."),
    key(
        "ban_duration",
        Kind::Duration,
        "How long a ban lasts (doubled for a repeat, up to 32x).",
    ),
    key(
        "max_tracked_addresses",
        Kind::Integer(16, 1_000_000),
        "Client addresses tracked for bans and rate limits (bounded).",
    ),
    key(
        "login_rate_per_minute",
        Kind::Integer(0, 100_000),
        "POSTs to /.sekisho/ per minute and address (429 beyond; 0: off).",
    ),
    key(
        "login_burst",
        Kind::Integer(1, 100_000),
        "POSTs to /.sekisho/ allowed at once.",
    ),
    key(
        "request_rate_per_second",
        Kind::Integer(0, 1_000_000),
        "Requests per second and address (429 beyond; 0, the default: off).",
    ),
    key(
        "request_burst",
        Kind::Integer(1, 1_000_000),
        "Requests allowed at once before request_rate_per_second applies.",
    ),
];

pub(crate) const PUBLIC_WHEN_UNWRITABLE: &[&str] = &["serve", "refuse"];
pub(crate) const SHIP: &[&str] = &["records", "checkpoints"];

pub(crate) const LOG: &[Key] = &[
    key(
        "retention_days",
        Kind::Integer(1, 36_500),
        "Days closed log files are kept (default 365; less is a lint error).",
    ),
    key(
        "checkpoint_records",
        Kind::Integer(1, 1_000_000),
        "A signed checkpoint at least every this many records (default 1000).",
    ),
    key(
        "checkpoint_interval",
        Kind::Duration,
        "… and at least this often while records wait (default 10s).",
    ),
    key(
        "seal_epoch",
        Kind::Duration,
        "How often the sealing key evolves; fixed when the log is initialised (default 1h).",
    ),
    key(
        "max_batch",
        Kind::Integer(1, 65_536),
        "Most records written and fsynced together (default 4096).",
    ),
    key(
        "public_waits_for_fsync",
        Kind::Bool,
        "Public responses wait for their record to be durable (default true).",
    ),
    key(
        "public_when_unwritable",
        Kind::OneOf(PUBLIC_WHEN_UNWRITABLE),
        "Public routes while the log cannot be written: serve (default) or refuse (503).",
    ),
    key(
        "remote_queue",
        Kind::Integer(16, 1_000_000),
        "Records waiting for [log.remote]; beyond, they are dropped and counted (default 16384).",
    ),
    key(
        "remote_retry_max",
        Kind::Duration,
        "Longest pause between attempts to reach [log.remote] (default 30s).",
    ),
    key(
        "remote",
        Kind::Table(LOG_REMOTE),
        "A copy of the log off this host (syslog over TLS, or HTTPS POST).",
    ),
    key(
        "danger_disable_audit",
        Kind::Bool,
        "Benchmark only: no access log (lint error; needs SEKISHO_DANGER_BENCHMARK=1).",
    ),
];

pub(crate) const LOG_REMOTE: &[Key] = &[
    key(
        "syslog",
        Kind::String,
        "host:port of an RFC 5425 syslog-over-TLS receiver (port default 6514).",
    ),
    key(
        "https",
        Kind::String,
        "https://host[:port]/path receiving JSON batches of records by POST (instead of syslog).",
    ),
    key(
        "ca_file",
        Kind::String,
        "PEM CA the receiver's certificate must chain to (default: system roots).",
    ),
    key(
        "ship",
        Kind::OneOf(SHIP),
        "records (default: every record) or checkpoints (seals and file headers only).",
    ),
];

pub(crate) const UPSTREAM: &[Key] = &[
    key("name", Kind::String, "Referred to by routes."),
    key("url", Kind::String, "http://host:port or https://host:port, no path."),
    key(
        "case_insensitive",
        Kind::Bool,
        "Route paths match case-insensitively (default true).",
    ),
];

pub(crate) const USER: &[Key] = &[
    key("name", Kind::String, "The user's name (also in device certificates)."),
    key("email", Kind::String, "Where notices go."),
    key("groups", Kind::StringList, "Groups the user belongs to."),
];

pub(crate) const FACTORS: &[&str] = &["webauthn", "totp"];

pub(crate) const ROUTE: &[Key] = &[
    key("name", Kind::String, "Route name (logs, explain)."),
    key(
        "paths",
        Kind::StringList,
        "Decoded canonical path prefixes, matched by whole segments.",
    ),
    key(
        "hosts",
        Kind::StringList,
        "Server hostnames this route applies to (default: all).",
    ),
    key("upstream", Kind::String, "The upstream's name (not on deny routes)."),
    key(
        "access",
        Kind::OneOf(&["public", "protected", "deny"]),
        "What the route demands.",
    ),
    key(
        "allow_ips",
        Kind::StringList,
        "Client networks admitted (default: every address).",
    ),
    key(
        "require_device",
        Kind::Bool,
        "A valid, unrevoked device certificate is needed.",
    ),
    key(
        "second_factor",
        Kind::ListOf(FACTORS),
        "Accepted factors (protected routes).",
    ),
    key("groups", Kind::StringList, "Groups allowed through (protected routes)."),
];

pub(crate) const TEST: &[Key] = &[
    key("name", Kind::String, "What the test checks (shown in the output)."),
    key("request", Kind::Inline(TEST_REQUEST), "The request to decide."),
    key(
        "expect",
        Kind::OneOf(&["allow", "login", "deny"]),
        "The decision expected.",
    ),
    key(
        "reason",
        Kind::String,
        "The reason expected (e.g. \"address_not_allowed\"), optional.",
    ),
];

pub(crate) const TEST_REQUEST: &[Key] = &[
    key("ip", Kind::String, "The client address."),
    key(
        "path",
        Kind::String,
        "The raw path, as a client sends it (canonicalised first).",
    ),
    key("host", Kind::String, "The host (default: the first server hostname)."),
    key(
        "device",
        Kind::BoolOrString,
        "A valid device certificate: true, or the user it belongs to.",
    ),
    key(
        "user",
        Kind::String,
        "A session of this user (with a completed second factor).",
    ),
    key(
        "factors",
        Kind::ListOf(FACTORS),
        "The session's completed factors (default: all).",
    ),
];
