//! Automatic certificates (issue 8) through the real binary against a real ACME CA: Debian's
//! `pebble` on loopback, its validation pointed at the gateway's ports. The gateway obtains
//! a certificate with http-01 and with tls-alpn-01 (the served chain verifies against the
//! root pebble made for this run), renews it (short lifetimes) and swaps it in while a
//! keep-alive connection goes on, and when the CA disappears keeps serving the old
//! certificate and says so (status, audit log, notice). Before the first certificate TLS
//! serves nothing, and failed attempts show the same way; after a restart the stored
//! certificate serves at once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step must stop the test with its message"
)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use sekisho_tests::assert_eventually_async;
use sekisho_tests::client::ClientSpec;
use sekisho_tests::gateway::Gateway;
use sekisho_tests::pebble::{Pebble, PebbleSpec};
use sekisho_tests::upstream::EchoUpstream;
use sekisho_tests::{contexts, ports, scratch};

const HOST: &str = "shop.example.jp";

/// How long issuance may take (pebble answers in well under a second here).
const ISSUANCE: Duration = Duration::from_secs(40);

struct Setup {
    pebble: Pebble,
    gateway: Gateway,
    _upstream: EchoUpstream,
    /// The plain listener (http-01), if any.
    http: Option<SocketAddr>,
    dir: PathBuf,
}

/// pebble with its validation pointed at fresh ports, and the gateway on them with an
/// `acme` policy (`challenge`, optional lifetime, extra `[limits]` lines). Free ports are
/// only free a moment: when a test running beside this one took one of them first, the
/// whole setup is made again on new ones.
fn start(challenge: &str, validity_secs: Option<u64>, limits: &str) -> Setup {
    start_with(challenge, validity_secs, limits, false)
}

/// As [`start`]; with `misdirected`, pebble validates http-01 on a port where nothing
/// listens, so every attempt fails.
fn start_with(challenge: &str, validity_secs: Option<u64>, limits: &str, misdirected: bool) -> Setup {
    let mut last = String::new();
    for _ in 0..3 {
        match try_start(challenge, validity_secs, limits, misdirected) {
            Ok(setup) => return setup,
            Err(why) if why.contains("cannot listen") => last = why,
            Err(why) => panic!("{why}"),
        }
    }
    panic!("three port collisions in a row:\n{last}");
}

fn try_start(challenge: &str, validity_secs: Option<u64>, limits: &str, misdirected: bool) -> Result<Setup, String> {
    let tls = ports::free_addr();
    let http = (challenge == "http-01").then(ports::free_addr);
    let pebble = Pebble::start(PebbleSpec {
        http_port: http
            .filter(|_| !misdirected)
            .map_or_else(ports::free_port, |a| a.port()),
        tls_port: tls.port(),
        validity_secs,
    });
    let upstream = EchoUpstream::start("app");
    let dir = scratch::dir("acme-gateway");
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::create_dir_all(dir.join("log")).unwrap();
    let http_listen = http.map_or_else(String::new, |a| format!("http_listen = [\"{a}\"]\n"));
    let policy = format!(
        r#"version = 1

[server]
listen = ["{tls}"]
{http_listen}hostnames = ["{HOST}"]
acme = {{ directory = "{directory}", contact = "mailto:ops@example.jp", challenge = "{challenge}", directory_ca = "{ca}" }}
client_certificates = "off"
state_dir = "{state}"
log_dir = "{log}"

[limits]
acme_retry_min = "1s"
acme_retry_max = "2s"
{limits}

[[upstream]]
name = "app"
url = "{upstream}"

[[route]]
name = "shop"
paths = ["/"]
upstream = "app"
access = "public"
"#,
        directory = pebble.directory,
        ca = pebble.listener_ca.display(),
        state = dir.join("state").display(),
        log = dir.join("log").display(),
        upstream = upstream.url(),
    );
    let policy_path = dir.join("policy.toml");
    std::fs::write(&policy_path, policy).unwrap();
    let gateway = Gateway::try_run_policy(tls, policy_path)?;
    Ok(Setup {
        pebble,
        gateway,
        _upstream: upstream,
        http,
        dir,
    })
}

/// A client of the gateway trusting only `root` (pebble's root of this run).
fn client(gateway: SocketAddr, root: &CertificateDer<'static>) -> ClientSpec {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(sekisho_tests::client::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No resumption: every connection is a full handshake that shows the certificate.
    config.resumption = rustls::client::Resumption::disabled();
    ClientSpec::new(contexts::pki(), gateway, "127.0.0.1", HOST).with_config(Arc::new(config))
}

/// The serial (hex) of the certificate a new, fully verified connection is served, or
/// `None` when the handshake fails (no certificate yet, or one that does not verify).
async fn served_serial(spec: &ClientSpec) -> Option<String> {
    let conn = spec.connect().await.ok()?;
    let leaf = conn.tls.get_ref().1.peer_certificates()?.first()?.clone();
    Some(serial_of(&leaf))
}

fn serial_of(der: &CertificateDer<'_>) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    cert.tbs_certificate
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").into_bytes()
}

fn status_of(policy: &Path) -> (Option<i32>, String) {
    let out = Command::new(sekisho_tests::gateway::binary())
        .arg("status")
        .arg("--policy")
        .arg(policy)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn audit_kinds(setup: &Setup, kind: &str) -> Vec<serde_json::Value> {
    sekisho_tests::audit::lines(&setup.gateway.log_dir())
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == kind)
        .collect()
}

/// Polls `probe` until it yields a value, failing with `what` and the gateway's stderr
/// after [`ISSUANCE`].
async fn eventually_some<T, F: std::future::Future<Output = Option<T>>>(
    setup: &Setup,
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + ISSUANCE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {ISSUANCE:?}; gateway stderr:\n{}",
            setup.gateway.stderr_text()
        );
        tokio::time::sleep(sekisho_tests::eventually::POLL_INTERVAL).await;
    }
}

/// Waits for the first certificate and returns its serial and how long it took.
async fn first_certificate(spec: &ClientSpec, setup: &Setup) -> (String, Duration) {
    let started = Instant::now();
    let serial = eventually_some(setup, "no verified certificate served", || served_serial(spec)).await;
    (serial, started.elapsed())
}

/// The checks both challenge types share: the chain verifies against pebble's root (the
/// handshake of `served_serial` did that), requests are served, the pair is kept in the
/// state directory with mode 0600, the issuance is in the audit log and in `status`.
async fn obtained(setup: &Setup) -> String {
    let spec = client(setup.gateway.addr, &setup.pebble.root());
    let (serial, took) = first_certificate(&spec, setup).await;
    eprintln!("first certificate {serial} served {took:?} after the gateway was ready");
    assert_eq!(spec.exchange(&get("/hello"), 1).await.status(), Some(200));

    let acme_dir = setup.dir.join("state/acme");
    let pair = acme_dir.join("certificate.pem");
    let mode = std::fs::metadata(&pair).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "certificate.pem mode {mode:o}");
    let text = std::fs::read_to_string(&pair).unwrap();
    assert!(
        text.contains("BEGIN CERTIFICATE") && text.contains("PRIVATE KEY"),
        "chain and key"
    );
    let dir_mode = std::fs::metadata(&acme_dir).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700, "state_dir/acme mode {dir_mode:o}");
    let accounts: Vec<_> = std::fs::read_dir(&acme_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("account-"))
        .collect();
    assert_eq!(accounts.len(), 1, "one account file");
    assert_eq!(accounts[0].metadata().unwrap().permissions().mode() & 0o777, 0o600);

    let issued = audit_kinds(setup, "acme_certificate_issued");
    assert!(
        issued
            .iter()
            .any(|r| r["serial"] == serial.as_str() && r["names"][0] == HOST),
        "no acme_certificate_issued record for {serial}: {issued:?}"
    );
    let (code, text) = status_of(&setup.gateway.policy_path);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("serial {serial}")), "{text}");
    serial
}

#[tokio::test]
async fn http01_obtains_a_certificate_that_chains_to_pebbles_root() {
    let setup = start("http-01", None, "");
    let serial = obtained(&setup).await;

    // A policy reload builds a new TLS configuration around the same certificate.
    let policy = setup.gateway.policy_path.clone();
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, format!("{text}\n# reloaded\n")).unwrap();
    assert_eventually_async!(
        Duration::from_secs(10),
        status_of(&policy).1.contains("generation    2"),
        "the edited policy is not reloaded: {}",
        status_of(&policy).1
    );
    let spec = client(setup.gateway.addr, &setup.pebble.root());
    assert_eq!(served_serial(&spec).await.as_deref(), Some(serial.as_str()));

    // The plain listener redirects everything that is not a challenge to https.
    let http = setup.http.unwrap();
    let mut plain = std::net::TcpStream::connect(http).unwrap();
    std::io::Write::write_all(
        &mut plain,
        format!("GET /shop/item?id=1 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut plain, &mut raw).unwrap();
    let (response, _) = sekisho_tests::client::parse_response(&raw, true).unwrap();
    assert_eq!(response.status, 308);
    assert_eq!(
        response.header("location"),
        Some(format!("https://{HOST}:{}/shop/item?id=1", setup.gateway.addr.port()).as_str())
    );
    // An unknown token is not answered.
    let mut plain = std::net::TcpStream::connect(http).unwrap();
    std::io::Write::write_all(
        &mut plain,
        format!("GET /.well-known/acme-challenge/nope HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut plain, &mut raw).unwrap();
    assert_eq!(sekisho_tests::client::parse_response(&raw, true).unwrap().0.status, 404);

    // The plain listener's decisions are access records too: pebble's validation, the
    // redirect and the unknown token.
    assert_eventually_async!(
        Duration::from_secs(10),
        {
            let reasons: Vec<String> = audit_kinds(&setup, "access")
                .iter()
                .filter_map(|r| r["reason"].as_str().map(str::to_owned))
                .collect();
            ["acme_challenge", "redirect_to_https", "acme_challenge_unknown"]
                .iter()
                .all(|want| reasons.iter().any(|r| r == want))
        },
        "plain-listener access records missing: {:?}",
        audit_kinds(&setup, "access")
    );
}

#[tokio::test]
async fn tls_alpn01_obtains_a_certificate_that_chains_to_pebbles_root() {
    let setup = start("tls-alpn-01", None, "");
    obtained(&setup).await;
    assert!(
        setup
            .gateway
            .stderr_text()
            .contains("answered an ACME tls-alpn-01 validation"),
        "{}",
        setup.gateway.stderr_text()
    );
}

#[tokio::test]
async fn renewal_swaps_the_certificate_under_an_open_keep_alive_connection() {
    // 30 s certificates renewed at 10 % of their life: a new one every ~3 s.
    let setup = start("http-01", Some(30), "acme_renew_percent = 10");
    let spec = client(setup.gateway.addr, &setup.pebble.root());
    let (first, _) = first_certificate(&spec, &setup).await;

    let mut kept = spec.connect().await.expect("connect");
    let kept_serial = serial_of(&kept.tls.get_ref().1.peer_certificates().unwrap()[0]);
    assert_eq!(kept.request(&get("/before")).await.status(), Some(200));

    let renewed = eventually_some(&setup, "no renewed certificate", || async {
        served_serial(&spec).await.filter(|s| *s != first && *s != kept_serial)
    })
    .await;

    // The connection made before the swap still answers, on the same TLS session.
    let after = kept.request(&get("/after")).await;
    assert_eq!(after.status(), Some(200), "{after:?}");
    assert!(!kept.is_closed());

    let issued = audit_kinds(&setup, "acme_certificate_issued");
    assert!(
        issued
            .iter()
            .any(|r| r["serial"] == renewed.as_str() && r["replaces"].is_string()),
        "the renewal is recorded with the serial it replaces: {issued:?}"
    );
}

#[tokio::test]
async fn a_vanished_ca_leaves_the_old_certificate_serving_and_the_failure_visible() {
    // Renewal due after 10 % of 60 s; retries every 1–2 s.
    let mut setup = start("http-01", Some(60), "acme_renew_percent = 10");
    let spec = client(setup.gateway.addr, &setup.pebble.root());
    let (first, _) = first_certificate(&spec, &setup).await;
    setup.pebble.stop();

    let policy = setup.gateway.policy_path.clone();
    assert_eventually_async!(
        ISSUANCE,
        status_of(&policy).1.contains("ACME FAILING"),
        "status never showed the failure:\n{}\nstderr:\n{}",
        status_of(&policy).1,
        setup.gateway.stderr_text()
    );
    let (code, text) = status_of(&policy);
    assert_eq!(code, Some(1), "a failing renewal needs attention:\n{text}");
    assert!(
        text.contains("attention: the ACME certificate could not be obtained or renewed"),
        "{text}"
    );
    assert!(text.contains(&format!("serial {first}")), "{text}");

    // The old certificate keeps serving, verified, and requests pass.
    assert_eq!(served_serial(&spec).await.as_deref(), Some(first.as_str()));
    assert_eq!(spec.exchange(&get("/still"), 1).await.status(), Some(200));

    let failed = audit_kinds(&setup, "acme_failed");
    assert!(
        failed.iter().any(|r| r["serving"] == first.as_str()),
        "acme_failed records name the serving certificate: {failed:?}"
    );
    let stderr = setup.gateway.stderr_text();
    assert!(
        stderr.contains("notice:") && stderr.contains("could not be renewed"),
        "the admin notice: {stderr}"
    );
}

#[tokio::test]
async fn until_a_certificate_is_obtained_tls_serves_nothing_and_the_failures_show() {
    let setup = start_with("http-01", None, "", true);
    let spec = client(setup.gateway.addr, &setup.pebble.root());
    let policy = setup.gateway.policy_path.clone();
    assert_eventually_async!(
        ISSUANCE,
        audit_kinds(&setup, "acme_failed").len() >= 2,
        "no repeated acme_failed records; stderr:\n{}",
        setup.gateway.stderr_text()
    );
    let failed = audit_kinds(&setup, "acme_failed");
    assert!(failed.iter().all(|r| r["serving"].is_null()), "{failed:?}");
    assert!(
        failed[1]["failures"].as_u64() > failed[0]["failures"].as_u64(),
        "failures are counted: {failed:?}"
    );
    // Nothing is served under any certificate meanwhile (no self-made stand-in).
    assert_eq!(served_serial(&spec).await, None);
    assert!(spec.exchange(&get("/"), 1).await.responses.is_empty());
    let (code, text) = status_of(&policy);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no certificate yet"), "{text}");
    assert!(text.contains("ACME FAILING"), "{text}");
    let stderr = setup.gateway.stderr_text();
    assert!(
        stderr.contains("notice:") && stderr.contains("could not be obtained"),
        "the admin notice: {stderr}"
    );
}

#[tokio::test]
async fn a_restarted_gateway_serves_its_stored_certificate_without_a_new_order() {
    let mut setup = start("tls-alpn-01", None, "");
    let spec = client(setup.gateway.addr, &setup.pebble.root());
    let (first, _) = first_certificate(&spec, &setup).await;
    assert!(
        setup.gateway.terminate(Duration::from_secs(10)).is_some(),
        "the gateway did not stop"
    );
    setup.gateway = Gateway::try_run_policy(setup.gateway.addr, setup.gateway.policy_path.clone())
        .unwrap_or_else(|why| panic!("restart: {why}"));
    // The first handshake after `ready` already gets the stored certificate.
    assert_eq!(served_serial(&spec).await.as_deref(), Some(first.as_str()));
    assert!(
        setup
            .gateway
            .stderr_text()
            .contains("ACME certificate read from the state directory"),
        "{}",
        setup.gateway.stderr_text()
    );
    assert!(
        !setup.gateway.stderr_text().contains("ACME certificate installed"),
        "no new order while the stored certificate is far from renewal:\n{}",
        setup.gateway.stderr_text()
    );
}
