//! `sekisho status` against the real binary: the running gateway reports the policy it
//! serves (the sha256 of the file's bytes), its CRL, certificate, connections and log,
//! exits 0 when healthy, and once the gateway is stopped says so and exits 3.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step must stop the test with its message"
)]

use std::process::{Command, Output};
use std::time::Duration;

use sekisho_tests::contexts::{Context, Stack};

fn status(stack: &Stack) -> Output {
    Command::new(sekisho_tests::gateway::binary())
        .arg("status")
        .arg("--policy")
        .arg(&stack.gateway.policy_path)
        .output()
        .unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn status_reports_the_running_gateway_and_then_that_none_runs() {
    let mut stack = Stack::start(Context::A, |spec| spec);
    let policy = std::fs::read(&stack.gateway.policy_path).unwrap();

    let out = status(&stack);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "healthy gateway:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&sha256_hex(&policy)), "policy sha256 missing:\n{text}");
    assert!(
        text.contains(&stack.gateway.addr.to_string()),
        "listener missing:\n{text}"
    );
    for field in [
        "running since",
        "generation    1",
        "device CRL",
        "server cert     notAfter",
        "connections",
        "sessions",
        "audit log       writable, last seq",
    ] {
        assert!(text.contains(field), "{field:?} missing:\n{text}");
    }
    assert!(!text.contains("attention"), "{text}");

    assert!(
        stack.gateway.terminate(Duration::from_secs(10)).is_some(),
        "the gateway did not stop"
    );
    let out = status(&stack);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(3),
        "no gateway:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("no gateway is running"), "{text}");
}
