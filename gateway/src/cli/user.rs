//! `sekisho user …`: the host console's part of enrolment and user administration. The
//! command reads the policy to find the state directory, then asks the running gateway
//! over its control socket, or (no gateway running) opens the state itself.

use crate::auth::admin::{self, Request};
use crate::clock::SharedClock;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct UserArgs {
    /// The policy file the gateway runs on (it names the state directory and the users).
    #[arg(long)]
    policy: PathBuf,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Print a one-time enrolment link for NAME (valid for --minutes, usable once, only
    /// from where NAME may reach a protected route).
    Invite {
        name: String,
        #[arg(long, default_value_t = crate::auth::INVITE_TTL / 60)]
        minutes: i64,
    },
    /// Every policy user with their state and enrolled factors.
    List,
    /// One user's factors (with the ids `remove-factor` takes).
    Show { name: String },
    /// Remove one factor; the user's sessions end.
    RemoveFactor { name: String, id: String },
    /// Disable a user; their sessions end at once.
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
}

pub fn run(args: UserArgs, clock: SharedClock) -> anyhow::Result<ExitCode> {
    let display = args.policy.display().to_string();
    let text = std::fs::read_to_string(&args.policy).map_err(|e| anyhow::anyhow!("{display}: {e}"))?;
    let policy = sekisho_policy::parse(&display, &text).map_err(|d| anyhow::anyhow!("{d}"))?;
    let req = match args.command {
        UserCommand::Invite { name, minutes } => Request::Invite { user: name, minutes },
        UserCommand::List => Request::List,
        UserCommand::Show { name } => Request::Show { user: name },
        UserCommand::RemoveFactor { name, id } => Request::RemoveFactor { user: name, id },
        UserCommand::Disable { name } => Request::Disable { user: name },
        UserCommand::Enable { name } => Request::Enable { user: name },
    };
    let reply = match admin::send(&policy, &req) {
        Some(r) => r.map_err(|e| anyhow::anyhow!("the running gateway did not answer: {e}"))?,
        None => {
            let auth = crate::auth::Auth::open(std::path::Path::new(&policy.server.state_dir), clock)?;
            admin::execute(&auth, &policy, &req)
        }
    };
    if reply.ok {
        print!("{}", reply.text);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("sekisho: {}", reply.text);
        Ok(ExitCode::from(1))
    }
}
