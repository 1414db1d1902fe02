//! The verifier: reads every file of a log directory in order and checks the file
//! sequence, the chain (sequence numbers and `prev` hashes), the file headers, and every
//! checkpoint's signature with the key of its epoch, starting from the verification key.
//! It names the first record that breaks any of these (file, line, sequence number).
//!
//! A line torn by a crash (bytes after the last complete line) is not tampering: it is
//! reported apart, and once the gateway restarted, the next file's header names those
//! bytes and their hash, so they are checked too.
//!
//! Records are handed to the caller only once a checkpoint sealed them (and, at the end,
//! the unsealed tail, marked as such), so `export` and `search` print only verified lines.
//! This module reads files and does nothing else.

use super::chain::{self, Digest, GENESIS, Line, hex, unhex};
use super::files::{self, LogFile};
use super::seal::{self, checkpoint_message};
use std::path::Path;

/// What the verifier found.
#[derive(Debug, Default)]
pub struct Report {
    pub files: usize,
    pub records: u64,
    pub last_seq: Option<u64>,
    /// The last sequence number covered by a checkpoint.
    pub sealed_through: Option<u64>,
    pub epoch: u64,
    /// Where the root key came from.
    pub key_given: bool,
    /// Evidence of tampering, the first one first.
    pub tampering: Vec<Finding>,
    /// A torn last line not yet explained by a restart.
    pub torn: Option<Finding>,
    /// Remarks that are not problems.
    pub notes: Vec<String>,
}

/// A place in the log and what is wrong there.
#[derive(Debug, Clone)]
pub struct Finding {
    pub file: String,
    /// 1-based; 0 when the finding is about the file as a whole.
    pub line: usize,
    pub seq: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.seq) {
            (0, _) => write!(f, "{}: {}", self.file, self.what),
            (l, Some(s)) => write!(f, "{} line {l} (seq {s}): {}", self.file, self.what),
            (l, None) => write!(f, "{} line {l}: {}", self.file, self.what),
        }
    }
}

/// A verified record, as handed to the caller.
#[derive(Debug)]
pub struct Verified<'a> {
    pub file: &'a str,
    pub line: usize,
    pub seq: u64,
    pub time: i64,
    pub kind: &'a str,
    /// The exact line, without its `\n`.
    pub bytes: &'a [u8],
    /// Whether a checkpoint covers it (false only for the tail after the last one).
    pub sealed: bool,
}

/// The directory could not be read at all (not a finding about its content).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct VerifyError {
    pub path: String,
    pub source: std::io::Error,
}

/// Parses a verification key: 64 hex digits, optionally prefixed `ed25519:`.
pub fn parse_key(text: &str) -> Option<[u8; 32]> {
    let t = text.trim();
    unhex::<32>(t.strip_prefix("ed25519:").unwrap_or(t))
}

/// Verifies the log in `dir`; `key` is the verification key (else the one the first file
/// names is used, which proves consistency but not origin). `each` receives every record
/// once it is verified, in order.
pub fn verify(dir: &Path, key: Option<[u8; 32]>, each: impl FnMut(&Verified<'_>)) -> Result<Report, VerifyError> {
    let list = files::list(dir).map_err(|source| VerifyError {
        path: dir.display().to_string(),
        source,
    })?;
    let read = |f: &LogFile| -> Result<Vec<u8>, Finding> {
        f.read().map_err(|e| Finding {
            file: f.name(),
            line: 0,
            seq: None,
            what: format!("cannot be read ({e}): damaged or truncated"),
        })
    };
    Ok(walk(&list, read, key, each))
}

/// Verifies a log held in memory: `files[i]` is the content of file number `i + 1` (plain,
/// named as if opened on 2026-01-01). The same walk as [`verify`], without any IO: what
/// the fuzzer drives.
pub fn verify_in_memory(files: &[&[u8]], key: Option<[u8; 32]>, each: impl FnMut(&Verified<'_>)) -> Report {
    let list: Vec<LogFile> = (1..=files.len() as u64)
        .map(|no| LogFile {
            no,
            date: "2026-01-01".into(),
            path: std::path::PathBuf::new(),
            compressed: false,
        })
        .collect();
    let read = |f: &LogFile| -> Result<Vec<u8>, Finding> {
        let i = usize::try_from(f.no - 1).unwrap_or(usize::MAX);
        files.get(i).map(|b| b.to_vec()).ok_or_else(|| Finding {
            file: f.name(),
            line: 0,
            seq: None,
            what: "missing".into(),
        })
    };
    walk(&list, read, key, each)
}

fn walk(
    list: &[LogFile],
    read: impl Fn(&LogFile) -> Result<Vec<u8>, Finding>,
    key: Option<[u8; 32]>,
    mut each: impl FnMut(&Verified<'_>),
) -> Report {
    let mut v = Walker {
        report: Report {
            files: list.len(),
            key_given: key.is_some(),
            ..Report::default()
        },
        given_key: key,
        key: None,
        expected: None,
        pending: Vec::new(),
        retention_needed: None,
        last_checkpoint: None,
    };
    if list.is_empty() {
        v.report.notes.push("no log files".into());
        return v.report;
    }
    for pair in list.windows(2) {
        if pair[1].no != pair[0].no + 1 {
            v.report.tampering.push(Finding {
                file: pair[1].name(),
                line: 0,
                seq: None,
                what: format!(
                    "file(s) {:06}..={:06} missing from the sequence (deleted)",
                    pair[0].no + 1,
                    pair[1].no - 1
                ),
            });
        }
    }
    let mut contents: Vec<Option<Vec<u8>>> = Vec::with_capacity(2);
    contents.push(read(&list[0]).map_err(|f| v.report.tampering.push(f)).ok());
    for (i, file) in list.iter().enumerate() {
        let next = list.get(i + 1);
        let next_bytes = next.and_then(|n| read(n).map_err(|f| v.report.tampering.push(f)).ok());
        let Some(bytes) = contents.pop().flatten() else { break };
        let next_header = next_bytes
            .as_deref()
            .and_then(first_line)
            .and_then(|l| serde_json::from_slice::<Line>(l).ok());
        let ok = v.file(file, &bytes, next.is_none(), next_header.as_ref(), &mut each);
        if !ok {
            break;
        }
        contents.push(next_bytes);
    }
    if v.report.tampering.is_empty() {
        v.flush(false, &mut each);
        if let Some(through) = v.retention_needed {
            v.report.tampering.push(Finding {
                file: list[0].name(),
                line: 1,
                seq: None,
                what: format!(
                    "the log starts at file {:06} but no retention record names files up to {through:06}: earlier files were deleted",
                    list[0].no
                ),
            });
        }
        match (v.report.last_seq, v.report.sealed_through) {
            (Some(last), Some(sealed)) if last > sealed => v.report.notes.push(format!(
                "records after seq {sealed} (through {last}) are chained but not sealed yet (normal while the gateway runs)"
            )),
            (Some(last), None) => v
                .report
                .notes
                .push(format!("no checkpoint yet: records 0..={last} are chained but not sealed")),
            _ => {}
        }
    }
    v.report
}

fn first_line(bytes: &[u8]) -> Option<&[u8]> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    Some(&bytes[..end])
}

struct Walker {
    report: Report,
    given_key: Option<[u8; 32]>,
    /// The key and epoch in force.
    key: Option<([u8; 32], u64)>,
    /// The next record's (seq, prev).
    expected: Option<(u64, Digest)>,
    /// Verified by the chain, waiting for a checkpoint: (file, line, seq, time, kind, bytes).
    pending: Vec<(String, usize, u64, i64, String, Vec<u8>)>,
    retention_needed: Option<u64>,
    last_checkpoint: Option<u64>,
}

impl Walker {
    fn tamper(&mut self, file: &str, line: usize, seq: Option<u64>, what: String) -> bool {
        self.report.tampering.push(Finding {
            file: file.to_owned(),
            line,
            seq,
            what,
        });
        false
    }

    /// Checks one file; false once something was found (the walk stops there).
    fn file(
        &mut self,
        file: &LogFile,
        bytes: &[u8],
        is_last: bool,
        next_header: Option<&Line>,
        each: &mut impl FnMut(&Verified<'_>),
    ) -> bool {
        let name = file.name();
        let complete_len = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        // The part that belongs to the chain: what the next file's header says, else every
        // complete line.
        let declared = next_header.and_then(|h| h.previous.as_ref());
        // A declared length that is not a line end of this file: walk every complete line
        // (to name the record that differs), and report the length if they all pass.
        let mut length_problem = None;
        let chain_len = match declared {
            Some(p) if p.name == name => match usize::try_from(p.bytes) {
                Ok(n) if n <= bytes.len() && (n == 0 || bytes[n - 1] == b'\n') => n,
                _ => {
                    length_problem = Some(p.bytes);
                    complete_len
                }
            },
            _ => complete_len,
        };
        let lines: Vec<&[u8]> = bytes[..chain_len]
            .strip_suffix(b"\n")
            .map(|b| b.split(|&c| c == b'\n').collect())
            .unwrap_or_default();
        for (i, raw) in lines.iter().enumerate() {
            if !self.line(&name, file, i, &lines, raw, each) {
                return false;
            }
        }
        if let Some(n) = length_problem {
            return self.tamper(
                &name,
                0,
                None,
                format!(
                    "the next file says this file's records end at byte {n}, but they do not (records deleted or added at its end, or the file cut short)"
                ),
            );
        }
        let rest = &bytes[chain_len..];
        if rest.is_empty() {
            if let Some(p) = declared
                && p.torn_bytes.is_some_and(|n| n > 0)
            {
                return self.tamper(
                    &name,
                    lines.len() + 1,
                    None,
                    "the torn bytes the next file's header names are gone".into(),
                );
            }
            return true;
        }
        let at = lines.len() + 1;
        match declared {
            Some(p) => {
                let ok = p.torn_bytes == Some(rest.len() as u64)
                    && p.torn_sha256.as_deref() == Some(hex(&chain::hash(rest)).as_str());
                if ok {
                    self.report.notes.push(format!(
                        "{name} line {at}: {} bytes after the last record were left by an interrupted write (crash or I/O error), named by the next file's header",
                        rest.len()
                    ));
                    true
                } else {
                    self.tamper(
                        &name,
                        at,
                        None,
                        "bytes after the last record differ from what the next file's header recorded (modified or inserted)".into(),
                    )
                }
            }
            None if is_last && !rest.contains(&b'\n') => {
                self.report.torn = Some(Finding {
                    file: name,
                    line: at,
                    seq: None,
                    what: format!(
                        "the last line is torn ({} bytes without an end): a crash mid-write, or the file was cut; the gateway names it at its next start",
                        rest.len()
                    ),
                });
                true
            }
            None => self.tamper(&name, at, None, "bytes after the file's last record".into()),
        }
    }

    #[allow(
        clippy::too_many_lines,
        reason = "one check after another, in the order a record is read"
    )]
    fn line(
        &mut self,
        name: &str,
        file: &LogFile,
        i: usize,
        lines: &[&[u8]],
        raw: &[u8],
        each: &mut impl FnMut(&Verified<'_>),
    ) -> bool {
        let no = i + 1;
        let rec: Line = match serde_json::from_slice(raw) {
            Ok(r) => r,
            Err(e) => return self.tamper(name, no, None, format!("not a valid record ({e}): modified")),
        };
        let seq = Some(rec.seq);
        let Some(prev) = unhex::<32>(&rec.prev) else {
            return self.tamper(name, no, seq, "its prev field is not a hash: modified".into());
        };
        let hash = chain::hash(raw);
        // Header rules.
        if i == 0 {
            if rec.kind != "file" || rec.file_no != Some(file.no) {
                return self.tamper(
                    name,
                    no,
                    seq,
                    "the file does not begin with its own header (lines inserted, moved or removed)".into(),
                );
            }
            if self.expected.is_none() {
                // The first file: the beginning of the log, or after retention.
                match (&rec.previous, &rec.init) {
                    (None, Some(init)) => {
                        if rec.seq != 0 || prev != GENESIS {
                            return self.tamper(name, no, seq, "the first record does not start the chain".into());
                        }
                        let Some(root) = unhex::<32>(&init.key) else {
                            return self.tamper(name, no, seq, "the verification key in the header is damaged".into());
                        };
                        if let Some(given) = self.given_key
                            && given != root
                        {
                            return self.tamper(
                                name,
                                no,
                                seq,
                                format!(
                                    "the log was made with key {} but the key given is {}: re-sealed with a wrong key, or the wrong key",
                                    init.key,
                                    hex(&given)
                                ),
                            );
                        }
                        self.key = Some((root, 0));
                    }
                    (Some(_), _) => {
                        self.retention_needed = Some(file.no.saturating_sub(1));
                        let (Some(epoch), Some(key)) = (rec.epoch, rec.key.as_deref().and_then(unhex::<32>)) else {
                            return self.tamper(name, no, seq, "the header names no key".into());
                        };
                        self.report.notes.push(format!(
                            "the log starts at file {:06} (seq {}): the epoch-{epoch} key is taken from its header, so the seals prove the chain's integrity from there, not its origin",
                            file.no, rec.seq
                        ));
                        self.key = Some((key, epoch));
                    }
                    (None, None) => {
                        return self.tamper(
                            name,
                            no,
                            seq,
                            "the first file's header has neither a root key nor a previous file".into(),
                        );
                    }
                }
                self.expected = Some((rec.seq, prev));
            }
        } else if rec.kind == "file" {
            return self.tamper(
                name,
                no,
                seq,
                "a file header in the middle of a file: lines inserted".into(),
            );
        }
        // The chain.
        if let Some((want_seq, want_prev)) = self.expected {
            if rec.seq != want_seq {
                let found_later = lines
                    .iter()
                    .enumerate()
                    .skip(i + 1)
                    .take(64)
                    .find(|(_, l)| serde_json::from_slice::<Line>(l).is_ok_and(|r| r.seq == want_seq));
                let what = match found_later {
                    _ if rec.seq < want_seq => {
                        format!("expected seq {want_seq}: a record was inserted or repeated here")
                    }
                    Some((j, _)) => format!("expected seq {want_seq}, which is at line {}: records reordered", j + 1),
                    None => format!(
                        "expected seq {want_seq}: record(s) {want_seq}..={} deleted before this line",
                        rec.seq - 1
                    ),
                };
                return self.tamper(name, no, seq, what);
            }
            if prev != want_prev {
                if i == 0 {
                    return self.tamper(
                        name,
                        no,
                        seq,
                        "this file does not continue the previous one (its prev hash names another record): records deleted, or the previous file changed at its end".into(),
                    );
                }
                // The record before is the one whose bytes no longer hash to what this one
                // names (or, less likely, this record's own prev field was edited).
                return self.tamper(
                    name,
                    i,
                    rec.seq.checked_sub(1),
                    format!(
                        "modified: its hash is not what the next record (line {no}, seq {}) names",
                        rec.seq
                    ),
                );
            }
        }
        // Kind-specific rules.
        let Some((key, epoch)) = self.key else {
            return self.tamper(name, no, seq, "no key in force".into());
        };
        if rec.kind == "file" && i == 0 && self.report.records > 0 {
            if rec.epoch != Some(epoch) || rec.key.as_deref() != Some(hex(&key).as_str()) {
                return self.tamper(
                    name,
                    no,
                    seq,
                    format!("the header names another epoch or key than the chain's epoch {epoch}"),
                );
            }
            let Some(p) = &rec.previous else {
                return self.tamper(name, no, seq, "the header does not name the previous file".into());
            };
            if Some(p.last_seq) != rec.seq.checked_sub(1) {
                return self.tamper(name, no, seq, "the header names another last record".into());
            }
        }
        if rec.kind == "retention" && rec.through_file_no.is_some() && rec.through_file_no == self.retention_needed {
            self.retention_needed = None;
        }
        self.pending
            .push((name.to_owned(), no, rec.seq, rec.time, rec.kind.clone(), raw.to_vec()));
        if rec.kind == "checkpoint" {
            let Some(sig) = rec.sig.as_deref().and_then(unhex::<64>) else {
                return self.tamper(name, no, seq, "a checkpoint without a signature".into());
            };
            let c_epoch = rec.epoch.unwrap_or(u64::MAX);
            if c_epoch != epoch {
                let when = if c_epoch > epoch { "later" } else { "earlier" };
                return self.tamper(
                    name,
                    no,
                    seq,
                    format!(
                        "sealed with a key of a {when} epoch ({c_epoch}) where epoch {epoch}'s key is in force: re-sealed"
                    ),
                );
            }
            let next = match (rec.next_epoch, rec.next_key.as_deref()) {
                (None, None) => None,
                (Some(e), Some(k)) => match unhex::<32>(k) {
                    Some(k) if e > epoch => Some((e, k)),
                    _ => return self.tamper(name, no, seq, "a damaged key handover".into()),
                },
                _ => return self.tamper(name, no, seq, "a damaged key handover".into()),
            };
            let msg = checkpoint_message(rec.seq, &prev, rec.time, epoch, next.as_ref().map(|(e, k)| (*e, k)));
            if !seal::verify(&key, &msg, &sig) {
                let since = self
                    .last_checkpoint
                    .map_or("the start".to_owned(), |s| format!("seq {s}"));
                return self.tamper(
                    name,
                    no,
                    seq,
                    format!(
                        "the checkpoint does not verify with the epoch-{epoch} key: a record after {since} was modified, or it was sealed with a wrong key"
                    ),
                );
            }
            if let Some((e, k)) = next {
                self.key = Some((k, e));
                self.report.epoch = e;
            } else {
                self.report.epoch = epoch;
            }
            self.last_checkpoint = Some(rec.seq);
            self.report.sealed_through = Some(rec.seq);
            self.flush(true, each);
        }
        self.report.records += 1;
        self.report.last_seq = Some(rec.seq);
        self.expected = Some((rec.seq + 1, hash));
        true
    }

    fn flush(&mut self, sealed: bool, each: &mut impl FnMut(&Verified<'_>)) {
        for (file, line, seq, time, kind, bytes) in self.pending.drain(..) {
            each(&Verified {
                file: &file,
                line,
                seq,
                time,
                kind: &kind,
                bytes: &bytes,
                sealed,
            });
        }
    }
}
