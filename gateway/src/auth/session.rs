//! Server-side sessions. The cookie `__Host-sekisho` carries 32 random bytes; the store
//! keys the session by their SHA-256 (a copied database holds no live cookie). A session is
//! made only when a second factor has just been completed (a fresh id every time: no
//! fixation), is bound to the device certificate it was made with, and ends on logout, on
//! the policy's idle or absolute timeout, or when its user is disabled, leaves the policy
//! or loses a group it had when the session began.

use super::crypto::{b64, sha256, unb64};
use super::{Auth, Client};
use crate::headers::SESSION_COOKIE;
use crate::store::{StoreError, Tree};
use sekisho_policy::{Factor, Policy, SessionFacts};
use serde::{Deserialize, Serialize};

/// Last-seen times are written at most this often per session (seconds): the idle
/// timeout is minutes, and a write per request would cost the hot path.
pub const TOUCH_EVERY: i64 = 10;

/// A session as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user: String,
    pub factors: Vec<String>,
    /// The device certificate's fingerprint at login (`None`: there was none).
    pub device: Option<String>,
    pub groups: Vec<String>,
    pub ip: String,
    pub created: i64,
    pub last_seen: i64,
}

/// A live session found for a request.
#[derive(Debug, Clone)]
pub struct Live {
    pub facts: SessionFacts,
    pub groups: Vec<String>,
    /// The cookie's value (for CSRF tokens bound to the session).
    pub token: String,
}

/// A session just made: the cookie to set.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub user: String,
}

impl NewSession {
    /// `Set-Cookie` value: Secure, HttpOnly, SameSite=Strict, Path=/ (a `__Host-` cookie).
    /// No `Max-Age`: the cookie lives with the browser session; the server decides expiry.
    pub fn cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}={}; Secure; HttpOnly; SameSite=Strict; Path=/",
            self.token
        )
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// The session token in the request's cookies. Exactly one well-formed `__Host-sekisho`
/// cookie is read; two of them (a planted one beside the real one) or a malformed value
/// count as none.
pub fn token_from(headers: &http::HeaderMap) -> Option<String> {
    let mut found: Option<&str> = None;
    for value in headers.get_all(http::header::COOKIE) {
        let Ok(text) = value.to_str() else { return None };
        for pair in text.split(';') {
            let Some((name, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if name.trim() == SESSION_COOKIE {
                if found.is_some() {
                    return None;
                }
                found = Some(v.trim());
            }
        }
    }
    let v = found?;
    (v.len() == 43 && unb64(v).is_some_and(|b| b.len() == 32)).then(|| v.to_owned())
}

fn key(token: &str) -> Vec<u8> {
    sha256(token.as_bytes())
}

impl Auth {
    /// Makes a new session for `user` who just completed `factor` (always a new id).
    pub(crate) fn create_session(
        &self,
        policy: &Policy,
        user: &str,
        factor: Factor,
        client: &Client,
    ) -> Result<NewSession, StoreError> {
        let token = self.key.token().ok_or_else(|| StoreError("no randomness".into()))?;
        let now = self.now();
        let groups = super::names::policy_user(policy, user)
            .map(|u| u.groups.clone())
            .unwrap_or_default();
        let rec = SessionRecord {
            user: user.to_owned(),
            factors: vec![factor.as_str().to_owned()],
            device: client.device.as_ref().map(|d| d.fingerprint.clone()),
            groups,
            ip: client.ip.to_string(),
            created: now,
            last_seen: now,
        };
        let bytes = serde_json::to_vec(&rec).map_err(|e| StoreError(e.to_string()))?;
        self.store.put(Tree::Sessions, &key(&token), &bytes)?;
        self.store.flush()?;
        Ok(NewSession {
            token,
            user: user.to_owned(),
        })
    }

    /// The live session named by the request's cookie, or `None`. Expired, rebound or
    /// orphaned sessions are deleted on the way. A store failure is `None` too: the
    /// request then goes to login (fail closed).
    pub fn session(&self, policy: &Policy, headers: &http::HeaderMap, client: &Client) -> Option<Live> {
        let token = token_from(headers)?;
        match self.lookup(policy, &token, client) {
            Ok(live) => live,
            Err(e) => {
                tracing::error!(error = %e, "session lookup failed; treating the request as unauthenticated");
                None
            }
        }
    }

    fn lookup(&self, policy: &Policy, token: &str, client: &Client) -> Result<Option<Live>, StoreError> {
        let k = key(token);
        let Some(bytes) = self.store.get(Tree::Sessions, &k)? else {
            return Ok(None);
        };
        let Ok(mut rec) = serde_json::from_slice::<SessionRecord>(&bytes) else {
            self.store.take(Tree::Sessions, &k)?;
            return Ok(None);
        };
        let now = self.now();
        let settings = &policy.session;
        let absolute = i64::try_from(settings.absolute_timeout.as_secs()).unwrap_or(i64::MAX);
        let idle = i64::try_from(settings.idle_timeout.as_secs()).unwrap_or(i64::MAX);
        let device = client.device.as_ref().map(|d| d.fingerprint.as_str());
        let end = if now.saturating_sub(rec.created) >= absolute {
            Some("session_absolute_timeout")
        } else if now.saturating_sub(rec.last_seen) >= idle {
            Some("session_idle_timeout")
        } else if rec.device.as_deref() != device {
            Some("session_device_changed")
        } else {
            self.user_gone(policy, &rec)?
        };
        if let Some(why) = end {
            tracing::info!(user = %rec.user, reason = why, "session ended");
            self.store.take(Tree::Sessions, &k)?;
            return Ok(None);
        }
        if now - rec.last_seen >= TOUCH_EVERY {
            rec.last_seen = now;
            if let Ok(b) = serde_json::to_vec(&rec) {
                // Only if it is still there: a concurrent logout must win.
                self.store
                    .compare_and_swap(Tree::Sessions, &k, Some(&bytes), Some(&b))?;
            }
        }
        let factors = rec
            .factors
            .iter()
            .filter_map(|f| match f.as_str() {
                "webauthn" => Some(Factor::Webauthn),
                "totp" => Some(Factor::Totp),
                _ => None,
            })
            .collect();
        Ok(Some(Live {
            facts: SessionFacts {
                user: rec.user.clone(),
                factors,
            },
            groups: rec.groups,
            token: token.to_owned(),
        }))
    }

    /// Why the session's user may no longer hold it, if so.
    fn user_gone(&self, policy: &Policy, rec: &SessionRecord) -> Result<Option<&'static str>, StoreError> {
        let Some(user) = super::names::policy_user(policy, &rec.user) else {
            return Ok(Some("session_user_left_policy"));
        };
        if rec.groups.iter().any(|g| !user.groups.contains(g)) {
            return Ok(Some("session_user_lost_group"));
        }
        match super::records::load(self.store.as_ref(), &rec.user)? {
            Some(r) if !r.disabled && !r.factors.is_empty() => Ok(None),
            Some(r) if r.disabled => Ok(Some("session_user_disabled")),
            _ => Ok(Some("session_user_has_no_factor")),
        }
    }

    /// Deletes the session named by `token` (logout).
    pub fn end_session(&self, token: &str) -> Result<(), StoreError> {
        self.store.take(Tree::Sessions, &key(token))?;
        self.store.flush()
    }

    /// Deletes every session of `user` (disable, factor removal). Returns how many ended.
    pub fn end_sessions_of(&self, user: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for (k, v) in self.store.scan_prefix(Tree::Sessions, b"")? {
            let owner = serde_json::from_slice::<SessionRecord>(&v).map(|r| r.user);
            if owner.as_deref().is_ok_and(|o| o == user) || owner.is_err() {
                self.store.take(Tree::Sessions, &k)?;
                n += 1;
            }
        }
        self.store.flush()?;
        Ok(n)
    }

    /// How many stored sessions are within their idle and absolute timeouts (read-only;
    /// for `sekisho status`). Sessions are still re-checked on use, so this is an upper
    /// bound of who could be served.
    pub fn count_sessions(&self, policy: &Policy) -> Result<usize, StoreError> {
        let now = self.now();
        let absolute = i64::try_from(policy.session.absolute_timeout.as_secs()).unwrap_or(i64::MAX);
        let idle = i64::try_from(policy.session.idle_timeout.as_secs()).unwrap_or(i64::MAX);
        Ok(self
            .store
            .scan_prefix(Tree::Sessions, b"")?
            .iter()
            .filter_map(|(_, v)| serde_json::from_slice::<SessionRecord>(v).ok())
            .filter(|r| now.saturating_sub(r.created) < absolute && now.saturating_sub(r.last_seen) < idle)
            .count())
    }

    /// A CSRF token bound to a session (its id) or, before login, to the client (device
    /// and address) and the hour: an attacker's page cannot read it, and it is useless
    /// from anywhere else.
    pub fn csrf_token(&self, session_token: Option<&str>, client: &Client) -> String {
        let hour = self.now().div_euclid(3600);
        b64(&self.csrf_mac(session_token, client, hour))
    }

    /// Checks a CSRF token made by [`Auth::csrf_token`] (this hour's or the last one's).
    pub fn csrf_ok(&self, session_token: Option<&str>, client: &Client, given: &str) -> bool {
        let hour = self.now().div_euclid(3600);
        let Some(given) = unb64(given) else { return false };
        let a = super::crypto::ct_eq(&self.csrf_mac(session_token, client, hour), &given);
        let b = super::crypto::ct_eq(&self.csrf_mac(session_token, client, hour - 1), &given);
        a | b
    }

    fn csrf_mac(&self, session_token: Option<&str>, client: &Client, hour: i64) -> [u8; 32] {
        let device = client.device.as_ref().map_or("", |d| d.fingerprint.as_str());
        match session_token {
            Some(t) => self.key.mac(&[b"csrf-session", t.as_bytes()]),
            None => self.key.mac(&[
                b"csrf-client",
                device.as_bytes(),
                client.ip.to_string().as_bytes(),
                &hour.to_be_bytes(),
            ]),
        }
    }
}
