//! The gateway's shared state: the active policy generation (policy + TLS configuration,
//! swapped as one value), the upstream client, the audit log and the clock.
//!
//! A reload is a small state machine — [`Candidate`] (bytes read, version known) →
//! [`Validated`] (policy parsed, TLS built from its files) → [`Active`] (swapped in) — and a
//! candidate that fails any step never replaces the active generation. Each step consumes
//! the previous one, so nothing half-checked can be activated.

use crate::audit::AuditLog;
use crate::clock::SharedClock;
use crate::proxy::Upstreams;
use crate::tls::{TlsError, TlsSetup};
use arc_swap::ArcSwap;
use sekisho_policy::{Diagnostics, Policy};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One generation of configuration: what every request of the moment is judged by.
#[derive(Debug)]
pub struct Active {
    pub policy: Arc<Policy>,
    pub tls: Arc<TlsSetup>,
    /// Which policy this is: its sha256 and, when known, its git commit. Audit records
    /// carry `version.sha256` (equal to `policy.id`) and `version.git_commit`.
    pub version: Arc<PolicyVersion>,
    /// Increases with every swap; recorded per connection.
    pub generation: u64,
    /// When this generation was swapped in, seconds since the epoch (gateway clock).
    pub activated: i64,
}

/// The identity of a loaded policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    /// Lower-case hex SHA-256 of the policy file's bytes (the same as [`Policy::id`]).
    pub sha256: String,
    /// The git commit the file was loaded from, when known: HEAD of a `.git` beside the
    /// file (or in a parent directory), else `$SEKISHO_POLICY_COMMIT`. See [`crate::reload`].
    pub git_commit: Option<String>,
}

impl std::fmt::Display for PolicyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.git_commit {
            Some(c) => write!(f, "sha256:{} commit:{c}", self.sha256),
            None => write!(f, "sha256:{}", self.sha256),
        }
    }
}

/// Step 1 of a reload: the bytes of the policy file, read once, with their version.
#[derive(Debug)]
pub struct Candidate {
    display: String,
    text: String,
    pub version: PolicyVersion,
}

/// Step 2: a candidate whose policy parsed and whose TLS configuration was built.
#[derive(Debug)]
pub struct Validated {
    pub policy: Policy,
    pub tls: TlsSetup,
    pub version: PolicyVersion,
}

impl Candidate {
    /// Reads the policy file (once: what is validated is exactly what was hashed).
    pub fn read(path: &Path) -> Result<Candidate, LoadError> {
        let display = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: display.clone(),
            source,
        })?;
        let sha256 = sekisho_policy::sha256_hex(&bytes);
        let text = String::from_utf8(bytes).map_err(|_| LoadError::Read {
            path: display.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is not UTF-8"),
        })?;
        let version = PolicyVersion {
            sha256,
            git_commit: crate::reload::git_commit(path),
        };
        Ok(Candidate { display, text, version })
    }

    /// Parses the policy and builds its TLS configuration from the files it names (an ACME
    /// policy's certificate comes from `acme`).
    pub fn validate(self, acme: &crate::acme::Certs) -> Result<Validated, LoadError> {
        let policy = sekisho_policy::parse(&self.display, &self.text).map_err(LoadError::Policy)?;
        let tls = TlsSetup::build(&policy, acme)?;
        Ok(Validated {
            policy,
            tls,
            version: self.version,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read policy: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{0}")]
    Policy(Diagnostics),
    #[error("{0}")]
    Tls(#[from] TlsError),
}

/// Reads and validates a policy file and builds its TLS configuration. Nothing is
/// swapped in here.
pub fn load_candidate(path: &Path, acme: &crate::acme::Certs) -> Result<(Policy, TlsSetup), LoadError> {
    let v = Candidate::read(path)?.validate(acme)?;
    Ok((v.policy, v.tls))
}

/// The running gateway.
#[derive(Debug)]
pub struct Gateway {
    pub policy_path: PathBuf,
    pub clock: SharedClock,
    pub upstreams: Upstreams,
    pub audit: AuditLog,
    active: ArcSwap<Active>,
    generations: AtomicU64,
    /// Serialises reloads (SIGHUP and the file watcher may fire together).
    reloading: Mutex<()>,
    /// The second-factor state (sessions, factors), set once at start; until then (and
    /// in tests without it) no session exists and the gateway's pages answer 503.
    pub auth: std::sync::OnceLock<Arc<crate::auth::Auth>>,
    /// When this gateway was made, seconds since the epoch (gateway clock).
    pub started: i64,
    /// The addresses actually bound, set once when serving starts.
    pub listening: std::sync::OnceLock<Vec<std::net::SocketAddr>>,
    /// Open connections, in total and per address (the listeners' caps count here).
    pub conns: Arc<crate::listener::ConnCounts>,
    /// The certificates an ACME policy serves (empty for a policy with certificate files).
    pub acme: Arc<crate::acme::Certs>,
    /// Bans and rate limits per client address (bounded).
    pub guard: crate::abuse::Guard,
    /// The counters behind `[server] metrics`.
    pub metrics: crate::metrics::Metrics,
}

impl Gateway {
    pub fn new(
        policy_path: PathBuf,
        policy: Policy,
        tls: TlsSetup,
        clock: SharedClock,
        audit: AuditLog,
        acme: Arc<crate::acme::Certs>,
    ) -> Self {
        let upstreams = Upstreams::new(&policy.limits);
        let version = PolicyVersion {
            sha256: policy.id.clone(),
            git_commit: crate::reload::git_commit(&policy_path),
        };
        tracing::info!(policy = %version.sha256, commit = version.git_commit.as_deref().unwrap_or("unknown"), "policy loaded");
        let started = clock.unix_seconds();
        let active = Active {
            policy: Arc::new(policy),
            tls: Arc::new(tls),
            version: Arc::new(version),
            generation: 1,
            activated: started,
        };
        Gateway {
            policy_path,
            clock,
            upstreams,
            audit,
            active: ArcSwap::from_pointee(active),
            generations: AtomicU64::new(1),
            reloading: Mutex::new(()),
            auth: std::sync::OnceLock::new(),
            started,
            listening: std::sync::OnceLock::new(),
            conns: Arc::default(),
            acme,
            guard: crate::abuse::Guard::default(),
            metrics: crate::metrics::Metrics::default(),
        }
    }

    /// The generation every decision of this moment uses. Callers hold the `Arc` for the
    /// whole request, so one request never mixes two policies.
    pub fn active(&self) -> Arc<Active> {
        self.active.load_full()
    }

    /// Reloads the policy file. On any error the active generation stays and the error is
    /// returned for the caller to log.
    pub fn reload(&self) -> Result<Arc<Active>, LoadError> {
        self.reload_candidate(Candidate::read(&self.policy_path)?)
    }

    /// Validates a candidate already read and activates it (one reload at a time).
    pub fn reload_candidate(&self, candidate: Candidate) -> Result<Arc<Active>, LoadError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let validated = candidate.validate(&self.acme)?;
        Ok(self.activate(validated))
    }

    /// Step 3: swaps a validated candidate in. Requests already running keep the
    /// generation they hold; the next ones get this one.
    fn activate(&self, validated: Validated) -> Arc<Active> {
        let Validated { policy, tls, version } = validated;
        let old = self.active();
        if policy.server.listen != old.policy.server.listen {
            tracing::warn!("listen addresses changed in the policy; they take effect at the next restart");
        }
        if policy.server.metrics != old.policy.server.metrics {
            tracing::warn!("the metrics listener changed in the policy; it takes effect at the next restart");
        }
        if policy.log.reload_needs_restart(&old.policy.log) {
            tracing::warn!(
                "[log] settings changed in the policy; the writer and the remote copy take them at the next restart"
            );
        }
        crate::reload::end_sessions_of_removed_identities(&old.policy, &policy);
        let next = self.swap(Arc::new(policy), Arc::new(tls), Arc::new(version));
        tracing::info!(
            policy = %next.version.sha256,
            commit = next.version.git_commit.as_deref().unwrap_or("unknown"),
            generation = next.generation,
            "policy activated"
        );
        next
    }

    /// Rebuilds the TLS configuration of the active policy (the device CRL changed).
    pub fn refresh_tls(&self) -> Result<Arc<Active>, TlsError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.active();
        let tls = TlsSetup::build(&current.policy, &self.acme)?;
        Ok(self.swap(current.policy.clone(), Arc::new(tls), current.version.clone()))
    }

    fn swap(&self, policy: Arc<Policy>, tls: Arc<TlsSetup>, version: Arc<PolicyVersion>) -> Arc<Active> {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let next = Arc::new(Active {
            policy,
            tls,
            version,
            generation,
            activated: self.clock.unix_seconds(),
        });
        self.active.store(next.clone());
        next
    }
}
