//! The device CA's certificate revocation list, as the gateway uses it on every request.
//! rustls checks the same CRL at the handshake; this copy exists so that a revocation
//! also ends access on connections that are already open.

use std::collections::HashSet;
use x509_parser::prelude::*;

#[derive(Debug, Clone, Default)]
pub struct RevocationList {
    serials: HashSet<Vec<u8>>,
    /// `nextUpdate` of the CRL, seconds since the epoch. Past it the list is stale and no
    /// device is believed (fail closed).
    next_update: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
#[error("device CRL: {0}")]
pub struct CrlError(String);

impl RevocationList {
    /// Parses a DER CRL. Its signature is checked by rustls when the TLS configuration is
    /// built from the same bytes; a CRL that rustls refuses never becomes active.
    pub fn from_der(der: &[u8]) -> Result<Self, CrlError> {
        let (_, crl) = CertificateRevocationList::from_der(der).map_err(|e| CrlError(e.to_string()))?;
        let serials = crl
            .iter_revoked_certificates()
            .map(|rc| rc.raw_serial().to_vec())
            .collect();
        Ok(Self {
            serials,
            next_update: crl.next_update().map(|t| t.timestamp()),
        })
    }

    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.serials.contains(serial)
    }

    pub fn is_stale(&self, now_unix: i64) -> bool {
        self.next_update.is_some_and(|t| now_unix > t)
    }

    pub fn len(&self) -> usize {
        self.serials.len()
    }

    pub fn is_empty(&self) -> bool {
        self.serials.is_empty()
    }

    pub fn next_update(&self) -> Option<i64> {
        self.next_update
    }
}
