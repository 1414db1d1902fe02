//! Fuzz target: the access log's readers never panic on any bytes, and the verifier finds
//! every change to a sealed log.
//!
//! - Any bytes, as one record line: the fast envelope reader (used by the shipper and the
//!   remote copy) and the JSON reader agree on `seq`, `time` and `kind` whenever both
//!   accept the line.
//! - Any bytes, as a whole log (one or two files) and as a remote copy: `verify` and the
//!   remote-copy comparison return findings, never a panic; every record handed out is
//!   a line of the input, byte for byte, and a remote copy made of those records agrees
//!   with the log it came from.
//! - Edits of a real, sealed log (made once by the writer itself): any change before the
//!   last line is found (tampering), since every such byte is covered by the next
//!   record's hash.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sekisho::audit::chain::{self, Line};
use sekisho::audit::remote_copy::RemoteCopy;
use sekisho::audit::verify::{Report, verify_in_memory};

/// A sealed log of 3 files written by the real writer with a fixed clock, and its key.
fn sealed() -> &'static (Vec<Vec<u8>>, [u8; 32]) {
    static LOG: OnceLock<(Vec<Vec<u8>>, [u8; 32])> = OnceLock::new();
    LOG.get_or_init(write_sealed_log)
}

fn write_sealed_log() -> (Vec<Vec<u8>>, [u8; 32]) {
    use sekisho::audit::{AccessRecord, AuditLog, Event, Settings};
    use std::time::Duration;
    let root = std::env::temp_dir().join(format!("sekisho-fuzz-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (dir, state) = (root.join("log"), root.join("state"));
    // 2026-01-01T00:00:00Z; a checkpoint every 4 records; hourly epochs.
    let clock = sekisho::clock::FixedClock::at_unix(1_767_225_600);
    let settings = Settings {
        checkpoint_every_records: 4,
        checkpoint_every: Duration::from_secs(3_600),
        epoch_secs: 3_600,
        retention_days: 365,
        max_batch: 64,
    };
    for day in 0..3 {
        let log = AuditLog::open_with(&dir, &state, clock.clone(), settings).expect("open the log");
        for i in 0..9 {
            let path = format!("/admin/{day}/{i}");
            let record = AccessRecord {
                peer: "192.0.2.7".into(),
                client: None,
                method: "GET",
                host: Some("gw.example.jp"),
                path: Some(&path),
                raw_target: (i == 3).then_some("/admin/%2e/x\n\"{}"),
                route: Some("admin"),
                outcome: "deny",
                reason: "address_not_allowed",
                status: 403,
                bytes: Some(9),
                device: None,
                device_problem: None,
                user: (i % 2 == 0).then_some("ありす"),
                upstream_ms: None,
                policy: "0000000000000000000000000000000000000000000000000000000000000000",
                policy_commit: None,
            };
            log.record_detached(&Event::Access(record));
            if i == 4 {
                clock.advance(Duration::from_secs(3_700));
            }
        }
        log.close();
        clock.advance(Duration::from_secs(86_400));
    }
    let key = sekisho::audit::seal::SealState::load(&state)
        .expect("the sealing state")
        .expect("the sealing state exists")
        .root;
    let files = sekisho::audit::files::list(&dir)
        .expect("list the log")
        .iter()
        .map(|f| f.read().expect("read a log file"))
        .collect();
    let _ = std::fs::remove_dir_all(&root);
    (files, key)
}

fn agree(line: &[u8]) {
    let Some(e) = chain::envelope(line) else { return };
    if let Ok(l) = serde_json::from_slice::<Line>(line) {
        assert_eq!((l.seq, l.time, l.kind.as_str()), (e.seq, e.time, e.kind));
    }
}

/// Verifies `files`; checks what the verifier hands out and the remote-copy round trip.
fn check(files: &[&[u8]], key: Option<[u8; 32]>) -> Report {
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    let report = verify_in_memory(files, key, |v| out.push((v.seq, v.bytes.to_vec())));
    for (_, bytes) in &out {
        assert!(
            files.iter().any(|f| f.split(|&b| b == b'\n').any(|l| l == bytes.as_slice())),
            "a verified record is not a line of the input"
        );
    }
    if report.tampering.is_empty() && !out.is_empty() {
        let mut text = Vec::new();
        for (_, bytes) in &out {
            text.extend_from_slice(bytes);
            text.push(b'\n');
        }
        let copy = RemoteCopy::read(&text);
        let local: BTreeMap<u64, chain::Digest> = out
            .iter()
            .filter(|(s, _)| copy.marks.contains_key(s))
            .map(|(s, b)| (*s, chain::hash(b)))
            .collect();
        let mut r = Report::default();
        copy.compare(&mut r, &local, out.first().map(|(s, _)| *s), "copy");
        assert!(r.tampering.is_empty(), "a copy of the verified records disagrees: {:?}", r.tampering);
    }
    report
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => {
            agree(rest);
            for line in rest.split(|&b| b == b'\n') {
                agree(line);
            }
        }
        1 => {
            check(&[rest], None);
            let _ = RemoteCopy::read(rest);
        }
        2 => {
            let cut = rest.iter().position(|&b| b == 0xff).unwrap_or(rest.len());
            let (a, b) = rest.split_at(cut);
            check(&[a, b.get(1..).unwrap_or_default()], None);
        }
        _ => {
            // Edits of the sealed log: (file, offset, byte) triples.
            let (files, key) = sealed();
            let mut edited = files.clone();
            for e in rest.chunks_exact(4) {
                let f = usize::from(e[0]) % edited.len();
                let len = edited[f].len();
                let at = usize::from(u16::from_le_bytes([e[1], e[2]])) % len.max(1);
                if let Some(b) = edited[f].get_mut(at) {
                    *b = e[3];
                }
            }
            let views: Vec<&[u8]> = edited.iter().map(Vec::as_slice).collect();
            let report = check(&views, Some(*key));
            // Every byte before the last file's last line is covered by a later hash.
            let last = files.len() - 1;
            let covered_end = |f: usize| {
                if f < last {
                    files[f].len()
                } else {
                    files[f][..files[f].len() - 1]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |p| p + 1)
                }
            };
            let changed = (0..files.len()).any(|f| files[f][..covered_end(f)] != edited[f][..covered_end(f)]);
            if changed {
                assert!(
                    !report.tampering.is_empty(),
                    "an edit before the last line went unnoticed: {report:?}"
                );
            }
        }
    }
});
