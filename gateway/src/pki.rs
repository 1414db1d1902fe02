//! The device PKI on the host: a device CA, device certificates in PKCS#12 bundles that
//! browsers and operating systems import, and the CRL the running gateway watches.
//!
//! Layout of a CA directory:
//! `device-ca.pem` (certificate), `device-ca.key` (private key, 0600),
//! `device-ca.crl.pem` (current CRL), `revoked.txt` (one serial per line, hex),
//! `crl-number`, `issued/<serial>.pem` (every certificate issued).

use crate::clock::Clock;
use crate::device::{DeviceCert, USER_URI_PREFIX};
use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

pub const CA_CERT: &str = "device-ca.pem";
pub const CA_KEY: &str = "device-ca.key";
pub const CA_CRL: &str = "device-ca.crl.pem";
const REVOKED: &str = "revoked.txt";
const CRL_NUMBER: &str = "crl-number";

/// How long a CRL is good for. Past its nextUpdate no device is believed (fail closed),
/// so `sekisho device revoke` or `sekisho ca refresh-crl` must run within this time.
pub const CRL_LIFETIME_DAYS: i64 = 365;

/// What `device issue` wrote.
#[derive(Debug)]
pub struct Issued {
    pub p12: PathBuf,
    pub password_file: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    pub serial_hex: String,
    pub fingerprint: String,
}

/// Creates a device CA in `dir` (refusing to overwrite one) and an empty CRL.
pub fn ca_init(dir: &Path, clock: &dyn Clock) -> anyhow::Result<()> {
    if dir.join(CA_KEY).exists() {
        bail!(
            "{}: a device CA already exists here; refusing to overwrite it",
            dir.display()
        );
    }
    fs::create_dir_all(dir.join("issued")).with_context(|| format!("{}: cannot create", dir.display()))?;
    let key = KeyPair::generate().context("generating the CA key")?;
    let now = now(clock)?;
    let params = ca_params(now)?;
    let cert = params.self_signed(&key).context("signing the CA certificate")?;
    write_private(&dir.join(CA_KEY), key.serialize_pem().as_bytes())?;
    write_atomic(&dir.join(CA_CERT), cert.pem().as_bytes())?;
    write_atomic(&dir.join(REVOKED), b"")?;
    write_crl(dir, clock)?;
    Ok(())
}

fn ca_params(now: OffsetDateTime) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "Sekisho device CA");
    params.distinguished_name.push(DnType::OrganizationName, "Sekisho");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(3650);
    params.serial_number = Some(random_serial()?);
    params.key_identifier_method = KeyIdMethod::Sha256;
    Ok(params)
}

fn load_issuer(dir: &Path) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let cert_pem = fs::read_to_string(dir.join(CA_CERT))
        .with_context(|| format!("{}: no device CA here (run `sekisho ca init DIR`)", dir.display()))?;
    let key_pem =
        fs::read_to_string(dir.join(CA_KEY)).with_context(|| format!("{}: cannot read", dir.join(CA_KEY).display()))?;
    let key = KeyPair::from_pem(&key_pem).context("reading the CA key")?;
    Issuer::from_ca_cert_pem(&cert_pem, key).context("reading the CA certificate")
}

/// Issues a device certificate for `user` and writes it as PKCS#12 (with a random
/// password in a 0600 file beside it) and as PEM certificate and key.
pub fn device_issue(
    dir: &Path,
    name: &str,
    user: &str,
    out: &Path,
    days: i64,
    clock: &dyn Clock,
) -> anyhow::Result<Issued> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) {
        bail!("device name {name:?}: use letters, digits, '-', '_', '.' or '@'");
    }
    if user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) {
        bail!("user name {user:?}: use letters, digits, '-', '_', '.' or '@'");
    }
    if !(1..=825).contains(&days) {
        bail!("--days {days}: choose between 1 and 825");
    }
    let issuer = load_issuer(dir)?;
    let ca_pem = fs::read_to_string(dir.join(CA_CERT))?;
    let now = now(clock)?;
    let key = KeyPair::generate().context("generating the device key")?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = vec![SanType::URI(format!("{USER_URI_PREFIX}{user}").try_into()?)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(days);
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing the device certificate")?;
    let parsed = DeviceCert::from_der(cert.der());

    let password = random_password()?;
    let mut store = p12_keystore::KeyStore::new();
    let leaf = p12_keystore::Certificate::from_der(cert.der()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ca_der =
        <rustls_pki_types::CertificateDer<'_> as rustls_pki_types::pem::PemObject>::from_pem_slice(ca_pem.as_bytes())?;
    let ca = p12_keystore::Certificate::from_der(ca_der.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pkey = p12_keystore::PrivateKey::from_der(key.serialized_der()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let chain = p12_keystore::PrivateKeyChain::new(parsed.serial.clone(), pkey, [leaf, ca]);
    store.add_entry(name, p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    let p12 = store
        .writer(&password)
        .write()
        .map_err(|e| anyhow::anyhow!("writing PKCS#12: {e}"))?;

    let password_file = with_suffix(out, ".password");
    let cert_pem = with_suffix(out, ".crt.pem");
    let key_pem = with_suffix(out, ".key.pem");
    write_private(out, &p12)?;
    write_private(&password_file, format!("{password}\n").as_bytes())?;
    write_private(&key_pem, key.serialize_pem().as_bytes())?;
    write_atomic(&cert_pem, cert.pem().as_bytes())?;
    write_atomic(
        &dir.join("issued").join(format!("{}.pem", parsed.serial_hex())),
        cert.pem().as_bytes(),
    )?;
    Ok(Issued {
        p12: out.to_owned(),
        password_file,
        cert_pem,
        key_pem,
        serial_hex: parsed.serial_hex(),
        fingerprint: parsed.fingerprint,
    })
}

/// Revokes a certificate by serial (hex, colons allowed) or by a PEM file, and writes a
/// new CRL. A running gateway picks the CRL up within its poll interval.
pub fn device_revoke(dir: &Path, which: &str, clock: &dyn Clock) -> anyhow::Result<String> {
    let serial = if Path::new(which).is_file() {
        let pem = fs::read(which).with_context(|| format!("{which}: cannot read"))?;
        let der = <rustls_pki_types::CertificateDer<'_> as rustls_pki_types::pem::PemObject>::from_pem_slice(&pem)
            .with_context(|| format!("{which}: not a PEM certificate"))?;
        DeviceCert::from_der(der.as_ref()).serial_hex()
    } else {
        let s: String = which
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if s.is_empty() || s.len() > 40 || !s.len().is_multiple_of(2) || !s.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("{which:?} is neither a certificate file nor a hex serial number");
        }
        s
    };
    load_issuer(dir)?;
    let mut revoked = read_revoked(dir)?;
    if !revoked.contains(&serial) {
        revoked.push(serial.clone());
        write_atomic(&dir.join(REVOKED), (revoked.join("\n") + "\n").as_bytes())?;
    }
    write_crl(dir, clock)?;
    Ok(serial)
}

/// Signs a fresh CRL (new number, nextUpdate a year on) listing every revoked serial.
pub fn write_crl(dir: &Path, clock: &dyn Clock) -> anyhow::Result<()> {
    let issuer = load_issuer(dir)?;
    let now = now(clock)?;
    let number: u64 = fs::read_to_string(dir.join(CRL_NUMBER))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
        + 1;
    let mut revoked_certs = Vec::new();
    for serial in read_revoked(dir)? {
        let bytes =
            unhex(&serial).with_context(|| format!("{}: bad serial {serial:?}", dir.join(REVOKED).display()))?;
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&bytes),
            revocation_time: now,
            reason_code: None,
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(5),
        next_update: now + time::Duration::days(CRL_LIFETIME_DAYS),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&issuer).context("signing the CRL")?;
    write_atomic(&dir.join(CRL_NUMBER), format!("{number}\n").as_bytes())?;
    write_atomic(&dir.join(CA_CRL), crl.pem()?.as_bytes())?;
    Ok(())
}

fn read_revoked(dir: &Path) -> anyhow::Result<Vec<String>> {
    let text = match fs::read_to_string(dir.join(REVOKED)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).context(format!("{}: cannot read", dir.join(REVOKED).display())),
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

fn now(clock: &dyn Clock) -> anyhow::Result<OffsetDateTime> {
    Ok(OffsetDateTime::from_unix_timestamp(clock.unix_seconds())?)
}

fn random_serial() -> anyhow::Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    // Positive and without a leading zero byte, so the DER encoding is the 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn random_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 18];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    use base64::Engine;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes a file by rename, so a reader (the gateway watching the CRL) never sees half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_with_mode(path, bytes, 0o644)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_with_mode(path, bytes, 0o600)
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = with_suffix(path, ".tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::revocation::RevocationList;
    use rustls_pki_types::pem::PemObject;

    fn crl_of(dir: &Path) -> RevocationList {
        let pem = fs::read(dir.join(CA_CRL)).unwrap();
        let der = rustls_pki_types::CertificateRevocationListDer::from_pem_slice(&pem).unwrap();
        RevocationList::from_der(der.as_ref()).unwrap()
    }

    #[test]
    fn issue_then_revoke_puts_the_serial_on_a_fresh_crl() {
        let dir = std::env::temp_dir().join(format!("sekisho-pki-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let clock = FixedClock::at_unix(1_800_000_000);
        ca_init(&dir, clock.as_ref()).unwrap();
        assert!(crl_of(&dir).is_empty());
        let issued = device_issue(&dir, "pc-1", "tanaka", &dir.join("pc-1.p12"), 30, clock.as_ref()).unwrap();
        let cert = DeviceCert::from_der(
            rustls_pki_types::CertificateDer::from_pem_slice(&fs::read(&issued.cert_pem).unwrap())
                .unwrap()
                .as_ref(),
        );
        assert_eq!(cert.user.as_deref(), Some("tanaka"));
        assert_eq!(cert.defect, None);
        assert_eq!(cert.not_after - cert.not_before, 30 * 86400 + 300);

        clock.advance(std::time::Duration::from_secs(60));
        let serial = device_revoke(&dir, &issued.serial_hex, clock.as_ref()).unwrap();
        assert_eq!(serial, issued.serial_hex);
        let crl = crl_of(&dir);
        assert!(crl.is_revoked(&cert.serial));
        assert_eq!(crl.len(), 1);
        // Revoking twice keeps one entry; the CRL is valid for a year from now and no longer.
        device_revoke(&dir, &issued.serial_hex.to_uppercase(), clock.as_ref()).unwrap();
        let crl = crl_of(&dir);
        assert_eq!(crl.len(), 1);
        let now = clock.unix_seconds();
        assert!(!crl.is_stale(now + CRL_LIFETIME_DAYS * 86400 - 1));
        assert!(crl.is_stale(now + CRL_LIFETIME_DAYS * 86400 + 1));
        assert_eq!(cert.check_now(now, &crl), Err("device_cert_revoked"));
        let _ = fs::remove_dir_all(&dir);
    }
}
