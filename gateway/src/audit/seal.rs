//! Forward-secure sealing: Ed25519 keys that evolve each epoch, the old one erased.
//!
//! `seed_{i+1} = SHA-256("sekisho-seal-evolve" || seed_i)`; the key pair of epoch `i` is
//! the Ed25519 key whose seed is `seed_i`. Only the current seed is kept
//! (`state_dir/audit-seal.key`, 0600). Evolving overwrites the file in place with the new
//! seed, fsyncs, then renames a fsynced copy over it: the old seed is gone from the file
//! and cannot come back after a crash. An intruder who reads today's seed can compute
//! every later key but no earlier one (SHA-256 is one-way), so cannot re-seal the past.
//!
//! The verifier knows only the epoch-0 public key (the verification key). Each epoch's
//! key is introduced by the last checkpoint of the epoch before, signed with that epoch's
//! key (a handover), at its place in the chain.
//!
//! The signed message of a checkpoint binds its position in the chain (see
//! [`checkpoint_message`]). This module does no IO except [`SealState::load`] and
//! [`SealState::store`].

use super::chain::{Digest, hex, unhex};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The file in `state_dir` holding the current seed.
pub const SEAL_FILE: &str = "audit-seal.key";

/// The sealing state: which epoch, its seed, and the public parameters.
pub struct SealState {
    pub epoch: u64,
    seed: [u8; 32],
    pub t0: i64,
    pub epoch_secs: u64,
    /// The epoch-0 public key.
    pub root: [u8; 32],
}

impl std::fmt::Debug for SealState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the seed.
        f.debug_struct("SealState")
            .field("epoch", &self.epoch)
            .field("t0", &self.t0)
            .field("epoch_secs", &self.epoch_secs)
            .field("root", &hex(&self.root))
            .finish_non_exhaustive()
    }
}

/// A sealing key pair of one epoch.
#[derive(Debug)]
pub struct EpochKey {
    pub epoch: u64,
    pair: Ed25519KeyPair,
}

impl EpochKey {
    pub fn public(&self) -> [u8; 32] {
        let mut out = [0; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

/// What a checkpoint signs: its place in the chain (sequence number and the hash of the
/// record before it), its time, its epoch, and the key it hands over to, if any.
pub fn checkpoint_message(seq: u64, prev: &Digest, time: i64, epoch: u64, next: Option<(u64, &[u8; 32])>) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(b"sekisho-log-checkpoint-v1\0");
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(prev);
    m.extend_from_slice(&time.to_be_bytes());
    m.extend_from_slice(&epoch.to_be_bytes());
    match next {
        None => m.push(0),
        Some((next_epoch, key)) => {
            m.push(1);
            m.extend_from_slice(&next_epoch.to_be_bytes());
            m.extend_from_slice(key);
        }
    }
    m
}

/// Whether `sig` is `key`'s signature of `message`.
pub fn verify(key: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> bool {
    UnparsedPublicKey::new(&ED25519, key).verify(message, sig).is_ok()
}

/// The next epoch's seed.
pub fn evolve(seed: &[u8; 32]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"sekisho-seal-evolve");
    ctx.update(seed);
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn key_of(seed: &[u8; 32], epoch: u64) -> Result<EpochKey, std::io::Error> {
    let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(EpochKey { epoch, pair })
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a Sekisho sealing state (damaged or edited)")]
    Damaged { path: String },
    #[error(
        "{path} already exists: the log is initialised (its verification key was printed then; it is also in the first log file's header)"
    )]
    Exists { path: String },
}

impl SealState {
    /// A new state at epoch 0, with a random seed.
    pub fn generate(t0: i64, epoch_secs: u64) -> Result<SealState, SealError> {
        let mut seed = [0; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed).map_err(|_| SealError::Io {
            path: "randomness".into(),
            source: std::io::Error::other("the system random source failed"),
        })?;
        let root = key_of(&seed, 0)
            .map_err(|source| SealError::Io {
                path: "key".into(),
                source,
            })?
            .public();
        Ok(SealState {
            epoch: 0,
            seed,
            t0,
            epoch_secs: epoch_secs.max(1),
            root,
        })
    }

    /// The path of the state in `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(SEAL_FILE)
    }

    /// The epoch a time falls in.
    pub fn epoch_at(&self, time: i64) -> u64 {
        let since = time.saturating_sub(self.t0).max(0);
        u64::try_from(since).unwrap_or(0) / self.epoch_secs
    }

    /// The current epoch's key.
    pub fn key(&self) -> Result<EpochKey, std::io::Error> {
        key_of(&self.seed, self.epoch)
    }

    /// The key of a later epoch (computed forward; the state is unchanged).
    pub fn key_for(&self, epoch: u64) -> Result<EpochKey, std::io::Error> {
        let mut seed = self.seed;
        for _ in self.epoch..epoch {
            seed = evolve(&seed);
        }
        key_of(&seed, epoch.max(self.epoch))
    }

    /// Moves to a later epoch in memory (call [`SealState::store`] to erase the old seed).
    pub fn advance_to(&mut self, epoch: u64) {
        while self.epoch < epoch {
            self.seed = evolve(&self.seed);
            self.epoch += 1;
        }
    }

    /// Creates the state file; refuses if one exists.
    pub fn create(&self, state_dir: &Path) -> Result<(), SealError> {
        let path = Self::path(state_dir);
        let io = |source| SealError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let mut file = match open_0600(&path, true) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(SealError::Exists {
                    path: path.display().to_string(),
                });
            }
            Err(e) => return Err(io(e)),
        };
        file.write_all(self.encode().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        sync_dir(state_dir).map_err(io)
    }

    /// Reads the state (finishing an interrupted [`SealState::store`]); `None` if there is
    /// none.
    pub fn load(state_dir: &Path) -> Result<Option<SealState>, SealError> {
        let path = Self::path(state_dir);
        let next = next_path(&path);
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |source| SealError::Io { path: p, source }
        };
        let main = read_optional(&path).map_err(io(&path))?;
        let pending = read_optional(&next).map_err(io(&next))?;
        let main = main.map(|t| Self::decode(&t));
        let pending = pending.and_then(|t| Self::decode(&t));
        match (main, pending) {
            (None, None) => Ok(None),
            // A store that was interrupted after the copy was fsynced: finish it.
            (_, Some(p)) => {
                std::fs::rename(&next, &path).map_err(io(&path))?;
                sync_dir(state_dir).map_err(io(state_dir))?;
                Ok(Some(p))
            }
            (Some(Some(m)), None) => {
                let _ = std::fs::remove_file(&next);
                Ok(Some(m))
            }
            (Some(None), None) => Err(SealError::Damaged {
                path: path.display().to_string(),
            }),
        }
    }

    /// Replaces the stored state with this one, erasing the old seed: a fsynced copy
    /// first (so a crash cannot lose the key), then the old file overwritten in place
    /// (same length) and fsynced, then the copy renamed over it.
    pub fn store(&self, state_dir: &Path) -> Result<(), SealError> {
        let path = Self::path(state_dir);
        let next = next_path(&path);
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |source| SealError::Io { path: p, source }
        };
        let text = self.encode();
        let mut copy = open_0600(&next, false).map_err(io(&next))?;
        copy.write_all(text.as_bytes()).map_err(io(&next))?;
        copy.sync_all().map_err(io(&next))?;
        if let Ok(mut old) = std::fs::OpenOptions::new().write(true).open(&path) {
            old.write_all(text.as_bytes()).map_err(io(&path))?;
            old.sync_all().map_err(io(&path))?;
        }
        std::fs::rename(&next, &path).map_err(io(&path))?;
        sync_dir(state_dir).map_err(io(state_dir))
    }

    /// Fixed-length text, so an overwrite in place covers every byte of the old seed.
    fn encode(&self) -> String {
        format!(
            "sekisho-seal-v1 epoch={:020} t0={:020} secs={:020} seed={} root={}\n",
            self.epoch,
            self.t0,
            self.epoch_secs,
            hex(&self.seed),
            hex(&self.root)
        )
    }

    fn decode(text: &str) -> Option<SealState> {
        let mut parts = text.trim_end().split(' ');
        if parts.next()? != "sekisho-seal-v1" {
            return None;
        }
        let mut field = |name: &str| parts.next()?.strip_prefix(name)?.strip_prefix('=').map(str::to_owned);
        let epoch = field("epoch")?.parse().ok()?;
        let t0 = field("t0")?.parse().ok()?;
        let epoch_secs: u64 = field("secs")?.parse().ok()?;
        let seed = unhex::<32>(&field("seed")?)?;
        let root = unhex::<32>(&field("root")?)?;
        (epoch_secs > 0).then_some(SealState {
            epoch,
            seed,
            t0,
            epoch_secs,
            root,
        })
    }
}

fn next_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".new");
    PathBuf::from(p)
}

fn read_optional(path: &Path) -> Result<Option<String>, std::io::Error> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn open_0600(path: &Path, create_new: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(0o600);
    if create_new {
        o.create_new(true);
    } else {
        o.create(true).truncate(true);
    }
    o.open(path)
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_evolve_forward_only_and_signatures_bind_the_epoch_key() {
        let mut s = SealState::generate(1000, 10).unwrap();
        let k0 = s.key().unwrap();
        assert_eq!(k0.public(), s.root);
        let later = s.key_for(3).unwrap();
        s.advance_to(3);
        assert_eq!(s.key().unwrap().public(), later.public());
        let m = checkpoint_message(1, &[0; 32], 5, 3, None);
        let sig = later.sign(&m);
        assert!(verify(&later.public(), &m, &sig));
        assert!(!verify(&k0.public(), &m, &sig));
        assert_eq!(s.epoch_at(1000 + 35), 3);
        assert_eq!(s.epoch_at(0), 0);
    }

    #[test]
    fn store_erases_the_old_seed_and_load_finishes_an_interrupted_store() {
        let dir = std::env::temp_dir().join(format!("sekisho-seal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = SealState::generate(0, 60).unwrap();
        s.create(&dir).unwrap();
        assert!(matches!(s.create(&dir), Err(SealError::Exists { .. })));
        let old_seed = hex(&s.seed);
        s.advance_to(2);
        s.store(&dir).unwrap();
        let text = std::fs::read_to_string(SealState::path(&dir)).unwrap();
        assert!(!text.contains(&old_seed));
        let loaded = SealState::load(&dir).unwrap().unwrap();
        assert_eq!(loaded.epoch, 2);
        // A copy left by a crash between its fsync and the rename wins.
        let mut later = SealState::load(&dir).unwrap().unwrap();
        later.advance_to(3);
        std::fs::write(next_path(&SealState::path(&dir)), later.encode()).unwrap();
        assert_eq!(SealState::load(&dir).unwrap().unwrap().epoch, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
