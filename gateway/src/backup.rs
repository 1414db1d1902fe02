//! `sekisho state backup` / `state restore`: an encrypted, consistent copy of what a new host
//! needs to let the same administrators in — the state key (`state.key`, which seals TOTP
//! secrets), the users' enrolled factors, the last accepted TOTP steps, and the devices and
//! addresses already seen.
//!
//! Left out on purpose: sessions, ceremonies and invitations (a restore must not revive a
//! logged-out session or a one-time link), lockout counters (short-lived), and the audit
//! log's sealing seed (`audit-seal.key`): the seed evolves forward and the old one is
//! erased, so a copy in a backup would let whoever holds the backup re-seal the log from
//! that epoch on. The audit log files are append-only and verifiable: copy them as they are.
//!
//! The file: `SEKISHO-BACKUP\n`, a format byte, the Argon2id parameters and salt, a nonce,
//! then the snapshot (JSON) sealed with ChaCha20-Poly1305 under the Argon2id key of a
//! passphrase file; the header is the AEAD's associated data, so no byte of the file can
//! change unnoticed. Restoring decrypts and checks everything in memory before it writes
//! anything, stages the new state beside the old, and refuses to replace existing state.

use crate::auth::DB_DIR;
use crate::auth::crypto::KEY_FILE;
use crate::store::{SledStore, Store, Tree};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The trees a backup carries (see the module documentation for the others).
pub const TREES: [Tree; 3] = [Tree::Users, Tree::TotpSteps, Tree::Seen];

const MAGIC: &[u8] = b"SEKISHO-BACKUP\n";
const FORMAT: u8 = 1;
const SALT_LEN: usize = 16;
/// MAGIC, format, m, t, p (u32 each), salt, nonce.
const HEADER_LEN: usize = MAGIC.len() + 1 + 12 + SALT_LEN + NONCE_LEN;
/// Argon2id's cost: memory in KiB, passes, lanes. Written into each file's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kdf {
    pub memory_kib: u32,
    pub passes: u32,
    pub lanes: u32,
}

impl Kdf {
    /// 64 MiB, 3 passes, one lane (RFC 9106's second recommendation).
    pub const DEFAULT: Kdf = Kdf {
        memory_kib: 64 * 1024,
        passes: 3,
        lanes: 1,
    };
}
/// What a restore accepts from a file's header (a hostile file must not make it allocate
/// gigabytes or spin for minutes).
const KDF_MEMORY_KIB_MAX: u32 = 1024 * 1024;
const KDF_PASSES_MAX: u32 = 10;
const KDF_LANES_MAX: u32 = 8;
/// The largest backup file read.
pub const MAX_BACKUP_BYTES: u64 = 256 * 1024 * 1024;
/// The shortest passphrase accepted (bytes, without the file's trailing newline).
pub const MIN_PASSPHRASE_BYTES: usize = 16;

/// The state as it goes into a backup (and over the control socket from a running gateway).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// When it was taken (seconds since the epoch, gateway clock).
    pub created: i64,
    /// `state.key`, base64.
    pub state_key: String,
    /// Tree name → entries as base64 `[key, value]` pairs.
    pub trees: Vec<(String, Vec<(String, String)>)>,
}

/// A backup or restore refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Refused(String),
    #[error("{0}: wrong passphrase, or the file was changed or cut (nothing was restored)")]
    Unreadable(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn refused(text: impl Into<String>) -> BackupError {
    BackupError::Refused(text.into())
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

impl Snapshot {
    /// Takes a snapshot of `store` (one point in time) with the key file of `state_dir`.
    pub fn take(store: &dyn Store, state_dir: &Path, created: i64) -> Result<Snapshot, BackupError> {
        let key_path = state_dir.join(KEY_FILE);
        let key = std::fs::read(&key_path).map_err(io(&key_path))?;
        let trees = store
            .snapshot(&TREES)
            .map_err(|e| refused(e.to_string()))?
            .into_iter()
            .map(|(t, entries)| {
                let pairs = entries.iter().map(|(k, v)| (b64(k), b64(v))).collect();
                (t.name().to_owned(), pairs)
            })
            .collect();
        Ok(Snapshot {
            created,
            state_key: b64(&key),
            trees,
        })
    }

    /// Takes a snapshot of a state directory no gateway is using.
    pub fn take_offline(state_dir: &Path, created: i64) -> Result<Snapshot, BackupError> {
        if !state_dir.join(KEY_FILE).is_file() {
            return Err(refused(format!(
                "{}: no state here (no {KEY_FILE}); is `state_dir` in the policy right?",
                state_dir.display()
            )));
        }
        let store = SledStore::open(&state_dir.join(DB_DIR)).map_err(|e| {
            refused(format!(
                "{e} (is a gateway running on it without answering its control socket?)"
            ))
        })?;
        Snapshot::take(&store, state_dir, created)
    }

    /// Counts per tree, for the command's summary.
    pub fn summary(&self) -> String {
        self.trees
            .iter()
            .map(|(name, entries)| format!("{name}: {}", entries.len()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The snapshot with every field decoded and checked, or why not.
    fn decode(&self) -> Result<Decoded, BackupError> {
        let bad = |what: &str| refused(format!("the backup decrypted but its {what} is malformed"));
        let key = unb64(&self.state_key).ok_or_else(|| bad("state key"))?;
        if crate::auth::crypto::StateKey::from_bytes(&key).is_none() || key.len() != 64 {
            return Err(bad("state key"));
        }
        let mut trees = Vec::new();
        for (name, entries) in &self.trees {
            let tree = TREES
                .iter()
                .copied()
                .find(|t| t.name() == name)
                .ok_or_else(|| bad("tree list"))?;
            let mut pairs = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                pairs.push((
                    unb64(k).ok_or_else(|| bad("entries"))?,
                    unb64(v).ok_or_else(|| bad("entries"))?,
                ));
            }
            trees.push((tree, pairs));
        }
        Ok(Decoded { key, trees })
    }
}

struct Decoded {
    key: Vec<u8>,
    trees: Vec<(Tree, crate::store::Entries)>,
}

/// Reads a passphrase file: its bytes without one trailing newline, at least
/// [`MIN_PASSPHRASE_BYTES`] long.
pub fn read_passphrase(path: &Path) -> Result<Vec<u8>, BackupError> {
    let mut bytes = std::fs::read(path).map_err(io(path))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    if bytes.len() < MIN_PASSPHRASE_BYTES {
        return Err(refused(format!(
            "{}: the passphrase must be at least {MIN_PASSPHRASE_BYTES} bytes (e.g. `head -c 32 /dev/urandom | base64 > FILE`)",
            path.display()
        )));
    }
    Ok(bytes)
}

fn derive(passphrase: &[u8], salt: &[u8], m: u32, t: u32, p: u32) -> Result<LessSafeKey, BackupError> {
    use argon2::{Algorithm, Argon2, Params, Version};
    let params = Params::new(m, t, p, Some(32)).map_err(|e| refused(format!("key derivation: {e}")))?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, &mut key)
        .map_err(|e| refused(format!("key derivation: {e}")))?;
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key).map_err(|_| refused("key derivation"))?;
    Ok(LessSafeKey::new(unbound))
}

/// Encrypts a snapshot into the bytes of a backup file.
pub fn seal(snapshot: &Snapshot, passphrase: &[u8]) -> Result<Vec<u8>, BackupError> {
    seal_with(snapshot, passphrase, Kdf::DEFAULT)
}

/// [`seal`] with a chosen key-derivation cost.
pub fn seal_with(snapshot: &Snapshot, passphrase: &[u8], kdf: Kdf) -> Result<Vec<u8>, BackupError> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut salt).map_err(|_| refused("no system randomness"))?;
    rng.fill(&mut nonce).map_err(|_| refused("no system randomness"))?;
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    for n in [kdf.memory_kib, kdf.passes, kdf.lanes] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    let key = derive(passphrase, &salt, kdf.memory_kib, kdf.passes, kdf.lanes)?;
    let mut body = serde_json::to_vec(snapshot).map_err(|e| refused(e.to_string()))?;
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&out[..]), &mut body)
        .map_err(|_| refused("encryption failed"))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decrypts and checks the bytes of a backup file (`name` is for messages).
pub fn open(name: &str, bytes: &[u8], passphrase: &[u8]) -> Result<Snapshot, BackupError> {
    let not_backup = || refused(format!("{name}: not a Sekisho backup"));
    let header = bytes.get(..HEADER_LEN).ok_or_else(not_backup)?;
    let rest = header.strip_prefix(MAGIC).ok_or_else(not_backup)?;
    let (&format, rest) = rest.split_first().ok_or_else(not_backup)?;
    if format != FORMAT {
        return Err(refused(format!(
            "{name}: backup format {format}; this sekisho reads format {FORMAT}"
        )));
    }
    let mut numbers = rest.chunks_exact(4).take(3).map(|c| {
        let mut b = [0u8; 4];
        b.copy_from_slice(c);
        u32::from_be_bytes(b)
    });
    let (m, t, p) = match (numbers.next(), numbers.next(), numbers.next()) {
        (Some(m), Some(t), Some(p)) => (m, t, p),
        _ => return Err(not_backup()),
    };
    if m > KDF_MEMORY_KIB_MAX || t > KDF_PASSES_MAX || p > KDF_LANES_MAX {
        return Err(refused(format!("{name}: key-derivation parameters out of bounds")));
    }
    let salt = rest.get(12..12 + SALT_LEN).ok_or_else(not_backup)?;
    let nonce = rest.get(12 + SALT_LEN..).ok_or_else(not_backup)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| not_backup())?;
    let key = derive(passphrase, salt, m, t, p)?;
    let mut body = bytes.get(HEADER_LEN..).ok_or_else(not_backup)?.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(header), &mut body)
        .map_err(|_| BackupError::Unreadable(name.to_owned()))?;
    let snapshot: Snapshot =
        serde_json::from_slice(plain).map_err(|_| refused(format!("{name}: the backup decrypted but is malformed")))?;
    snapshot.decode()?;
    Ok(snapshot)
}

/// Writes `bytes` to `path` (0600) through a temporary file and a rename: a crash leaves
/// the old file or the new one, never half of one.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    let done = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    sync_parent(path);
    Ok(())
}

fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Reads a backup file (size-capped).
pub fn read_file(path: &Path) -> Result<Vec<u8>, BackupError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.len() > MAX_BACKUP_BYTES {
        return Err(refused(format!(
            "{}: larger than {MAX_BACKUP_BYTES} bytes",
            path.display()
        )));
    }
    std::fs::read(path).map_err(io(path))
}

/// Restores a checked snapshot into `state_dir`, which must hold no state yet. The new
/// database and key are built in a staging directory inside `state_dir`, made durable,
/// given the state directory's owner, and only then renamed into place.
pub fn restore(snapshot: &Snapshot, state_dir: &Path) -> Result<(), BackupError> {
    let decoded = snapshot.decode()?;
    let (db, key) = (state_dir.join(DB_DIR), state_dir.join(KEY_FILE));
    for existing in [&db, &key] {
        if existing.exists() {
            return Err(refused(format!(
                "{} exists: restore fills an empty state directory only; stop the gateway and move {} and {} away first",
                existing.display(),
                db.display(),
                key.display()
            )));
        }
    }
    std::fs::create_dir_all(state_dir).map_err(io(state_dir))?;
    let stage = state_dir.join(format!(".restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&stage);
    let staged = stage_state(&stage, &decoded).and_then(|()| {
        give_to_owner_of(state_dir, &stage)?;
        std::fs::rename(stage.join(DB_DIR), &db).map_err(io(&db))?;
        std::fs::rename(stage.join(KEY_FILE), &key).map_err(io(&key))?;
        sync_parent(&key);
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&stage);
    staged
}

fn stage_state(stage: &Path, decoded: &Decoded) -> Result<(), BackupError> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(stage)
        .map_err(io(stage))?;
    {
        let store = SledStore::open(&stage.join(DB_DIR)).map_err(|e| refused(e.to_string()))?;
        for (tree, entries) in &decoded.trees {
            for (k, v) in entries {
                store.put(*tree, k, v).map_err(|e| refused(e.to_string()))?;
            }
        }
        store.flush().map_err(|e| refused(e.to_string()))?;
    }
    let key_path = stage.join(KEY_FILE);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .map_err(io(&key_path))?;
    f.write_all(&decoded.key)
        .and_then(|()| f.sync_all())
        .map_err(io(&key_path))
}

/// The restored files belong to whoever owns the state directory (the gateway's `--user`
/// when root restores for it).
fn give_to_owner_of(state_dir: &Path, stage: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::MetadataExt as _;
    let owner = std::fs::metadata(state_dir).map_err(io(state_dir))?;
    let (uid, gid) = (owner.uid(), owner.gid());
    let mut stack: Vec<PathBuf> = vec![stage.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).map_err(io(&p))?;
        if meta.uid() != uid || meta.gid() != gid {
            std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).map_err(io(&p))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&p).map_err(io(&p))? {
                stack.push(entry.map_err(io(&p))?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    /// Cheap enough to run the KDF once per changed byte.
    const FAST: Kdf = Kdf {
        memory_kib: 64,
        passes: 1,
        lanes: 1,
    };

    fn sample() -> Snapshot {
        Snapshot {
            created: 1_700_000_000,
            state_key: b64(&[7u8; 64]),
            trees: vec![("users".into(), vec![(b64(b"alice"), b64(b"{}"))])],
        }
    }

    #[test]
    fn a_sealed_snapshot_opens_with_its_passphrase_only() {
        let pass = b"correct horse battery staple";
        let sealed = seal_with(&sample(), pass, FAST).unwrap();
        assert_eq!(open("f", &sealed, pass).unwrap(), sample());
        assert!(matches!(
            open("f", &sealed, b"wrong passphrase, long enough"),
            Err(BackupError::Unreadable(_))
        ));
    }

    #[test]
    fn every_changed_byte_is_noticed() {
        let pass = b"correct horse battery staple";
        let sealed = seal_with(&sample(), pass, FAST).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(open("f", &bad, pass).is_err(), "byte {i} changed unnoticed");
        }
        assert!(open("f", &sealed[..sealed.len() - 1], pass).is_err(), "a cut file");
        assert!(open("f", b"SEKISHO-BACKUP\n", pass).is_err(), "a header only");
    }
}
