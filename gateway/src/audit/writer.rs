//! The one writer of the log: a thread that takes serialised events from a channel,
//! chains them, seals checkpoints, writes each batch with one `write` and one `fdatasync`,
//! and only then answers the callers (group commit).
//!
//! Files: every start and every UTC midnight opens a new file, whose first record (`file`)
//! names the previous file, the bytes of it that belong to the chain, and any torn bytes
//! found after them (a crash mid-write). A new file is written aside and renamed, so a
//! file always begins with its header. Closed files are compressed by a helper thread.
//!
//! When a write or fsync fails, the batch is answered with the error (protected requests
//! get 503), the file is cut back to its last good length, and the next batch tries again:
//! service resumes by itself. If the file cannot even be cut back, it is abandoned and the
//! next write opens a new file that names the good length of the abandoned one.
//!
//! Must never: answer a caller before its batch is fsynced; let two records share a
//! sequence number; sign with a key of a past epoch once the handover is written.

use super::chain::{self, Digest, GENESIS, Init, Line, PreviousFile, hex};
use super::files::{self, LogFile};
use super::limits;
use super::seal::{self, EpochKey, SealState, checkpoint_message};
use super::ship::Shipper;
use super::{AuditError, lock};
use crate::clock::SharedClock;
use serde::Serialize;
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// The writer's limits (defaults from [`limits`]).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub checkpoint_every_records: u64,
    pub checkpoint_every: Duration,
    /// Used only when this open initialises the sealing state.
    pub epoch_secs: u64,
    pub retention_days: u64,
    pub max_batch: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_policy(&sekisho_policy::LogSettings::default())
    }
}

impl Settings {
    /// The writer's share of the policy's `[log]` table.
    pub fn from_policy(log: &sekisho_policy::LogSettings) -> Settings {
        Settings {
            checkpoint_every_records: log.checkpoint_records,
            checkpoint_every: log.checkpoint_interval,
            epoch_secs: log.seal_epoch.as_secs().max(1),
            retention_days: log.retention_days,
            max_batch: log.max_batch.max(1),
        }
    }
}

/// One serialised event and, unless detached, who waits for it to be durable.
#[derive(Debug)]
pub(crate) struct Msg {
    pub body: Vec<u8>,
    pub done: Option<tokio::sync::oneshot::Sender<Result<(), AuditError>>>,
}

/// What the writer last reported about itself: read by [`super::AuditLog::health`], written
/// only by the writer thread after each batch.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// The sequence number the next record gets.
    next_seq: AtomicU64,
    failing: AtomicBool,
}

impl Health {
    fn publish(&self, next_seq: u64, failing: bool) {
        self.next_seq.store(next_seq, Ordering::Relaxed);
        self.failing.store(failing, Ordering::Relaxed);
    }

    /// (the next sequence number, whether the last write failed).
    pub(crate) fn read(&self) -> (u64, bool) {
        (
            self.next_seq.load(Ordering::Relaxed),
            self.failing.load(Ordering::Relaxed),
        )
    }
}

/// The writer thread's channel, its handle and what it reports about itself.
pub(crate) type Started = (mpsc::Sender<Msg>, std::thread::JoinHandle<()>, Arc<Health>);

/// Recovers the chain, opens a new file and starts the writer thread.
pub(crate) fn start(
    log_dir: &Path,
    state_dir: &Path,
    clock: SharedClock,
    settings: Settings,
    shipper: Option<Shipper>,
) -> Result<Started, AuditError> {
    let mut w = Writer::recover(log_dir, state_dir, clock, settings)?;
    w.shipper = shipper;
    w.ensure_file()?;
    w.ensure_epoch()?;
    w.health.publish(w.next_seq, false);
    let health = w.health.clone();
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("sekisho-audit".into())
        .spawn(move || w.run(&rx))
        .map_err(|e| AuditError::new(log_dir, e))?;
    Ok((tx, thread, health))
}

/// The file being appended to.
#[derive(Debug)]
struct Current {
    file: File,
    name: String,
    no: u64,
    date: String,
    /// Bytes that belong to the chain (everything written and fsynced).
    good_len: u64,
}

/// The file before the next one, for the next header.
#[derive(Debug, Clone)]
struct Closed {
    path: PathBuf,
    name: String,
    no: u64,
    date: String,
    good_len: u64,
}

#[derive(Debug)]
struct Writer {
    dir: PathBuf,
    state_dir: PathBuf,
    clock: SharedClock,
    settings: Settings,
    seal: SealState,
    key: EpochKey,
    /// The root parameters, written in the header of the first file.
    init: Option<Init>,
    current: Option<Current>,
    /// What the next header names as its previous file.
    closed: Option<Closed>,
    next_seq: u64,
    head: Digest,
    unsealed: u64,
    unsealed_since: Option<Instant>,
    failing_since: Option<Instant>,
    retention_due: bool,
    last_alarm: Option<Instant>,
    lost_detached: u64,
    /// Where durable lines are offered for the remote copy, if anywhere.
    shipper: Option<Shipper>,
    /// Lines the shipper's queue had no room for, not yet written as `remote_dropped`.
    ship_dropped: u64,
    compressor: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    health: Arc<Health>,
}

impl Writer {
    fn recover(log_dir: &Path, state_dir: &Path, clock: SharedClock, settings: Settings) -> Result<Writer, AuditError> {
        let io = |e| AuditError::new(log_dir, e);
        std::fs::create_dir_all(log_dir).map_err(io)?;
        remove_stale_temporaries(log_dir);
        let found = files::list(log_dir).map_err(io)?;
        let seal_err = |e: seal::SealError| AuditError::new(state_dir, std::io::Error::other(e.to_string()));
        let mut init = None;
        let mut seal = match SealState::load(state_dir).map_err(seal_err)? {
            Some(s) => s,
            None if found.is_empty() => {
                let s = SealState::generate(clock.unix_seconds(), settings.epoch_secs).map_err(seal_err)?;
                s.create(state_dir).map_err(seal_err)?;
                tracing::warn!(
                    key = %hex(&s.root),
                    "audit log initialised: keep this verification key off this host (`sekisho log verify --key`)"
                );
                eprintln!(
                    "sekisho: audit log verification key (keep it off this host): {}",
                    hex(&s.root)
                );
                s
            }
            None => {
                return Err(AuditError::new(
                    &SealState::path(state_dir),
                    std::io::Error::other(
                        "the log has files but its sealing state is missing: refusing to start a new key over an existing log",
                    ),
                ));
            }
        };
        if found.is_empty() {
            init = Some(Init {
                key: hex(&seal.root),
                t0: seal.t0,
                epoch_secs: seal.epoch_secs,
            });
        }
        let (next_seq, head, closed) = match found.last() {
            None => (0, GENESIS, None),
            Some(last) => {
                let tail = recover_tail(last).map_err(|e| AuditError::new(&last.path, e))?;
                if tail.log_epoch > seal.epoch {
                    // The handover was written but the state not yet evolved (a crash between).
                    seal.advance_to(tail.log_epoch);
                    seal.store(state_dir).map_err(seal_err)?;
                }
                let closed = Closed {
                    path: last.path.clone(),
                    name: last.name(),
                    no: last.no,
                    date: last.date.clone(),
                    good_len: tail.good_len,
                };
                (tail.last_seq + 1, tail.head, Some(closed))
            }
        };
        let key = seal.key().map_err(|e| AuditError::new(state_dir, e))?;
        let w = Writer {
            dir: log_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            clock,
            settings,
            seal,
            key,
            init,
            current: None,
            closed,
            next_seq,
            head,
            unsealed: 0,
            unsealed_since: None,
            failing_since: None,
            retention_due: false,
            last_alarm: None,
            lost_detached: 0,
            shipper: None,
            ship_dropped: 0,
            compressor: Arc::new(Mutex::new(None)),
            health: Arc::default(),
        };
        // Every file found is closed now: compress them in the background.
        w.compress_later(found.into_iter().filter(|f| !f.compressed).collect());
        Ok(w)
    }

    fn run(mut self, rx: &mpsc::Receiver<Msg>) {
        self.apply_retention();
        loop {
            let wait = self.next_wake();
            let mut batch = Vec::new();
            match rx.recv_timeout(wait) {
                Ok(m) => batch.push(m),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < self.settings.max_batch {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let seal_due = self
                .unsealed_since
                .is_some_and(|t| t.elapsed() >= self.settings.checkpoint_every);
            if batch.is_empty() && !seal_due && !self.maintenance_due() {
                continue;
            }
            let result = self.write_batch(&batch, seal_due);
            self.report(&result, &batch);
            self.health.publish(self.next_seq, self.failing_since.is_some());
            for m in batch {
                if let Some(done) = m.done {
                    let _ = done.send(result.clone());
                }
            }
        }
        // Closing: seal what is left and make it durable.
        if let Err(e) = self.write_batch(&[], true) {
            tracing::error!(error = %e, "the audit log could not be sealed at stop");
        }
        if let Some(t) = lock(&self.compressor).take() {
            let _ = t.join();
        }
        if let Some(s) = self.shipper.take() {
            s.finish();
        }
    }

    fn next_wake(&self) -> Duration {
        let tick = Duration::from_secs(1);
        match self.unsealed_since {
            Some(t) => self.settings.checkpoint_every.saturating_sub(t.elapsed()).min(tick),
            None if self.failing_since.is_some() => limits::RETRY_INTERVAL.min(tick),
            None => tick,
        }
    }

    /// A new day, a new epoch or a failed file need attention even with nothing to write.
    fn maintenance_due(&self) -> bool {
        let now = self.clock.unix_seconds();
        self.current.as_ref().is_none_or(|c| c.date != files::date_of(now)) || self.seal.epoch_at(now) > self.seal.epoch
    }

    /// Rotation, key evolution, then the records, with a checkpoint every N records and
    /// at the end when `seal` is asked for. Nothing is committed to the writer's state
    /// unless the bytes were fsynced.
    fn write_batch(&mut self, batch: &[Msg], seal: bool) -> Result<(), AuditError> {
        self.ensure_file()?;
        self.ensure_epoch()?;
        let now = self.clock.unix_seconds();
        let mut seq = self.next_seq;
        let mut head = self.head;
        let mut unsealed = self.unsealed;
        let mut buf = Vec::with_capacity(batch.len() * 320 + 256);
        // Lines the remote copy lost are named in the log itself (and shipped in turn).
        let dropped = self.ship_dropped;
        if dropped > 0 {
            let body = RemoteDropped {
                kind: "remote_dropped",
                records: dropped,
                queue: self.shipper.as_ref().map_or(0, Shipper::queue),
            };
            let body = serde_json::to_vec(&body).unwrap_or_default();
            let start = buf.len();
            chain::compose(&mut buf, seq, &head, now, &body);
            head = chain::hash(&buf[start..buf.len() - 1]);
            seq += 1;
            unsealed += 1;
        }
        for m in batch {
            let start = buf.len();
            chain::compose(&mut buf, seq, &head, now, &m.body);
            head = chain::hash(&buf[start..buf.len() - 1]);
            seq += 1;
            unsealed += 1;
            if unsealed >= self.settings.checkpoint_every_records {
                (seq, head) = self.push_checkpoint(&mut buf, seq, head, now, None);
                unsealed = 0;
            }
        }
        if seal && unsealed > 0 {
            (seq, head) = self.push_checkpoint(&mut buf, seq, head, now, None);
            unsealed = 0;
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.append(&buf)?;
        self.ship_dropped -= dropped;
        self.next_seq = seq;
        self.head = head;
        if unsealed == 0 {
            self.unsealed_since = None;
        } else if self.unsealed == 0 || self.unsealed_since.is_none() {
            self.unsealed_since = Some(Instant::now());
        }
        self.unsealed = unsealed;
        Ok(())
    }

    /// Appends a checkpoint signed with the current key; returns the new (seq, head).
    fn push_checkpoint(
        &self,
        buf: &mut Vec<u8>,
        seq: u64,
        prev: Digest,
        now: i64,
        next: Option<(u64, &[u8; 32])>,
    ) -> (u64, Digest) {
        let sig = self
            .key
            .sign(&checkpoint_message(seq, &prev, now, self.key.epoch, next));
        let body = Checkpoint {
            kind: "checkpoint",
            epoch: self.key.epoch,
            next_epoch: next.map(|(e, _)| e),
            next_key: next.map(|(_, k)| hex(k)),
            sig: hex(&sig),
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let start = buf.len();
        chain::compose(buf, seq, &prev, now, &body);
        (seq + 1, chain::hash(&buf[start..buf.len() - 1]))
    }

    /// Writes and fsyncs bytes at the end of the current file; on failure cuts the file
    /// back to its good length (or abandons it) and returns the error.
    fn append(&mut self, bytes: &[u8]) -> Result<(), AuditError> {
        let Some(cur) = self.current.as_mut() else {
            return Err(AuditError::new(&self.dir, std::io::Error::other("no open log file")));
        };
        let path = self.dir.join(&cur.name);
        let written = cur.file.write_all(bytes).and_then(|()| cur.file.sync_data());
        match written {
            Ok(()) => {
                cur.good_len += bytes.len() as u64;
                self.offer(bytes);
                Ok(())
            }
            Err(e) => {
                let cut = cur.file.set_len(cur.good_len).and_then(|()| {
                    cur.file.seek(SeekFrom::Start(cur.good_len))?;
                    cur.file.sync_data()
                });
                if cut.is_err() {
                    // Cannot trust this file's end any more: the next write starts a new
                    // one, whose header names the good length of this one.
                    self.abandon_current();
                }
                Err(AuditError::new(&path, e))
            }
        }
    }

    /// Offers durable lines for the remote copy (never waits); counts what did not fit.
    fn offer(&mut self, bytes: &[u8]) {
        let Some(s) = &self.shipper else { return };
        let dropped = s.offer(bytes);
        if dropped > 0 && self.ship_dropped == 0 {
            tracing::error!(
                dropped,
                "the remote log queue is full: records are not shipped (counted in a remote_dropped record)"
            );
        }
        self.ship_dropped += dropped;
    }

    fn abandon_current(&mut self) {
        if let Some(cur) = self.current.take() {
            self.closed = Some(Closed {
                path: self.dir.join(&cur.name),
                name: cur.name,
                no: cur.no,
                date: cur.date,
                good_len: cur.good_len,
            });
        }
    }

    /// Makes sure a file for today is open: seals and closes yesterday's, then writes a
    /// new file's header aside and renames it in.
    fn ensure_file(&mut self) -> Result<(), AuditError> {
        let now = self.clock.unix_seconds();
        let today = files::date_of(now);
        if self.current.as_ref().is_some_and(|c| c.date == today) {
            return Ok(());
        }
        if self.current.is_some() {
            // A closed file is sealed to its last line.
            self.seal_now(now)?;
            self.abandon_current();
            if let Some(c) = &self.closed {
                let closed = LogFile {
                    no: c.no,
                    date: c.date.clone(),
                    path: c.path.clone(),
                    compressed: false,
                };
                self.compress_later(vec![closed]);
            }
            self.retention_due = true;
        }
        let no = self.closed.as_ref().map_or(1, |c| c.no + 1);
        let name = files::file_name(&today, no);
        let previous = self.closed.as_ref().map(|c| describe_previous(c, self.next_seq));
        let header = FileHeader {
            kind: "file",
            file_no: no,
            epoch: self.key.epoch,
            key: hex(&self.key.public()),
            previous,
            init: self.init.clone(),
        };
        let body = serde_json::to_vec(&header).map_err(|e| AuditError::new(&self.dir, std::io::Error::other(e)))?;
        let mut line = Vec::with_capacity(512);
        chain::compose(&mut line, self.next_seq, &self.head, now, &body);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let io = |e| AuditError::new(&path, e);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(io)?;
        if let Err(e) = file.write_all(&line).and_then(|()| file.sync_all()) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        seal::sync_dir(&self.dir).map_err(io)?;
        let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(io)?;
        self.offer(&line);
        self.head = chain::hash(&line[..line.len() - 1]);
        self.next_seq += 1;
        self.unsealed += 1;
        self.unsealed_since.get_or_insert_with(Instant::now);
        self.init = None;
        self.closed = None;
        self.current = Some(Current {
            file,
            name,
            no,
            date: today,
            good_len: line.len() as u64,
        });
        Ok(())
    }

    /// Seals the records not yet sealed (a checkpoint), durably.
    fn seal_now(&mut self, now: i64) -> Result<(), AuditError> {
        if self.unsealed == 0 {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(256);
        let (seq, head) = self.push_checkpoint(&mut buf, self.next_seq, self.head, now, None);
        self.append(&buf)?;
        (self.next_seq, self.head) = (seq, head);
        self.unsealed = 0;
        self.unsealed_since = None;
        Ok(())
    }

    /// When a new epoch has begun: a handover checkpoint signed with the current key names
    /// the new epoch's public key; once it is durable the state moves on and the old seed
    /// is erased from disk.
    fn ensure_epoch(&mut self) -> Result<(), AuditError> {
        let now = self.clock.unix_seconds();
        let target = self.seal.epoch_at(now);
        if target <= self.seal.epoch {
            return Ok(());
        }
        let next = self
            .seal
            .key_for(target)
            .map_err(|e| AuditError::new(&self.state_dir, e))?;
        let mut buf = Vec::with_capacity(320);
        let (seq, head) = self.push_checkpoint(&mut buf, self.next_seq, self.head, now, Some((target, &next.public())));
        self.append(&buf)?;
        (self.next_seq, self.head) = (seq, head);
        self.unsealed = 0;
        self.unsealed_since = None;
        self.seal.advance_to(target);
        self.key = next;
        if let Err(e) = self.seal.store(&self.state_dir) {
            tracing::error!(error = %e, "the sealing key moved to a new epoch but the old one could not be erased from disk");
        }
        Ok(())
    }

    /// Deletes files past the retention limit, after a durable `retention` record names
    /// them.
    fn apply_retention(&mut self) {
        self.retention_due = false;
        let Ok(found) = files::list(&self.dir) else { return };
        let current = self.current.as_ref().map(|c| c.no);
        let expired: Vec<LogFile> = files::expired(&found, self.clock.unix_seconds(), self.settings.retention_days)
            .into_iter()
            .filter(|f| Some(f.no) != current)
            .collect();
        let Some(through) = expired.iter().map(|f| f.no).max() else {
            return;
        };
        let record = Retention {
            kind: "retention",
            through_file_no: through,
            deleted: expired.iter().map(LogFile::name).collect(),
            retention_days: self.settings.retention_days,
        };
        let Ok(body) = serde_json::to_vec(&record) else { return };
        if let Err(e) = self.write_batch(&[Msg { body, done: None }], true) {
            tracing::error!(error = %e, "retention: the record could not be written; nothing deleted");
            return;
        }
        for f in &expired {
            if let Err(e) = std::fs::remove_file(&f.path) {
                tracing::error!(file = %f.path.display(), error = %e, "retention: cannot delete");
            }
        }
        let _ = seal::sync_dir(&self.dir);
        tracing::info!(
            through,
            files = expired.len(),
            "retention: deleted files past the limit"
        );
    }

    /// Says loudly when the log stops or starts working again.
    fn report(&mut self, result: &Result<(), AuditError>, batch: &[Msg]) {
        match result {
            Ok(()) => {
                if let Some(since) = self.failing_since.take() {
                    tracing::warn!(
                        after_ms = since.elapsed().as_millis() as u64,
                        lost_detached = self.lost_detached,
                        "audit log writable again: protected requests are served again"
                    );
                    self.lost_detached = 0;
                }
                if self.retention_due {
                    self.apply_retention();
                }
            }
            Err(e) => {
                let detached = batch.iter().filter(|m| m.done.is_none()).count() as u64;
                self.lost_detached += detached;
                let first = self.failing_since.is_none();
                self.failing_since.get_or_insert_with(Instant::now);
                if first || self.last_alarm.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    self.last_alarm = Some(Instant::now());
                    tracing::error!(
                        error = %e,
                        refused = batch.len() as u64 - detached,
                        lost_detached = self.lost_detached,
                        "AUDIT LOG CANNOT BE WRITTEN: protected requests are refused (503) until it can"
                    );
                }
            }
        }
    }

    fn compress_later(&self, closed: Vec<LogFile>) {
        if closed.is_empty() {
            return;
        }
        let slot = self.compressor.clone();
        let mut guard = lock(&slot);
        let previous = guard.take();
        let spawned = std::thread::Builder::new()
            .name("sekisho-audit-gz".into())
            .spawn(move || {
                if let Some(p) = previous {
                    let _ = p.join();
                }
                for f in closed {
                    if let Err(e) = files::compress(&f) {
                        tracing::error!(file = %f.path.display(), error = %e, "cannot compress a closed log file");
                    }
                }
            });
        match spawned {
            Ok(t) => *guard = Some(t),
            Err(e) => tracing::error!(error = %e, "cannot start the log compressor"),
        }
    }
}

#[derive(Serialize)]
struct Checkpoint {
    kind: &'static str,
    epoch: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_epoch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_key: Option<String>,
    sig: String,
}

#[derive(Serialize)]
struct FileHeader {
    kind: &'static str,
    file_no: u64,
    epoch: u64,
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<PreviousFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    init: Option<Init>,
}

#[derive(Serialize)]
struct RemoteDropped {
    kind: &'static str,
    records: u64,
    queue: usize,
}

#[derive(Serialize)]
struct Retention {
    kind: &'static str,
    through_file_no: u64,
    deleted: Vec<String>,
    retention_days: u64,
}

/// What a new header says about the file before it: its good length and any bytes after
/// it (a torn line), with their hash so that they cannot be changed later unnoticed.
fn describe_previous(c: &Closed, next_seq: u64) -> PreviousFile {
    let mut torn_bytes = None;
    let mut torn_sha256 = None;
    if let Ok(mut f) = File::open(&c.path)
        && let Ok(len) = f.metadata().map(|m| m.len())
        && len > c.good_len
        && f.seek(SeekFrom::Start(c.good_len)).is_ok()
    {
        let mut rest = Vec::new();
        if f.read_to_end(&mut rest).is_ok() {
            torn_bytes = Some(rest.len() as u64);
            torn_sha256 = Some(hex(&chain::hash(&rest)));
        }
    }
    PreviousFile {
        name: c.name.clone(),
        bytes: c.good_len,
        last_seq: next_seq.saturating_sub(1),
        torn_bytes,
        torn_sha256,
    }
}

/// What the end of the last file says: the chain's head and the latest epoch handed over.
#[derive(Debug)]
struct Tail {
    good_len: u64,
    last_seq: u64,
    head: Digest,
    log_epoch: u64,
}

fn recover_tail(last: &LogFile) -> std::io::Result<Tail> {
    let bad = |what: &str| std::io::Error::other(format!("cannot recover the chain: {what}"));
    let (offset, bytes) = if last.compressed {
        (0, last.read()?)
    } else {
        let mut f = File::open(&last.path)?;
        let len = f.metadata()?.len();
        let offset = len.saturating_sub(limits::RECOVERY_TAIL_BYTES);
        f.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        (offset, bytes)
    };
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
        return Err(bad("the last file has no complete record"));
    };
    let good_len = offset + end as u64 + 1;
    let complete = &bytes[..end];
    // When the tail starts mid-file, its first piece may be part of a longer line.
    let mut lines: Vec<&[u8]> = complete.split(|&b| b == b'\n').collect();
    if offset > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let Some(last_line) = lines.last() else {
        return Err(bad("no complete record in the last file's tail"));
    };
    let parsed: Line = serde_json::from_slice(last_line).map_err(|e| bad(&format!("its last record: {e}")))?;
    let mut log_epoch = 0;
    for l in &lines {
        if let Ok(p) = serde_json::from_slice::<Line>(l) {
            log_epoch = log_epoch.max(p.epoch.unwrap_or(0)).max(p.next_epoch.unwrap_or(0));
        }
    }
    Ok(Tail {
        good_len,
        last_seq: parsed.seq,
        head: chain::hash(last_line),
        log_epoch,
    })
}

fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("access-") && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
