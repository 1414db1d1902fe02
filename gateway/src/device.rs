//! Device identity from a client certificate. rustls has already checked the chain to the
//! device CA (and the CRL) during the handshake; this module adds what webpki does not
//! insist on and what must hold on every request, not only at the handshake: the
//! clientAuth EKU must be present, the certificate must be inside its validity *now*, and
//! its serial must not be on the *current* CRL (so a revocation reaches connections that
//! are already open, and sessions resumed from before it).

use crate::revocation::RevocationList;
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

/// The URI SAN prefix that names the device's user. Only this SAN type is read: a CN or
/// an rfc822Name with the same text is ignored (corpus MTLS-012).
pub const USER_URI_PREFIX: &str = "urn:sekisho:user:";

/// A device certificate as presented on one connection.
#[derive(Debug, Clone)]
pub struct DeviceCert {
    /// Hex SHA-256 of the certificate's DER: the device's fingerprint.
    pub fingerprint: String,
    /// The certificate's serial number, big-endian bytes as encoded.
    pub serial: Vec<u8>,
    /// The subject CN: the device's name.
    pub name: String,
    /// The user named by the `urn:sekisho:user:` URI SAN, if any.
    pub user: Option<String>,
    pub not_before: i64,
    pub not_after: i64,
    /// Why the certificate can never identify a device, if it cannot (decided once).
    pub defect: Option<&'static str>,
}

impl DeviceCert {
    /// Reads the end-entity certificate. A certificate that cannot be parsed yields a
    /// `DeviceCert` with a defect, so the request is denied with a reason rather than
    /// treated as "no certificate".
    pub fn from_der(der: &[u8]) -> DeviceCert {
        let fingerprint = hex(&Sha256::digest(der));
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return DeviceCert::defective(fingerprint, "device_cert_unparsable");
        };
        let mut defect = None;
        match cert.extended_key_usage() {
            Ok(Some(eku)) if eku.value.client_auth => {}
            Ok(_) => defect = Some("device_cert_without_client_auth"),
            Err(_) => defect = Some("device_cert_bad_eku"),
        }
        let name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or("")
            .to_owned();
        let mut users = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for gn in &san.value.general_names {
                if let GeneralName::URI(uri) = gn
                    && let Some(user) = uri.strip_prefix(USER_URI_PREFIX)
                {
                    users.push(user.to_owned());
                }
            }
        }
        // Two users in one certificate is ambiguous: it identifies nobody.
        let user = match users.len() {
            0 => None,
            1 => users.pop(),
            _ => {
                defect = defect.or(Some("device_cert_two_users"));
                None
            }
        };
        DeviceCert {
            fingerprint,
            serial: cert.raw_serial().to_vec(),
            name,
            user,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            defect,
        }
    }

    /// Marks the certificate as unable to identify a device (its chain was refused).
    pub fn refuse(&mut self, why: &'static str) {
        self.defect = self.defect.or(Some(why));
    }

    fn defective(fingerprint: String, why: &'static str) -> DeviceCert {
        DeviceCert {
            fingerprint,
            serial: Vec::new(),
            name: String::new(),
            user: None,
            not_before: 0,
            not_after: 0,
            defect: Some(why),
        }
    }

    /// Checks what must hold at the moment of a request. `Ok` means the certificate
    /// identifies a device right now.
    pub fn check_now(&self, now_unix: i64, crl: &RevocationList) -> Result<(), &'static str> {
        if let Some(defect) = self.defect {
            return Err(defect);
        }
        if now_unix < self.not_before {
            return Err("device_cert_not_yet_valid");
        }
        if now_unix > self.not_after {
            return Err("device_cert_expired");
        }
        if crl.is_stale(now_unix) {
            return Err("device_crl_stale");
        }
        if crl.is_revoked(&self.serial) {
            return Err("device_cert_revoked");
        }
        Ok(())
    }

    /// The serial as lower-case hex, as `sekisho device revoke` accepts it.
    pub fn serial_hex(&self) -> String {
        hex(&self.serial)
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair, SanType};

    fn cert(eku: &[ExtendedKeyUsagePurpose], sans: Vec<SanType>) -> DeviceCert {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "laptop-1");
        p.extended_key_usages = eku.to_vec();
        p.subject_alt_names = sans;
        DeviceCert::from_der(p.self_signed(&key).unwrap().der())
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }

    #[test]
    fn client_auth_eku_is_required() {
        let ok = cert(&[ExtendedKeyUsagePurpose::ClientAuth], vec![]);
        assert_eq!(ok.defect, None);
        let none = cert(&[], vec![]);
        assert_eq!(none.defect, Some("device_cert_without_client_auth"));
        let server = cert(&[ExtendedKeyUsagePurpose::ServerAuth], vec![]);
        assert_eq!(server.defect, Some("device_cert_without_client_auth"));
        let email = cert(&[ExtendedKeyUsagePurpose::EmailProtection], vec![]);
        assert_eq!(email.defect, Some("device_cert_without_client_auth"));
    }

    #[test]
    fn the_user_comes_only_from_the_uri_san() {
        let c = cert(
            &[ExtendedKeyUsagePurpose::ClientAuth],
            vec![uri("urn:sekisho:user:tanaka")],
        );
        assert_eq!(c.user.as_deref(), Some("tanaka"));
        assert_eq!(c.name, "laptop-1");
        // The same text as an rfc822Name (MTLS-012) or another URI identifies nobody.
        let mail = cert(
            &[ExtendedKeyUsagePurpose::ClientAuth],
            vec![SanType::Rfc822Name("urn:sekisho:user:tanaka".try_into().unwrap())],
        );
        assert_eq!(mail.user, None);
        let other = cert(
            &[ExtendedKeyUsagePurpose::ClientAuth],
            vec![uri("spiffe://x/urn:sekisho:user:tanaka")],
        );
        assert_eq!(other.user, None);
        let two = cert(
            &[ExtendedKeyUsagePurpose::ClientAuth],
            vec![uri("urn:sekisho:user:a"), uri("urn:sekisho:user:b")],
        );
        assert_eq!(two.defect, Some("device_cert_two_users"));
    }

    #[test]
    fn validity_and_revocation_are_checked_at_request_time() {
        let c = cert(&[ExtendedKeyUsagePurpose::ClientAuth], vec![]);
        let crl = RevocationList::default();
        assert_eq!(c.check_now(c.not_before - 1, &crl), Err("device_cert_not_yet_valid"));
        assert_eq!(c.check_now(c.not_after + 1, &crl), Err("device_cert_expired"));
        assert_eq!(c.check_now(c.not_before + 1, &crl), Ok(()));
        assert!(hex(&c.serial).len() >= 2);
    }

    #[test]
    fn garbage_is_a_defective_device_not_no_device() {
        let c = DeviceCert::from_der(b"not a certificate");
        assert_eq!(c.defect, Some("device_cert_unparsable"));
        assert_eq!(
            c.check_now(0, &RevocationList::default()),
            Err("device_cert_unparsable")
        );
    }
}
