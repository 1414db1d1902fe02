//! Forgets what has expired in the state store and that a client could create at will:
//! ceremonies past their expiry (every `login/webauthn/start`, for any name, stores one)
//! and lockout counters with nothing left to remember (every failed login for a new name
//! or from a new address makes one). Without it both trees grow for ever with what
//! attackers send (issue 9: counters expire).
//!
//! Each record is removed by compare-and-swap against the bytes judged, so a record that
//! changed meanwhile (a new failure, a ceremony taken by its answer) is left alone.
//! This module must never remove a ceremony before its expiry or a lock before its end.

use super::{Auth, Ceremony, lockout};
use crate::store::{StoreError, Tree};
use sekisho_policy::Policy;

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub ceremonies: usize,
    pub lockout_counters: usize,
}

impl Auth {
    /// Removes expired ceremonies and spent lockout counters. Called about once a minute by
    /// the server (the scan is proportional to what is stored, and stays small with it).
    pub fn sweep(&self, policy: &Policy) -> Result<Swept, StoreError> {
        let now = self.now();
        let mut swept = Swept::default();
        for (k, v) in self.store().scan_prefix(Tree::Ceremonies, b"")? {
            // An unreadable ceremony can never be answered either.
            let expired = serde_json::from_slice::<Ceremony>(&v).map_or(true, |c| c.expires <= now);
            if expired && self.store().compare_and_swap(Tree::Ceremonies, &k, Some(&v), None)? {
                swept.ceremonies += 1;
            }
        }
        for (k, v) in self.store().scan_prefix(Tree::Lockout, b"")? {
            if lockout::spent(&v, &policy.lockout, now)
                && self.store().compare_and_swap(Tree::Lockout, &k, Some(&v), None)?
            {
                swept.lockout_counters += 1;
            }
        }
        if swept != Swept::default() {
            self.store().flush()?;
        }
        Ok(swept)
    }
}
