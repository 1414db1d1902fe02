//! Lockout: `max_failures` failed second-factor attempts within `window` lock the user
//! name (canonical, whether or not such a user exists) and the source address for
//! `duration`, doubled for each lock in a row (up to 32×). A success clears the user's
//! counters. Counters live in the store, updated by compare-and-swap; spent ones are
//! removed by the sweep (`auth::sweep`, [`spent`]).

use crate::store::{Store, StoreError, Tree};
use sekisho_policy::LockoutSettings;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The most a lock is doubled: 2^5.
pub const MAX_BACKOFF_SHIFT: u32 = 5;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Counter {
    failures: Vec<i64>,
    locked_until: i64,
    locks: u32,
}

/// A lock that just began (for the audit log and the notice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub subject: String,
    pub until: i64,
}

pub fn user_key(name: &str) -> Vec<u8> {
    format!("u:{name}").into_bytes()
}

pub fn addr_key(ip: IpAddr) -> Vec<u8> {
    format!("a:{ip}").into_bytes()
}

/// Is either the user or the address locked at `now`?
pub fn is_locked(store: &dyn Store, keys: &[Vec<u8>], now: i64) -> Result<bool, StoreError> {
    for k in keys {
        if let Some(b) = store.get(Tree::Lockout, k)?
            && serde_json::from_slice::<Counter>(&b).is_ok_and(|c| c.locked_until > now)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Counts a failure against each key; returns the locks that began now.
pub fn fail(
    store: &dyn Store,
    keys: &[Vec<u8>],
    settings: &LockoutSettings,
    now: i64,
) -> Result<Vec<Locked>, StoreError> {
    let window = i64::try_from(settings.window.as_secs()).unwrap_or(i64::MAX);
    let duration = i64::try_from(settings.duration.as_secs()).unwrap_or(i64::MAX);
    let mut locked = Vec::new();
    for k in keys {
        loop {
            let old = store.get(Tree::Lockout, k)?;
            let mut c: Counter = old
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            c.failures.retain(|t| now.saturating_sub(*t) < window);
            c.failures.push(now);
            let mut began = None;
            if c.failures.len() >= settings.max_failures as usize && c.locked_until <= now {
                let shift = c.locks.min(MAX_BACKOFF_SHIFT);
                c.locked_until = now.saturating_add(duration.saturating_mul(1 << shift));
                c.locks = c.locks.saturating_add(1);
                c.failures.clear();
                began = Some(Locked {
                    subject: String::from_utf8_lossy(k).into_owned(),
                    until: c.locked_until,
                });
            }
            let new = serde_json::to_vec(&c).map_err(|e| StoreError(e.to_string()))?;
            if store.compare_and_swap(Tree::Lockout, k, old.as_deref(), Some(&new))? {
                locked.extend(began);
                break;
            }
        }
    }
    store.flush()?;
    Ok(locked)
}

/// Whether a stored counter has nothing left to remember at `now`: no failure within the
/// window, no lock running, and its last lock ended longer ago than the longest a doubled
/// lock lasts (so forgetting it cannot shorten the next lock of a persistent attacker by
/// more than that). An unreadable counter is spent too: `fail` would start it afresh.
pub fn spent(stored: &[u8], settings: &LockoutSettings, now: i64) -> bool {
    let Ok(c) = serde_json::from_slice::<Counter>(stored) else {
        return true;
    };
    let window = i64::try_from(settings.window.as_secs()).unwrap_or(i64::MAX);
    let duration = i64::try_from(settings.duration.as_secs()).unwrap_or(i64::MAX);
    let memory = duration.saturating_mul(1 << MAX_BACKOFF_SHIFT);
    let recent_failure = c.failures.iter().any(|t| now.saturating_sub(*t) < window);
    let remembered_lock = c.locks > 0 && now.saturating_sub(c.locked_until) < memory;
    !recent_failure && c.locked_until <= now && !remembered_lock
}

/// Clears the counter of `key` after a success.
pub fn succeed(store: &dyn Store, key: &[u8]) -> Result<(), StoreError> {
    store.take(Tree::Lockout, key)?;
    Ok(())
}
