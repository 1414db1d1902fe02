//! Every limit of the access log, in one place, each with its default and why.
//!
//! These are constants, not policy keys, because the policy crate has its own owner; the
//! keys they should become are named in each comment (`[log] …`).

use std::time::Duration;

/// A checkpoint is sealed at least every this many records (`[log] checkpoint_records`).
/// Smaller means a tighter window an intruder could rewrite before the next seal; each
/// seal costs one Ed25519 signature (~20 µs).
pub const CHECKPOINT_EVERY_RECORDS: u64 = 1_000;

/// … and at least this often while records are waiting to be sealed
/// (`[log] checkpoint_interval`). An idle log is not sealed again.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);

/// The sealing key evolves (and the previous one is erased) this often
/// (`[log] seal_epoch`). An intruder who takes the host can rewrite at most the records
/// since the start of the current epoch. Fixed when the log is initialised.
pub const SEAL_EPOCH: Duration = Duration::from_secs(3_600);

/// Closed files are kept at least this many days after their last possible record
/// (`[log] retention_days`); nothing younger is ever deleted.
pub const RETENTION_DAYS: u64 = 365;

/// The most records written and fsynced as one batch (`[log] max_batch`).
pub const MAX_BATCH: usize = 4_096;

/// Whether a response on a public route waits for its record to be durable
/// (`[log] public_waits_for_fsync`). Default: yes, every response waits. When the log
/// cannot be written, public routes are still served (only protected ones fail closed).
pub const PUBLIC_WAITS_FOR_FSYNC: bool = true;

/// How long the writer waits before trying again after a write error, while nothing new
/// arrives (new records always retry at once) (`[log] retry_interval`).
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Strings of events that are not client-controlled but can be long (a rejected policy's
/// diagnostics) are cut to this many bytes (`[log] max_event_text`).
pub const MAX_EVENT_TEXT: usize = 8 * 1024;

/// How much of the end of the last file is read at start to find the chain's head and
/// the last key handover (`[log] recovery_tail_bytes`). A checkpoint is always within it
/// unless a thousand records exceed it.
pub const RECOVERY_TAIL_BYTES: u64 = 8 * 1024 * 1024;
