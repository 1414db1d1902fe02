//! The `sekisho` command line, run as a real process: exit codes, messages, and the PKI
//! files it writes, checked with independent tools (openssl) where one exists.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::path::Path;
#[path = "support/process.rs"]
mod process;
use process::{sekisho, text};
use std::process::Command;

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sekisho-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const REFERENCE: &str = include_str!("../../policy/tests/data/policy-reference.toml");

#[test]
fn policy_check_accepts_the_reference_policy() {
    let dir = tempdir("check-ok");
    let file = dir.join("policy.toml");
    std::fs::write(&file, REFERENCE).unwrap();
    let out = sekisho(&["policy", "check", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(": ok"), "{}", text(&out));
}

#[test]
fn policy_check_reports_every_error_with_its_place_and_exits_1() {
    let dir = tempdir("check-bad");
    let file = dir.join("bad.toml");
    let bad = REFERENCE
        .replace("access = \"deny\"", "access = \"deny\"\nallow_all = true")
        .replace("203.0.113.0/24", "203.0.113.7/24");
    std::fs::write(&file, bad).unwrap();
    let out = sekisho(&["policy", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("allow_all"), "unknown key reported: {t}");
    assert!(t.contains("203.0.113.0/24"), "remedy for host bits offered: {t}");
    assert!(t.contains(&format!("{}:", file.display())), "file named: {t}");
}

#[test]
fn policy_explain_says_why() {
    let dir = tempdir("explain");
    let file = dir.join("policy.toml");
    std::fs::write(&file, REFERENCE).unwrap();
    let f = file.to_str().unwrap();
    let out = sekisho(&["policy", "explain", f, "--ip", "198.51.100.1", "--path", "/wp-admin/"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out).to_lowercase();
    assert!(t.contains("deny"), "{t}");
    assert!(t.contains("wordpress-admin"), "{t}");

    let out = sekisho(&["policy", "explain", f, "--ip", "198.51.100.1", "--path", "/products/1"]);
    assert!(text(&out).to_lowercase().contains("allow"), "{}", text(&out));

    let out = sekisho(&[
        "policy",
        "explain",
        f,
        "--ip",
        "198.51.100.1",
        "--path",
        "/%2e%2e/wp-admin",
    ]);
    assert!(text(&out).contains("400"), "{}", text(&out));
}

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn ca_init_issue_and_revoke_write_files_openssl_agrees_with() {
    assert!(
        openssl_available(),
        "openssl is needed for this test (.ci/run installs it)"
    );
    let dir = tempdir("pki");
    let ca = dir.join("ca");
    let out = sekisho(&["ca", "init", ca.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let again = sekisho(&["ca", "init", ca.to_str().unwrap()]);
    assert!(!again.status.success(), "a second init must not overwrite the CA");

    let key_mode = std::fs::metadata(ca.join("device-ca.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key_mode.permissions().mode() & 0o777, 0o600);

    let p12 = dir.join("alice.p12");
    let out = sekisho(&[
        "device",
        "issue",
        "alice-laptop",
        "--user",
        "alice",
        "--ca",
        ca.to_str().unwrap(),
        "--out",
        p12.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));

    // The bundle opens with its password in an independent implementation.
    let password = std::fs::read_to_string(dir.join("alice.p12.password")).unwrap();
    let opened = Command::new("openssl")
        .args(["pkcs12", "-in", p12.to_str().unwrap(), "-nodes", "-passin"])
        .arg(format!("pass:{}", password.trim()))
        .output()
        .unwrap();
    assert!(opened.status.success(), "openssl pkcs12: {}", text(&opened));
    let pem = String::from_utf8_lossy(&opened.stdout);
    assert!(
        pem.contains("BEGIN CERTIFICATE") && pem.contains("PRIVATE KEY"),
        "{pem}"
    );

    // The certificate chains to the CA and carries clientAuth and the user SAN.
    let cert = dir.join("alice.p12.crt.pem");
    let verify = Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(ca.join("device-ca.pem"))
        .arg(&cert)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify));
    let shown = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let shown = text(&shown);
    assert!(shown.contains("TLS Web Client Authentication"), "{shown}");
    assert!(shown.contains("URI:urn:sekisho:user:alice"), "{shown}");

    // Revocation puts the serial on a CRL signed by the CA.
    let out = sekisho(&["device", "revoke", "--ca", ca.to_str().unwrap(), cert.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let crl = ca.join("device-ca.crl.pem");
    let crl_text = Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(&crl)
        .arg("-CAfile")
        .arg(ca.join("device-ca.pem"))
        .output()
        .unwrap();
    assert!(crl_text.status.success(), "{}", text(&crl_text));
    assert!(text(&crl_text).contains("verify OK"), "{}", text(&crl_text));
    let serial = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let serial = text(&serial).trim().trim_start_matches("serial=").to_string();
    assert!(
        text(&crl_text).to_uppercase().contains(&serial.to_uppercase()),
        "serial {serial} in CRL: {}",
        text(&crl_text)
    );
    let verify_crl = Command::new("openssl")
        .args(["verify", "-crl_check", "-CAfile"])
        .arg(ca.join("device-ca.pem"))
        .arg("-CRLfile")
        .arg(&crl)
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        !verify_crl.status.success(),
        "openssl must see it revoked: {}",
        text(&verify_crl)
    );
    assert!(text(&verify_crl).contains("revoked"), "{}", text(&verify_crl));
}

#[test]
fn device_revoke_refuses_nonsense() {
    let dir = tempdir("revoke-bad");
    let ca = dir.join("ca");
    assert!(sekisho(&["ca", "init", ca.to_str().unwrap()]).status.success());
    let out = sekisho(&["device", "revoke", "--ca", ca.to_str().unwrap(), "not-a-serial"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("neither a certificate file nor a hex serial"),
        "{}",
        text(&out)
    );
}

#[test]
fn run_refuses_to_start_on_a_bad_policy() {
    let dir = tempdir("run-bad");
    let file = dir.join("p.toml");
    std::fs::write(&file, "version = 2\n").unwrap();
    let out = sekisho(&["run", "--policy", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("p.toml:1:"), "{}", text(&out));
}

#[test]
fn run_refuses_to_start_without_the_certificate_files() {
    let dir = tempdir("run-nocert");
    let file = dir.join("p.toml");
    std::fs::write(&file, REFERENCE).unwrap();
    let out = sekisho(&["run", "--policy", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("/etc/sekisho/tls/cert.pem"), "{}", text(&out));
    assert!(Path::new(&file).exists());
}

#[test]
fn run_refuses_to_start_when_the_acme_directory_ca_is_missing() {
    let dir = tempdir("run-acme-ca");
    let file = dir.join("p.toml");
    let policy: String = REFERENCE
        .lines()
        .filter(|l| !l.starts_with("tls_key"))
        .map(|l| {
            if l.starts_with("tls_cert") {
                "acme = { directory = \"https://127.0.0.1:1/dir\", directory_ca = \"/nonexistent/acme-ca.pem\" }\nhttp_listen = [\"127.0.0.1:0\"]".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&file, policy).unwrap();
    let out = sekisho(&["run", "--policy", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("/nonexistent/acme-ca.pem"), "{}", text(&out));
}

#[test]
fn help_lists_every_command() {
    let out = sekisho(&["--help"]);
    let t = text(&out);
    for cmd in ["run", "policy", "ca", "device", "demo"] {
        assert!(t.contains(cmd), "{cmd} in --help: {t}");
    }
}

#[test]
fn an_invitation_link_uses_public_url_when_the_policy_has_one() {
    // Behind a port mapping (the container listens on 8443, browsers use 443) the link must
    // name the address browsers use.
    let dir = tempdir("public-url");
    let state = dir.join("state");
    let policy = format!(
        "version = 1\n[server]\nlisten = [\"127.0.0.1:8443\"]\nhostnames = [\"admin.example.jp\"]\n\
         public_url = \"https://admin.example.jp\"\ntls_cert = \"/nonexistent.pem\"\ntls_key = \"/nonexistent.key\"\n\
         state_dir = \"{}\"\nlog_dir = \"{}\"\n\
         [[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:9000\"\n\
         [[route]]\nname = \"admin\"\npaths = [\"/admin\"]\nupstream = \"app\"\naccess = \"protected\"\n\
         allow_ips = [\"127.0.0.0/8\"]\nsecond_factor = [\"totp\"]\ngroups = [\"admins\"]\n\
         [[user]]\nname = \"tanaka\"\ngroups = [\"admins\"]\n",
        state.display(),
        dir.join("log").display()
    );
    let file = dir.join("policy.toml");
    std::fs::write(&file, policy).unwrap();
    let out = sekisho(&["user", "--policy", file.to_str().unwrap(), "invite", "tanaka"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("https://admin.example.jp/.sekisho/invite?t="),
        "{}",
        text(&out)
    );
}
