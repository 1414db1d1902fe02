//! `sekisho log …`: initialise the sealing key, verify a log directory, export and search
//! verified records.
//!
//! Exit codes (for scripts): 0 intact, 1 tampering found, 2 usage or I/O error, 3 intact
//! but the last line is torn (a crash mid-write that no restart has named yet).

use crate::audit::chain;
use crate::audit::query::{self, Filter};
use crate::audit::remote_copy::RemoteCopy;
use crate::audit::seal::SealState;
use crate::audit::verify::{self, Report};
use crate::clock::Clock;
use anyhow::Context as _;
use clap::Subcommand;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit code: tampering found.
const TAMPERED: u8 = 1;
/// Exit code: intact, but the last line is torn.
const TORN: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Create the sealing key in the policy's state_dir and print the verification key,
    /// once: keep it off this host. (`sekisho run` does this by itself on first start.)
    Init {
        /// The policy file (for state_dir).
        #[arg(long)]
        policy: PathBuf,
    },
    /// Check every file of a log directory: the file sequence, the hash chain and every
    /// sealed checkpoint. Exit 0 intact, 1 tampering (the first bad record is named),
    /// 2 usage or I/O error, 3 a torn last line (crash mid-write).
    Verify {
        dir: PathBuf,
        /// The verification key printed by `sekisho log init` (64 hex digits). Without it
        /// the key in the log's first file is used: consistency, not origin.
        #[arg(long)]
        key: Option<String>,
        /// The remote copy of the log (the records a syslog receiver kept, one per line):
        /// every checkpoint in it must be in this log, so a log deleted or cut on this host
        /// fails (exit 1), naming the last checkpoint it lacks.
        #[arg(long)]
        remote: Option<PathBuf>,
    },
    /// Print verified records (JSON lines) from a time on; stops at the first tampering.
    Export {
        dir: PathBuf,
        /// Unix seconds, YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS]Z, or an age (30m, 24h, 7d).
        #[arg(long)]
        since: String,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        key: Option<String>,
    },
    /// Find verified records by user, address, route and time (JSON lines).
    Search {
        dir: PathBuf,
        #[arg(long)]
        user: Option<String>,
        /// The peer or client address, or a network (192.0.2.0/24).
        #[arg(long)]
        address: Option<String>,
        /// A route name, or a path prefix starting with `/`.
        #[arg(long)]
        route: Option<String>,
        /// A record kind (access, start, stop, policy_loaded …).
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        key: Option<String>,
    },
}

pub fn run(command: LogCommand, clock: &dyn Clock) -> anyhow::Result<ExitCode> {
    match command {
        LogCommand::Init { policy } => init(&policy, clock),
        LogCommand::Verify { dir, key, remote: None } => {
            let key = parse_key(key.as_deref())?;
            let report = verify::verify(&dir, key, |_| {})?;
            print_report(&dir, &report);
            Ok(exit_code(&report))
        }
        LogCommand::Verify {
            dir,
            key,
            remote: Some(remote),
        } => {
            let key = parse_key(key.as_deref())?;
            let text =
                std::fs::read(&remote).with_context(|| format!("{}: cannot read the remote copy", remote.display()))?;
            let report = verify_against(&dir, key, &RemoteCopy::read(&text), &remote.display().to_string())?;
            print_report(&dir, &report);
            Ok(exit_code(&report))
        }
        LogCommand::Export { dir, since, until, key } => {
            let now = clock.unix_seconds();
            let filter = Filter {
                since: Some(parse_time(&since, now)?),
                until: until.as_deref().map(|t| parse_time(t, now)).transpose()?,
                ..Filter::default()
            };
            select(&dir, parse_key(key.as_deref())?, &filter)
        }
        LogCommand::Search {
            dir,
            user,
            address,
            route,
            kind,
            since,
            until,
            key,
        } => {
            let now = clock.unix_seconds();
            let address = match address {
                None => None,
                Some(a) => Some(
                    query::parse_address(&a).with_context(|| format!("--address {a:?}: not an address or network"))?,
                ),
            };
            let filter = Filter {
                since: since.as_deref().map(|t| parse_time(t, now)).transpose()?,
                until: until.as_deref().map(|t| parse_time(t, now)).transpose()?,
                user,
                address,
                route,
                kind,
            };
            select(&dir, parse_key(key.as_deref())?, &filter)
        }
    }
}

fn init(policy_path: &Path, clock: &dyn Clock) -> anyhow::Result<ExitCode> {
    let display = policy_path.display().to_string();
    let text = std::fs::read_to_string(policy_path).with_context(|| format!("{display}: cannot read"))?;
    let policy = sekisho_policy::parse(&display, &text).map_err(|d| anyhow::anyhow!("{d}"))?;
    let state_dir = Path::new(&policy.server.state_dir);
    let state = SealState::generate(clock.unix_seconds(), policy.log.seal_epoch.as_secs())?;
    state.create(state_dir)?;
    println!(
        "audit log sealing key created: {}",
        SealState::path(state_dir).display()
    );
    println!("verification key (keep it off this host; it is not shown again):");
    println!("  {}", chain::hex(&state.root));
    println!(
        "check the log with: sekisho log verify {} --key <KEY>",
        policy.server.log_dir
    );
    Ok(ExitCode::SUCCESS)
}

/// Export and search: verified records that match, one JSON line each.
fn select(dir: &Path, key: Option<[u8; 32]>, filter: &Filter) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut unsealed = 0u64;
    let mut write_error = None;
    let report = verify::verify(dir, key, |rec| {
        if write_error.is_some() {
            return;
        }
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(rec.bytes) else {
            return;
        };
        if filter.matches(rec.time, &value) {
            if !rec.sealed {
                unsealed += 1;
            }
            if let Err(e) = out.write_all(rec.bytes).and_then(|()| out.write_all(b"\n")) {
                write_error = Some(e);
            }
        }
    })?;
    if let Some(e) = write_error {
        return Err(e).context("writing to stdout");
    }
    out.flush().context("writing to stdout")?;
    if unsealed > 0 {
        eprintln!("sekisho log: {unsealed} record(s) printed are chained but not sealed yet (the newest)");
    }
    if let Some(first) = report.tampering.first() {
        eprintln!("sekisho log: TAMPERED: {first}");
        eprintln!("sekisho log: records from there on were not printed");
    }
    if let Some(torn) = &report.torn {
        eprintln!("sekisho log: {torn}");
    }
    Ok(exit_code(&report))
}

/// Verifies the local log and checks that it holds every checkpoint of the remote copy. A
/// local log directory that is gone is itself a finding here (the remote copy says there
/// was a log).
fn verify_against(dir: &Path, key: Option<[u8; 32]>, copy: &RemoteCopy, what: &str) -> anyhow::Result<Report> {
    let mut local = BTreeMap::new();
    let mut first = None;
    let mut report = match verify::verify(dir, key, |rec| {
        first.get_or_insert(rec.seq);
        if copy.marks.contains_key(&rec.seq) {
            local.insert(rec.seq, chain::hash(rec.bytes));
        }
    }) {
        Ok(r) => r,
        Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {
            let mut r = Report::default();
            r.tampering.push(verify::Finding {
                file: dir.display().to_string(),
                line: 0,
                seq: None,
                what: "the log directory is gone".into(),
            });
            r
        }
        Err(e) => return Err(e.into()),
    };
    copy.compare(&mut report, &local, first, what);
    Ok(report)
}

fn print_report(dir: &Path, r: &Report) {
    let key = if r.key_given {
        "the key given"
    } else {
        "the key named in the log itself (pass --key for an independent check)"
    };
    if r.tampering.is_empty() {
        let last = r.last_seq.map_or("-".to_owned(), |s| s.to_string());
        let sealed = r.sealed_through.map_or("-".to_owned(), |s| s.to_string());
        match &r.torn {
            None => println!("OK {}", dir.display()),
            Some(_) => println!("TORN {}", dir.display()),
        }
        println!(
            "  {} file(s), {} record(s), last seq {last}, sealed through seq {sealed} (epoch {}), verified with {key}",
            r.files, r.records, r.epoch
        );
    } else {
        println!("TAMPERED {}", dir.display());
        for f in &r.tampering {
            println!("  {f}");
        }
    }
    if let Some(t) = &r.torn {
        println!("  torn: {t}");
    }
    for n in &r.notes {
        println!("  note: {n}");
    }
}

fn exit_code(r: &Report) -> ExitCode {
    if !r.tampering.is_empty() {
        ExitCode::from(TAMPERED)
    } else if r.torn.is_some() {
        ExitCode::from(TORN)
    } else {
        ExitCode::SUCCESS
    }
}

fn parse_key(text: Option<&str>) -> anyhow::Result<Option<[u8; 32]>> {
    text.map(|k| verify::parse_key(k).with_context(|| format!("--key {k:?}: not a verification key (64 hex digits)")))
        .transpose()
}

fn parse_time(text: &str, now: i64) -> anyhow::Result<i64> {
    query::parse_time(text, now).with_context(|| {
        format!("{text:?}: not a time (Unix seconds, YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ, or 30m/24h/7d)")
    })
}
