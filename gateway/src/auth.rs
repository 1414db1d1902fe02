//! The second factor: TOTP and WebAuthn logins, enrolment by one-time invitation,
//! server-side sessions, lockout and notices. There is no password anywhere, no skip and
//! no fallback: a session exists only after a factor was proven just now, and a user with
//! no enrolled factor cannot get one.
//!
//! This module holds the ceremonies as plain functions over the [`Store`](crate::store::Store)
//! and a [`Clock`](crate::clock::Clock) (tests drive both in-process); [`http`] turns them
//! into the pages under `/.sekisho/`, and the pipeline asks [`Auth::session`] for the
//! session facts of every request. Nothing here writes a secret, code, cookie or
//! challenge to the diagnostics log.

pub mod admin;
pub mod crypto;
pub mod http;
pub mod lockout;
pub mod names;
pub mod notify;
pub mod pages;
pub mod records;
pub mod returnpath;
pub mod session;
pub mod sweep;
pub mod totp;
pub mod webauthn;

use crate::clock::SharedClock;
use crate::store::{SledStore, Store, StoreError, Tree};
use crypto::{StateKey, b64, sha256};
use records::{FactorKind, FactorRecord};
use sekisho_policy::{Access, DeviceFacts, Factor, Policy};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

pub use session::{Live, NewSession};

/// How long an invitation is valid by default (seconds).
pub const INVITE_TTL: i64 = 15 * 60;
/// How long an enrolment, once its invitation was claimed, may take (seconds).
pub const ENROL_TTL: i64 = 15 * 60;
/// How long a WebAuthn login ceremony may take (seconds).
pub const CEREMONY_TTL: i64 = 5 * 60;
/// The sled directory inside `state_dir`.
pub const DB_DIR: &str = "sekisho.sled";

/// The second-factor machinery shared by every request.
#[derive(Debug)]
pub struct Auth {
    store: Arc<dyn Store>,
    key: StateKey,
    clock: SharedClock,
    notices: notify::Notifier,
    /// Locks begun since start (for metrics).
    lockouts: std::sync::atomic::AtomicU64,
}

/// Who is asking: the client address and the device certificate (if valid now).
#[derive(Debug, Clone)]
pub struct Client {
    pub ip: IpAddr,
    pub device: Option<DeviceFacts>,
}

/// A refused ceremony. The reason goes to the log and the audit record; the client sees
/// the same page for every reason (no user enumeration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub &'static str);

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "state store failed during a ceremony");
        Refused("state_store_failed")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Key(#[from] crypto::KeyError),
    #[error("{0} (is another sekisho process using the state directory?)")]
    Store(#[from] StoreError),
}

/// The origin the browser is on: WebAuthn checks it exactly, and the rp id is its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn url(&self) -> String {
        if self.port == 443 {
            format!("https://{}", self.host)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

/// A ceremony waiting for the browser's answer, kept server-side under the SHA-256 of its
/// id and taken out of the store (once) before it is verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ceremony {
    user: String,
    device: Option<String>,
    ip: String,
    expires: i64,
    step: Step,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
enum Step {
    /// A claimed invitation: the user may now enrol a factor.
    Enrol { totp_sealed: String },
    /// A passkey registration under an enrolment.
    Register {
        enrol_id: String,
        state: Box<webauthn_rs::prelude::PasskeyRegistration>,
    },
    /// A passkey login (`None`: a decoy for a name with no passkey).
    Login {
        state: Option<Box<webauthn_rs::prelude::PasskeyAuthentication>>,
    },
}

/// What the enrolment page shows after an invitation is claimed.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub id: String,
    pub user: String,
    pub otpauth: String,
    pub qr_svg: String,
}

/// An invitation as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invitation {
    pub user: String,
    pub created: i64,
    pub expires: i64,
    pub used: Option<i64>,
}

impl Auth {
    /// Opens the state in `state_dir` (the key file is created on first use).
    pub fn open(state_dir: &Path, clock: SharedClock) -> Result<Auth, OpenError> {
        let key = StateKey::load_or_create(state_dir)?;
        let store = SledStore::open(&state_dir.join(DB_DIR))?;
        Ok(Auth::new(Arc::new(store), key, clock))
    }

    pub fn new(store: Arc<dyn Store>, key: StateKey, clock: SharedClock) -> Auth {
        Auth {
            store,
            key,
            clock,
            notices: notify::Notifier::default(),
            lockouts: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Locks begun since this process started (user names and addresses).
    pub fn lockouts_started(&self) -> u64 {
        self.lockouts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends notices to these sinks from now on.
    pub fn set_notifier(&mut self, notices: notify::Notifier) {
        self.notices = notices;
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub fn now(&self) -> i64 {
        self.clock.unix_seconds()
    }

    // ---- TOTP login -------------------------------------------------------------------

    /// Logs in with a TOTP code. Every failure looks the same to the client.
    pub fn login_totp(&self, policy: &Policy, typed: &str, code: &str, client: &Client) -> Result<NewSession, Refused> {
        let name = names::canonical(typed).unwrap_or_default();
        let keys = [lockout::user_key(&name), lockout::addr_key(client.ip)];
        let now = self.now();
        if lockout::is_locked(self.store(), &keys, now)? {
            return Err(Refused("locked_out"));
        }
        let verdict = self.check_totp(policy, &name, code, client, now);
        self.conclude(policy, &name, &keys, verdict, Factor::Totp, client)
    }

    fn check_totp(&self, policy: &Policy, name: &str, code: &str, client: &Client, now: i64) -> Result<(), Refused> {
        let user = self.eligible(policy, name, client);
        let secrets: Vec<Vec<u8>> = match &user {
            Ok(rec) => rec
                .factors
                .iter()
                .filter_map(|f| match &f.kind {
                    FactorKind::Totp { sealed } => {
                        crypto::unb64(sealed).and_then(|s| self.key.open(format!("totp:{name}").as_bytes(), &s))
                    }
                    FactorKind::Webauthn { .. } => None,
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        // The same work for a name with no TOTP secret: a decoy secret is checked too.
        let decoy = self.key.mac(&[b"decoy-totp", name.as_bytes()]);
        let step = if secrets.is_empty() {
            let _ = totp::matching_step(decoy.get(..20).unwrap_or(&decoy), code, now);
            None
        } else {
            secrets.iter().find_map(|s| totp::matching_step(s, code, now))
        };
        user?;
        let Some(step) = step else {
            return Err(Refused("totp_wrong_code"));
        };
        if !totp::claim_step(self.store(), name, step)? {
            return Err(Refused("totp_replayed"));
        }
        Ok(())
    }

    /// The user's record if this user may log in at all from here: in the policy, not
    /// disabled, holding a factor, and not on another user's device.
    fn eligible(&self, policy: &Policy, name: &str, client: &Client) -> Result<records::UserRecord, Refused> {
        if names::policy_user(policy, name).is_none() {
            return Err(Refused("unknown_user"));
        }
        if let Some(owner) = client.device.as_ref().and_then(|d| d.user.as_deref())
            && !owner.eq_ignore_ascii_case(name)
        {
            return Err(Refused("device_user_mismatch"));
        }
        match records::load(self.store(), name)? {
            Some(r) if r.disabled => Err(Refused("user_disabled")),
            Some(r) if !r.factors.is_empty() => Ok(r),
            _ => Err(Refused("no_factor_enrolled")),
        }
    }

    /// Counts a failure (and starts locks), or clears the counter and makes the session.
    fn conclude(
        &self,
        policy: &Policy,
        name: &str,
        keys: &[Vec<u8>],
        verdict: Result<(), Refused>,
        factor: Factor,
        client: &Client,
    ) -> Result<NewSession, Refused> {
        match verdict {
            Err(why) => {
                let locks = lockout::fail(self.store(), keys, &policy.lockout, self.now())?;
                for l in locks {
                    self.lockouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(subject = %l.subject, until = l.until, "lockout");
                    self.notices.send(
                        policy,
                        notify::Notice::Lockout {
                            user: name.to_owned(),
                            ip: client.ip,
                            until: l.until,
                        },
                    );
                }
                tracing::info!(user = %name, reason = why.0, "second factor refused");
                Err(why)
            }
            Ok(()) => {
                if let Some(k) = keys.first() {
                    lockout::succeed(self.store(), k)?;
                }
                self.note_new_device_or_address(policy, name, client)?;
                let s = self.create_session(policy, name, factor, client)?;
                tracing::info!(user = %name, factor = factor.as_str(), "logged in");
                Ok(s)
            }
        }
    }

    fn note_new_device_or_address(&self, policy: &Policy, name: &str, client: &Client) -> Result<(), StoreError> {
        let now = now_bytes(self.now());
        if let Some(d) = &client.device {
            let k = format!("dev:{name}:{}", d.fingerprint);
            if self
                .store
                .compare_and_swap(Tree::Seen, k.as_bytes(), None, Some(&now))?
            {
                self.notices.send(
                    policy,
                    notify::Notice::NewDevice {
                        user: name.to_owned(),
                        device: d.name.clone(),
                        fingerprint: d.fingerprint.clone(),
                    },
                );
            }
        }
        let k = format!("ip:{name}:{}", client.ip);
        if self
            .store
            .compare_and_swap(Tree::Seen, k.as_bytes(), None, Some(&now))?
        {
            self.notices.send(
                policy,
                notify::Notice::NewAddress {
                    user: name.to_owned(),
                    ip: client.ip,
                },
            );
        }
        Ok(())
    }

    // ---- invitations and enrolment ------------------------------------------------------

    /// Makes a one-time invitation for `user` (who must be in the policy); returns the token.
    pub fn invite(&self, policy: &Policy, typed: &str, ttl: i64) -> Result<(String, Invitation), String> {
        let name = names::canonical(typed).ok_or_else(|| format!("`{typed}` is not a valid user name"))?;
        if names::policy_user(policy, &name).is_none() {
            return Err(format!("user `{name}` is not in the policy: add a [[user]] first"));
        }
        let token = self.key.token().ok_or("no randomness")?;
        let now = self.now();
        let inv = Invitation {
            user: name.clone(),
            created: now,
            expires: now + ttl,
            used: None,
        };
        let bytes = serde_json::to_vec(&inv).map_err(|e| e.to_string())?;
        self.store
            .put(Tree::Invites, &sha256(token.as_bytes()), &bytes)
            .and_then(|()| self.store.flush())
            .map_err(|e| e.to_string())?;
        tracing::info!(user = %name, expires = inv.expires, "invitation made");
        Ok((token, inv))
    }

    /// Checks an invitation without using it (the page that offers to start enrolment).
    pub fn invitation(&self, policy: &Policy, token: &str, client: &Client) -> Result<Invitation, Refused> {
        let Some(bytes) = self.store.get(Tree::Invites, &sha256(token.as_bytes()))? else {
            return Err(Refused("invitation_unknown"));
        };
        let inv: Invitation = serde_json::from_slice(&bytes).map_err(|_| Refused("invitation_unreadable"))?;
        if inv.used.is_some() {
            return Err(Refused("invitation_used"));
        }
        if self.now() >= inv.expires {
            return Err(Refused("invitation_expired"));
        }
        if !may_reach(policy, &inv.user, client) {
            return Err(Refused("invitation_from_elsewhere"));
        }
        Ok(inv)
    }

    /// Uses an invitation (once: a compare-and-swap marks it used) and starts an
    /// enrolment bound to this client.
    pub fn claim_invitation(&self, policy: &Policy, token: &str, client: &Client) -> Result<Enrolment, Refused> {
        let key = sha256(token.as_bytes());
        let Some(old) = self.store.get(Tree::Invites, &key)? else {
            return Err(Refused("invitation_unknown"));
        };
        let mut inv = self.invitation(policy, token, client)?;
        inv.used = Some(self.now());
        let new = serde_json::to_vec(&inv).map_err(|_| Refused("invitation_unreadable"))?;
        if !self
            .store
            .compare_and_swap(Tree::Invites, &key, Some(&old), Some(&new))?
        {
            return Err(Refused("invitation_used"));
        }
        self.store.flush()?;
        tracing::warn!(user = %inv.user, ip = %client.ip, "invitation used");
        self.notices.send(
            policy,
            notify::Notice::InvitationUsed {
                user: inv.user.clone(),
                ip: client.ip,
            },
        );
        let secret = self.key.random(totp::SECRET_BYTES).ok_or(Refused("no_randomness"))?;
        let sealed = self
            .key
            .seal(format!("totp:{}", inv.user).as_bytes(), &secret)
            .ok_or(Refused("no_randomness"))?;
        let id = self.put_ceremony(
            &inv.user,
            client,
            ENROL_TTL,
            Step::Enrol {
                totp_sealed: b64(&sealed),
            },
        )?;
        let issuer = "Sekisho";
        let otpauth = totp::otpauth_uri(&secret, &inv.user, issuer).ok_or(Refused("totp_uri"))?;
        let qr_svg = totp::qr_svg(&otpauth).ok_or(Refused("totp_qr"))?;
        Ok(Enrolment {
            id,
            user: inv.user,
            otpauth,
            qr_svg,
        })
    }

    /// Finishes an enrolment with a TOTP code for the secret it showed. A wrong code
    /// counts towards lockout and leaves the enrolment open for another try.
    pub fn enrol_totp(
        &self,
        policy: &Policy,
        enrol_id: &str,
        code: &str,
        client: &Client,
    ) -> Result<NewSession, Refused> {
        let (cer, _) = self.get_ceremony(enrol_id, client)?;
        let Step::Enrol { totp_sealed } = &cer.step else {
            return Err(Refused("ceremony_wrong_kind"));
        };
        let keys = [lockout::user_key(&cer.user), lockout::addr_key(client.ip)];
        if lockout::is_locked(self.store(), &keys, self.now())? {
            return Err(Refused("locked_out"));
        }
        let secret = crypto::unb64(totp_sealed)
            .and_then(|s| self.key.open(format!("totp:{}", cer.user).as_bytes(), &s))
            .ok_or(Refused("enrolment_unreadable"))?;
        let verdict = match totp::matching_step(&secret, code, self.now()) {
            None => Err(Refused("totp_wrong_code")),
            Some(step) if !totp::claim_step(self.store(), &cer.user, step)? => Err(Refused("totp_replayed")),
            Some(_) => Ok(()),
        };
        if let Err(why) = verdict {
            lockout::fail(self.store(), &keys, &policy.lockout, self.now())?;
            return Err(why);
        }
        self.take_ceremony(enrol_id)?;
        self.add_factor(
            policy,
            &cer.user,
            FactorKind::Totp {
                sealed: totp_sealed.clone(),
            },
        )?;
        self.conclude(policy, &cer.user, &keys, Ok(()), Factor::Totp, client)
    }

    /// Adds a factor to a user (enabling nothing else) and sends the notice.
    fn add_factor(&self, policy: &Policy, user: &str, kind: FactorKind) -> Result<String, Refused> {
        let random = self.key.random(20).ok_or(Refused("no_randomness"))?;
        let id = records::factor_id(&random);
        let factor = kind.factor();
        let rec = FactorRecord {
            id: id.clone(),
            created: self.now(),
            kind,
        };
        records::update(self.store(), user, |r| {
            if r.disabled {
                return Err(Refused("user_disabled"));
            }
            if r.handle.is_empty() {
                r.handle = records::new_handle(random.get(4..20).unwrap_or(&random));
            }
            r.factors.push(rec.clone());
            Ok(())
        })?;
        tracing::warn!(user = %user, factor = factor.as_str(), id = %id, "factor enrolled");
        self.notices.send(
            policy,
            notify::Notice::FactorEnrolled {
                user: user.to_owned(),
                factor: factor.as_str(),
                id: id.clone(),
            },
        );
        Ok(id)
    }

    // ---- ceremonies ---------------------------------------------------------------------

    fn put_ceremony(&self, user: &str, client: &Client, ttl: i64, step: Step) -> Result<String, Refused> {
        let id = self.key.token().ok_or(Refused("no_randomness"))?;
        let cer = Ceremony {
            user: user.to_owned(),
            device: client.device.as_ref().map(|d| d.fingerprint.clone()),
            ip: client.ip.to_string(),
            expires: self.now() + ttl,
            step,
        };
        let bytes = serde_json::to_vec(&cer).map_err(|_| Refused("ceremony_unwritable"))?;
        self.store.put(Tree::Ceremonies, &sha256(id.as_bytes()), &bytes)?;
        Ok(id)
    }

    /// Reads a ceremony without consuming it; it must be unexpired and bound to this client.
    fn get_ceremony(&self, id: &str, client: &Client) -> Result<(Ceremony, Vec<u8>), Refused> {
        let Some(bytes) = self.store.get(Tree::Ceremonies, &sha256(id.as_bytes()))? else {
            return Err(Refused("ceremony_unknown"));
        };
        let cer = self.check_ceremony(&bytes, client)?;
        Ok((cer, bytes))
    }

    /// Takes a ceremony out of the store: of two concurrent takes, only one gets it.
    fn take_ceremony(&self, id: &str) -> Result<Ceremony, Refused> {
        serde_json::from_slice(&self.take_ceremony_bytes(id)?).map_err(|_| Refused("ceremony_unreadable"))
    }

    /// As [`Auth::take_ceremony`], then it must be unexpired and bound to this client (a
    /// ceremony taken by the wrong client is spent all the same).
    fn take_ceremony_of(&self, id: &str, client: &Client) -> Result<Ceremony, Refused> {
        self.check_ceremony(&self.take_ceremony_bytes(id)?, client)
    }

    fn take_ceremony_bytes(&self, id: &str) -> Result<Vec<u8>, Refused> {
        self.store
            .take(Tree::Ceremonies, &sha256(id.as_bytes()))?
            .ok_or(Refused("ceremony_unknown"))
    }

    fn check_ceremony(&self, bytes: &[u8], client: &Client) -> Result<Ceremony, Refused> {
        let cer: Ceremony = serde_json::from_slice(bytes).map_err(|_| Refused("ceremony_unreadable"))?;
        if self.now() >= cer.expires {
            return Err(Refused("ceremony_expired"));
        }
        let device = client.device.as_ref().map(|d| d.fingerprint.as_str());
        if cer.device.as_deref() != device || cer.ip != client.ip.to_string() {
            return Err(Refused("ceremony_other_client"));
        }
        Ok(cer)
    }
}

/// May `user` reach some protected route from where `client` is (address, device
/// certificate where required, groups)? Invitations are only usable from there.
pub fn may_reach(policy: &Policy, user: &str, client: &Client) -> bool {
    let Some(u) = names::policy_user(policy, user) else {
        return false;
    };
    let device_owner = client.device.as_ref().and_then(|d| d.user.as_deref());
    if device_owner.is_some_and(|o| !o.eq_ignore_ascii_case(user)) {
        return false;
    }
    policy.routes.iter().any(|r| {
        r.access == Access::Protected
            && r.allows_ip(client.ip)
            && (!r.require_device || client.device.is_some())
            && (r.groups.is_empty() || r.groups.iter().any(|g| u.groups.contains(g)))
    })
}

fn now_bytes(now: i64) -> [u8; 8] {
    now.to_be_bytes()
}

/// Gives the running gateway its second-factor state and serves the control socket for
/// `sekisho user …`. Call once, inside the runtime.
pub fn install(gw: &Arc<crate::gateway::Gateway>, mut auth: Auth) {
    auth.set_notifier(notify::from_env());
    let auth = Arc::new(auth);
    if gw.auth.set(auth.clone()).is_err() {
        tracing::error!("second-factor state installed twice; keeping the first");
        return;
    }
    let socket = match admin::bind(&gw.active().policy) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "control socket failed; `sekisho user` commands cannot reach this gateway");
            return;
        }
    };
    let gw = gw.clone();
    tokio::spawn(async move {
        if let Err(e) = admin::serve(socket, gw, auth).await {
            tracing::error!(error = %e, "control socket failed; `sekisho user` commands cannot reach this gateway");
        }
    });
}

/// The identity sent upstream for a live session: the user's policy name and current
/// groups (comma-separated).
pub fn identity(policy: &Policy, session: Option<&Live>) -> Option<(String, String)> {
    let s = session?;
    let u = names::policy_user(policy, &s.facts.user)?;
    Some((u.name.clone(), u.groups.join(",")))
}

/// Describes a request for the gateway's own pages. The origin's port is the one the
/// client named (Host or :authority), else 443; the host was already checked by the
/// pipeline against the served names and the SNI.
pub fn page_request(
    method: &::http::Method,
    uri: &::http::Uri,
    headers: &::http::HeaderMap,
    host: &str,
    target: &sekisho_policy::CanonicalTarget,
    client: Client,
) -> Option<http::PageRequest> {
    let port = uri.port_u16().or_else(|| {
        headers
            .get(::http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<::http::uri::Authority>().ok())
            .and_then(|a| a.port_u16())
    });
    Some(http::PageRequest {
        method: method.clone(),
        path: target.path.clone(),
        query: target.query.clone(),
        origin: Origin {
            host: host.to_owned(),
            port: port.unwrap_or(443),
        },
        client,
    })
}

/// Serves one of the gateway's pages (503 when the second-factor state is not there).
pub async fn serve_page<B>(
    gw: &crate::gateway::Gateway,
    policy: &Policy,
    page: Option<http::PageRequest>,
    req: ::http::Request<B>,
) -> (::http::Response<crate::body::ResponseBody>, http::Served)
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match (gw.auth.get(), page) {
        (Some(auth), Some(page)) => http::serve(auth, policy, page, req).await,
        _ => (
            crate::error::Refusal::Unavailable("second_factor_state_missing").into_response(),
            http::Served {
                reason: "second_factor_state_missing",
                user: None,
            },
        ),
    }
}

impl Auth {
    /// Sends a notice that is not about one login (e.g. a refused policy reload).
    pub fn notify(&self, policy: &sekisho_policy::Policy, notice: notify::Notice) {
        self.notices.send(policy, notice);
    }

    /// The notices sent so far by this process (most recent last, bounded).
    pub fn notices(&self) -> Vec<notify::Notice> {
        self.notices.recent()
    }
}
