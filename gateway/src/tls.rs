//! The TLS side of a listener: the server certificate, the device CA and its CRL, built
//! into one rustls `ServerConfig`. A configuration is built whole from files and swapped in
//! whole (see `gateway::Active`): a reload or a new CRL never leaves a half-built one
//! serving. TLS 1.2 and 1.3 only; one crypto provider (ring).

use crate::revocation::RevocationList;
use rustls::DistinguishedName;
use rustls::RootCertStore;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::ring;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use sekisho_policy::{ClientCertMode, Policy, ServerCertificate};
use std::sync::Arc;

/// Everything TLS that one policy generation needs.
#[derive(Debug)]
pub struct TlsSetup {
    pub server_config: Arc<rustls::ServerConfig>,
    /// The device CRL as read at build time (empty when client certificates are off).
    pub crl: Arc<RevocationList>,
    /// The exact CRL bytes the configuration was built from, to notice a change.
    pub crl_source: Option<(String, Vec<u8>)>,
    /// SHA-256 of the device CA file, so a connection verified under another CA is noticed.
    pub device_ca_id: Option<String>,
    /// The strict verifier (device CA, CRL, its expiry) that judges a presented
    /// certificate after the handshake; `None` when client certificates are off.
    pub device_verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// `notAfter` of the server certificate (the chain's first), seconds since the epoch;
    /// `None` for ACME certificates, which change without a new configuration (see
    /// [`crate::acme::Certs::current`]).
    pub server_not_after: Option<i64>,
}

impl TlsSetup {
    /// Judges a presented chain against the device CA and CRL at `now`. In `require` mode
    /// rustls already did this during the handshake; in `request` mode it is done here, so
    /// that a staff member whose certificate expired still reaches the public pages and
    /// gets a clear 403 (and a logged reason) on device routes instead of a TLS failure.
    pub fn verify_device_chain(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), (&'static str, rustls::Error)> {
        let Some(verifier) = &self.device_verifier else {
            return Err((
                "client_certificates_off",
                rustls::Error::General("client certificates are off".into()),
            ));
        };
        let Some((end_entity, intermediates)) = chain.split_first() else {
            return Err(("device_cert_missing", rustls::Error::NoCertificatesPresented));
        };
        verifier
            .verify_client_cert(end_entity, intermediates, now)
            .map(|_| ())
            .map_err(|e| (reason(&e), e))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {what}")]
    Pem { path: String, what: String },
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

impl TlsSetup {
    /// Builds the TLS configuration a policy asks for, reading its certificate files; an
    /// ACME policy's certificate is resolved at each handshake from `acme`.
    pub fn build(policy: &Policy, acme: &crate::acme::Certs) -> Result<TlsSetup, TlsError> {
        let server = &policy.server;
        let files = match &server.certificate {
            ServerCertificate::Files { cert, key } => Some((read_certs(cert)?, read_key(key)?, key)),
            ServerCertificate::Acme(acme) => {
                // A mistyped CA file is refused now, not at the first renewal weeks later.
                if let Some(ca) = &acme.directory_ca {
                    read_certs(ca)?;
                }
                None
            }
        };
        let server_not_after = files.as_ref().and_then(|(chain, _, _)| {
            chain.first().and_then(|c| {
                x509_parser::parse_x509_certificate(c.as_ref())
                    .ok()
                    .map(|(_, cert)| cert.validity().not_after.timestamp())
            })
        });
        let provider = Arc::new(ring::default_provider());

        let mut device_ca_id = None;
        let mut device_verifier = None;
        let (verifier, crl, crl_source) = match (server.client_certificates, &server.device_ca) {
            (ClientCertMode::Off, _) | (_, None) => {
                (WebPkiClientVerifier::no_client_auth(), RevocationList::default(), None)
            }
            (mode, Some(ca_path)) => {
                let mut roots = RootCertStore::empty();
                let ca_bytes = std::fs::read(ca_path).map_err(|source| TlsError::Read {
                    path: ca_path.clone(),
                    source,
                })?;
                device_ca_id = Some(crate::device::hex(&<sha2::Sha256 as sha2::Digest>::digest(&ca_bytes)));
                for ca in read_certs(ca_path)? {
                    roots.add(ca).map_err(|e| TlsError::Pem {
                        path: ca_path.clone(),
                        what: format!("not a usable CA certificate: {e}"),
                    })?;
                }
                let crl_path = server.device_crl_path().unwrap_or_default();
                let crl_bytes = std::fs::read(&crl_path).map_err(|source| TlsError::Read {
                    path: crl_path.clone(),
                    source,
                })?;
                let crl_der = CertificateRevocationListDer::from_pem_slice(&crl_bytes).map_err(|e| TlsError::Pem {
                    path: crl_path.clone(),
                    what: format!("not a PEM CRL ({e}); `sekisho ca init` writes one"),
                })?;
                let list = RevocationList::from_der(crl_der.as_ref()).map_err(|e| TlsError::Pem {
                    path: crl_path.clone(),
                    what: e.to_string(),
                })?;
                let strict = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .with_crls([crl_der])
                    .enforce_revocation_expiration()
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::Rustls(e.to_string()))?;
                device_verifier = Some(strict.clone());
                let verifier: Arc<dyn ClientCertVerifier> = Arc::new(DeviceVerifier {
                    strict,
                    mandatory: mode == ClientCertMode::Require,
                });
                (verifier, list, Some((crl_path, crl_bytes)))
            }
        };

        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_client_cert_verifier(verifier);
        let mut config = match files {
            Some((chain, key, key_path)) => builder
                .with_single_cert(chain, key)
                .map_err(|e| TlsError::Rustls(format!("{key_path}: {e}")))?,
            None => builder.with_cert_resolver(acme.resolver()),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsSetup {
            server_config: Arc::new(config),
            crl: Arc::new(crl),
            crl_source,
            device_ca_id,
            device_verifier,
            server_not_after,
        })
    }
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        what: format!("no usable private key: {e}"),
    })
}

/// A stable word for why a chain was refused (audit records, diagnostics).
fn reason(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "device_cert_expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "device_cert_not_yet_valid",
            C::Revoked => "device_cert_revoked",
            C::UnknownIssuer => "device_cert_unknown_issuer",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "device_cert_without_client_auth",
            C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => "device_crl_stale",
            C::UnknownRevocationStatus => "device_cert_revocation_unknown",
            _ => "device_cert_invalid",
        },
        _ => "device_cert_invalid",
    }
}

/// The client-certificate verifier of a listener with a device CA. In `require` mode it
/// is the strict verifier with a certificate mandatory at the handshake. In `request` mode
/// the handshake proves possession of the presented certificate's key (the
/// CertificateVerify signature is checked as usual) but judging the chain is left to
/// [`TlsSetup::verify_device_chain`], which runs right after the handshake and before any
/// request. A certificate that fails it identifies no device; this never fails open,
/// because the only thing a connection can gain from a certificate is a `DeviceCert` made
/// after that check passed (see `listener::serve_connection`).
#[derive(Debug)]
struct DeviceVerifier {
    strict: Arc<dyn ClientCertVerifier>,
    mandatory: bool,
}

impl ClientCertVerifier for DeviceVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.strict.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.mandatory {
            self.strict.verify_client_cert(end_entity, intermediates, now)
        } else {
            Ok(ClientCertVerified::assertion())
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.strict.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.strict.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.strict.supported_verify_schemes()
    }
}

/// The subject of the first certificate in `pem` when it is self-signed (issuer equal to
/// subject), else `None` (also for unreadable PEM: other checks report that).
pub fn self_signed_subject(pem: &[u8]) -> Option<String> {
    let first = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(first.as_ref()).ok()?;
    (cert.issuer().as_raw() == cert.subject().as_raw()).then(|| cert.subject().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_told_from_an_issued_one() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(rcgen::DnType::CommonName, "Test CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        assert_eq!(
            self_signed_subject(ca_cert.pem().as_bytes()).as_deref(),
            Some("CN=Test CA")
        );

        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["shop.example.jp".to_owned()]).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
        let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap();
        assert_eq!(self_signed_subject(leaf.pem().as_bytes()), None);
        assert_eq!(self_signed_subject(b"not pem"), None);
    }
}
