//! Docs are tested: the README's example policy and every policy under `deploy/` must be
//! accepted by the same parser the gateway runs, `--help` must name what the README and
//! deploy/GUIDE.md document, and the systemd unit and compose file must run this binary
//! the way ARCHITECTURE.md says.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn readme_example_policy_is_valid() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut blocks = readme.split("```toml\n").skip(1);
    let block = blocks.next().expect("README has a ```toml block");
    let policy = block.split("```").next().unwrap();
    if let Err(d) = sekisho_policy::parse("README.md", policy) {
        panic!("README policy:\n{d}");
    }
}

#[test]
fn every_policy_under_deploy_is_valid() {
    let mut found = 0;
    let mut stack = vec![repo().join("deploy")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                if let Err(d) = sekisho_policy::parse(&path.display().to_string(), &text) {
                    panic!("{d}");
                }
                found += 1;
            }
        }
    }
    assert!(found >= 1, "deploy/ holds at least one policy");
}

#[test]
fn deploy_reference_is_the_shared_reference_verbatim() {
    // The reference policy is format 1's definition: the copy under deploy/ must not drift
    // from the one the policy crate's tests pin.
    let a = std::fs::read_to_string(repo().join("deploy/policies/reference.toml")).unwrap();
    let b = std::fs::read_to_string(repo().join("policy/tests/data/policy-reference.toml")).unwrap();
    assert_eq!(a, b);
}

#[test]
fn readme_commands_exist_in_help() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for line in readme.lines().filter(|l| l.starts_with("sekisho ")) {
        assert_command_exists("the README", line);
    }
}

/// The README's ACME lines, put in place of `tls_cert`/`tls_key` in its example policy, make a
/// valid policy whose certificate comes from ACME.
#[test]
fn readme_acme_example_is_valid_in_the_example_policy() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    let acme = blocks
        .iter()
        .find(|b| b.contains("acme = {"))
        .expect("README shows the acme key");
    let policy: String = blocks[0]
        .lines()
        .filter(|l| !l.starts_with("tls_key"))
        .map(|l| {
            if l.starts_with("tls_cert") {
                acme.trim_end().to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    match sekisho_policy::parse("README.md", &policy) {
        Ok(p) => assert!(p.server.acme().is_some() && !p.server.http_listen.is_empty()),
        Err(d) => panic!("README acme example:\n{d}\n{policy}"),
    }
}

#[test]
fn readme_log_table_shows_the_defaults() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut blocks = readme
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap());
    let policy = blocks.next().unwrap();
    let log = blocks
        .find(|b| b.starts_with("[log]"))
        .expect("README shows a [log] table");
    let p = sekisho_policy::parse("README.md", &format!("{policy}\n{log}")).unwrap_or_else(|d| panic!("{d}"));
    assert!(p.log.remote.is_some());
    let defaults = sekisho_policy::LogSettings {
        remote: p.log.remote.clone(),
        ..sekisho_policy::LogSettings::default()
    };
    assert_eq!(p.log, defaults, "the README's [log] values are the defaults");
}

/// The subcommand words of a documented command line (`sekisho state --policy F backup …`
/// → `state`), run with `--help`: the command must exist.
fn assert_command_exists(doc: &str, line: &str) {
    let words: Vec<&str> = line
        .split_whitespace()
        .take_while(|w| !w.starts_with("--") && w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect();
    let args: Vec<&str> = words[1..].iter().copied().chain(["--help"]).collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sekisho"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`sekisho {}` from {doc}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn guide_commands_exist_in_help() {
    let guide = std::fs::read_to_string(repo().join("deploy/GUIDE.md")).unwrap();
    let mut n = 0;
    for line in guide.lines().map(str::trim).filter(|l| l.starts_with("sekisho ")) {
        assert_command_exists("deploy/GUIDE.md", line);
        n += 1;
    }
    assert!(n >= 20, "the guide shows its commands ({n})");
    assert!(
        guide.contains("## English") && guide.contains("## 日本語"),
        "both languages"
    );
}

#[test]
fn the_systemd_unit_runs_an_existing_command_behind_the_fence() {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/sekisho.service")).unwrap();
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    let command = exec.trim_start_matches("/usr/local/bin/");
    assert_command_exists("deploy/systemd/sekisho.service", command);
    for setting in [
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "StateDirectory=sekisho",
        "LogsDirectory=sekisho",
        "PrivateTmp=yes",
        "LimitCORE=0",
        "landlock_restrict_self",
    ] {
        assert!(unit.lines().any(|l| l.contains(setting)), "the unit lacks {setting}");
    }
}

#[test]
fn compose_runs_this_version_read_only_on_the_policy_beside_it() {
    let compose = std::fs::read_to_string(repo().join("deploy/compose/compose.yaml")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        compose.contains(&format!("image: sekisho:{version}")),
        "image tag {version}"
    );
    for needle in [
        "read_only: true",
        "user: \"65532:65532\"",
        "cap_drop: [ALL]",
        "- ./sekisho:/etc/sekisho:ro",
        "\"--policy\", \"/etc/sekisho/policy.toml\"",
    ] {
        assert!(compose.contains(needle), "compose.yaml lacks {needle}");
    }
    assert!(repo().join("deploy/compose/sekisho/policy.toml").is_file());
}
