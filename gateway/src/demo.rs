//! `sekisho demo`: everything needed to see the gateway work on one machine — a server
//! certificate for `localhost`, a device CA with one device certificate, a demo upstream,
//! and a policy with a public page, a protected admin area and a blocked path.

use crate::clock::SharedClock;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Writes the demo files, starts the demo upstream and runs the gateway.
pub fn run(dir: Option<PathBuf>, port: u16, clock: SharedClock) -> anyhow::Result<()> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("sekisho-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let upstream_port = free_port()?;
    let policy_path = write_files(&dir, port, upstream_port, clock.clone())?;

    let upstream = std::net::TcpListener::bind(("127.0.0.1", upstream_port))?;
    upstream.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "demo upstream cannot start");
                return;
            }
        };
        rt.block_on(demo_upstream(upstream));
    });

    println!("Sekisho demo");
    println!("  files:    {}", dir.display());
    println!("  policy:   {}", policy_path.display());
    println!();
    println!("Try it (in another terminal):");
    println!("  curl -k https://localhost:{port}/                  # public: reaches the demo upstream");
    println!("  curl -k https://localhost:{port}/admin/            # protected: 403 without a device certificate");
    println!(
        "  curl -k --cert {0}/device-alice.p12.crt.pem --key {0}/device-alice.p12.key.pem https://localhost:{port}/admin/",
        dir.display()
    );
    println!("                                                     # device present: 401, a second factor is required");
    println!("  curl -k https://localhost:{port}/.git/config       # blocked: 403, never forwarded");
    println!(
        "  sekisho policy explain {} --ip 127.0.0.1 --path /admin/",
        policy_path.display()
    );
    println!();
    println!(
        "Import {}/device-alice.p12 into a browser (password in device-alice.p12.password),",
        dir.display()
    );
    println!("then open alice's one-time enrolment link (valid for an hour, usable once) and");
    println!("enrol a passkey or a TOTP app; /admin/ then passes with the second factor:");
    println!("  {}", demo_invitation(&policy_path, clock.clone())?.trim());
    println!();
    // Not hardened: the demo's upstream runs on a thread of this process.
    crate::server::run(policy_path, clock, None)
}

/// Makes alice's enrolment invitation in the demo's state, before the gateway opens it.
fn demo_invitation(policy_path: &Path, clock: SharedClock) -> anyhow::Result<String> {
    let display = policy_path.display().to_string();
    let text = std::fs::read_to_string(policy_path)?;
    let policy = sekisho_policy::parse(&display, &text).map_err(|d| anyhow::anyhow!("{d}"))?;
    let auth = crate::auth::Auth::open(Path::new(&policy.server.state_dir), clock)?;
    let reply = crate::auth::admin::execute(
        &auth,
        &policy,
        &crate::auth::admin::Request::Invite {
            user: "alice".to_owned(),
            minutes: 60,
        },
    );
    if !reply.ok {
        anyhow::bail!("demo invitation: {}", reply.text);
    }
    Ok(reply.text)
}

fn write_files(dir: &Path, port: u16, upstream_port: u16, clock: SharedClock) -> anyhow::Result<PathBuf> {
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir)?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Sekisho demo (self-signed)");
    let cert = params.self_signed(&key)?;
    crate::pki::write_atomic(&tls_dir.join("cert.pem"), cert.pem().as_bytes())?;
    crate::pki::write_atomic(&tls_dir.join("key.pem"), key.serialize_pem().as_bytes())?;

    let ca = dir.join("device-ca");
    if !ca.join(crate::pki::CA_KEY).exists() {
        crate::pki::ca_init(&ca, clock.as_ref())?;
    }
    crate::pki::device_issue(
        &ca,
        "alice-laptop",
        "alice",
        &dir.join("device-alice.p12"),
        30,
        clock.as_ref(),
    )?;

    let policy = format!(
        r#"# Sekisho demo policy (written by `sekisho demo`).
# sekisho:demo — its certificate is self-signed on purpose; lint says so only as a warning.
version = 1

[server]
listen = ["127.0.0.1:{port}"]
hostnames = ["localhost"]
tls_cert = "{tls}/cert.pem"
tls_key = "{tls}/key.pem"
device_ca = "{ca}/device-ca.pem"
client_certificates = "request"
trusted_proxies = []
state_dir = "{dir}/state"
log_dir = "{dir}/log"

[[upstream]]
name = "demo"
url = "http://127.0.0.1:{upstream_port}"

[[route]]
name = "public"
paths = ["/"]
upstream = "demo"
access = "public"

[[route]]
name = "admin"
paths = ["/admin"]
upstream = "demo"
access = "protected"
allow_ips = ["127.0.0.0/8", "::1/128"]
require_device = true
second_factor = ["webauthn", "totp"]
groups = ["admins"]

[[route]]
name = "blocked"
paths = ["/.git", "/.env"]
access = "deny"

[[user]]
name = "alice"
email = "alice@example.invalid"
groups = ["admins"]
"#,
        tls = tls_dir.display(),
        ca = ca.display(),
        dir = dir.display(),
    );
    let path = dir.join("policy.toml");
    crate::pki::write_atomic(&path, policy.as_bytes())?;
    Ok(path)
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// A tiny upstream that says which path and headers reached it.
async fn demo_upstream(listener: std::net::TcpListener) {
    use http_body_util::Full;
    use hyper::service::service_fn;
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                let mut text = format!("demo upstream reached: {} {}\n", req.method(), req.uri());
                for (name, value) in req.headers() {
                    if name.as_str().starts_with("x-") {
                        text.push_str(&format!("{}: {}\n", name, value.to_str().unwrap_or("<binary>")));
                    }
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(bytes::Bytes::from(text))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}
