//! Automatic server certificates from an ACME CA (`[server] acme`), with instant-acme.
//!
//! **States.** `none` (no certificate yet: TLS handshakes other than the `acme-tls/1`
//! challenge fail, nothing is served) → `valid` (a certificate serves) → at
//! `acme_renew_percent` of its lifetime (two thirds by default) an attempt → `valid` with the
//! new certificate, or `failing` (the old certificate keeps serving; the failure is logged,
//! recorded in the audit log, sent as a notice and shown by `sekisho status`; the next
//! attempt comes after `acme_retry_min`, doubled per failure up to `acme_retry_max`).
//!
//! **Where things live.** `state_dir/acme/` (0700): `account-<sha256(directory)[..16]>.json`
//! (the account key and URL, 0600), `cert.pem` (chain) and `key.pem` (0600), each written
//! aside, fsynced and renamed in, so a crash leaves the old pair or the new one.
//!
//! **Swap.** The TLS configuration of an ACME policy resolves its certificate at every
//! handshake from one [`ArcSwapOption`]; installing a new certificate is one store. Open
//! connections keep the session they have; the next handshake gets the new certificate. A
//! policy reload rebuilds the configuration around the same slot.
//!
//! **Challenges.** http-01: `GET /.well-known/acme-challenge/TOKEN` on the plain listeners
//! (`http_listen`, see [`crate::plain`]). tls-alpn-01: a ClientHello whose ALPN list is
//! exactly `acme-tls/1` gets [`Certs::challenge_config`] (the RFC 8737 certificate for its SNI,
//! no client authentication), is finished and closed; nothing else ever sees that config.

mod http;

use crate::audit::{self, Event};
use crate::gateway::Gateway;
use arc_swap::ArcSwapOption;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sekisho_policy::{Acme, AcmeChallenge, Limits};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The ALPN protocol of tls-alpn-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// A certificate obtained from the CA (or read back from the state directory).
#[derive(Debug)]
pub struct Issued {
    pub key: Arc<CertifiedKey>,
    /// The end-entity certificate's serial number, lower-case hex.
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    /// Its DNS names (subjectAltName), lower-case.
    pub names: Vec<String>,
}

impl Issued {
    /// When renewal is due: `percent` of the way from notBefore to notAfter.
    pub fn renew_at(&self, percent: u8) -> i64 {
        let life = (self.not_after - self.not_before).max(0);
        self.not_before + life * i64::from(percent) / 100
    }

    /// Does it name every one of `hostnames`?
    pub fn covers(&self, hostnames: &[String]) -> bool {
        hostnames
            .iter()
            .all(|h| self.names.iter().any(|n| n.eq_ignore_ascii_case(h)))
    }
}

/// What `sekisho status` shows about ACME.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AcmeStatus {
    pub directory: String,
    pub challenge: String,
    /// The serving certificate's serial (hex), if there is one.
    pub serial: Option<String>,
    pub not_after: Option<i64>,
    pub renew_at: Option<i64>,
    /// When the serving certificate was installed by this process.
    pub installed_at: Option<i64>,
    /// Failed attempts since the last success.
    pub failures: u32,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// When the next attempt is due after a failure.
    pub next_attempt: Option<i64>,
}

/// The certificates ACME manages, shared by the TLS configurations, the plain listener and
/// the renewal task. Exists (empty) in every gateway; used only by ACME policies.
#[derive(Debug, Default)]
pub struct Certs {
    current: Arc<ArcSwapOption<Issued>>,
    /// tls-alpn-01 certificates by hostname (lower-case), while a challenge is open.
    alpn: Arc<Mutex<HashMap<String, Arc<CertifiedKey>>>>,
    /// http-01 key authorisations by token, while a challenge is open.
    http: Mutex<HashMap<String, String>>,
    report: Mutex<AcmeStatus>,
    installed_at: Mutex<Option<i64>>,
    challenge_config: std::sync::OnceLock<Option<Arc<rustls::ServerConfig>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Certs {
    /// The resolver for an ACME policy's TLS configuration: the current certificate, or
    /// none (the handshake fails) before the first one is obtained.
    pub fn resolver(&self) -> Arc<dyn ResolvesServerCert> {
        Arc::new(CurrentCert(self.current.clone()))
    }

    /// The certificate serving now.
    pub fn current(&self) -> Option<Arc<Issued>> {
        self.current.load_full()
    }

    /// Swaps a new certificate in: the next handshake uses it.
    pub fn install(&self, issued: Issued, now: i64) {
        self.current.store(Some(Arc::new(issued)));
        *lock(&self.installed_at) = Some(now);
    }

    /// The key authorisation for an http-01 token, while its challenge is open.
    pub fn http_answer(&self, token: &str) -> Option<String> {
        lock(&self.http).get(token).cloned()
    }

    /// Is a tls-alpn-01 challenge open (so an `acme-tls/1` hello deserves an answer)?
    pub fn alpn_open(&self) -> bool {
        !lock(&self.alpn).is_empty()
    }

    /// The TLS configuration for `acme-tls/1` handshakes: the challenge certificate of the
    /// SNI, no client authentication, only that ALPN.
    pub fn challenge_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.challenge_config
            .get_or_init(|| {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut config = rustls::ServerConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                    .ok()?
                    .with_no_client_auth()
                    .with_cert_resolver(Arc::new(AlpnCert(self.alpn.clone())));
                config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
                Some(Arc::new(config))
            })
            .clone()
    }

    /// The status report, with the serving certificate filled in.
    pub fn status(&self, settings: &Acme, limits: &Limits) -> AcmeStatus {
        let mut s = lock(&self.report).clone();
        s.directory = settings.directory.clone();
        s.challenge = settings.challenge.as_str().to_owned();
        if let Some(c) = self.current() {
            s.serial = Some(c.serial.clone());
            s.not_after = Some(c.not_after);
            s.renew_at = Some(c.renew_at(limits.acme_renew_percent));
        }
        s.installed_at = *lock(&self.installed_at);
        s
    }

    /// Reads the certificate kept in `state_dir/acme/` (from an earlier run), if any.
    pub fn load_stored(&self, state_dir: &Path, now: i64) {
        let dir = acme_dir(state_dir);
        let (Ok(chain), Ok(key)) = (std::fs::read(dir.join("cert.pem")), std::fs::read(dir.join("key.pem"))) else {
            return;
        };
        match parse_issued(&chain, &key) {
            Ok(issued) if issued.not_after > now => {
                tracing::info!(serial = %issued.serial, not_after = issued.not_after, "ACME certificate read from the state directory");
                self.install(issued, now);
            }
            Ok(issued) => {
                tracing::warn!(serial = %issued.serial, "the stored ACME certificate has expired; obtaining a new one")
            }
            Err(e) => tracing::warn!(error = %e, "the stored ACME certificate cannot be used; obtaining a new one"),
        }
    }
}

/// Resolves the serving certificate of an ACME policy.
#[derive(Debug)]
struct CurrentCert(Arc<ArcSwapOption<Issued>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().as_ref().map(|i| i.key.clone())
    }
}

/// Resolves the tls-alpn-01 certificate of the hello's SNI.
#[derive(Debug)]
struct AlpnCert(Arc<Mutex<HashMap<String, Arc<CertifiedKey>>>>);

impl ResolvesServerCert for AlpnCert {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name()?.to_ascii_lowercase();
        lock(&self.0).get(&sni).cloned()
    }
}

/// Is this ALPN list exactly `["acme-tls/1"]` (RFC 8737: the validation offers only that)?
pub fn is_acme_alpn<'a>(alpn: Option<impl Iterator<Item = &'a [u8]>>) -> bool {
    let Some(mut protocols) = alpn else {
        return false;
    };
    protocols.next() == Some(ACME_TLS_ALPN) && protocols.next().is_none()
}

fn acme_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("acme")
}

/// Why an attempt failed (text for logs, the audit record, the notice and status).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AcmeError(String);

fn fail(what: &str, e: impl std::fmt::Display) -> AcmeError {
    AcmeError(format!("{what}: {e}"))
}

/// Parses a PEM chain and key into an [`Issued`].
fn parse_issued(chain_pem: &[u8], key_pem: &[u8]) -> Result<Issued, AcmeError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| fail("certificate chain", e))?;
    let leaf = chain
        .first()
        .ok_or_else(|| AcmeError("the chain holds no certificate".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| fail("certificate", e))?;
    let serial = cert
        .tbs_certificate
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| fail("certificate key", e))?;
    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider).map_err(|e| fail("certificate and key", e))?;
    Ok(Issued {
        key: Arc::new(key),
        serial,
        not_before,
        not_after,
        names,
    })
}

/// Writes `bytes` to `path` with mode 0600: aside, fsynced, renamed in.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let aside = path.with_extension("new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&aside)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&aside, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn ensure_dir(state_dir: &Path) -> Result<PathBuf, AcmeError> {
    let dir = acme_dir(state_dir);
    std::fs::create_dir_all(&dir).map_err(|e| fail(&dir.display().to_string(), e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| fail(&dir.display().to_string(), e))?;
    Ok(dir)
}

/// The roots trusted for the directory's TLS: `directory_ca`, else the system's.
fn roots(settings: &Acme) -> Result<rustls::RootCertStore, AcmeError> {
    let mut roots = rustls::RootCertStore::empty();
    match &settings.directory_ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| fail(path, e))?;
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| fail(path, e))?;
                roots.add(c).map_err(|e| fail(path, e))?;
            }
            if roots.is_empty() {
                return Err(AcmeError(format!("{path}: no CERTIFICATE block found")));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(AcmeError("no system root certificates found".into()));
            }
        }
    }
    Ok(roots)
}

/// The account for this directory: read from the state directory, or created (and kept).
async fn account(settings: &Acme, state_dir: &Path, client: http::Https) -> Result<Account, AcmeError> {
    let dir = ensure_dir(state_dir)?;
    let id = sekisho_policy::sha256_hex(settings.directory.as_bytes());
    let path = dir.join(format!("account-{}.json", id.get(..16).unwrap_or(&id)));
    if let Ok(bytes) = std::fs::read(&path) {
        let creds: AccountCredentials =
            serde_json::from_slice(&bytes).map_err(|e| fail(&path.display().to_string(), e))?;
        return Account::builder_with_http(Box::new(client))
            .from_credentials(creds)
            .await
            .map_err(|e| fail("restoring the ACME account", e));
    }
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let (account, creds) = Account::builder_with_http(Box::new(client))
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await
        .map_err(|e| fail("creating the ACME account", e))?;
    let json = serde_json::to_vec(&creds).map_err(|e| fail("account credentials", e))?;
    write_private(&path, &json).map_err(|e| fail(&path.display().to_string(), e))?;
    tracing::info!(account = %account.id(), "ACME account created");
    Ok(account)
}

/// Removes the challenge answers of one attempt however it ends.
struct OpenChallenges<'a> {
    certs: &'a Certs,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl Drop for OpenChallenges<'_> {
    fn drop(&mut self) {
        let mut http = lock(&self.certs.http);
        for t in &self.tokens {
            http.remove(t);
        }
        let mut alpn = lock(&self.certs.alpn);
        for n in &self.names {
            alpn.remove(n);
        }
    }
}

/// The RFC 8737 certificate for `name`: self-signed, the name as its only SAN, and the
/// critical acmeIdentifier extension holding SHA-256 of the key authorisation.
fn alpn_certificate(name: &str, digest: &[u8]) -> Result<CertifiedKey, AcmeError> {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| fail("challenge", e))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| fail("challenge key", e))?;
    let cert = params.self_signed(&key).map_err(|e| fail("challenge certificate", e))?;
    let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    // Not `CertifiedKey::from_der`: its key check parses the certificate with webpki, which
    // refuses the critical acmeIdentifier extension that RFC 8737 demands.
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| fail("challenge key", e))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}

/// One issuance: order, challenges, finalisation, download; the new pair is written to the
/// state directory before it is returned.
async fn issue(
    settings: &Acme,
    hostnames: &[String],
    state_dir: &Path,
    limits: &Limits,
    certs: &Certs,
) -> Result<Issued, AcmeError> {
    let client = http::Https::new(roots(settings)?, limits.acme_request_timeout)
        .map_err(|e| fail("TLS client for the ACME server", e))?;
    let account = account(settings, state_dir, client).await?;
    let identifiers: Vec<Identifier> = hostnames.iter().map(|h| Identifier::Dns(h.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| fail("new order", e))?;
    let kind = match settings.challenge {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut open = OpenChallenges {
        certs,
        tokens: Vec::new(),
        names: Vec::new(),
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| fail("authorization", e))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(AcmeError(format!("authorization is {other:?}"))),
        }
        let Some(mut challenge) = authz.challenge(kind.clone()) else {
            return Err(AcmeError(format!(
                "the CA offers no {} challenge",
                settings.challenge.as_str()
            )));
        };
        let name = match challenge.identifier().identifier {
            Identifier::Dns(d) => d.to_ascii_lowercase(),
            other => return Err(AcmeError(format!("unexpected identifier {other:?}"))),
        };
        let key_auth = challenge.key_authorization();
        match settings.challenge {
            AcmeChallenge::Http01 => {
                lock(&certs.http).insert(challenge.token.clone(), key_auth.as_str().to_owned());
                open.tokens.push(challenge.token.clone());
            }
            AcmeChallenge::TlsAlpn01 => {
                let cert = alpn_certificate(&name, key_auth.digest().as_ref())?;
                lock(&certs.alpn).insert(name.clone(), Arc::new(cert));
                open.names.push(name.clone());
            }
        }
        challenge
            .set_ready()
            .await
            .map_err(|e| fail(&format!("challenge for {name}"), e))?;
    }
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(limits.acme_order_timeout);
    let status = order.poll_ready(&retries).await.map_err(|e| fail("validation", e))?;
    if status != OrderStatus::Ready {
        return Err(AcmeError(format!("the order is {status:?} after validation")));
    }
    drop(open);
    let key_pem = order.finalize().await.map_err(|e| fail("finalize", e))?;
    let chain_pem = order
        .poll_certificate(&retries)
        .await
        .map_err(|e| fail("certificate download", e))?;
    let issued = parse_issued(chain_pem.as_bytes(), key_pem.as_bytes())?;
    if !issued.covers(hostnames) {
        return Err(AcmeError("the issued certificate does not name every hostname".into()));
    }
    let dir = ensure_dir(state_dir)?;
    write_private(&dir.join("key.pem"), key_pem.as_bytes()).map_err(|e| fail("key.pem", e))?;
    write_private(&dir.join("cert.pem"), chain_pem.as_bytes()).map_err(|e| fail("cert.pem", e))?;
    Ok(issued)
}

/// The wait after `failures` consecutive failures: `min` doubled per failure, at most `max`.
pub fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
    min.saturating_mul(factor).min(max)
}

/// Keeps the certificate of an ACME policy valid until `stop`: obtains the first one,
/// renews at `acme_renew_percent` of its lifetime (or at once when the hostnames changed),
/// and after a failure waits with exponential backoff while the old one keeps serving.
/// Idles while the active policy uses certificate files.
pub async fn maintain(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    let mut failures: u32 = 0;
    let mut next_attempt: Option<i64> = None;
    loop {
        let active = gw.active();
        let limits = active.policy.limits;
        let mut wait = limits.policy_poll_interval;
        if let Some(settings) = active.policy.server.acme() {
            let now = gw.clock.unix_seconds();
            let hostnames = &active.policy.server.hostnames;
            let due = match gw.acme.current() {
                Some(c) if c.covers(hostnames) => c.renew_at(limits.acme_renew_percent),
                _ => now,
            };
            let at = next_attempt.map_or(due, |n| n.max(due));
            if now >= at {
                let state_dir = PathBuf::from(&active.policy.server.state_dir);
                let started = std::time::Instant::now();
                let outcome = tokio::select! {
                    r = tokio::time::timeout(limits.acme_order_timeout, issue(settings, hostnames, &state_dir, &limits, &gw.acme)) => r,
                    _ = stop.changed() => return,
                };
                let outcome = outcome
                    .unwrap_or_else(|_| Err(AcmeError("the issuance took longer than acme_order_timeout".into())));
                let now = gw.clock.unix_seconds();
                match outcome {
                    Ok(issued) => {
                        failures = 0;
                        next_attempt = None;
                        let previous = gw.acme.current().map(|c| c.serial.clone());
                        tracing::info!(
                            serial = %issued.serial,
                            not_after = issued.not_after,
                            previous = previous.as_deref().unwrap_or("none"),
                            ms = started.elapsed().as_millis() as u64,
                            "ACME certificate installed"
                        );
                        gw.audit.record_detached(&Event::AcmeCertificateIssued {
                            serial: &issued.serial,
                            not_after: issued.not_after,
                            names: &issued.names,
                            challenge: settings.challenge.as_str(),
                            replaces: previous.as_deref(),
                        });
                        gw.acme.install(issued, now);
                        let mut r = lock(&gw.acme.report);
                        r.failures = 0;
                        r.next_attempt = None;
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        let delay = backoff(failures, limits.acme_retry_min, limits.acme_retry_max);
                        let retry = now.saturating_add(i64::try_from(delay.as_secs()).unwrap_or(i64::MAX).max(1));
                        next_attempt = Some(retry);
                        let serving = gw.acme.current().map(|c| c.serial.clone());
                        tracing::error!(
                            error = %e,
                            failures,
                            retry_in_ms = delay.as_millis() as u64,
                            serving = serving.as_deref().unwrap_or("none"),
                            "ACME certificate not obtained; the current certificate keeps serving"
                        );
                        let text = e.to_string();
                        let error = audit::clip(&text);
                        gw.audit.record_detached(&Event::AcmeFailed {
                            error,
                            failures,
                            retry_at: retry,
                            serving: serving.as_deref(),
                        });
                        {
                            let mut r = lock(&gw.acme.report);
                            r.failures = failures;
                            r.last_error = Some(e.to_string());
                            r.last_error_at = Some(now);
                            r.next_attempt = Some(retry);
                        }
                        if let Some(auth) = gw.auth.get() {
                            auth.notify(
                                &active.policy,
                                crate::auth::notify::Notice::AcmeFailed {
                                    error: e.to_string(),
                                    failures,
                                    serving_until: gw.acme.current().map(|c| c.not_after),
                                },
                            );
                        }
                    }
                }
                continue;
            }
            let left = Duration::from_secs(u64::try_from(at - now).unwrap_or(1).max(1));
            wait = wait.min(left);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(600));
        assert_eq!(backoff(1, min, max), Duration::from_secs(60));
        assert_eq!(backoff(2, min, max), Duration::from_secs(120));
        assert_eq!(backoff(4, min, max), Duration::from_secs(480));
        assert_eq!(backoff(5, min, max), max);
        assert_eq!(backoff(u32::MAX, min, max), max);
    }

    #[test]
    fn only_a_lone_acme_tls_alpn_is_a_challenge() {
        let list = |p: &'static [&'static [u8]]| Some(p.iter().copied());
        assert!(is_acme_alpn(list(&[b"acme-tls/1"])));
        assert!(!is_acme_alpn(list(&[b"h2", b"acme-tls/1"])));
        assert!(!is_acme_alpn(list(&[b"acme-tls/1", b"http/1.1"])));
        assert!(!is_acme_alpn(list(&[])));
        assert!(!is_acme_alpn(None::<std::iter::Empty<&[u8]>>));
    }

    #[test]
    fn the_alpn_certificate_carries_the_critical_acme_identifier() {
        let digest = [7u8; 32];
        let key = alpn_certificate("admin.example.jp", &digest).unwrap();
        let der = key.cert.first().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        // OCTET STRING (0x04), length 32, the digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
    }

    #[test]
    fn renewal_is_due_at_the_percentage_of_the_lifetime() {
        let issued = Issued {
            key: Arc::new(alpn_certificate("a.example", &[0; 32]).unwrap()),
            serial: "01".into(),
            not_before: 1000,
            not_after: 1000 + 90 * 86_400,
            names: vec!["a.example".into()],
        };
        assert_eq!(issued.renew_at(67), 1000 + 90 * 86_400 * 67 / 100);
        assert!(issued.covers(&["A.example".into()]));
        assert!(!issued.covers(&["a.example".into(), "b.example".into()]));
    }
}
