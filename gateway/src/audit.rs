//! The access log: one JSON line per decision and per security event, hash-chained, sealed
//! with forward-secure Ed25519 checkpoints, and durable before the caller goes on.
//! Kept apart from diagnostics (`tracing`). Every client-controlled string is escaped by
//! the JSON encoder, so no input can forge a line or a field.
//!
//! Callers see [`AuditLog::record`]: it returns once the record is on disk (fsynced with
//! its batch), or says it could not be kept — the caller then fails closed. One writer
//! thread ([`writer`]) owns the files, the chain and the sealing key; nothing else writes
//! to `log_dir`. The same line format is read back by [`verify`] (and `sekisho log`).
//!
//! This module must never: drop a record silently, acknowledge a record before its batch
//! is fsynced, or keep a sealing key of a past epoch on disk.

pub mod chain;
pub mod files;
pub mod limits;
pub mod query;
pub mod remote_copy;
pub mod seal;
pub mod ship;
pub mod verify;
mod writer;

use crate::clock::SharedClock;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

pub use ship::Remote;
pub use writer::Settings;

/// One access decision.
#[derive(Debug, Serialize)]
pub struct AccessRecord<'a> {
    pub peer: String,
    pub client: Option<String>,
    pub method: &'a str,
    pub host: Option<&'a str>,
    /// The canonical path (what routing, the decision and the upstream saw).
    pub path: Option<&'a str>,
    /// The raw request-target, when it differs from the canonical one or was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_target: Option<&'a str>,
    pub route: Option<&'a str>,
    pub outcome: &'static str,
    pub reason: &'static str,
    pub status: u16,
    /// The response body's length, when it is known before it is sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_problem: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<u64>,
    /// The active policy's sha256.
    pub policy: &'a str,
    /// The git commit of the policy's checkout, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_commit: Option<&'a str>,
}

/// Everything the log records, besides its own bookkeeping (file headers, checkpoints,
/// retention), which only the writer makes. Add a variant for each new security event
/// (login, enrolment, lockout …); its `kind` is the variant's name in snake_case, and its
/// fields must not be named `seq`, `prev`, `time` or `kind` (a unit test checks).
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "an event lives on the caller's stack only until it is serialised"
)]
pub enum Event<'a> {
    /// A request's decision.
    Access(AccessRecord<'a>),
    /// The gateway started serving with this policy.
    Start {
        version: &'a str,
        pid: u32,
        policy: &'a str,
    },
    /// The gateway stopped (SIGTERM/SIGINT); `open` connections were still open.
    Stop { open: usize },
    /// A policy was activated (at start, on SIGHUP, or by the file watcher).
    PolicyLoaded {
        policy: &'a str,
        generation: u64,
        trigger: &'a str,
    },
    /// A candidate policy was refused; the previous one keeps serving.
    PolicyRejected { trigger: &'a str, error: &'a str },
    /// The device CRL changed and is in force.
    DeviceCrlReloaded { crl: &'a str, revoked: usize },
    /// The device CRL changed but could not be used; the previous one stays.
    DeviceCrlRejected { crl: &'a str, error: &'a str },
    /// A certificate from the ACME CA was installed (the first, or a renewal).
    AcmeCertificateIssued {
        serial: &'a str,
        not_after: i64,
        names: &'a [String],
        challenge: &'a str,
        /// The serial of the certificate it replaces, if any.
        replaces: Option<&'a str>,
    },
    /// An ACME attempt failed; `serving` (if any) keeps serving until the retry at `retry_at`.
    AcmeFailed {
        error: &'a str,
        failures: u32,
        retry_at: i64,
        serving: Option<&'a str>,
    },
    /// A client address (IPv6: its /64) was banned after `denials` denials: closed at
    /// accept, or 429 behind a trusted proxy, for `seconds`. `repeat` counts the bans in
    /// a row before this one (each doubles the duration).
    Ban {
        address: String,
        denials: u32,
        seconds: u64,
        repeat: u32,
    },
    /// A ban ended: `expired`, or `evicted` from a full table.
    Unban { address: String, reason: &'a str },
}

/// Why a record could not be kept.
#[derive(Debug, Clone, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    path: String,
    #[source]
    source: Arc<std::io::Error>,
}

impl AuditError {
    pub(crate) fn new(path: &Path, source: std::io::Error) -> Self {
        AuditError {
            path: path.display().to_string(),
            source: Arc::new(source),
        }
    }
}

/// The handle every part of the gateway records through.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    tx: Mutex<Option<mpsc::Sender<writer::Msg>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    health: Arc<writer::Health>,
    /// `[log] danger_disable_audit` (benchmark only): nothing is written.
    disabled: bool,
}

/// The log's state as the writer last reported it (`sekisho status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditHealth {
    /// False when the last write failed (protected requests get 503) or the writer stopped.
    pub writable: bool,
    /// The sequence number of the last record written, if any.
    pub last_seq: Option<u64>,
}

impl AuditLog {
    /// Opens the log in `log_dir` with the sealing state in `state_dir` (created on first
    /// use, printing the verification key once on stderr), recovers the chain from the
    /// last file, starts a new file and the writer thread.
    pub fn open(log_dir: &Path, state_dir: &Path, clock: SharedClock) -> Result<Self, AuditError> {
        Self::open_with(log_dir, state_dir, clock, Settings::default())
    }

    /// [`AuditLog::open`] with explicit limits (tests drive epochs and checkpoints).
    pub fn open_with(
        log_dir: &Path,
        state_dir: &Path,
        clock: SharedClock,
        settings: Settings,
    ) -> Result<Self, AuditError> {
        Self::open_shipping(log_dir, state_dir, clock, settings, None)
    }

    /// [`AuditLog::open_with`], and a copy of every durable line shipped to `remote`
    /// (see [`ship`]).
    pub fn open_shipping(
        log_dir: &Path,
        state_dir: &Path,
        clock: SharedClock,
        settings: Settings,
        remote: Option<Remote>,
    ) -> Result<Self, AuditError> {
        let shipper = remote.map(ship::Shipper::start).transpose()?;
        let (tx, thread, health) = writer::start(log_dir, state_dir, clock, settings, shipper)?;
        Ok(AuditLog {
            dir: log_dir.to_path_buf(),
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            health,
            disabled: false,
        })
    }

    /// No log at all: every record is "kept" at once and nothing is written. Only for the
    /// log-on/log-off benchmark (`[log] danger_disable_audit`, which `sekisho run` refuses
    /// without `SEKISHO_DANGER_BENCHMARK=1`).
    pub fn danger_disabled(log_dir: &Path) -> Self {
        AuditLog {
            dir: log_dir.to_path_buf(),
            tx: Mutex::new(None),
            thread: Mutex::new(None),
            health: Arc::default(),
            disabled: true,
        }
    }

    /// Writes one record and returns once it is durable. An error means the record is not
    /// kept: the caller must fail closed for anything protected.
    pub async fn record(&self, event: &Event<'_>) -> Result<(), AuditError> {
        if self.disabled {
            return Ok(());
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        self.submit(event, Some(done))?;
        match wait.await {
            Ok(result) => result,
            Err(_) => Err(self.closed()),
        }
    }

    /// Queues one record without waiting for it to be durable (refusals decided outside
    /// the pipeline, events of background tasks). A failure is logged by the writer.
    pub fn record_detached(&self, event: &Event<'_>) {
        if self.disabled {
            return;
        }
        if let Err(e) = self.submit(event, None) {
            tracing::error!(error = %e, "cannot queue an audit record");
        }
    }

    /// Seals the log (a final checkpoint), fsyncs it and stops the writer. Records sent
    /// after this fail.
    pub fn close(&self) {
        let tx = lock(&self.tx).take();
        drop(tx);
        if let Some(thread) = lock(&self.thread).take()
            && thread.join().is_err()
        {
            tracing::error!("the audit writer thread panicked");
        }
    }

    /// Whether the log is being written, and how far (read-only; for `sekisho status`).
    pub fn health(&self) -> AuditHealth {
        let (next_seq, failing) = self.health.read();
        AuditHealth {
            writable: self.disabled || (!failing && lock(&self.tx).is_some()),
            last_seq: next_seq.checked_sub(1),
        }
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn submit(
        &self,
        event: &Event<'_>,
        done: Option<tokio::sync::oneshot::Sender<Result<(), AuditError>>>,
    ) -> Result<(), AuditError> {
        // Serialised here, on the caller's task, so the writer thread only chains bytes.
        let body = serde_json::to_vec(event).map_err(|e| AuditError::new(&self.dir, std::io::Error::other(e)))?;
        let tx = lock(&self.tx);
        let Some(tx) = tx.as_ref() else {
            return Err(self.closed());
        };
        tx.send(writer::Msg { body, done }).map_err(|_| self.closed())
    }

    fn closed(&self) -> AuditError {
        AuditError::new(&self.dir, std::io::Error::other("the audit writer has stopped"))
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Cuts a long event text (never a client-controlled one) to [`limits::MAX_EVENT_TEXT`]
/// bytes, on a character boundary.
pub fn clip(text: &str) -> &str {
    let mut end = text.len().min(limits::MAX_EVENT_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_access() -> AccessRecord<'static> {
        AccessRecord {
            peer: "127.0.0.1".into(),
            client: None,
            method: "GET",
            host: Some("h"),
            path: Some("/"),
            raw_target: Some("/x"),
            route: Some("r"),
            outcome: "allow",
            reason: "public",
            status: 200,
            bytes: Some(1),
            device: Some("d"),
            device_problem: Some("p"),
            user: Some("u"),
            upstream_ms: Some(1),
            policy: "p",
            policy_commit: Some("0123abc"),
        }
    }

    #[test]
    fn no_event_field_collides_with_the_envelope() {
        let events = [
            Event::Access(sample_access()),
            Event::Start {
                version: "v",
                pid: 1,
                policy: "p",
            },
            Event::Stop { open: 0 },
            Event::PolicyLoaded {
                policy: "p",
                generation: 1,
                trigger: "t",
            },
            Event::PolicyRejected {
                trigger: "t",
                error: "e",
            },
            Event::DeviceCrlReloaded { crl: "c", revoked: 1 },
            Event::DeviceCrlRejected { crl: "c", error: "e" },
            Event::AcmeCertificateIssued {
                serial: "01",
                not_after: 1,
                names: &[],
                challenge: "http-01",
                replaces: None,
            },
            Event::AcmeFailed {
                error: "e",
                failures: 1,
                retry_at: 2,
                serving: Some("01"),
            },
            Event::Ban {
                address: "a".into(),
                denials: 1,
                seconds: 1,
                repeat: 0,
            },
            Event::Unban {
                address: "a".into(),
                reason: "expired",
            },
        ];
        for ev in &events {
            let v = serde_json::to_value(ev).unwrap();
            let obj = v.as_object().unwrap();
            for reserved in ["seq", "prev", "time"] {
                assert!(!obj.contains_key(reserved), "{ev:?} has {reserved}");
            }
            let kind = obj["kind"].as_str().unwrap();
            assert!(
                !chain::META_KINDS.contains(&kind),
                "{kind} is reserved for the writer's own records"
            );
        }
    }
}
