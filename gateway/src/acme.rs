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
//! (the account key and URL, 0600) and `certificate.pem` (the chain, then its key; 0600), each written
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
mod issue;
mod renew;
mod store;

pub use renew::{backoff, maintain};

use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sekisho_policy::{Acme, Limits};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
        let Ok(pair) = std::fs::read(dir.join(store::CERTIFICATE)) else {
            return;
        };
        match store::parse_issued(&pair, &pair) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn renewal_is_due_at_the_percentage_of_the_lifetime() {
        let issued = Issued {
            key: Arc::new(issue::alpn_certificate("a.example", &[0; 32]).unwrap()),
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
