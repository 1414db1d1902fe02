//! `sekisho policy …`: check, lint, test, diff, explain and schema — the policy-as-code
//! commands. Every command reads the files it is given and hands their text to the pure
//! policy library; output is one line per finding or test, fit for CI logs.
//!
//! Exit codes: 0 clean, 1 a policy problem (errors, failed tests, warnings under
//! `--deny-warnings`), 2 anything else (a file that cannot be read).

use clap::Subcommand;
use sekisho_policy::{Effect, Policy, Severity};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files: exit 0 when every file is clean, 1 on any error.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Lint policy files beyond validity: open admin paths, secrets, wide allowlists,
    /// shadowed routes, plain-HTTP upstreams, timeouts, users without email.
    Lint {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Exit 1 on warnings too.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Run the policy's `[[test]]` tables (and those of a side file) through the gateway's
    /// own decision: one line per test, then `N passed, M failed`.
    Test {
        file: PathBuf,
        /// A file of further `[[test]]` tables.
        #[arg(long)]
        tests: Option<PathBuf>,
    },
    /// Say who gains or loses access to what between two policies.
    Diff { old: PathBuf, new: PathBuf },
    /// Print the JSON Schema of policy format 1 (for editor completion).
    Schema,
    /// Say what the policy decides for a request, and why.
    Explain {
        file: PathBuf,
        /// The client address.
        #[arg(long)]
        ip: IpAddr,
        /// The request path (raw, as a client would send it).
        #[arg(long)]
        path: String,
        /// The host (default: the policy's first hostname).
        #[arg(long)]
        host: Option<String>,
        /// A device certificate (PEM) presented by the client, assumed valid and unrevoked.
        #[arg(long)]
        device_cert: Option<PathBuf>,
    },
}

/// Runs one policy command.
pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Check { files } => Ok(policy_check(&files)),
        PolicyCommand::Lint { files, deny_warnings } => policy_lint(&files, deny_warnings),
        PolicyCommand::Test { file, tests } => policy_test(&file, tests.as_deref()),
        PolicyCommand::Diff { old, new } => policy_diff(&old, &new),
        PolicyCommand::Schema => {
            print!("{}", sekisho_policy::json_schema());
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Explain {
            file,
            ip,
            path,
            host,
            device_cert,
        } => policy_explain(&file, ip, &path, host.as_deref(), device_cert.as_deref()),
    }
}

fn policy_check(files: &[PathBuf]) -> ExitCode {
    let mut bad = false;
    for file in files {
        let display = file.display().to_string();
        match std::fs::read_to_string(file) {
            Err(e) => {
                eprintln!("{display}: error: cannot read: {e}");
                bad = true;
            }
            Ok(text) => match sekisho_policy::parse(&display, &text) {
                Ok(policy) => println!(
                    "{display}: ok ({} routes, policy {})",
                    policy.routes.len(),
                    short(&policy.id)
                ),
                Err(diagnostics) => {
                    eprint!("{diagnostics}");
                    bad = true;
                }
            },
        }
    }
    if bad { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// Reads and parses a policy file; on parse errors prints them and returns `None`.
fn load(file: &Path) -> anyhow::Result<Option<(String, Policy)>> {
    let display = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{display}: cannot read: {e}"))?;
    match sekisho_policy::parse(&display, &text) {
        Ok(p) => Ok(Some((text, p))),
        Err(d) => {
            eprintln!("{d}");
            Ok(None)
        }
    }
}

fn policy_lint(files: &[PathBuf], deny_warnings: bool) -> anyhow::Result<ExitCode> {
    let (mut errors, mut warnings) = (0usize, 0usize);
    for file in files {
        let Some((text, policy)) = load(file)? else {
            errors += 1;
            continue;
        };
        let display = file.display().to_string();
        let mut findings = sekisho_policy::lint(&policy, &display, &text);
        findings.extend(sekisho_policy::lint_files(&display, &text, &file_facts(&policy)));
        for f in findings {
            match f.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            println!("{f}");
        }
    }
    println!("lint: {errors} error(s), {warnings} warning(s)");
    let fail = errors > 0 || (deny_warnings && warnings > 0);
    Ok(if fail { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// What lint needs from the files a policy names. A file that cannot be read here (a policy
/// repository's CI without the host's certificates) yields no fact, hence no finding.
/// Paths are read as the gateway reads them (relative to the working directory).
fn file_facts(policy: &Policy) -> sekisho_policy::FileFacts {
    let mut facts = sekisho_policy::FileFacts::default();
    if let sekisho_policy::ServerCertificate::Files { cert, .. } = &policy.server.certificate
        && let Ok(pem) = std::fs::read(cert)
    {
        facts.tls_cert_self_signed = crate::tls::self_signed_subject(&pem);
    }
    facts
}

fn policy_test(file: &Path, side: Option<&Path>) -> anyhow::Result<ExitCode> {
    let Some((text, policy)) = load(file)? else {
        return Ok(ExitCode::from(1));
    };
    let mut tests = match sekisho_policy::read_tests(&file.display().to_string(), &text, false) {
        Ok(t) => t,
        Err(d) => {
            eprintln!("{d}");
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(side) = side {
        let display = side.display().to_string();
        let side_text = std::fs::read_to_string(side).map_err(|e| anyhow::anyhow!("{display}: cannot read: {e}"))?;
        match sekisho_policy::read_tests(&display, &side_text, true) {
            Ok(t) => tests.extend(t),
            Err(d) => {
                eprintln!("{d}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    if tests.is_empty() {
        println!("no [[test]] tables found: a test run without tests proves nothing");
        return Ok(ExitCode::from(1));
    }
    let results = sekisho_policy::run_tests(&policy, &tests);
    let failed = results.iter().filter(|r| !r.passed).count();
    for (r, t) in results.iter().zip(&tests) {
        if r.passed {
            println!("ok   {} ({})", r.name, r.place);
        } else {
            let want = match &t.reason {
                Some(reason) => format!("{} ({reason})", t.expect),
                None => t.expect.to_string(),
            };
            println!(
                "FAIL {} ({}): expected {want}, got {} ({})",
                r.name, r.place, r.got, r.reason
            );
            for line in r.explanation.lines() {
                println!("     {line}");
            }
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn policy_diff(old: &Path, new: &Path) -> anyhow::Result<ExitCode> {
    let (Some((_, a)), Some((_, b))) = (load(old)?, load(new)?) else {
        return Ok(ExitCode::from(1));
    };
    let changes = sekisho_policy::diff(&a, &b);
    println!("policy {} → {}", short(&a.id), short(&b.id));
    if changes.is_empty() {
        println!("no change in who may reach what");
    }
    for c in &changes {
        println!("{c}");
    }
    let count = |e| changes.iter().filter(|c| c.effect == e).count();
    println!(
        "{} change(s): {} widen access, {} narrow it, {} neutral",
        changes.len(),
        count(Effect::Widens),
        count(Effect::Narrows),
        count(Effect::Neutral)
    );
    Ok(ExitCode::SUCCESS)
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn policy_explain(
    file: &std::path::Path,
    ip: IpAddr,
    raw_path: &str,
    host: Option<&str>,
    device_cert: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let display = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{display}: cannot read: {e}"))?;
    let policy = match sekisho_policy::parse(&display, &text) {
        Ok(p) => p,
        Err(d) => {
            eprint!("{d}");
            return Ok(ExitCode::from(1));
        }
    };
    let host = match host {
        Some(h) => h.to_ascii_lowercase(),
        None => policy.server.hostnames.first().cloned().unwrap_or_default(),
    };
    if !policy.serves_host(&host) {
        println!("deny (421): host {host:?} is not served by this policy");
        return Ok(ExitCode::SUCCESS);
    }
    let target = match sekisho_policy::canonicalize_target(raw_path) {
        Ok(t) => t,
        Err(e) => {
            println!("deny (400): the path is refused before any route is looked at: {e}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let device = match device_cert {
        None => None,
        Some(pem_path) => {
            let pem = std::fs::read(pem_path)?;
            let der = <rustls_pki_types::CertificateDer<'_> as rustls_pki_types::pem::PemObject>::from_pem_slice(&pem)
                .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate: {e}", pem_path.display()))?;
            let cert = crate::device::DeviceCert::from_der(der.as_ref());
            if let Some(defect) = cert.defect {
                println!("note: this certificate can never identify a device: {defect}");
                None
            } else {
                Some(sekisho_policy::DeviceFacts {
                    fingerprint: cert.fingerprint,
                    user: cert.user,
                    name: cert.name,
                })
            }
        }
    };
    let facts = sekisho_policy::Facts {
        host: &host,
        path: &target.path,
        client_ip: crate::forwarded::canonical(ip),
        device: device.as_ref(),
        session: None,
    };
    let explanation = sekisho_policy::explain(&policy, &facts);
    println!("{explanation}");
    Ok(ExitCode::SUCCESS)
}
