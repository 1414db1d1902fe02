//! The command line, parsed in two levels: what the user typed (clap) → what each command
//! needs. Errors become exit codes here and only here.

use crate::clock;
use clap::{Parser, Subcommand};

mod log;
mod policy;
mod state;
mod status;
mod user;
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
    ///
    /// After binding its listeners the process hardens itself: no capabilities,
    /// no_new_privs, not dumpable, no core files, and Landlock limits it to the policy's
    /// directories (read) and its state and log directories (read and write).
    Run {
        /// The policy file (format 1).
        #[arg(long)]
        policy: PathBuf,
        /// When started as root: the numeric user (and group) to become after binding,
        /// e.g. `--user 65532:65532`. Without it a root start stays uid 0, with no capabilities.
        #[arg(long, value_name = "UID[:GID]")]
        user: Option<crate::harden::RunAs>,
        /// Start even where the kernel does not enforce Landlock (logged at every start).
        #[arg(long)]
        danger_allow_no_landlock: bool,
    },
    /// Ask the running gateway what it serves and whether anything needs attention
    /// (device CRL or server certificate near expiry, access log failing). Exit 0 healthy,
    /// 1 needs attention, 3 no gateway running.
    Status {
        /// The policy file the gateway runs on (it names the state directory and its socket).
        #[arg(long)]
        policy: PathBuf,
    },
    /// Check, explain and inspect policy files.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// The signed access log: initialise its key, verify, export and search it.
    Log {
        #[command(subcommand)]
        command: log::LogCommand,
    },
    /// Users' second factors: invitations (the only way to enrol), listing, removing a
    /// factor, disabling and enabling.
    User {
        #[command(flatten)]
        args: user::UserArgs,
    },
    /// Back up and restore the state (state key and enrolled factors), encrypted.
    State {
        #[command(flatten)]
        args: state::StateArgs,
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
/// (policy errors; `status`: needs attention), 2 anything else, 3 (`status`) no gateway running.
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
        Command::Run {
            policy,
            user,
            danger_allow_no_landlock,
        } => {
            init_tracing();
            let hardening = crate::harden::Options {
                user,
                danger_allow_no_landlock,
            };
            crate::server::run(policy, clock, Some(&hardening))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { policy } => status::run(&policy),
        Command::Policy { command } => policy::run(command),
        Command::User { args } => user::run(args, clock),
        Command::State { args } => state::run(args, clock),
        Command::Log { command } => log::run(command, clock.as_ref()),
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
