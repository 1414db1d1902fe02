//! The gateway's state (sessions, enrolled factors, TOTP steps, ceremonies, lockout
//! counters) behind one narrow [`Store`] trait, so the storage engine is one adapter
//! ([`sled`](crate::store::sled_store) today) and can be swapped without touching the auth code.
//!
//! The trait offers only what the auth code needs: get, put, an atomic take, an atomic
//! compare-and-swap, a prefix scan and a flush, plus a consistent snapshot for backups. It must not grow queries: anything richer
//! belongs in the callers, on top of these.

pub mod sled_store;

pub use sled_store::SledStore;

/// The separate key spaces of the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// Canonical user name → the user's enrolled factors and flags.
    Users,
    /// SHA-256 of a session id → the session.
    Sessions,
    /// Ceremony id → a WebAuthn or enrolment ceremony waiting for its answer.
    Ceremonies,
    /// Canonical user name → the last accepted TOTP time step (u64, big-endian).
    TotpSteps,
    /// `u:NAME` or `a:ADDRESS` → failures and lock.
    Lockout,
    /// SHA-256 of an invitation token → the invitation (and whether it was used).
    Invites,
    /// `dev:NAME:FP` / `ip:NAME:ADDR` → first seen (for "new device / new address" notices).
    Seen,
}

impl Tree {
    pub fn name(self) -> &'static str {
        match self {
            Tree::Users => "users",
            Tree::Sessions => "sessions",
            Tree::Ceremonies => "ceremonies",
            Tree::TotpSteps => "totp_steps",
            Tree::Lockout => "lockout",
            Tree::Invites => "invites",
            Tree::Seen => "seen",
        }
    }

    pub const ALL: [Tree; 7] = [
        Tree::Users,
        Tree::Sessions,
        Tree::Ceremonies,
        Tree::TotpSteps,
        Tree::Lockout,
        Tree::Invites,
        Tree::Seen,
    ];
}

/// Key–value pairs from a scan, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The store failed; callers fail closed (no session, no login).
#[derive(Debug, thiserror::Error)]
#[error("state store: {0}")]
pub struct StoreError(pub String);

/// The narrow interface every storage engine implements.
pub trait Store: Send + Sync + std::fmt::Debug {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Removes and returns the value, atomically: of two concurrent takes, one gets it.
    fn take(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets `key` to `new` only if it currently holds `old` (`None`: absent). Returns
    /// whether the swap happened.
    fn compare_and_swap(
        &self,
        tree: Tree,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Entries, StoreError>;
    /// Makes every write so far durable. Called before acknowledging what must survive.
    fn flush(&self) -> Result<(), StoreError>;
    /// Every entry of `trees` at one point in time: no write lands between the first
    /// tree's scan and the last one's (`sekisho state backup` of a running gateway).
    fn snapshot(&self, trees: &[Tree]) -> Result<Vec<(Tree, Entries)>, StoreError>;
}
