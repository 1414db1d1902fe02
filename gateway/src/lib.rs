//! Sekisho's gateway: listener and TLS, device identity, the request pipeline, proxying,
//! the audit record and the command line.
//!
//! The request pipeline, read top-down (see ARCHITECTURE.md):
//! accept ([`listener`]) → TLS and device identity ([`tls`], [`device`]) → canonical
//! request and client address ([`pipeline`], [`forwarded`]) → route and decision
//! ([`sekisho_policy::decide`]) → proxy ([`proxy`]) → audit record ([`audit`]).

pub mod abuse;
pub mod acme;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod body;
pub mod cli;
pub mod clock;
pub mod demo;
pub mod device;
pub mod error;
pub mod forwarded;
pub mod gateway;
pub mod harden;
pub mod headers;
pub mod host;
pub mod listener;
pub mod metrics;
pub mod pipeline;
pub mod pki;
pub mod plain;
pub mod proxy;
pub mod reload;
pub mod request_line;
pub mod revocation;
pub mod server;
pub mod store;
pub mod tls;
