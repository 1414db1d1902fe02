//! Policy reload as the product does it: the file replaced by rename (as editors and `git
//! pull` do), picked up by the gateway's file watcher without any signal, while clients keep
//! sending requests. A bad file never replaces the good one (corpus POL-005), no request
//! fails during a swap, and every load names its version (sha256, git commit).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step must stop the test with its message"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sekisho_tests::assert_eventually_async;
use sekisho_tests::client::ClientSpec;
use sekisho_tests::contexts::{ADMIN_HOST, Context, OUTSIDER_IP, Stack, pki};
use sekisho_tests::scratch::write_atomically;

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {ADMIN_HOST}\r\n\r\n").into_bytes()
}

/// The path whose decision flips between the two good policies.
const FLIPPING: &str = "/public/late/x";
/// A path every good policy serves.
const STEADY: &str = "/public/";

fn refusals(stack: &Stack) -> usize {
    stack
        .gateway
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("policy reload refused"))
        .count()
}

/// Bad candidates, each refused by a different step (syntax, schema, cross-references, TLS
/// files, encoding), after POL-005 ("syntax error / unknown key / duplicate route") and
/// POL-004 (an empty entry in a groups list).
fn bad_variants(good: &str) -> Vec<Vec<u8>> {
    vec![
        format!("{good}\n[[route]\nname = \"broken\"\n").into_bytes(),
        format!("{good}\nallow_everything = true\n").into_bytes(),
        format!("{good}\n[[route]]\nname = \"site\"\npaths = [\"/dup\"]\naccess = \"deny\"\n").into_bytes(),
        good.replacen("groups = [\"admins\"]", "groups = [\"admins\", \"\"]", 1)
            .into_bytes(),
        good.replacen("tls_cert = \"", "tls_cert = \"/nonexistent", 1)
            .into_bytes(),
        Vec::new(),
        [good.as_bytes(), b"\n# \xff\xfe not UTF-8\n"].concat(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_by_rename_under_load_fail_no_request_and_bad_files_never_win() {
    let stack = Arc::new(Stack::start(Context::A, |spec| {
        spec.limit("policy_poll_interval", "\"100ms\"")
    }));
    let path = stack.gateway.policy_path.clone();
    let open = std::fs::read_to_string(&path).unwrap();
    let closed = format!("{open}\n[[route]]\nname = \"late-deny\"\npaths = [\"/public/late\"]\naccess = \"deny\"\n");
    let bad = bad_variants(&open);
    let addr = stack.gateway.addr;

    // Clients: fresh connections and one keep-alive connection, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for n in 0..3 {
        let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            let spec = ClientSpec::new(pki(), addr, OUTSIDER_IP, ADMIN_HOST);
            while !stop.load(Ordering::Relaxed) {
                let target = if n % 2 == 0 { STEADY } else { FLIPPING };
                let answer = spec.exchange(&get(target), 1).await;
                sent.fetch_add(1, Ordering::Relaxed);
                let ok = matches!(
                    (target, answer.status()),
                    (STEADY, Some(200)) | (FLIPPING, Some(200 | 403))
                );
                if !ok {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{target}: {}", answer.describe()));
                }
            }
        }));
    }
    {
        let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            let spec = ClientSpec::new(pki(), addr, OUTSIDER_IP, ADMIN_HOST);
            let mut conn = spec.connect().await.expect("keep-alive connection");
            while !stop.load(Ordering::Relaxed) {
                let answer = conn.request(&get(STEADY)).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if answer.status() != Some(200) {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("keep-alive: {}", answer.describe()));
                    conn = spec.connect().await.expect("reconnect");
                }
            }
        }));
    }

    let status = |p: &'static str| {
        let spec = ClientSpec::new(pki(), addr, OUTSIDER_IP, ADMIN_HOST);
        async move { spec.exchange(&get(p), 1).await.status() }
    };
    let started = Instant::now();
    let mut expected = 200;
    for i in 0..100 {
        if i % 2 == 0 {
            // A good file: the other of the two policies.
            let (text, want) = if expected == 200 { (&closed, 403) } else { (&open, 200) };
            write_atomically(&path, text.as_bytes());
            expected = want;
            assert_eventually_async!(
                Duration::from_secs(10),
                status(FLIPPING).await == Some(expected),
                "reload {i}: the good policy is not applied:\n{}",
                stack.gateway.stderr_text()
            );
        } else {
            let before = refusals(&stack);
            write_atomically(&path, &bad[(i / 2) % bad.len()]);
            assert_eventually_async!(
                Duration::from_secs(10),
                refusals(&stack) > before,
                "reload {i}: the bad file is not refused:\n{}",
                stack.gateway.stderr_text()
            );
            assert_eq!(
                status(FLIPPING).await,
                Some(expected),
                "reload {i}: the last good policy keeps deciding"
            );
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:#?}",
        failures.len()
    );
    assert!(sent > 100, "the clients kept sending ({sent} requests)");
    let activated = stack
        .gateway
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("policy activated"))
        .count();
    assert!(activated >= 50, "{activated} activations logged");
    eprintln!("100 reloads in {elapsed:?}; {sent} requests, none failed");
}

#[tokio::test]
async fn a_reload_names_the_git_commit_of_the_checkout_beside_the_file() {
    let stack = Stack::start(Context::A, |spec| spec.limit("policy_poll_interval", "\"100ms\""));
    let path = stack.gateway.policy_path.clone();
    let dir = path.parent().unwrap();
    let commit = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c";
    std::fs::create_dir_all(dir.join(".git/refs/heads")).unwrap();
    std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(dir.join(".git/refs/heads/main"), format!("{commit}\n")).unwrap();
    let text = format!("{}\n# a reviewed change\n", std::fs::read_to_string(&path).unwrap());
    write_atomically(&path, text.as_bytes());
    let sha: String = ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eventually_async!(
        Duration::from_secs(30),
        stack
            .gateway
            .stderr_lines()
            .iter()
            .any(|l| l.contains("policy activated") && l.contains(commit) && l.contains(&sha)),
        "no activation line with the commit and the sha256:\n{}",
        stack.gateway.stderr_text()
    );
    // Access records made under the new policy name both.
    let answer = stack
        .client(OUTSIDER_IP, ADMIN_HOST)
        .exchange(b"GET /public/ HTTP/1.1\r\nHost: admin.gw.test\r\n\r\n", 1)
        .await;
    assert_eq!(answer.status(), Some(200), "{}", answer.describe());
    let log = std::fs::read_to_string(stack.gateway.access_log()).unwrap();
    let last = log
        .lines()
        .rfind(|l| l.contains("\"kind\":\"access\""))
        .unwrap_or_else(|| panic!("no access record:\n{log}"));
    assert!(last.contains(&format!("\"policy\":\"{sha}\"")), "{last}");
    assert!(last.contains(&format!("\"policy_commit\":\"{commit}\"")), "{last}");
}
