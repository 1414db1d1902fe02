//! Benchmark (not a test): records per second chained, sealed (a checkpoint every 1,000
//! records) and fsynced in batches by the audit writer, with many callers waiting for
//! durability at once, as the gateway's requests do.
//!
//! `cargo run --release --example audit_bench -- [DIR] [CALLERS] [RECORDS_PER_CALLER]`
//! (DIR defaults to a new directory under the system temp dir, on the disk it is on).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark program")]

use sekisho::audit::{AccessRecord, AuditLog, Event, Settings};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map_or_else(
        || std::env::temp_dir().join(format!("sekisho-audit-bench-{}", std::process::id())),
        Into::into,
    );
    let callers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(512);
    let per_caller: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let log = Arc::new(
        AuditLog::open_with(
            &dir.join("log"),
            &dir.join("state"),
            sekisho::clock::system(),
            Settings::default(),
        )
        .unwrap(),
    );
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..callers {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..per_caller {
                    let path = format!("/admin/users/{c}/{i}");
                    let rec = AccessRecord {
                        peer: "203.0.113.9".into(),
                        client: Some("203.0.113.9".into()),
                        method: "GET",
                        host: Some("admin.example.jp"),
                        path: Some(&path),
                        raw_target: None,
                        route: Some("admin"),
                        outcome: "allow",
                        reason: "allowed",
                        status: 200,
                        bytes: Some(5120),
                        device: Some("3f7c2a9e0d4b8f1a6c5e2d7b9a0f3c1e8d6b4a2f0e9c7b5a3d1f8e6c4b2a0d9f"),
                        device_problem: None,
                        user: Some("alice"),
                        upstream_ms: Some(12),
                        policy: "9b1d4e0c7a2f5b8e3d6c9a1f4e7b0d3c6a9f2e5b8d1c4a7f0e3b6d9c2a5f8e1b",
                        policy_commit: None,
                    };
                    log.record(&Event::Access(rec)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let elapsed = started.elapsed();
    log.close();
    let total = callers * per_caller;
    let bytes: u64 = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "{total} records by {callers} waiting callers in {:.2} s: {:.0} records/s durable ({} bytes on disk, {:.0} B/record)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        bytes,
        bytes as f64 / total as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
