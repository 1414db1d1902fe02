//! `sekisho policy …`: check, explain (and the other policy-as-code commands). Every
//! command reads files it is given and hands their text to the pure policy library.

use clap::Subcommand;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files: exit 0 when every file is clean, 1 on any error.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
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
