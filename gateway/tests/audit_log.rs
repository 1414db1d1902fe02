//! The signed access log, end to end through the library and the real `sekisho log`
//! command: a log is written with a clock the test drives (three days, three sealing
//! epochs, a checkpoint every ten records), then tampered with in every way the issue names;
//! `sekisho log verify` must say where, with exit 1. Also: torn tails (exit 3, then
//! explained by a restart), retention, export and search.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use sekisho::audit::chain::{self, hex};
use sekisho::audit::files;
use sekisho::audit::seal::{SealState, checkpoint_message};
use sekisho::audit::{AccessRecord, AuditLog, Event, Settings};
use sekisho::clock::{FixedClock, SharedClock};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600;

struct Fixture {
    log: PathBuf,
    state: PathBuf,
    key: String,
    clock: Arc<FixedClock>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(root) = self.log.parent() {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

fn settings() -> Settings {
    Settings {
        checkpoint_every_records: 10,
        checkpoint_every: Duration::from_secs(3_600),
        epoch_secs: 3_600,
        retention_days: 365,
        max_batch: 4_096,
    }
}

fn access(i: usize, path: &str) -> AccessRecord<'_> {
    AccessRecord {
        peer: format!("127.0.0.{}", 1 + i % 3),
        client: Some("192.0.2.7".into()),
        method: "GET",
        host: Some("admin.gw.test"),
        path: Some(path),
        raw_target: None,
        route: Some(if i.is_multiple_of(2) { "admin" } else { "public" }),
        outcome: "deny",
        reason: "address_not_allowed",
        status: 403,
        bytes: Some(9),
        device: None,
        device_problem: None,
        user: i.is_multiple_of(5).then_some("alice"),
        upstream_ms: None,
        policy: "0000000000000000000000000000000000000000000000000000000000000000",
        policy_commit: None,
    }
}

fn write(log: &AuditLog, from: usize, count: usize) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for i in from..from + count {
        let path = format!("/admin/{i}");
        rt.block_on(log.record(&Event::Access(access(i, &path)))).unwrap();
    }
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sekisho-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Three files (a day each), sealing epochs 0, 2 and later, 125 access records.
fn fixture(name: &str) -> Fixture {
    let root = dir(name);
    let (log_dir, state) = (root.join("log"), root.join("state"));
    let clock = FixedClock::at_unix(T0);
    let shared: SharedClock = clock.clone();
    let log = AuditLog::open_with(&log_dir, &state, shared, settings()).unwrap();
    write(&log, 0, 45);
    clock.advance(Duration::from_secs(2 * 3_600));
    write(&log, 45, 20);
    clock.advance(Duration::from_secs(86_400));
    write(&log, 65, 40);
    clock.advance(Duration::from_secs(86_400));
    write(&log, 105, 20);
    log.close();
    let key = hex(&SealState::load(&state).unwrap().unwrap().root);
    Fixture {
        log: log_dir,
        state,
        key,
        clock,
    }
}

fn sekisho(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sekisho"))
        .args(args)
        .output()
        .expect("run sekisho")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn verify(fx: &Fixture) -> (i32, String) {
    let out = sekisho(&["log", "verify", fx.log.to_str().unwrap(), "--key", &fx.key]);
    (out.status.code().unwrap_or(-1), text(&out))
}

/// Makes file `no` plain (decompressing it) and returns its path.
fn plain(fx: &Fixture, no: u64) -> PathBuf {
    let f = files::list(&fx.log).unwrap().into_iter().find(|f| f.no == no).unwrap();
    let bytes = f.read().unwrap();
    let path = fx.log.join(f.name());
    std::fs::write(&path, bytes).unwrap();
    if f.compressed {
        std::fs::remove_file(&f.path).unwrap();
    }
    path
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn put_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn seq_of(line: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

fn name(fx: &Fixture, no: u64) -> String {
    files::list(&fx.log)
        .unwrap()
        .into_iter()
        .find(|f| f.no == no)
        .unwrap()
        .name()
}

/// Asserts exit 1 and that the report names `file`, `line` and `seq`, and says `what`.
fn assert_found(fx: &Fixture, file_no: u64, line: usize, seq: Option<u64>, what: &str) {
    let (code, out) = verify(fx);
    assert_eq!(code, 1, "{out}");
    let place = match seq {
        Some(s) => format!("{} line {line} (seq {s})", name(fx, file_no)),
        None if line == 0 => format!("{}:", name(fx, file_no)),
        None => format!("{} line {line}", name(fx, file_no)),
    };
    let first = out.lines().nth(1).unwrap_or_default();
    assert!(first.contains(&place), "expected {place} first:\n{out}");
    assert!(first.contains(what), "expected {what:?}:\n{out}");
}

#[test]
fn an_untouched_log_verifies_across_files_epochs_and_compression() {
    let fx = fixture("intact");
    let listed = files::list(&fx.log).unwrap();
    assert_eq!(listed.iter().map(|f| f.no).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(listed[0].compressed && listed[1].compressed && !listed[2].compressed);
    let (code, out) = verify(&fx);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK"), "{out}");
    assert!(out.contains("3 file(s)"), "{out}");
    // Epochs moved on: 0 → 2 (two hours) → 26 → 50.
    assert!(out.contains("(epoch 50)"), "{out}");
    // Without --key: the same verdict, said to rest on the log's own key.
    let out = sekisho(&["log", "verify", fx.log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pass --key"), "{}", text(&out));
    // The sealing state holds the current epoch only.
    let state = SealState::load(&fx.state).unwrap().unwrap();
    assert_eq!(state.epoch, 50);
}

#[test]
fn a_flipped_byte_is_found_at_its_record() {
    let fx = fixture("flip");
    let path = plain(&fx, 1);
    let mut l = lines(&path);
    let seq = seq_of(&l[14]);
    l[14] = l[14].replacen("/admin/", "/admim/", 1);
    put_lines(&path, &l);
    assert_found(&fx, 1, 15, Some(seq), "modified");
}

#[test]
fn an_edited_field_is_found_at_its_record() {
    let fx = fixture("edit");
    let path = plain(&fx, 2);
    let mut l = lines(&path);
    let seq = seq_of(&l[19]);
    assert!(l[19].contains("\"status\":403"));
    l[19] = l[19].replace("\"status\":403", "\"status\":200");
    put_lines(&path, &l);
    assert_found(&fx, 2, 20, Some(seq), "modified");
}

#[test]
fn a_deleted_line_is_found() {
    let fx = fixture("delete");
    let path = plain(&fx, 1);
    let mut l = lines(&path);
    let gone = seq_of(&l[29]);
    l.remove(29);
    put_lines(&path, &l);
    assert_found(
        &fx,
        1,
        30,
        Some(gone + 1),
        &format!("record(s) {gone}..={gone} deleted"),
    );
}

#[test]
fn an_inserted_line_is_found() {
    let fx = fixture("insert");
    let path = plain(&fx, 1);
    let mut l = lines(&path);
    let copy = l[24].clone();
    let seq = seq_of(&copy);
    l.insert(26, copy);
    put_lines(&path, &l);
    assert_found(&fx, 1, 27, Some(seq), "inserted or repeated");
}

#[test]
fn two_swapped_lines_are_found() {
    let fx = fixture("swap");
    let path = plain(&fx, 3);
    let mut l = lines(&path);
    l.swap(5, 6);
    let later = seq_of(&l[5]);
    put_lines(&path, &l);
    assert_found(&fx, 3, 6, Some(later), "reordered");
}

#[test]
fn a_truncated_file_is_found() {
    let fx = fixture("truncate");
    let path = plain(&fx, 1);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_found(&fx, 1, 0, None, "do not");
}

#[test]
fn a_deleted_middle_file_is_named() {
    let fx = fixture("gap");
    let gone = files::list(&fx.log).unwrap().remove(1);
    std::fs::remove_file(&gone.path).unwrap();
    let (code, out) = verify(&fx);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("file(s) 000002..=000002 missing from the sequence"),
        "{out}"
    );
}

/// The intruder holds today's sealing state: they change a record of the first day, redo
/// the chain from there and re-sign every checkpoint with the only key they have, either
/// keeping each checkpoint's epoch or claiming their own (where the digits fit).
/// Returns the first checkpoint after the change: (seq, line).
fn reseal(fx: &Fixture, file_count: u64, claim_later_epoch: bool) -> (u64, usize) {
    let state = SealState::load(&fx.state).unwrap().unwrap();
    let key = state.key().unwrap();
    let mut prev = chain::GENESIS;
    let mut found = None;
    for no in 1..=file_count {
        let path = plain(fx, no);
        let mut l = lines(&path);
        for (i, line) in l.iter_mut().enumerate() {
            if no == 1 && i == 20 {
                assert!(line.contains("\"status\":403"), "{line}");
                *line = line.replace("\"status\":403", "\"status\":200");
            }
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let old_prev = v["prev"].as_str().unwrap().to_owned();
            *line = line.replacen(&old_prev, &hex(&prev), 1);
            let after_change = no > 1 || i >= 20;
            if v["kind"] == "checkpoint" && after_change {
                let mut epoch = v["epoch"].as_u64().unwrap();
                if claim_later_epoch && epoch.to_string().len() == key.epoch.to_string().len() {
                    *line = line.replace(&format!("\"epoch\":{epoch},"), &format!("\"epoch\":{},", key.epoch));
                    epoch = key.epoch;
                }
                let next_key = v["next_key"].as_str().and_then(chain::unhex::<32>);
                let next = v["next_epoch"].as_u64().zip(next_key);
                let m = checkpoint_message(
                    v["seq"].as_u64().unwrap(),
                    &prev,
                    v["time"].as_i64().unwrap(),
                    epoch,
                    next.as_ref().map(|(e, k)| (*e, k)),
                );
                let old_sig = v["sig"].as_str().unwrap().to_owned();
                *line = line.replace(&old_sig, &hex(&key.sign(&m)));
                if no == 1 && i > 20 && found.is_none() {
                    found = Some((v["seq"].as_u64().unwrap(), i + 1));
                }
            }
            prev = chain::hash(line.as_bytes());
        }
        put_lines(&path, &l);
    }
    found.unwrap()
}

#[test]
fn a_past_record_resealed_with_todays_key_is_found() {
    let fx = fixture("reseal");
    let (seq, line) = reseal(&fx, 3, false);
    assert_found(&fx, 1, line, Some(seq), "does not verify with the epoch-0 key");
}

#[test]
fn a_past_record_resealed_claiming_a_later_epoch_is_found() {
    // The first day is sealed in epoch 10 and the intruder holds epoch 34's key: the same
    // number of digits, so the claim fits in place.
    let root = dir("reseal-later");
    let (log_dir, state) = (root.join("log"), root.join("state"));
    let clock = FixedClock::at_unix(T0);
    let shared: SharedClock = clock.clone();
    let log = AuditLog::open_with(&log_dir, &state, shared, settings()).unwrap();
    clock.advance(Duration::from_secs(10 * 3_600));
    write(&log, 0, 45);
    clock.advance(Duration::from_secs(86_400));
    write(&log, 45, 20);
    log.close();
    let fx = Fixture {
        key: hex(&SealState::load(&state).unwrap().unwrap().root),
        log: log_dir,
        state,
        clock,
    };
    let (seq, line) = reseal(&fx, 2, true);
    assert_found(&fx, 1, line, Some(seq), "sealed with a key of a later epoch (34)");
}

#[test]
fn a_wrong_verification_key_is_refused_and_a_bad_directory_is_a_usage_error() {
    let fx = fixture("wrong-key");
    let other = "ab".repeat(32);
    let out = sekisho(&["log", "verify", fx.log.to_str().unwrap(), "--key", &other]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("the key given is"), "{}", text(&out));
    let out = sekisho(&["log", "verify", "/nonexistent/sekisho-log"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = sekisho(&["log", "verify", fx.log.to_str().unwrap(), "--key", "nothex"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn a_torn_tail_is_reported_as_such_then_named_by_the_next_start() {
    let fx = fixture("torn");
    let last = plain(&fx, 3);
    let mut f = std::fs::OpenOptions::new().append(true).open(&last).unwrap();
    std::io::Write::write_all(&mut f, b"{\"seq\":999,\"prev\":\"ab").unwrap();
    drop(f);
    let (code, out) = verify(&fx);
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("TORN") && out.contains("torn"), "{out}");

    // The gateway starts again: the new file's header names the torn bytes.
    let shared: SharedClock = fx.clock.clone();
    let log = AuditLog::open_with(&fx.log, &fx.state, shared, settings()).unwrap();
    write(&log, 200, 3);
    log.close();
    let (code, out) = verify(&fx);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("left by an interrupted write"), "{out}");

    // Those bytes are now part of the evidence: changing them is tampering.
    let last = plain(&fx, 3);
    let mut changed = std::fs::read(&last).unwrap();
    *changed.last_mut().unwrap() = b'c';
    std::fs::write(&last, changed).unwrap();
    let (code, out) = verify(&fx);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bytes after the last record differ"), "{out}");
}

#[test]
fn files_past_retention_are_deleted_after_a_record_names_them() {
    let fx = fixture("retention");
    // 2027-01-01 02:00: the first file (2026-01-01) is not yet 365 days past its end.
    fx.clock.advance(Duration::from_secs(363 * 86_400));
    let shared: SharedClock = fx.clock.clone();
    let log = AuditLog::open_with(&fx.log, &fx.state, shared.clone(), settings()).unwrap();
    write(&log, 300, 2);
    log.close();
    assert_eq!(files::list(&fx.log).unwrap().len(), 4);
    fx.clock.advance(Duration::from_secs(2 * 86_400));
    let log = AuditLog::open_with(&fx.log, &fx.state, shared, settings()).unwrap();
    write(&log, 400, 2);
    log.close();
    let left: Vec<u64> = files::list(&fx.log).unwrap().iter().map(|f| f.no).collect();
    // 2027-01-03 02:00: the files of 2026-01-01 and 01-02 are past 365 days; 01-03 is not.
    assert_eq!(left, [3, 4, 5]);
    let (code, out) = verify(&fx);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("the log starts at file 000003"), "{out}");
}

#[test]
fn export_and_search_print_verified_records() {
    let fx = fixture("query");
    let dir = fx.log.to_str().unwrap();
    let since = (T0 + 86_400).to_string();
    let out = sekisho(&["log", "export", dir, "--since", &since, "--key", &fx.key]);
    assert!(out.status.success(), "{}", text(&out));
    let exported: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(exported.iter().all(|v| v["time"].as_u64().unwrap() >= T0 + 86_400));
    assert_eq!(exported.iter().filter(|v| v["kind"] == "access").count(), 60);

    let out = sekisho(&[
        "log",
        "search",
        dir,
        "--user",
        "alice",
        "--route",
        "/admin",
        "--address",
        "192.0.2.0/24",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let found: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(found.len(), 25, "every fifth of 125 records is alice's");
    assert!(found.iter().all(|v| v["user"] == "alice"));

    // Tampering stops the export at the first bad record, with exit 1.
    let path = plain(&fx, 2);
    let mut l = lines(&path);
    l[3] = l[3].replace("\"status\":403", "\"status\":200");
    put_lines(&path, &l);
    let out = sekisho(&["log", "export", dir, "--since", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("TAMPERED"), "{}", text(&out));
}

#[test]
fn a_full_remote_queue_drops_counts_and_records_it_and_the_log_still_verifies() {
    let root = dir("remote-full");
    let (log_dir, state) = (root.join("log"), root.join("state"));
    // A receiver that never answers: a port nobody listens on (chosen by the kernel).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ca = rcgen::generate_simple_self_signed(vec!["logs.test".to_owned()]).unwrap();
    let ca_file = root.join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    let remote = sekisho::audit::Remote {
        target: sekisho_policy::RemoteTarget::Syslog {
            host: "127.0.0.1".into(),
            port,
        },
        ca_file: Some(ca_file),
        ship: sekisho_policy::Ship::Records,
        queue: 16,
        retry_max: Duration::from_secs(1),
        hostname: "gw.test".into(),
    };
    let clock: SharedClock = FixedClock::at_unix(T0);
    let log = AuditLog::open_shipping(&log_dir, &state, clock, settings(), Some(remote)).unwrap();
    write(&log, 0, 100);
    // The writer never waited for the receiver; the next batch names what was dropped.
    write(&log, 100, 1);
    log.close();
    let lines: Vec<serde_json::Value> = files::list(&log_dir)
        .unwrap()
        .iter()
        .flat_map(|f| lines(&f.path))
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect();
    let dropped: u64 = lines
        .iter()
        .filter(|r| r["kind"] == "remote_dropped")
        .map(|r| {
            assert_eq!(r["queue"], 16);
            r["records"].as_u64().unwrap()
        })
        .sum();
    // Of all lines (the header, 101 records, their checkpoints and the drop notes), at most
    // 16 wait in the queue and at most 16 more (taken from it) in the batch the shipper keeps
    // trying to send; every other one is counted, except the drops of the very last batch,
    // which no later record can name.
    let total = lines.len() as u64;
    assert!(
        dropped >= total - 2 * 16 - 2 && dropped <= total - 16,
        "{dropped} dropped of {total}"
    );
    let out = sekisho(&["log", "verify", log_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let _ = std::fs::remove_dir_all(root);
}
