//! The access record: one JSON line per decision, written before the response goes out.
//! Kept apart from diagnostics (`tracing`). Every client-controlled string is escaped by
//! the JSON encoder, so no input can forge a line or a field.
//!
//! This is the seam the signed, hash-chained log will fill: callers only see
//! [`AuditLog::record`], which either made the record durable or says it could not.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One access decision.
#[derive(Debug, Serialize)]
pub struct AccessRecord<'a> {
    /// Seconds since the epoch.
    pub time: i64,
    pub kind: &'static str,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_problem: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<u64>,
    pub policy: &'a str,
}

/// Where access records go.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    path: String,
    source: std::io::Error,
}

impl AuditLog {
    /// Opens (creating) `DIR/access.jsonl` for appending.
    pub fn open(dir: &Path) -> Result<Self, AuditError> {
        let err = |source| AuditError {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let path = dir.join("access.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| AuditError {
                path: path.display().to_string(),
                source,
            })?;
        Ok(AuditLog {
            path,
            file: Mutex::new(file),
        })
    }

    /// Writes one record as one line. An error means the record is not kept: the caller
    /// must fail closed for anything protected.
    pub fn record(&self, rec: &AccessRecord<'_>) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(rec).map_err(|e| AuditError {
            path: self.path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        let mut file = match self.file.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        file.write_all(&line).map_err(|source| AuditError {
            path: self.path.display().to_string(),
            source,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
