//! The remote copy, read back: what a syslog receiver kept of the shipped records (one
//! record per line: the MSG part of each message, a leading BOM allowed), compared with the
//! local log. The remote copy is off the host, so it is the witness here: every checkpoint
//! and file header it holds must be in the local log with the very same bytes. A local log
//! that was deleted, cut short or rewritten after a checkpoint was shipped fails this,
//! naming the checkpoint (seq, time, hash) the local log lacks.
//!
//! Reading does no IO (the caller passes the bytes); comparing takes the hashes the
//! verifier saw. Records the remote copy lacks are not a finding (shipping is best effort:
//! a full queue drops and says so in a `remote_dropped` record).

use super::chain::{self, Digest, META_KINDS, hex};
use super::verify::{Finding, Report};
use std::collections::BTreeMap;

/// How many records the local log lacks are named one by one.
const MAX_NAMED: usize = 3;

/// A record of the remote copy that the local log must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub kind: String,
    pub time: i64,
    pub hash: Digest,
}

/// What the remote copy holds.
#[derive(Debug, Default)]
pub struct RemoteCopy {
    /// Lines read as records.
    pub records: u64,
    /// Lines that are not records (reported as a note, not compared).
    pub unreadable: u64,
    /// The log's own records (checkpoints, file headers …) and the newest record, by seq.
    pub marks: BTreeMap<u64, Mark>,
    /// Sequence numbers the copy holds with two different contents.
    pub conflicts: Vec<u64>,
}

impl RemoteCopy {
    /// Reads a remote copy: one record per line (`\n` or `\r\n`), an optional BOM first.
    pub fn read(text: &[u8]) -> RemoteCopy {
        let mut copy = RemoteCopy::default();
        let mut newest: Option<(u64, Mark)> = None;
        for raw in text.split(|&b| b == b'\n') {
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let Some(env) = chain::envelope(line) else {
                copy.unreadable += 1;
                continue;
            };
            copy.records += 1;
            let mark = Mark {
                kind: env.kind.to_owned(),
                time: env.time,
                hash: chain::hash(line),
            };
            if newest.as_ref().is_none_or(|(s, _)| env.seq >= *s) {
                newest = Some((env.seq, mark.clone()));
            }
            if META_KINDS.contains(&env.kind) {
                copy.insert(env.seq, mark);
            }
        }
        if let Some((seq, mark)) = newest {
            copy.insert(seq, mark);
        }
        copy
    }

    fn insert(&mut self, seq: u64, mark: Mark) {
        match self.marks.get(&seq) {
            Some(m) if m.hash != mark.hash => {
                if !self.conflicts.contains(&seq) {
                    self.conflicts.push(seq);
                }
            }
            Some(_) => {}
            None => {
                self.marks.insert(seq, mark);
            }
        }
    }

    /// The newest checkpoint the copy holds.
    pub fn last_checkpoint(&self) -> Option<(u64, &Mark)> {
        self.marks
            .iter()
            .rev()
            .find(|(_, m)| m.kind == "checkpoint")
            .map(|(s, m)| (*s, m))
    }

    /// Adds to `report` what the local log lacks of this copy. `local` holds the hash of
    /// every local record the verifier passed whose seq is in [`RemoteCopy::marks`];
    /// `local_first` is the first seq the local log holds (earlier marks predate it by
    /// retention and are not compared).
    pub fn compare(&self, report: &mut Report, local: &BTreeMap<u64, Digest>, local_first: Option<u64>, what: &str) {
        if self.records == 0 {
            report.tampering.push(Finding {
                file: what.to_owned(),
                line: 0,
                seq: None,
                what: "the remote copy holds no record: nothing to compare with".into(),
            });
            return;
        }
        let mut matched = 0u64;
        let mut earlier = 0u64;
        let mut lacking = Vec::new();
        for (&seq, mark) in &self.marks {
            if local_first.is_some_and(|f| seq < f) {
                earlier += 1;
                continue;
            }
            match local.get(&seq) {
                Some(h) if *h == mark.hash => matched += 1,
                Some(h) => lacking.push(Finding {
                    file: what.to_owned(),
                    line: 0,
                    seq: Some(seq),
                    what: format!(
                        "the local record seq {seq} differs from the remote copy's {} of {} (remote sha256 {}, local {}): modified or re-sealed on this host",
                        mark.kind,
                        super::ship::rfc3339(mark.time),
                        hex(&mark.hash),
                        hex(h)
                    ),
                }),
                None => lacking.push(Finding {
                    file: what.to_owned(),
                    line: 0,
                    seq: Some(seq),
                    what: format!(
                        "the remote copy has {} seq {seq} of {} (sha256 {}) but the local log {}: records deleted on this host (the whole log, or its end)",
                        mark.kind,
                        super::ship::rfc3339(mark.time),
                        hex(&mark.hash),
                        match report.last_seq {
                            Some(l) if report.tampering.is_empty() => format!("ends at seq {l}"),
                            Some(l) => format!("could be verified only up to seq {l}"),
                            None => "has no record".to_owned(),
                        }
                    ),
                }),
            }
        }
        // The newest checkpoint the local log lacks says most; name it first, and count the
        // rest beyond a few.
        lacking.reverse();
        if lacking.len() > MAX_NAMED {
            let more = lacking.len() - MAX_NAMED;
            lacking.truncate(MAX_NAMED);
            report.notes.push(format!(
                "{more} earlier checkpoint(s) or header(s) of the remote copy are not in the local log either"
            ));
        }
        if let Some(c) = self.conflicts.first() {
            report.notes.push(format!(
                "the remote copy holds two different records for seq {c} ({} such seq): it was fed by two logs, or altered",
                self.conflicts.len()
            ));
        }
        if self.unreadable > 0 {
            report.notes.push(format!(
                "{} line(s) of the remote copy are not records (ignored)",
                self.unreadable
            ));
        }
        if earlier > 0 {
            report.notes.push(format!(
                "{earlier} record(s) of the remote copy predate the local log (deleted by retention)"
            ));
        }
        let last = self.last_checkpoint().map_or("no checkpoint".to_owned(), |(s, m)| {
            format!("last checkpoint seq {s} sha256 {}", hex(&m.hash))
        });
        if lacking.is_empty() {
            report.notes.push(format!(
                "the remote copy ({} record(s), {last}) agrees with the local log ({matched} checkpoint(s) and header(s) compared)",
                self.records
            ));
        } else {
            report
                .notes
                .push(format!("remote copy: {} record(s), {last}", self.records));
            report.tampering.extend(lacking);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{GENESIS, compose};

    fn log(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = GENESIS;
        for seq in 0..n {
            let start = out.len();
            let body: &[u8] = if seq % 3 == 2 {
                br#"{"kind":"checkpoint","epoch":0,"sig":"00"}"#
            } else {
                br#"{"kind":"access"}"#
            };
            compose(&mut out, seq, &prev, 100 + seq as i64, body);
            prev = chain::hash(&out[start..out.len() - 1]);
        }
        out
    }

    #[test]
    fn marks_are_checkpoints_and_the_newest_record() {
        let copy = RemoteCopy::read(&log(7));
        assert_eq!(copy.records, 7);
        assert_eq!(copy.marks.keys().copied().collect::<Vec<_>>(), [2, 5, 6]);
        assert_eq!(copy.last_checkpoint().map(|(s, _)| s), Some(5));
    }

    #[test]
    fn a_local_log_that_lacks_a_shipped_checkpoint_is_tampered() {
        let text = log(7);
        let copy = RemoteCopy::read(&text);
        let hashes: BTreeMap<u64, Digest> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
            .map(|(i, l)| (i as u64, chain::hash(l)))
            .collect();
        let mut whole = Report::default();
        copy.compare(&mut whole, &hashes, Some(0), "remote");
        assert!(whole.tampering.is_empty(), "{:?}", whole.tampering);
        let cut: BTreeMap<u64, Digest> = hashes.iter().filter(|(s, _)| **s < 4).map(|(s, h)| (*s, *h)).collect();
        let mut report = Report {
            last_seq: Some(3),
            ..Report::default()
        };
        copy.compare(&mut report, &cut, Some(0), "remote");
        let first = report.tampering.first().unwrap();
        assert_eq!(first.seq, Some(6), "{first}");
        assert!(
            report
                .tampering
                .iter()
                .any(|f| f.seq == Some(5) && f.what.contains("checkpoint seq 5"))
        );
        assert!(first.what.contains("ends at seq 3"), "{first}");
    }
}
