//! One issuance with instant-acme: the account (kept in the state directory), a new order
//! for the policy's hostnames, the challenges answered through [`Certs`] (http-01 tokens,
//! tls-alpn-01 certificates) and withdrawn however the attempt ends, finalisation with a
//! new key, and the downloaded chain written to the state directory.

use super::store::{CERTIFICATE, ensure_dir, parse_issued, write_private};
use super::{AcmeError, Certs, Issued, fail, http, lock};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sekisho_policy::{Acme, AcmeChallenge, Limits};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
pub(super) fn alpn_certificate(name: &str, digest: &[u8]) -> Result<CertifiedKey, AcmeError> {
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
pub(super) async fn issue(
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
    // Chain and key in one file, renamed in at once: a crash leaves the old pair or the new
    // one, never a key beside a certificate it does not belong to.
    let pair = format!("{}\n{}", chain_pem.trim_end(), key_pem);
    write_private(&dir.join(CERTIFICATE), pair.as_bytes()).map_err(|e| fail(CERTIFICATE, e))?;
    Ok(issued)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
