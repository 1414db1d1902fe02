//! Sekisho's policy: the format-1 TOML schema, its validation into a typed [`Policy`], the one
//! canonicalisation of request paths, and the access decision (`decide`, and `explain` which
//! prints the same evaluation in plain English).
//!
//! # Invariant: pure
//! This crate is text in, values out. It must never open files or sockets, read the clock or the
//! environment, spawn threads or depend on an async runtime. Paths named in the policy stay
//! strings; the gateway does the IO. That keeps every function here deterministic, cheap to
//! fuzz and safe to call from `sekisho policy check` and `explain` on any machine.
//!
//! # Pipeline (as the gateway uses it)
//! 1. [`parse`] — TOML text → validated [`Policy`] (or every problem at once, as
//!    [`Diagnostics`] with file, line, column and a remedy). Downstream code never re-checks.
//! 2. [`Policy::admits_peer`] — at accept time, before TLS: may this address reach anything?
//! 3. [`canonicalize_target`] — the request-target as received → one [`CanonicalTarget`]
//!    (or a refusal). Routing, the decision, the audit record and the upstream request all use
//!    that same value.
//! 4. [`Policy::route_for`] — longest whole-segment prefix match, per host, case-insensitive
//!    where the upstream is.
//! 5. [`decide`] — route → deny route → `allow_ips` → device → public → session, user,
//!    groups, second factor, device owner. [`explain`] runs the very same evaluation with a
//!    tracer attached.

mod canon;
mod cases;
mod decide;
mod diff;
mod duration;
mod limits;
mod lint;
mod matcher;
mod model;
mod parse;
mod schema;

/// The prefix of the gateway's own pages (login, enrolment). No route may name a path
/// under it, and the gateway never forwards a request under it.
pub const RESERVED_PREFIX: &str = "/.sekisho";

pub use canon::{CanonError, CanonicalTarget, canonicalize_target};
pub use cases::{
    GATEWAY_REASONS, PolicyTest, TestDevice, TestRequest, TestResult, decide_request, read_tests, run_tests,
};
pub use decide::{Decision, DeviceFacts, Explanation, Facts, Outcome, Reason, SessionFacts, decide, explain};
pub use diff::{Change, Effect, diff, identities_losing_access};
pub use duration::parse_duration;
pub use limits::{Limits, LogSettings, MIN_RECOMMENDED_RETENTION_DAYS, PublicWhenUnwritable, log_fixed};
pub use lint::{FileFacts, Finding, Severity, WELL_KNOWN_ADMIN_PATHS, lint, lint_files};
pub use model::{
    Access, Acme, AcmeChallenge, ClientCertMode, Factor, LockoutSettings, LogRemote, MetricsListen, NotifySettings,
    Policy, PublicUrl, RemoteTarget, Route, RouteId, Server, ServerCertificate, SessionSettings, Ship, Smtp, SmtpTls,
    Upstream, User,
};
pub use parse::{Diagnostic, Diagnostics, parse, sha256_hex};
pub use schema::json_schema;
