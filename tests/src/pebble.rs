//! A real ACME CA on loopback: Debian's `pebble`, with `pebble-challtestsrv` as its DNS
//! server (every name resolves to 127.0.0.1, so validation never leaves the machine).
//! Free ports, a certificate for pebble's own listener made here, its validation ports
//! pointed at the gateway under test (`httpPort`, `tlsPort`), and optionally a short
//! certificate lifetime (`certificateValidityPeriod`) to force renewals.
//!
//! A missing `pebble` fails the test: it is a dependency (`.ci/run` installs it), never a
//! reason to skip.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls_pki_types::{CertificateDer, ServerName};

use crate::{ports, scratch};

/// How long pebble may take to answer its directory.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// What pebble validates against and how long its certificates live.
#[derive(Clone, Copy, Debug)]
pub struct PebbleSpec {
    /// The port http-01 validation connects to (the gateway's `http_listen`).
    pub http_port: u16,
    /// The port tls-alpn-01 validation connects to (the gateway's TLS `listen`).
    pub tls_port: u16,
    /// Certificate lifetime in seconds (`None`: pebble's default, about five years).
    pub validity_secs: Option<u64>,
}

/// A running pebble (and its DNS server); both stopped on drop.
#[derive(Debug)]
pub struct Pebble {
    /// `https://127.0.0.1:PORT/dir`.
    pub directory: String,
    /// The management interface (roots, intermediates), `127.0.0.1:PORT`.
    pub management: SocketAddr,
    /// The CA of pebble's own listener certificate (the gateway's `directory_ca`).
    pub listener_ca: PathBuf,
    listener_ca_der: CertificateDer<'static>,
    pebble: Child,
    dns: Child,
}

fn installed(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Pebble {
    /// Starts pebble-challtestsrv (DNS only) and pebble, and waits for the directory.
    pub fn start(spec: PebbleSpec) -> Pebble {
        for tool in ["pebble", "pebble-challtestsrv"] {
            assert!(
                installed(tool),
                "`{tool}` is not installed: `apt-get install pebble` (.ci/run does); the ACME tests need a real CA"
            );
        }
        let dir = scratch::dir("pebble");
        // pebble's listener: a CA made here and a certificate for 127.0.0.1 and localhost.
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::default();
        ca.distinguished_name
            .push(DnType::CommonName, "sekisho test: pebble listener CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign the listener CA");
        let listener_ca = dir.join("listener-ca.pem");
        std::fs::write(&listener_ca, ca_cert.pem()).expect("write the listener CA");
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
        leaf.subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        let leaf_key = KeyPair::generate().expect("leaf key");
        let issuer = Issuer::from_params(&ca, &ca_key);
        let leaf_cert = leaf
            .signed_by(&leaf_key, &issuer)
            .expect("sign the listener certificate");
        let (cert_path, key_path) = (dir.join("listener.pem"), dir.join("listener.key"));
        std::fs::write(&cert_path, leaf_cert.pem()).expect("write the listener certificate");
        std::fs::write(&key_path, leaf_key.serialize_pem()).expect("write the listener key");

        let (acme_port, management_port, dns_port, dns_management) = (
            ports::free_port(),
            ports::free_port(),
            ports::free_port(),
            ports::free_port(),
        );
        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble-challtestsrv");

        let mut pebble_conf = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": cert_path,
            "privateKey": key_path,
            "httpPort": spec.http_port,
            "tlsPort": spec.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(secs) = spec.validity_secs {
            pebble_conf["certificateValidityPeriod"] = serde_json::json!(secs);
        }
        let config = dir.join("pebble.json");
        std::fs::write(&config, serde_json::json!({ "pebble": pebble_conf }).to_string()).expect("write pebble.json");
        let log = std::fs::File::create(dir.join("pebble.log")).expect("pebble log");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // Every order validates again: a renewal exercises the challenge too.
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("pebble log"))
            .stderr(log)
            .spawn()
            .expect("start pebble");
        let mut p = Pebble {
            directory: format!("https://127.0.0.1:{acme_port}/dir"),
            management: SocketAddr::from(([127, 0, 0, 1], management_port)),
            listener_ca,
            listener_ca_der: ca_cert.der().clone(),
            pebble,
            dns,
        };
        let acme = SocketAddr::from(([127, 0, 0, 1], acme_port));
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            if p.get(acme, "/dir").is_ok_and(|(status, _)| status == 200) {
                break;
            }
            if let Ok(Some(status)) = p.dns.try_wait() {
                panic!("pebble-challtestsrv exited ({status})");
            }
            if let Ok(Some(status)) = p.pebble.try_wait() {
                panic!(
                    "pebble exited ({status}):\n{}",
                    std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pebble did not answer its directory within {READY_TIMEOUT:?}:\n{}",
                std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default()
            );
            std::thread::sleep(crate::eventually::POLL_INTERVAL);
        }
        p
    }

    /// The root this pebble run signs with (`/roots/0` on the management port; new at
    /// every start).
    pub fn root(&self) -> CertificateDer<'static> {
        let (status, body) = self.get(self.management, "/roots/0").expect("GET /roots/0");
        assert_eq!(status, 200, "GET /roots/0: {}", String::from_utf8_lossy(&body));
        use rustls_pki_types::pem::PemObject as _;
        CertificateDer::from_pem_slice(&body).expect("a PEM root")
    }

    /// Stops pebble (the CA disappears; the DNS server stays).
    pub fn stop(&mut self) {
        let _ = self.pebble.kill();
        let _ = self.pebble.wait();
    }

    /// A blocking HTTPS GET against pebble (trusting the listener CA): status and body.
    fn get(&self, addr: SocketAddr, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.listener_ca_der.clone()).map_err(std::io::Error::other)?;
        let config = rustls::ClientConfig::builder_with_provider(crate::client::provider())
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("127.0.0.1").map_err(std::io::Error::other)?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
        let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        write!(
            tls,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )?;
        tls.flush()?;
        let mut raw = Vec::new();
        match tls.read_to_end(&mut raw) {
            Ok(_) => {}
            // Go's server closes without close_notify.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => return Err(e),
        }
        let (response, _) = crate::client::parse_response(&raw, true)
            .ok_or_else(|| std::io::Error::other("no HTTP response from pebble"))?;
        Ok((response.status, response.body.clone()))
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        let _ = self.dns.kill();
        let _ = self.dns.wait();
    }
}
