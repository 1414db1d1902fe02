//! Test PKI, made fresh for each test process with rcgen: a server CA and a server
//! certificate for the gateway's hostnames, a device CA, device certificates of every kind
//! the corpus and the issue name, a look-alike CA, and CRLs written atomically.
//!
//! Nothing here is a fixture file: keys never outlive the test process.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType,
    SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::scratch;

/// The user every valid device certificate names (`urn:sekisho:user:alice`).
pub const DEVICE_USER: &str = "alice";

/// What kind of device certificate to make. The names follow the corpus's `client_cert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// Device CA, clientAuth EKU, URI SAN `urn:sekisho:user:alice`, valid now.
    Valid,
    /// As `Valid` but without any extended key usage.
    NoEku,
    /// As `Valid` but the only EKU is serverAuth.
    ServerAuthOnly,
    /// As `Valid` but the only EKU is emailProtection.
    EmailProtectionOnly,
    /// clientAuth, but the user is only in an rfc822Name SAN (and the CN), never a URI SAN.
    Rfc822SanOnly,
    /// Issued by a CA with the device CA's very name but another key.
    OtherCa,
    /// Validity ended yesterday.
    Expired,
    /// Validity starts tomorrow.
    NotYetValid,
    /// Valid, but listed on the initial CRL.
    Revoked,
}

impl DeviceKind {
    /// Every kind, for tables.
    pub const ALL: [DeviceKind; 9] = [
        DeviceKind::Valid,
        DeviceKind::NoEku,
        DeviceKind::ServerAuthOnly,
        DeviceKind::EmailProtectionOnly,
        DeviceKind::Rfc822SanOnly,
        DeviceKind::OtherCa,
        DeviceKind::Expired,
        DeviceKind::NotYetValid,
        DeviceKind::Revoked,
    ];
}

/// A certificate and its key, as DER (for rustls) and as PEM files (for the gateway).
#[derive(Debug)]
pub struct Credential {
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    pub cert_pem_path: PathBuf,
    pub key_pem_path: PathBuf,
    /// The certificate's serial number.
    pub serial: u64,
}

impl Credential {
    /// The private key in the form rustls wants.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// The SHA-256 fingerprint of the certificate, lower-case hex (the value of
    /// `X-Sekisho-Device`).
    pub fn sha256_hex(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.cert_der.as_ref());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A certificate authority that can issue more certificates and CRLs.
pub struct Authority {
    params: CertificateParams,
    key: KeyPair,
    pub cert_der: CertificateDer<'static>,
    pub cert_pem_path: PathBuf,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("cert_pem_path", &self.cert_pem_path)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// A self-signed CA named `common_name`, its certificate written to `dir/file_stem.pem`.
    pub fn new(dir: &Path, file_stem: &str, common_name: &str) -> Authority {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(SerialNumber::from(next_serial()));
        params.not_before = OffsetDateTime::now_utc() - Duration::days(30);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
        params.key_identifier_method = KeyIdMethod::Sha256;
        let key = KeyPair::generate().expect("generate a CA key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        let cert_pem_path = dir.join(format!("{file_stem}.pem"));
        std::fs::write(&cert_pem_path, cert.pem()).expect("write the CA certificate");
        std::fs::write(dir.join(format!("{file_stem}.key")), key.serialize_pem()).expect("write the CA key");
        Authority {
            params,
            key,
            cert_der: cert.der().clone(),
            cert_pem_path,
        }
    }

    /// Signs `params` (a fresh key and serial), written to `dir/file_stem.pem` / `.key`.
    pub fn issue(&self, mut params: CertificateParams, dir: &Path, file_stem: &str) -> Credential {
        let serial = next_serial();
        params.serial_number = Some(SerialNumber::from(serial));
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generate a key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign a certificate");
        let cert_pem_path = dir.join(format!("{file_stem}.pem"));
        let key_pem_path = dir.join(format!("{file_stem}.key"));
        std::fs::write(&cert_pem_path, cert.pem()).expect("write a certificate");
        std::fs::write(&key_pem_path, key.serialize_pem()).expect("write a key");
        Credential {
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            cert_pem_path,
            key_pem_path,
            serial,
        }
    }

    /// A PEM CRL listing `revoked` serials, valid from an hour ago for `valid_for`.
    pub fn crl_pem(&self, revoked: &[u64], valid_for: Duration) -> String {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + valid_for,
            crl_number: SerialNumber::from(next_serial()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&serial| RevokedCertParams {
                    serial_number: SerialNumber::from(serial),
                    revocation_time: now - Duration::minutes(5),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_params(&self.params, &self.key);
        params
            .signed_by(&issuer)
            .expect("sign a CRL")
            .pem()
            .expect("encode a CRL")
    }

    /// Writes a CRL listing `revoked` to `path` by rename (atomically), valid for a year as
    /// `sekisho ca refresh-crl` makes them (`sekisho status` warns within 30 days).
    pub fn write_crl(&self, path: &Path, revoked: &[u64]) {
        scratch::write_atomically(path, self.crl_pem(revoked, Duration::days(365)).as_bytes());
    }
}

/// The whole PKI one test process uses.
#[derive(Debug)]
pub struct Pki {
    pub dir: PathBuf,
    /// Signs the gateway's server certificate; clients trust only this.
    pub server_ca: Authority,
    /// Certificate for every gateway hostname, in `dir/server.pem` / `dir/server.key`.
    pub server: Credential,
    /// The policy's `device_ca`.
    pub device_ca: Authority,
    /// A CA with the device CA's name but another key.
    pub rogue_ca: Authority,
    devices: Vec<(DeviceKind, Credential)>,
    /// A second valid device, for "the other device keeps working" checks.
    pub second_device: Credential,
}

/// The hostnames every test gateway serves.
pub const HOSTNAMES: [&str; 2] = ["admin.gw.test", "public.gw.test"];

impl Pki {
    /// Makes everything in a fresh scratch directory.
    pub fn generate() -> Pki {
        let dir = scratch::dir("pki");
        let server_ca = Authority::new(&dir, "server-ca", "Sekisho Test Server CA");
        let mut server_params = CertificateParams::new(HOSTNAMES.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .expect("server certificate parameters");
        server_params.distinguished_name = dn("admin.gw.test");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server_params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        // Beyond the 30 days within which `sekisho status` asks for attention.
        server_params.not_after = OffsetDateTime::now_utc() + Duration::days(365);
        let server = server_ca.issue(server_params, &dir, "server");

        let device_ca = Authority::new(&dir, "device-ca", "Sekisho Device CA");
        let rogue_ca = Authority::new(&dir, "rogue-ca", "Sekisho Device CA");
        let devices = DeviceKind::ALL
            .iter()
            .map(|&kind| {
                let issuer = if kind == DeviceKind::OtherCa {
                    &rogue_ca
                } else {
                    &device_ca
                };
                let stem = format!("device-{kind:?}").to_lowercase();
                (kind, issuer.issue(device_params(kind, "laptop-alice"), &dir, &stem))
            })
            .collect();
        let second_device = device_ca.issue(device_params(DeviceKind::Valid, "laptop-bob"), &dir, "device-2nd");
        Pki {
            dir,
            server_ca,
            server,
            device_ca,
            rogue_ca,
            devices,
            second_device,
        }
    }

    /// The device certificate of `kind`.
    pub fn device(&self, kind: DeviceKind) -> &Credential {
        self.devices
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, c)| c)
            .expect("every kind is generated")
    }

    /// Serials the initial CRL lists (the `Revoked` kind).
    pub fn initially_revoked(&self) -> Vec<u64> {
        vec![self.device(DeviceKind::Revoked).serial]
    }

    /// Issues one more valid device certificate (for tests that revoke it).
    pub fn issue_device(&self, common_name: &str) -> Credential {
        let stem = format!("device-extra-{}", next_serial());
        self.device_ca
            .issue(device_params(DeviceKind::Valid, common_name), &self.dir, &stem)
    }
}

fn device_params(kind: DeviceKind, common_name: &str) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name);
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(30);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let user_uri = SanType::URI(
        format!("urn:sekisho:user:{DEVICE_USER}")
            .try_into()
            .expect("an IA5 URI"),
    );
    params.subject_alt_names = vec![user_uri];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    match kind {
        DeviceKind::Valid | DeviceKind::OtherCa | DeviceKind::Revoked => {}
        DeviceKind::NoEku => params.extended_key_usages.clear(),
        DeviceKind::ServerAuthOnly => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }
        DeviceKind::EmailProtectionOnly => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
        }
        DeviceKind::Rfc822SanOnly => {
            params.distinguished_name = dn(DEVICE_USER);
            params.subject_alt_names = vec![SanType::Rfc822Name(
                format!("{DEVICE_USER}@gw.test").try_into().expect("an IA5 address"),
            )];
        }
        DeviceKind::Expired => {
            params.not_before = now - Duration::days(10);
            params.not_after = now - Duration::days(1);
        }
        DeviceKind::NotYetValid => {
            params.not_before = now + Duration::days(1);
            params.not_after = now + Duration::days(30);
        }
    }
    params
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Serial numbers unique within the process, positive, never zero.
fn next_serial() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = u64::from(std::process::id()) << 24;
    // Keep the top bit clear so the DER INTEGER is positive without padding surprises.
    ((base + NEXT.fetch_add(1, Ordering::SeqCst) + 1) & 0x7fff_ffff_ffff_ffff) | 1 << 40
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(der: &[u8]) -> x509::Parsed {
        x509::Parsed::from(der)
    }

    /// A tiny look at the DER through rustls-webpki-free means: we only check the bytes
    /// contain (or not) the OIDs and names we asked for.
    mod x509 {
        pub struct Parsed(pub Vec<u8>);
        impl From<&[u8]> for Parsed {
            fn from(d: &[u8]) -> Self {
                Parsed(d.to_vec())
            }
        }
        impl Parsed {
            pub fn contains(&self, needle: &[u8]) -> bool {
                self.0.windows(needle.len()).any(|w| w == needle)
            }
        }
    }

    // DER of the EKU OIDs 1.3.6.1.5.5.7.3.{1,2,4}.
    const SERVER_AUTH: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
    const CLIENT_AUTH: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
    const EMAIL: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x04];

    #[test]
    fn device_kinds_carry_what_their_names_say() {
        let pki = Pki::generate();
        let has = |kind, oid| parse(pki.device(kind).cert_der.as_ref()).contains(oid);
        assert!(has(DeviceKind::Valid, CLIENT_AUTH));
        assert!(has(DeviceKind::Valid, b"urn:sekisho:user:alice"));
        assert!(!has(DeviceKind::NoEku, CLIENT_AUTH) && !has(DeviceKind::NoEku, SERVER_AUTH));
        assert!(has(DeviceKind::ServerAuthOnly, SERVER_AUTH));
        assert!(!has(DeviceKind::ServerAuthOnly, CLIENT_AUTH));
        assert!(has(DeviceKind::EmailProtectionOnly, EMAIL));
        assert!(!has(DeviceKind::EmailProtectionOnly, CLIENT_AUTH));
        assert!(has(DeviceKind::Rfc822SanOnly, b"alice@gw.test"));
        assert!(!has(DeviceKind::Rfc822SanOnly, b"urn:sekisho:user:"));
        assert!(pki.server.cert_pem_path.is_file() && pki.server.key_pem_path.is_file());
        let serials: std::collections::HashSet<u64> = DeviceKind::ALL.iter().map(|&k| pki.device(k).serial).collect();
        assert_eq!(serials.len(), DeviceKind::ALL.len(), "serials are unique");
    }

    #[test]
    fn device_certificates_verify_against_the_device_ca_only() {
        let pki = Pki::generate();
        let verify = |ca: &Authority, kind: DeviceKind| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.cert_der.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                std::sync::Arc::new(rustls::crypto::ring::default_provider()),
            )
            .build()
            .unwrap();
            verifier
                .verify_client_cert(&pki.device(kind).cert_der, &[], rustls_pki_types::UnixTime::now())
                .is_ok()
        };
        assert!(verify(&pki.device_ca, DeviceKind::Valid));
        assert!(!verify(&pki.device_ca, DeviceKind::OtherCa));
        assert!(verify(&pki.rogue_ca, DeviceKind::OtherCa));
        assert!(!verify(&pki.device_ca, DeviceKind::Expired));
        assert!(!verify(&pki.device_ca, DeviceKind::NotYetValid));
    }

    #[test]
    fn crls_list_the_serials_asked_for() {
        let pki = Pki::generate();
        let path = pki.dir.join("test.crl.pem");
        pki.device_ca.write_crl(&path, &pki.initially_revoked());
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN X509 CRL-----"));
        let der = rustls_pki_types::CertificateRevocationListDer::from(base64_body(&pem));
        let serial = pki.device(DeviceKind::Revoked).serial.to_be_bytes();
        let trimmed: Vec<u8> = serial.iter().copied().skip_while(|b| *b == 0).collect();
        assert!(der.as_ref().windows(trimmed.len()).any(|w| w == trimmed));
    }

    fn base64_body(pem: &str) -> Vec<u8> {
        use base64::Engine as _;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    }
}
