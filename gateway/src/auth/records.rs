//! What the state store holds about users: enrolled factors (TOTP secrets sealed with the
//! state key; WebAuthn passkeys with their counters) and the disabled flag. Records are
//! JSON; every update is a compare-and-swap on the whole record, so concurrent logins
//! (counter updates) and CLI changes never lose each other's writes.

use super::crypto::b64;
use crate::store::{Store, StoreError, Tree};
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::Passkey;

/// Everything stored for one user (key: the canonical name).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserRecord {
    pub disabled: bool,
    /// The WebAuthn user handle (random, stable for the user).
    pub handle: String,
    pub factors: Vec<FactorRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FactorRecord {
    /// Short id shown by `sekisho user show` and taken by `remove-factor`.
    pub id: String,
    pub created: i64,
    pub kind: FactorKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FactorKind {
    /// The secret, sealed with the state key (context `totp:NAME`), base64url.
    Totp {
        sealed: String,
    },
    Webauthn {
        passkey: Box<Passkey>,
    },
}

impl FactorKind {
    pub fn factor(&self) -> sekisho_policy::Factor {
        match self {
            FactorKind::Totp { .. } => sekisho_policy::Factor::Totp,
            FactorKind::Webauthn { .. } => sekisho_policy::Factor::Webauthn,
        }
    }
}

/// Reads a user's record.
pub fn load(store: &dyn Store, name: &str) -> Result<Option<UserRecord>, StoreError> {
    match store.get(Tree::Users, name.as_bytes())? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError(format!("user record {name}: {e}"))),
    }
}

/// Applies `change` to the user's record (a default one when absent) atomically, retrying
/// when another writer got there first. `change` returns `Err` to abandon the update.
pub fn update<T, E: From<StoreError>>(
    store: &dyn Store,
    name: &str,
    mut change: impl FnMut(&mut UserRecord) -> Result<T, E>,
) -> Result<T, E> {
    loop {
        let old = store.get(Tree::Users, name.as_bytes())?;
        let mut rec: UserRecord = match &old {
            None => UserRecord::default(),
            Some(b) => serde_json::from_slice(b).map_err(|e| StoreError(format!("user record {name}: {e}")))?,
        };
        let out = change(&mut rec)?;
        let new = serde_json::to_vec(&rec).map_err(|e| StoreError(e.to_string()))?;
        if store.compare_and_swap(Tree::Users, name.as_bytes(), old.as_deref(), Some(&new))? {
            store.flush()?;
            return Ok(out);
        }
    }
}

/// A new factor id: 8 hex characters.
pub fn factor_id(random: &[u8]) -> String {
    random.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// A new WebAuthn user handle.
pub fn new_handle(random: &[u8]) -> String {
    b64(random)
}
