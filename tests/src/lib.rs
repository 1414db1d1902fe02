//! Sekisho's end-to-end test harness: everything a test needs to start the real `sekisho`
//! binary and talk to it the way an attacker would.
//!
//! - [`pki`] makes the server and device PKI at test time (rcgen), and writes CRLs.
//! - [`ports`] picks free loopback ports; [`scratch`] owns temporary directories.
//! - [`upstream`] is an echo upstream that records exactly what the gateway forwarded.
//! - [`policy`] writes Sekisho policies; [`gateway`] starts the binary and waits for it.
//! - [`client`] is a raw TLS client (exact bytes, chosen source address, SNI, client
//!   certificate); [`h2raw`] writes HTTP/2 frames by hand.
//! - [`oracle`] is the corpus's paranoid canonicaliser; [`corpus`] loads and judges the
//!   bypass corpus; [`contexts`] maps corpus contexts to running gateways.
//! - [`audit`] reads the gateway's access log and runs `sekisho log verify` on it.
//! - [`pebble`] runs Debian's pebble, a real ACME CA, on loopback.
//! - [`smtp`] is a tiny SMTP server that records the notice mail it receives.
//! - [`metrics`] scrapes the gateway's Prometheus listener (TCP or Unix socket).
//! - [`syslog`] is a syslog-over-TLS receiver (RFC 5425/5424) for the log's remote copy;
//!   [`https_sink`] receives the same copy as JSON batches over HTTPS.
//! - [`eventually`] polls a condition until a deadline (never a bare sleep).
//!
//! The harness must never send to anything outside 127.0.0.0/8.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test-only harness: a failed setup step must stop the test with its message"
)]

pub mod audit;
pub mod browser;
pub mod client;
pub mod contexts;
pub mod corpus;
pub mod eventually;
pub mod gateway;
pub mod h2raw;
pub mod https_sink;
pub mod login;
pub mod metrics;
pub mod oracle;
pub mod pebble;
pub mod pki;
pub mod policy;
pub mod ports;
pub mod scratch;
pub mod smtp;
pub mod syslog;
pub mod upstream;
