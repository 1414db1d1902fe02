//! The signed access log of the real gateway: every decision and event recorded and
//! verifiable with `sekisho log verify`; SIGKILL under load loses no answered record and
//! the chain verifies across the restart; a full disk refuses protected requests with 503
//! and service resumes by itself; the corpus's log-injection cases; the remote copy over
//! syslog/TLS, and a deleted or cut local log found by comparing with it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step must stop the test with its message"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sekisho_tests::assert_eventually_async;
use sekisho_tests::audit::{self, Process};
use sekisho_tests::contexts::{ADMIN_HOST, Context, OUTSIDER_IP, Stack};
use sekisho_tests::https_sink::HttpsLogSink;
use sekisho_tests::policy::PolicySpec;
use sekisho_tests::syslog::SyslogReceiver;

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {ADMIN_HOST}\r\n\r\n").into_bytes()
}

async fn status(stack: &Stack, path: &str) -> Option<u16> {
    stack
        .client(OUTSIDER_IP, ADMIN_HOST)
        .exchange(&get(path), 1)
        .await
        .status()
}

fn kinds(records: &[serde_json::Value]) -> Vec<String> {
    records.iter().map(|r| r["kind"].as_str().unwrap().to_owned()).collect()
}

/// A copy of a log directory to tamper with.
fn copy_dir(from: &Path, name: &str) -> PathBuf {
    let to = from.parent().unwrap().join(name);
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to
}

#[tokio::test]
async fn decisions_and_events_are_recorded_chained_and_sealed() {
    let mut stack = Stack::start(Context::A, |spec| spec);
    assert_eq!(status(&stack, "/admin/").await, Some(403));
    assert_eq!(status(&stack, "/public/").await, Some(200));
    stack.gateway.reload();
    assert_eventually_async!(
        Duration::from_secs(5),
        audit::lines(&stack.gateway.log_dir())
            .iter()
            .any(|l| l.contains("\"trigger\":\"sighup\""))
    );
    assert!(stack.gateway.terminate(Duration::from_secs(10)).is_some());
    let dir = stack.gateway.log_dir();
    let (code, out) = audit::verify(&dir);
    assert_eq!(code, 0, "{out}");
    let records = audit::export(&dir);
    let k = kinds(&records);
    assert_eq!(&k[..3], ["file", "start", "policy_loaded"], "{k:?}");
    assert_eq!(&k[k.len() - 2..], ["stop", "checkpoint"], "{k:?}");
    let access: Vec<_> = records.iter().filter(|r| r["kind"] == "access").collect();
    assert_eq!(access.len(), 2, "{k:?}");
    assert_eq!(access[0]["status"], 403);
    assert_eq!(access[0]["reason"], "address_not_allowed");
    assert_eq!(access[1]["outcome"], "allow");
    assert!(access[1]["bytes"].as_u64().is_some(), "{}", access[1]);
    // Sequence numbers run without a gap, each naming the hash of the record before.
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"].as_u64(), Some(i as u64));
    }
}

#[tokio::test]
async fn sigkill_under_load_loses_no_answered_record_and_the_chain_verifies_across_the_restart() {
    let stack = Arc::new(Stack::start(Context::A, |spec| spec));
    let answered = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..4 {
        let (stack, answered, count, stop) = (stack.clone(), answered.clone(), count.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let path = format!("/admin/crash-{task}-{i}");
                i += 1;
                // A protected route: its answer leaves only after its record is durable.
                if status(&stack, &path).await == Some(403) {
                    answered.lock().unwrap().insert(path);
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    assert_eventually_async!(Duration::from_secs(30), count.load(Ordering::Relaxed) >= 150);
    audit::kill9(stack.gateway.pid());
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let dir = stack.gateway.log_dir();
    // Before the restart: intact, or a torn last line reported as such (exit 3).
    let (before_code, before) = audit::verify(&dir);
    assert!(
        before_code == 0 || (before_code == 3 && before.contains("torn")),
        "{before}"
    );

    let again = Process::start(&stack.gateway.policy_path);
    assert_eq!(status(&stack, "/admin/after-restart").await, Some(403));
    let (code, out) = audit::verify(&dir);
    assert_eq!(
        code,
        0,
        "after the restart:\n{out}\nbefore:\n{before}\n{}",
        again.stderr_text()
    );
    let recorded: BTreeSet<String> = audit::export(&dir)
        .iter()
        .filter(|r| r["kind"] == "access")
        .filter_map(|r| r["path"].as_str().map(str::to_owned))
        .collect();
    let answered = answered.lock().unwrap();
    let lost: Vec<_> = answered.difference(&recorded).collect();
    assert!(lost.is_empty(), "answered but not recorded: {lost:?}");
    assert!(recorded.contains("/admin/after-restart"));
    eprintln!(
        "crash test: {} answered, {} recorded, verify before the restart: exit {before_code}",
        answered.len(),
        recorded.len()
    );
}

/// Mounts a tmpfs of `size` at `dir`; false if this machine does not allow it.
fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_protected_requests_and_service_resumes_when_space_returns() {
    let mut stack = Stack::start(Context::A, |spec| spec);
    assert!(stack.gateway.terminate(Duration::from_secs(10)).is_some());
    let scratch = stack.gateway.policy_path.parent().unwrap().to_path_buf();
    let small = scratch.join("small-log");
    // CI runs as root (as .ci/run does here); a machine where a tmpfs cannot be mounted
    // cannot give this evidence, and that is a failure, not a skip.
    assert!(
        mount_tmpfs(&small, "1m"),
        "cannot mount a tmpfs at {}: this test needs root (mount -t tmpfs)",
        small.display()
    );
    let _unmount = Unmount(small.clone());
    let policy = std::fs::read_to_string(&stack.gateway.policy_path).unwrap();
    let policy: String = policy
        .lines()
        .map(|l| {
            if l.starts_with("log_dir = ") {
                format!("log_dir = \"{}\"", small.display())
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let policy_path = scratch.join("small-log.toml");
    std::fs::write(&policy_path, policy + "\n").unwrap();
    let gateway = Process::start(&policy_path);
    assert_eq!(status(&stack, "/admin/before").await, Some(403));

    // Fill the disk.
    let filler = small.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while std::io::Write::write_all(&mut f, &block).is_ok() {}
    drop(f);

    let mut refused = 0;
    for i in 0..20 {
        // A protected request whose record cannot be kept: 503, never the answer.
        match status(&stack, &format!("/admin/full-{i}")).await {
            Some(503) => refused += 1,
            other => assert_eq!(other, Some(403), "{}", gateway.stderr_text()),
        }
    }
    assert!(
        refused > 0,
        "the disk was full but nothing was refused:\n{}",
        gateway.stderr_text()
    );
    assert!(
        gateway.stderr_text().contains("AUDIT LOG CANNOT BE WRITTEN"),
        "{}",
        gateway.stderr_text()
    );
    // Public pages are still served (`[log] public_when_unwritable` defaults to "serve") …
    assert_eq!(status(&stack, "/public/").await, Some(200));
    // … and refused once the owner says so (read per request: a reload is enough).
    let text = std::fs::read_to_string(&policy_path).unwrap();
    std::fs::write(&policy_path, text + "\n[log]\npublic_when_unwritable = \"refuse\"\n").unwrap();
    assert_eventually_async!(
        Duration::from_secs(10),
        status(&stack, "/public/").await == Some(503),
        "public pages still served with public_when_unwritable = \"refuse\":\n{}",
        gateway.stderr_text()
    );

    // Space returns: service resumes by itself.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(status(&stack, "/admin/after").await, Some(403));
    assert_eq!(status(&stack, "/public/").await, Some(200));
    assert_eventually_async!(
        Duration::from_secs(5),
        gateway.stderr_text().contains("audit log writable again")
    );
    drop(gateway);
    let (code, out) = audit::verify(&small);
    assert!(code == 0 || code == 3, "{out}");
    let paths: Vec<String> = audit::export(&small)
        .iter()
        .filter_map(|r| r["path"].as_str().map(str::to_owned))
        .collect();
    assert!(paths.contains(&"/admin/before".to_owned()) && paths.contains(&"/admin/after".to_owned()));
    // What was refused with 503 is not in the log: nothing half-written was kept.
    let refused_in_log = paths.iter().filter(|p| p.starts_with("/admin/full-")).count();
    assert_eq!(refused_in_log, 20 - refused, "{paths:?}");
}

/// Corpus LOG-003: a newline in a form field of a login attempt: one record, no raw
/// control byte, and the body is never logged at all.
#[tokio::test]
async fn log_003_a_newline_in_a_login_form_field_forges_nothing() {
    let stack = Stack::start(Context::A, |spec| spec);
    let dir = stack.gateway.log_dir();
    let before = audit::access_lines(&dir).len();
    let raw = b"POST /_gw/login HTTP/1.1\r\nHost: admin.gw.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 69\r\n\r\nusername=bob%0a2026-01-01%20login%20success%20user%3Dadmin&password=x";
    let answer = stack.client(OUTSIDER_IP, ADMIN_HOST).exchange(raw, 1).await;
    assert!(answer.status().is_some(), "{}", answer.describe());
    assert_eventually_async!(Duration::from_secs(5), audit::access_lines(&dir).len() > before);
    let lines = audit::lines(&dir);
    assert_eq!(audit::access_lines(&dir).len(), before + 1);
    for l in &lines {
        assert!(l.bytes().all(|b| b >= 0x20 && b != 0x7f), "{l:?}");
        assert!(!l.contains("login success") && !l.contains("bob"), "{l}");
    }
}

/// Corpus LOG-004: DEL and bytes that are not UTF-8 in a header value.
#[tokio::test]
async fn log_004_del_and_high_bytes_in_a_header_stay_one_valid_record() {
    let stack = Stack::start(Context::A, |spec| spec);
    let dir = stack.gateway.log_dir();
    let before = audit::access_lines(&dir).len();
    let raw = b"GET /public/ HTTP/1.1\r\nHost: admin.gw.test\r\nUser-Agent: a\x7fb\xff\xfe\r\n\r\n";
    let answer = stack.client(OUTSIDER_IP, ADMIN_HOST).exchange(raw, 1).await;
    assert!(answer.status().is_some(), "{}", answer.describe());
    assert_eventually_async!(Duration::from_secs(5), audit::access_lines(&dir).len() > before);
    let records = audit::access_lines(&dir);
    assert_eq!(records.len(), before + 1);
    let last = records.last().unwrap();
    assert!(last.bytes().all(|b| (0x20..0x7f).contains(&b)), "{last:?}");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["kind"], "access");
}

/// Corpus LOG-006: 100 records from the real gateway; flip a byte in record 50, delete
/// record 60, swap 70 and 71, truncate the last one: each found at that record.
#[tokio::test]
async fn log_006_tampering_with_the_gateways_own_log_is_found_at_the_record() {
    let mut stack = Stack::start(Context::A, |spec| spec);
    for i in 0..100 {
        assert_eq!(status(&stack, &format!("/admin/r{i}")).await, Some(403));
    }
    assert!(stack.gateway.terminate(Duration::from_secs(10)).is_some());
    let dir = stack.gateway.log_dir();
    assert_eq!(audit::verify(&dir).0, 0);
    let file = audit::current_file(&dir);
    let name = file.file_name().unwrap().to_str().unwrap().to_owned();
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let line_of = |path: &str| lines.iter().position(|l| l.contains(&format!("\"{path}\""))).unwrap();

    let check = |tag: &str, edit: &dyn Fn(&mut Vec<String>) -> usize, expect_code: i32, what: &str| {
        let copy = copy_dir(&dir, tag);
        let target = copy.join(&name);
        let mut l = lines.clone();
        let at = edit(&mut l);
        let mut text = l.join("\n") + "\n";
        if tag == "truncate" {
            text.truncate(text.len() - 20);
        }
        std::fs::write(&target, text).unwrap();
        let (code, out) = audit::verify(&copy);
        assert_eq!(code, expect_code, "{tag}:\n{out}");
        assert!(
            out.contains(&format!("{name} line {at}")),
            "{tag}: expected line {at}:\n{out}"
        );
        assert!(out.contains(what), "{tag}: expected {what:?}:\n{out}");
    };
    let r50 = line_of("/admin/r50");
    check(
        "flip",
        &|l| {
            l[r50] = l[r50].replacen("/admin/r50", "/admin/r5O", 1);
            r50 + 1
        },
        1,
        "modified",
    );
    let r60 = line_of("/admin/r60");
    check(
        "delete",
        &|l| {
            l.remove(r60);
            r60 + 1
        },
        1,
        "deleted",
    );
    let r70 = line_of("/admin/r70");
    check(
        "swap",
        &|l| {
            l.swap(r70, r70 + 1);
            r70 + 1
        },
        1,
        "reordered",
    );
    check("truncate", &|l| l.len(), 3, "torn");
}

/// A TOML string.
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn shipping_to(receiver: &SyslogReceiver) -> impl FnOnce(PolicySpec) -> PolicySpec {
    let (target, ca) = (receiver.target(), receiver.ca_file.display().to_string());
    move |spec| {
        spec.log("checkpoint_interval", "\"200ms\"")
            .log_remote("syslog", &toml_str(&target))
            .log_remote("ca_file", &toml_str(&ca))
    }
}

/// The last checkpoint the receiver holds: (seq, its line).
fn last_checkpoint(receiver: &SyslogReceiver) -> Option<(u64, String)> {
    receiver
        .messages()
        .into_iter()
        .filter(|m| m.msgid == "checkpoint")
        .filter_map(|m| {
            let v: serde_json::Value = serde_json::from_str(&m.msg).ok()?;
            Some((v["seq"].as_u64()?, m.msg))
        })
        .max_by_key(|(s, _)| *s)
}

#[tokio::test]
async fn records_and_checkpoints_reach_a_tls_syslog_receiver_and_a_deleted_log_is_noticed() {
    let receiver = SyslogReceiver::start();
    let mut stack = Stack::start(Context::A, shipping_to(&receiver));
    let pid = stack.gateway.pid().to_string();
    assert_eq!(status(&stack, "/admin/").await, Some(403));
    assert_eq!(status(&stack, "/public/").await, Some(200));
    // Both decisions arrive, and a checkpoint sealing them.
    assert_eventually_async!(Duration::from_secs(15), {
        let records = receiver.records();
        let last_access = records
            .iter()
            .filter(|r| r["kind"] == "access")
            .filter_map(|r| r["seq"].as_u64())
            .max();
        let sealed = last_checkpoint(&receiver).map(|(s, _)| s);
        records.iter().filter(|r| r["kind"] == "access").count() == 2 && last_access < sealed
    });
    assert!(stack.gateway.terminate(Duration::from_secs(10)).is_some());
    // The stop record and the final seal are shipped before the gateway exits.
    assert_eventually_async!(
        Duration::from_secs(5),
        receiver.records().last().is_some_and(|r| r["kind"] == "checkpoint")
            && receiver.records().iter().any(|r| r["kind"] == "stop")
    );
    assert_eq!(
        receiver.errors(),
        Vec::<String>::new(),
        "the receiver refused something"
    );

    // RFC 5424 in RFC 5425 frames (the receiver checked the framing and the grammar); the
    // fields say what the record is, and MSG is the local line, byte for byte.
    let dir = stack.gateway.log_dir();
    let local = audit::lines(&dir);
    let messages = receiver.messages();
    assert_eq!(messages.len(), local.len(), "every record is shipped");
    for (m, line) in messages.iter().zip(&local) {
        assert_eq!(&m.msg, line);
        let record: serde_json::Value = serde_json::from_str(&m.msg).unwrap();
        let kind = record["kind"].as_str().unwrap();
        let own = ["file", "checkpoint", "retention", "remote_dropped"].contains(&kind);
        assert_eq!(m.pri, 13 * 8 + if own { 5 } else { 6 }, "{m:?}");
        assert_eq!(
            (
                m.hostname.as_str(),
                m.app_name.as_str(),
                m.procid.as_str(),
                m.msgid.as_str()
            ),
            ("admin.gw.test", "sekisho", pid.as_str(), kind)
        );
        assert!(m.bom && m.timestamp.ends_with('Z') && m.structured_data == "-", "{m:?}");
    }

    // The remote copy agrees with the intact log.
    let copy = dir.parent().unwrap().join("remote-copy.jsonl");
    receiver.write_copy(&copy);
    let (code, out) = audit::verify_remote(&dir, &copy);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("agrees with the local log"), "{out}");
    let (last_seq, last_line) = last_checkpoint(&receiver).unwrap();
    let last_hash = sha256_hex(last_line.as_bytes());

    // Cut after the first checkpoint: the local log alone still verifies (the cut looks like
    // the end), but the remote copy names the checkpoint it lacks.
    let cut = copy_dir(&dir, "log-cut");
    let file = audit::plain_files(&cut).pop().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let first_seal = text.find("\"kind\":\"checkpoint\"").unwrap();
    let end = first_seal + text[first_seal..].find('\n').unwrap() + 1;
    std::fs::write(&file, &text[..end]).unwrap();
    let (code, out) = audit::verify(&cut);
    assert_eq!(code, 0, "the cut is invisible to the local log alone: {out}");
    let (code, out) = audit::verify_remote(&cut, &copy);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("checkpoint seq {last_seq}")) && out.contains(&last_hash),
        "{out}"
    );

    // The whole local log deleted: the remote copy still has the last checkpoint's hash.
    std::fs::remove_dir_all(&dir).unwrap();
    let (code, out) = audit::verify(&dir);
    assert_eq!(code, 2, "without the remote copy, only an I/O error: {out}");
    let (code, out) = audit::verify_remote(&dir, &copy);
    eprintln!("sekisho log verify --remote on a deleted log:\n{out}");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the log directory is gone"), "{out}");
    assert!(
        out.contains(&format!("checkpoint seq {last_seq}")) && out.contains(&last_hash),
        "names the last checkpoint shipped:\n{out}"
    );
}

#[tokio::test]
async fn shipping_reconnects_after_the_receiver_drops_the_connection() {
    let receiver = SyslogReceiver::start_closing_first_after(2);
    let stack = Stack::start(Context::A, shipping_to(&receiver));
    // Requests go on until one made after the drop is on the receiver's second connection.
    let mut i = 0;
    assert_eventually_async!(Duration::from_secs(20), {
        i += 1;
        let path = format!("/public/after-{i}");
        assert_eq!(status(&stack, &path).await, Some(200));
        receiver.connections() >= 2 && receiver.records().iter().any(|r| r["path"] == path.as_str())
    });
    assert_eq!(receiver.errors(), Vec::<String>::new());
}

#[tokio::test]
async fn the_benchmark_switch_that_turns_the_log_off_is_refused_outside_a_benchmark() {
    let mut stack = Stack::start(Context::A, |spec| spec);
    assert!(stack.gateway.terminate(Duration::from_secs(10)).is_some());
    let policy = std::fs::read_to_string(&stack.gateway.policy_path).unwrap();
    let path = stack.gateway.policy_path.with_file_name("no-log.toml");
    std::fs::write(&path, policy + "\n[log]\ndanger_disable_audit = true\n").unwrap();
    let (mut child, stderr) = sekisho_tests::gateway::spawn_run(&path);
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert_eventually_async!(
        Duration::from_secs(5),
        stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("danger_disable_audit = true turns the access log off")),
        "{:?}",
        stderr.lock().unwrap()
    );
}

#[tokio::test]
async fn records_reach_an_https_endpoint_in_json_batches_and_refused_batches_are_sent_again() {
    let sink = HttpsLogSink::start_refusing_first(2);
    let (url, ca) = (sink.url(), sink.ca_file.display().to_string());
    let mut stack = Stack::start(Context::A, move |spec| {
        spec.log("checkpoint_interval", "\"200ms\"")
            .log_remote("https", &toml_str(&url))
            .log_remote("ca_file", &toml_str(&ca))
    });
    assert_eq!(status(&stack, "/admin/").await, Some(403));
    assert_eq!(status(&stack, "/public/").await, Some(200));
    assert!(stack.gateway.terminate(Duration::from_secs(15)).is_some());
    assert_eventually_async!(
        Duration::from_secs(5),
        sink.records()
            .last()
            .is_some_and(|(_, l)| l.contains("\"kind\":\"checkpoint\""))
            && sink.records().iter().any(|(_, l)| l.contains("\"kind\":\"stop\""))
    );
    assert_eq!(sink.errors(), Vec::<String>::new());
    assert_eq!(sink.batches().1, 2, "the first two batches were refused");
    // Acknowledged delivery: the refused batches came again, so the copy is the whole log,
    // in order, byte for byte.
    let dir = stack.gateway.log_dir();
    let got: Vec<String> = sink.records().into_iter().map(|(_, l)| l).collect();
    assert_eq!(got, audit::lines(&dir));
    assert!(sink.records().iter().all(|(g, _)| g == "admin.gw.test"));

    let copy = dir.parent().unwrap().join("https-copy.jsonl");
    sink.write_copy(&copy);
    let (code, out) = audit::verify_remote(&dir, &copy);
    assert_eq!(code, 0, "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
    let (code, out) = audit::verify_remote(&dir, &copy);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the log directory is gone"), "{out}");
}
