//! The policy crate's integration tests, in one binary (one link on a 2-core machine):
//! the reference policy, diagnostics, canonicalisation (with the bypass corpus), matching and
//! decisions.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod as_code;
mod canon;
mod decide;
mod diagnostics;
mod matcher;
mod property;
mod reference;

/// The reference policy, byte for byte as shipped in /work/shared.
pub const REFERENCE: &str = include_str!("../data/policy-reference.toml");
