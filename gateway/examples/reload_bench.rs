//! Benchmark (not a test): how long a reload of a 1,000-route policy takes — read, parse,
//! validate, compile the matcher, build TLS — and how fast lint and a lookup are on it.
//! Run: `cargo run --release -p sekisho --example reload_bench`. Goal: reload ≤ 50 ms.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark program")]

use std::fmt::Write as _;
use std::time::Instant;

fn main() {
    let dir = std::env::temp_dir().join(format!("sekisho-reload-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca");
    sekisho::pki::ca_init(&ca, sekisho::clock::system().as_ref()).unwrap();
    // A server certificate: the device CA's own certificate and key are enough for timing.
    let cert = ca.join(sekisho::pki::CA_CERT);
    let key = ca.join(sekisho::pki::CA_KEY);
    let mut text = format!(
        "version = 1\n[server]\nlisten = [\"127.0.0.1:8443\"]\nhostnames = [\"shop.example.jp\", \"admin.example.jp\"]\n\
         tls_cert = {:?}\ntls_key = {:?}\ndevice_ca = {:?}\nclient_certificates = \"request\"\n\
         [[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:8080\"\n",
        cert.display().to_string(),
        key.display().to_string(),
        cert.display().to_string()
    );
    for u in 0..50 {
        let _ = write!(
            text,
            "[[user]]\nname = \"user{u}\"\nemail = \"u{u}@example.jp\"\ngroups = [\"g{}\"]\n",
            u % 10
        );
    }
    for r in 0..1000 {
        let access = ["public", "protected", "deny"][r % 3];
        let _ = write!(
            text,
            "[[route]]\nname = \"r{r}\"\npaths = [\"/section{}/page{r}\", \"/api/v{r}\"]\naccess = \"{access}\"\n",
            r % 37
        );
        if access != "deny" {
            text.push_str("upstream = \"app\"\nallow_ips = [\"203.0.113.0/24\", \"2001:db8::/32\"]\n");
        }
        if access == "protected" {
            let _ = write!(
                text,
                "second_factor = [\"webauthn\", \"totp\"]\ngroups = [\"g{}\"]\n",
                r % 10
            );
        }
    }
    let file = dir.join("policy.toml");
    std::fs::write(&file, &text).unwrap();
    println!("policy: 1000 routes, 2000 paths, 50 users, {} bytes", text.len());

    let runs = 20;
    let mut best = f64::MAX;
    let mut total = 0.0;
    for _ in 0..runs {
        let t = Instant::now();
        let v = sekisho::gateway::Candidate::read(&file)
            .unwrap()
            .validate(&sekisho::acme::Certs::default())
            .unwrap();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        std::hint::black_box(v);
        best = best.min(ms);
        total += ms;
    }
    println!(
        "reload (read + parse + validate + matcher + TLS): best {best:.2} ms, mean {:.2} ms over {runs}",
        total / f64::from(runs)
    );

    let t = Instant::now();
    let policy = sekisho_policy::parse("policy.toml", &text).unwrap();
    println!(
        "parse + validate + matcher only: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let findings = sekisho_policy::lint(&policy, "policy.toml", &text);
    println!(
        "lint: {:.2} ms ({} findings)",
        t.elapsed().as_secs_f64() * 1e3,
        findings.len()
    );
    let t = Instant::now();
    let n = 100_000;
    for i in 0..n {
        std::hint::black_box(policy.route_for("shop.example.jp", &format!("/section{}/page{}/x", i % 37, i % 1000)));
    }
    println!(
        "route lookup: {:.0} ns each",
        t.elapsed().as_secs_f64() * 1e9 / f64::from(n)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
