//! `sekisho state backup` / `state restore` through the real binary (issue 7): a backup of
//! a running gateway, taken after an enrolment, brings the same administrator back in on a
//! host whose state was lost; a changed file or a wrong passphrase restores nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step must stop the test with its message"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sekisho_tests::contexts::{ADMIN_IP, Context, Stack};
use sekisho_tests::login::{enc, enrol_totp, get, input, oathtool, post, send_from};

/// `sekisho state --policy P ARGS…`.
fn state(policy: &Path, args: &[&Path]) -> Output {
    Command::new(sekisho_tests::gateway::binary())
        .arg("state")
        .arg("--policy")
        .arg(policy)
        .args(args)
        .output()
        .expect("run sekisho state")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(list) => list.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn a_backup_brings_the_enrolled_admin_back_and_a_changed_or_wrongly_keyed_file_restores_nothing() {
    let mut stack = Stack::start(Context::A, |s| s);
    let (secret, _) = enrol_totp(&stack, "alice").await;
    let policy = stack.gateway.policy_path.clone();
    let gw_dir = policy.parent().unwrap().to_path_buf();

    let dir = sekisho_tests::scratch::dir("backup");
    let pass = dir.join("passphrase");
    std::fs::write(&pass, "a long random passphrase, kept apart\n").unwrap();
    let file = dir.join("sekisho.backup");
    let dash = |s: &'static str| Path::new(s);

    // While the gateway runs: it takes the snapshot itself.
    let out = state(&policy, &[dash("backup"), &file, dash("--passphrase-file"), &pass]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("running gateway"), "{}", text(&out));
    let sealed = std::fs::read(&file).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        !sealed.windows(5).any(|w| w == b"alice"),
        "nothing readable in the file"
    );

    // The host loses its state (and starts a new audit log: its seal is never backed up).
    stack.gateway.stop();
    let state_dir = gw_dir.join("state");
    std::fs::rename(&state_dir, gw_dir.join("state.lost")).unwrap();
    std::fs::rename(gw_dir.join("log"), gw_dir.join("log.lost")).unwrap();

    // One flipped byte, a cut file, a wrong passphrase: refused, and nothing written.
    let mut flipped = sealed.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let changed = dir.join("changed.backup");
    std::fs::write(&changed, &flipped).unwrap();
    let cut = dir.join("cut.backup");
    std::fs::write(&cut, &sealed[..sealed.len() - 7]).unwrap();
    let wrong = dir.join("wrong-passphrase");
    std::fs::write(&wrong, "another passphrase of some length").unwrap();
    for (f, p) in [(&changed, &pass), (&cut, &pass), (&file, &wrong)] {
        let out = state(&policy, &[dash("restore"), f, dash("--passphrase-file"), p]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains("wrong passphrase, or the file was changed or cut"),
            "{}",
            text(&out)
        );
        assert!(!state_dir.exists(), "a refused restore wrote {:?}", entries(&state_dir));
    }

    let out = state(&policy, &[dash("restore"), &file, dash("--passphrase-file"), &pass]);
    assert!(out.status.success(), "{}", text(&out));
    let restored = entries(&state_dir);
    assert_eq!(
        restored.len(),
        2,
        "the key and the database, no staging left: {restored:?}"
    );

    // Restore fills an empty state directory only.
    let again = state(&policy, &[dash("restore"), &file, dash("--passphrase-file"), &pass]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        text(&again).contains("restore fills an empty state directory only"),
        "{}",
        text(&again)
    );

    // The restored gateway knows alice's TOTP secret (sealed with the restored key).
    stack.gateway.restart();
    let login = send_from(&stack, ADMIN_IP, true, get("/.sekisho/login", "")).await;
    let csrf = input(&login.text(), "csrf");
    let code = oathtool(&secret, "+30 seconds");
    let ok = send_from(
        &stack,
        ADMIN_IP,
        true,
        post(
            "/.sekisho/login/totp",
            "",
            &format!("csrf={}&user=alice&code={code}&return=%2Fadmin%2F", enc(&csrf)),
        ),
    )
    .await;
    assert_eq!(ok.status, 303, "{}\n{}", ok.text(), stack.gateway.stderr_text());

    // A stopped gateway's state is backed up directly.
    stack.gateway.stop();
    let offline = dir.join("offline.backup");
    let out = state(&policy, &[dash("backup"), &offline, dash("--passphrase-file"), &pass]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("stopped state"), "{}", text(&out));
}
