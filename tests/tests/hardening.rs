//! The running gateway holds no privilege it could lose to an intruder (issue 7): no
//! capabilities in any thread, `no_new_privs`, not dumpable, no core files, the user it was
//! told to become, and Landlock keeps it out of every directory but its own, which a policy
//! reload naming a file elsewhere shows for real.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step must stop the test with its message"
)]

use std::path::Path;
use std::time::Duration;

use sekisho_tests::assert_eventually_async;
use sekisho_tests::contexts::{ADMIN_HOST, Context, OUTSIDER_IP, Stack, pki};

/// An unprivileged uid and gid with no entry in /etc/passwd (numeric, as in the image).
const RUN_AS: u32 = 65532;

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {ADMIN_HOST}\r\n\r\n").into_bytes()
}

/// `Key:\tvalue` lines of a `/proc/…/status` file.
fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in:\n{status}"))
}

/// The status of every thread of `pid` (capabilities and ids are per thread).
fn thread_statuses(pid: u32) -> Vec<(String, String)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let statuses: Vec<(String, String)> = tasks
        .map(|t| {
            let t = t.unwrap().path();
            let name = t.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(t.join("status")).unwrap())
        })
        .collect();
    assert!(statuses.len() > 1, "the runtime's threads are there too");
    statuses
}

fn assert_unprivileged(pid: u32, uid: u32, gid: u32) {
    for (tid, status) in thread_statuses(pid) {
        for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(field(&status, cap), "0000000000000000", "thread {tid}: {cap}\n{status}");
        }
        assert_eq!(field(&status, "NoNewPrivs"), "1", "thread {tid}\n{status}");
        let ids = |key| {
            field(&status, key)
                .split_whitespace()
                .map(|n| n.parse::<u32>().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids("Uid"),
            [uid; 4],
            "thread {tid}: real, effective, saved, fs uid\n{status}"
        );
        assert_eq!(
            ids("Gid"),
            [gid; 4],
            "thread {tid}: real, effective, saved, fs gid\n{status}"
        );
        assert_eq!(
            field(&status, "Groups"),
            "",
            "thread {tid}: no supplementary groups\n{status}"
        );
    }
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    assert_eq!(
        core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
        ["0", "0"],
        "{core}"
    );
    let files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let soft: u64 = files.split_whitespace().nth(3).unwrap().parse().unwrap();
    // The default policy's max_connections (4096) needs 2 × 4096 + 64 + 512.
    assert!(soft >= 8768, "open files sized for the connection cap: {files}");
    // Not dumpable: the kernel gives /proc/PID to root, whoever the process runs as.
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(format!("/proc/{pid}/status")).unwrap());
    assert_eq!(owner, 0, "PR_SET_DUMPABLE 0 makes /proc/{pid} root's");
}

#[tokio::test]
async fn started_as_root_with_user_it_serves_as_that_user_with_no_privilege() {
    let stack = Stack::start_as(Context::A, RUN_AS, RUN_AS);
    let answer = stack
        .client(OUTSIDER_IP, ADMIN_HOST)
        .exchange(&get("/public/"), 1)
        .await;
    assert_eq!(answer.status(), Some(200), "{}", answer.describe());
    assert_unprivileged(stack.gateway.pid(), RUN_AS, RUN_AS);
    // What it wrote belongs to the user it became.
    let log = stack.gateway.access_log();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&log).unwrap()),
        RUN_AS
    );
}

#[tokio::test]
async fn started_as_root_without_user_it_keeps_uid_0_but_no_capability_and_says_so() {
    let stack = Stack::start(Context::A, |spec| spec);
    assert_unprivileged(stack.gateway.pid(), 0, 0);
    assert!(
        stack.gateway.stderr_text().contains("started as root without --user"),
        "{}",
        stack.gateway.stderr_text()
    );
}

/// Landlock, for real: the same certificate files load from the gateway's own directory
/// but not from a directory it was not given, although file permissions allow both.
#[tokio::test]
async fn a_reload_naming_a_file_outside_its_directories_is_refused_by_landlock() {
    let stack = Stack::start_as(Context::A, RUN_AS, RUN_AS);
    let gw = &stack.gateway;
    let policy = std::fs::read_to_string(&gw.policy_path).unwrap();
    let (cert, key) = (&pki().server.cert_pem_path, &pki().server.key_pem_path);
    assert!(policy.contains(&*cert.to_string_lossy()), "{policy}");

    let outside = sekisho_tests::scratch::dir("outside");
    let moved = |dir: &Path| {
        let (c, k) = (dir.join("moved-cert.pem"), dir.join("moved-key.pem"));
        std::fs::copy(cert, &c).unwrap();
        std::fs::copy(key, &k).unwrap();
        for f in [&c, &k] {
            // Readable by anyone: only Landlock stands in the way.
            std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        }
        policy
            .replace(&*cert.to_string_lossy(), &c.to_string_lossy())
            .replace(&*key.to_string_lossy(), &k.to_string_lossy())
    };

    std::fs::write(&gw.policy_path, moved(&outside)).unwrap();
    gw.reload();
    assert_eventually_async!(
        Duration::from_secs(10),
        gw.stderr_text().contains("policy reload refused"),
        "a certificate outside the allowed directories was loaded:\n{}",
        gw.stderr_text()
    );
    let text = gw.stderr_text();
    let refusal = text
        .lines()
        .skip_while(|l| !l.contains("policy reload refused"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        refusal.contains("moved-cert.pem") && refusal.contains("Permission denied"),
        "{refusal}"
    );

    // The same files beside the policy (a directory it was given) are accepted.
    let own_dir = gw.policy_path.parent().unwrap().to_path_buf();
    std::fs::write(&gw.policy_path, moved(&own_dir)).unwrap();
    gw.reload();
    assert_eventually_async!(
        Duration::from_secs(10),
        {
            let text = gw.stderr_text();
            text.rfind("policy activated") > text.rfind("policy reload refused")
        },
        "the same certificate beside the policy is not loaded:\n{}",
        gw.stderr_text()
    );
    let answer = stack
        .client(OUTSIDER_IP, ADMIN_HOST)
        .exchange(&get("/public/"), 1)
        .await;
    assert_eq!(answer.status(), Some(200), "{}", answer.describe());
}

/// A state directory the --user user could not write is refused at start, with the remedy.
#[tokio::test]
async fn a_state_directory_the_user_does_not_own_is_refused_with_the_remedy() {
    let mut stack = Stack::start(Context::A, |spec| spec);
    stack.gateway.stop();
    let (mut child, stderr) = sekisho_tests::gateway::spawn_run_with(
        &stack.gateway.policy_path,
        &["--user".to_string(), format!("{RUN_AS}:{RUN_AS}")],
    );
    sekisho_tests::assert_eventually!(Duration::from_secs(10), child.try_wait().unwrap().is_some());
    let status = child.wait().unwrap();
    let text = stderr.lock().unwrap().join("\n");
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(
        text.contains("belongs to uid 0, not 65532") && text.contains("chown -R 65532:65532"),
        "{text}"
    );
}
