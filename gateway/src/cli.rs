//! The command line, parsed in two levels: what the user typed (clap) → what each command
//! needs. Errors become exit codes here and only here.

use crate::clock;
use clap::{Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "sekisho",
    version,
    about = "Sekisho (関所): an admin-access gateway that lets a request through only when the policy says so",
    long_about = "Sekisho stands in front of admin screens and forwards a request only when its \
source address, device certificate and second factor satisfy the policy (one TOML file)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway. SIGTERM/SIGINT stop it gracefully; SIGHUP reloads the policy (a bad
    /// file keeps the old one serving).
    Run {
        /// The policy file (format 1).
        #[arg(long)]
        policy: PathBuf,
    },
    /// Check, explain and inspect policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Manage the device CA.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Issue and revoke device certificates.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Run a self-contained demo: self-signed certificates, a device certificate, a demo
    /// upstream and a demo policy, on 127.0.0.1.
    Demo {
        /// Where the demo keeps its files (default: a new directory under the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The gateway's port.
        #[arg(long, default_value_t = 8443)]
        port: u16,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
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

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create a device CA and an empty CRL in DIR.
    Init { dir: PathBuf },
    /// Re-sign the CRL (new nextUpdate) without revoking anything.
    RefreshCrl {
        #[arg(long)]
        ca: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Issue a device certificate (clientAuth) for USER as a PKCS#12 bundle.
    Issue {
        /// The device's name (the certificate's CN).
        name: String,
        #[arg(long)]
        user: String,
        /// The device CA directory.
        #[arg(long)]
        ca: PathBuf,
        /// Where to write the .p12 (the password goes to FILE.password, PEM beside it).
        #[arg(long)]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Revoke a device certificate by serial (hex) or by its PEM file; rewrites the CRL that
    /// a running gateway picks up within seconds.
    Revoke {
        /// The device CA directory.
        #[arg(long)]
        ca: PathBuf,
        /// A hex serial number or a PEM certificate file.
        which: String,
    },
}

/// Runs the command line and maps the outcome to an exit code: 0 success, 1 a refusal
/// (policy errors), 2 anything else.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sekisho: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let clock = clock::system();
    match cli.command {
        Command::Run { policy } => {
            init_tracing();
            crate::server::run(policy, clock)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            command: PolicyCommand::Check { files },
        } => Ok(policy_check(&files)),
        Command::Policy {
            command:
                PolicyCommand::Explain {
                    file,
                    ip,
                    path,
                    host,
                    device_cert,
                },
        } => policy_explain(&file, ip, &path, host.as_deref(), device_cert.as_deref()),
        Command::Ca {
            command: CaCommand::Init { dir },
        } => {
            crate::pki::ca_init(&dir, clock.as_ref())?;
            println!("device CA created in {}", dir.display());
            println!("  certificate: {}", dir.join(crate::pki::CA_CERT).display());
            println!("  CRL:         {}", dir.join(crate::pki::CA_CRL).display());
            println!(
                "  key:         {} (keep it secret; 0600)",
                dir.join(crate::pki::CA_KEY).display()
            );
            println!(
                "In the policy: device_ca = \"{}\"",
                dir.join(crate::pki::CA_CERT).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Ca {
            command: CaCommand::RefreshCrl { ca },
        } => {
            crate::pki::write_crl(&ca, clock.as_ref())?;
            println!("CRL re-signed: {}", ca.join(crate::pki::CA_CRL).display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Device {
            command:
                DeviceCommand::Issue {
                    name,
                    user,
                    ca,
                    out,
                    days,
                },
        } => {
            let issued = crate::pki::device_issue(&ca, &name, &user, &out, days, clock.as_ref())?;
            println!("device certificate for {user} issued: serial {}", issued.serial_hex);
            println!("  PKCS#12:  {}", issued.p12.display());
            println!("  password: {}", issued.password_file.display());
            println!(
                "  PEM:      {} and {}",
                issued.cert_pem.display(),
                issued.key_pem.display()
            );
            println!("  sha256:   {}", issued.fingerprint);
            Ok(ExitCode::SUCCESS)
        }
        Command::Device {
            command: DeviceCommand::Revoke { ca, which },
        } => {
            let serial = crate::pki::device_revoke(&ca, &which, clock.as_ref())?;
            println!(
                "revoked serial {serial}; CRL rewritten: {}",
                ca.join(crate::pki::CA_CRL).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { dir, port } => {
            init_tracing();
            crate::demo::run(dir, port, clock)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEKISHO_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
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
