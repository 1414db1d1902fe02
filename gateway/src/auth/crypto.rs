//! Randomness, the state key and what is made with it: sealing secrets at rest
//! (ChaCha20-Poly1305), keyed digests (HMAC-SHA-256) and constant-time comparison.
//! The one home of randomness for the auth code. Never logs key material.

use ring::aead::{CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::io::Write as _;
use std::path::Path;

/// The state key's file name inside `state_dir`.
pub const KEY_FILE: &str = "state.key";

/// Key material for the state: secrets sealed with it are useless without the key file.
pub struct StateKey {
    aead: LessSafeKey,
    mac: hmac::Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: the state key must be exactly 64 bytes and mode 0600")]
    Bad { path: String },
    #[error("no system randomness")]
    Random,
}

impl StateKey {
    /// Reads `dir/state.key`, creating it (0600, 64 random bytes) when absent.
    pub fn load_or_create(dir: &Path) -> Result<StateKey, KeyError> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let path = dir.join(KEY_FILE);
        let display = path.display().to_string();
        let io = |source| KeyError::Io {
            path: display.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let rng = SystemRandom::new();
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                let mut bytes = [0u8; 64];
                rng.fill(&mut bytes).map_err(|_| KeyError::Random)?;
                f.write_all(&bytes).map_err(io)?;
                f.sync_all().map_err(io)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let meta = std::fs::metadata(&path).map_err(io)?;
        let bytes = std::fs::read(&path).map_err(io)?;
        if bytes.len() != 64 || meta.permissions().mode() & 0o077 != 0 {
            return Err(KeyError::Bad { path: display });
        }
        Self::from_bytes(&bytes).ok_or(KeyError::Bad { path: display })
    }

    /// A key from 64 bytes (32 for sealing, 32 for digests).
    pub fn from_bytes(bytes: &[u8]) -> Option<StateKey> {
        let (enc, mac) = bytes.split_at_checked(32)?;
        let aead = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, enc).ok()?);
        Some(StateKey {
            aead,
            mac: hmac::Key::new(hmac::HMAC_SHA256, mac),
            rng: SystemRandom::new(),
        })
    }

    /// `n` random bytes.
    pub fn random(&self, n: usize) -> Option<Vec<u8>> {
        let mut v = vec![0u8; n];
        self.rng.fill(&mut v).ok()?;
        Some(v)
    }

    /// A random token of 32 bytes, base64url without padding.
    pub fn token(&self) -> Option<String> {
        self.random(32).map(|b| b64(&b))
    }

    /// Seals `plain` with `context` as associated data: nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, context: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
        let nonce_bytes = self.random(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(&nonce_bytes).ok()?;
        let mut buf = plain.to_vec();
        self.aead
            .seal_in_place_append_tag(nonce, ring::aead::Aad::from(context), &mut buf)
            .ok()?;
        let mut out = nonce_bytes;
        out.extend_from_slice(&buf);
        Some(out)
    }

    /// Opens what [`StateKey::seal`] made with the same context.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, rest) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, ring::aead::Aad::from(context), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }

    /// HMAC-SHA-256 of the parts, each length-prefixed (no ambiguity between parts).
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.mac);
        for p in parts {
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(p);
        }
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// Constant-time equality of two byte strings (lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// SHA-256, for store keys derived from bearer tokens (a copied database holds no live
/// session id or invitation token).
pub fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).to_vec()
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_context_and_key() {
        let k = StateKey::from_bytes(&[7u8; 64]).unwrap();
        let other = StateKey::from_bytes(&[8u8; 64]).unwrap();
        let s = k.seal(b"totp:alice", b"secret").unwrap();
        assert_eq!(k.open(b"totp:alice", &s).unwrap(), b"secret");
        assert!(k.open(b"totp:bob", &s).is_none());
        assert!(other.open(b"totp:alice", &s).is_none());
    }

    #[test]
    fn the_key_file_is_created_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("sekisho-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = StateKey::load_or_create(&dir).unwrap();
        let mode = std::fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = StateKey::load_or_create(&dir).unwrap();
        assert_eq!(a.mac(&[b"x"]), b.mac(&[b"x"]));
        std::fs::set_permissions(dir.join(KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(StateKey::load_or_create(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
