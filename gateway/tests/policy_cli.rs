//! `sekisho policy check|lint|test|diff|schema` as a real process, and every example policy
//! under `deploy/` passing check, lint and its own tests (as CI runs them).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};
#[path = "support/process.rs"]
mod process;
use process::{sekisho, text};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn deploy_policies() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![repo().join("deploy")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_example_policy_passes_check_lint_and_its_tests() {
    let policies = deploy_policies();
    assert!(policies.len() >= 4, "{policies:?}");
    for p in &policies {
        let file = p.to_str().unwrap();
        let out = sekisho(&["policy", "check", file]);
        assert!(out.status.success(), "check {file}: {}", text(&out));
        // The shared reference stays verbatim (it defines format 1) and serves `/` publicly
        // without denying /admin, /.env …: lint reports that as an error, by design.
        if p.ends_with("policies/reference.toml") {
            let out = sekisho(&["policy", "lint", file]);
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            assert!(text(&out).contains("error[public-admin-path]"), "{}", text(&out));
            continue;
        }
        // vpn-portal's management route is deliberately narrower than the portal, so no
        // warning either: every example is warning-free.
        let out = sekisho(&["policy", "lint", "--deny-warnings", file]);
        assert!(out.status.success(), "lint {file}: {}", text(&out));
        let out = sekisho(&["policy", "test", file]);
        assert!(out.status.success(), "test {file}: {}", text(&out));
        assert!(text(&out).contains(" passed, 0 failed"), "{}", text(&out));
    }
}

#[test]
fn the_policy_repository_ci_script_passes() {
    let repo_dir = repo().join("deploy/policy-repo");
    let bin = env!("CARGO_BIN_EXE_sekisho");
    let out = Command::new("sh")
        .arg(repo_dir.join("ci.sh"))
        .env("SEKISHO", bin)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sekisho-policy-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_failing_test_says_why_and_exits_1() {
    let dir = tempdir("fail");
    let policy = repo().join("deploy/policies/wordpress.toml");
    let side = dir.join("more.toml");
    std::fs::write(
        &side,
        "[[test]]\nname = \"hoped for\"\nrequest = { ip = \"198.51.100.7\", path = \"/wp-admin/\" }\nexpect = \"allow\"\n",
    )
    .unwrap();
    let out = sekisho(&[
        "policy",
        "test",
        policy.to_str().unwrap(),
        "--tests",
        side.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("FAIL hoped for (") && t.contains("expected allow, got deny (address_not_allowed)"),
        "{t}"
    );
    assert!(t.contains("outside allow_ips"), "the explanation is printed: {t}");
    assert!(t.contains("8 passed, 1 failed"), "{t}");
}

#[test]
fn lint_warnings_fail_only_with_deny_warnings() {
    let dir = tempdir("lint");
    let file = dir.join("p.toml");
    let base = std::fs::read_to_string(repo().join("deploy/policies/wordpress.toml")).unwrap();
    std::fs::write(&file, base.replace("email = \"tanaka@shop.example.jp\"\n", "")).unwrap();
    let f = file.to_str().unwrap();
    let out = sekisho(&["policy", "lint", f]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("warning[user-without-email]"), "{}", text(&out));
    let out = sekisho(&["policy", "lint", "--deny-warnings", f]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    std::fs::write(
        &file,
        format!("{base}\n# api_token = ghp_0123456789abcdefghijklmnopqrstuvwxyz\n"),
    )
    .unwrap();
    let out = sekisho(&["policy", "lint", f]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("error[secret-in-policy]"), "{}", text(&out));
}

#[test]
fn diff_summarises_who_gains_access() {
    let dir = tempdir("diff");
    let old = repo().join("deploy/policies/wordpress.toml");
    let new = dir.join("new.toml");
    let text_old = std::fs::read_to_string(&old).unwrap();
    std::fs::write(
        &new,
        text_old.replace(
            "\"203.0.113.0/24\", \"2001:db8:1::/48\"",
            "\"203.0.113.0/24\", \"2001:db8:1::/48\", \"192.0.2.0/24\"",
        ),
    )
    .unwrap();
    let out = sekisho(&["policy", "diff", old.to_str().unwrap(), new.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("+ route 'wordpress-admin' allow_ips widened: now also 192.0.2.0/24"),
        "{}",
        text(&out)
    );
}

#[test]
fn schema_is_json_and_offers_every_key_of_the_reference() {
    let out = sekisho(&["policy", "schema"]);
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let reference = std::fs::read_to_string(repo().join("deploy/policies/reference.toml")).unwrap();
    let mut table = String::new();
    for line in reference.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            assert!(
                schema["properties"][name]["items"]["properties"].is_object(),
                "[[{name}]]"
            );
            table = format!("{name}[]");
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            assert!(schema["properties"][name]["properties"].is_object(), "[{name}]");
            table = name.to_string();
        } else if let Some((key, _)) = line.split_once(" = ").filter(|_| !line.starts_with('#')) {
            let node = match table.strip_suffix("[]") {
                _ if table.is_empty() => &schema["properties"][key],
                Some(t) => &schema["properties"][t]["items"]["properties"][key],
                None => &schema["properties"][table.as_str()]["properties"][key],
            };
            assert!(node.is_object(), "{table}.{key} missing from the schema");
        }
    }
}

#[test]
fn lint_refuses_a_self_signed_server_certificate_but_not_an_issued_one() {
    let dir = tempdir("self-signed");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Shop CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["shop.example.jp".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &rcgen::Issuer::from_params(&ca, &ca_key))
        .unwrap();
    let (self_signed, issued) = (dir.join("self-signed.pem"), dir.join("issued.pem"));
    std::fs::write(&self_signed, ca_cert.pem()).unwrap();
    std::fs::write(&issued, leaf.pem()).unwrap();

    let base = std::fs::read_to_string(repo().join("deploy/policies/wordpress.toml")).unwrap();
    let cert_line = base
        .lines()
        .find(|l| l.starts_with("tls_cert"))
        .expect("wordpress.toml names tls_cert")
        .to_owned();
    let with_cert = |path: &Path| base.replace(&cert_line, &format!("tls_cert = \"{}\"", path.display()));
    let file = dir.join("p.toml");
    let f = file.to_str().unwrap();

    std::fs::write(&file, with_cert(&self_signed)).unwrap();
    let out = sekisho(&["policy", "lint", f]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("error[self-signed-certificate]") && t.contains("CN=Shop CA"),
        "{t}"
    );
    assert!(
        t.contains(&format!("{f}:")) && t.contains("acme = {"),
        "place and remedy: {t}"
    );

    // Marked as a demo (as `sekisho demo` writes it): a warning only.
    std::fs::write(&file, format!("# sekisho:demo\n{}", with_cert(&self_signed))).unwrap();
    let out = sekisho(&["policy", "lint", f]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("warning[self-signed-certificate]"),
        "{}",
        text(&out)
    );

    std::fs::write(&file, with_cert(&issued)).unwrap();
    let out = sekisho(&["policy", "lint", "--deny-warnings", f]);
    assert!(out.status.success(), "{}", text(&out));
}
