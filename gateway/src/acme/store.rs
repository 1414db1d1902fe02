//! The ACME state on disk (`state_dir/acme/`, 0700): the certificate chain and its key in
//! one file, written aside with mode 0600, fsynced and renamed in, so a crash leaves the
//! old pair or the new one; and reading a pair back into an [`Issued`].

use super::{AcmeError, Issued, acme_dir, fail};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file (in `state_dir/acme/`) holding the serving chain followed by its private key.
pub(crate) const CERTIFICATE: &str = "certificate.pem";

/// Parses a PEM chain and key into an [`Issued`].
pub(super) fn parse_issued(chain_pem: &[u8], key_pem: &[u8]) -> Result<Issued, AcmeError> {
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
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

pub(super) fn ensure_dir(state_dir: &Path) -> Result<PathBuf, AcmeError> {
    let dir = acme_dir(state_dir);
    std::fs::create_dir_all(&dir).map_err(|e| fail(&dir.display().to_string(), e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| fail(&dir.display().to_string(), e))?;
    Ok(dir)
}
