//! `sekisho state backup` / `state restore`: the command line of [`crate::backup`]. Backup
//! asks the running gateway for a snapshot over its control socket, or reads the state
//! directly when none runs; restore needs the gateway stopped and an empty state directory.

use crate::auth::admin::{self, Request};
use crate::backup::{self, Snapshot};
use crate::clock::SharedClock;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct StateArgs {
    /// The policy file the gateway runs on (it names the state directory).
    #[arg(long)]
    policy: PathBuf,
    #[command(subcommand)]
    command: StateCommand,
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// Write an encrypted, consistent copy of the state key, enrolled factors, TOTP steps
    /// and seen devices to FILE (0600). Works while the gateway runs.
    Backup {
        file: PathBuf,
        /// A file holding the passphrase (at least 16 bytes; one trailing newline is ignored).
        #[arg(long)]
        passphrase_file: PathBuf,
    },
    /// Restore FILE into the policy's state directory, which must hold no state; the
    /// gateway must be stopped. Nothing is written unless the whole file decrypts and checks.
    Restore {
        file: PathBuf,
        #[arg(long)]
        passphrase_file: PathBuf,
    },
}

pub fn run(args: StateArgs, clock: SharedClock) -> anyhow::Result<ExitCode> {
    let display = args.policy.display().to_string();
    let text = std::fs::read_to_string(&args.policy).with_context(|| display.clone())?;
    let policy = sekisho_policy::parse(&display, &text).map_err(|d| anyhow::anyhow!("{d}"))?;
    let state_dir = Path::new(&policy.server.state_dir);
    match args.command {
        StateCommand::Backup { file, passphrase_file } => {
            let passphrase = backup::read_passphrase(&passphrase_file)?;
            let (snapshot, from) = match admin::send(&policy, &Request::Backup) {
                Some(reply) => {
                    let reply = reply.map_err(|e| anyhow::anyhow!("the running gateway did not answer: {e}"))?;
                    match reply.backup {
                        Some(s) if reply.ok => (*s, "the running gateway"),
                        _ => anyhow::bail!("the running gateway refused the backup: {}", reply.text),
                    }
                }
                None => (
                    Snapshot::take_offline(state_dir, clock.unix_seconds())?,
                    "the stopped state",
                ),
            };
            let sealed = backup::seal(&snapshot, &passphrase)?;
            backup::write_file(&file, &sealed)?;
            println!(
                "backup of {from} written to {} ({})",
                file.display(),
                snapshot.summary()
            );
            println!("Keep the passphrase apart from the file: the file holds the key that seals TOTP secrets.");
            Ok(ExitCode::SUCCESS)
        }
        StateCommand::Restore { file, passphrase_file } => {
            let passphrase = backup::read_passphrase(&passphrase_file)?;
            let bytes = backup::read_file(&file)?;
            let snapshot = backup::open(&file.display().to_string(), &bytes, &passphrase)?;
            if admin::send(&policy, &Request::Status).is_some() {
                anyhow::bail!(
                    "a gateway is running on {}: stop it before restoring",
                    state_dir.display()
                );
            }
            backup::restore(&snapshot, state_dir)?;
            println!(
                "restored {} into {} ({})",
                file.display(),
                state_dir.display(),
                snapshot.summary()
            );
            println!(
                "The audit log's sealing key is never in a backup: start with an empty log_dir (keep the old \
                 log files to verify with their own key); the first start prints the new verification key."
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
