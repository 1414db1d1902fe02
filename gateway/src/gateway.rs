//! The gateway's shared state: the active policy generation (policy + TLS configuration,
//! swapped as one value), the upstream client, the audit log and the clock.
//!
//! A reload is a small state machine — candidate (bytes read) → validated (policy parsed,
//! TLS built from its files) → active (swapped in) — and a candidate that fails any step
//! never replaces the active generation.

use crate::audit::AuditLog;
use crate::clock::SharedClock;
use crate::proxy::Upstreams;
use crate::tls::{TlsError, TlsSetup};
use arc_swap::ArcSwap;
use sekisho_policy::{Diagnostics, Policy};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One generation of configuration: what every request of the moment is judged by.
#[derive(Debug)]
pub struct Active {
    pub policy: Arc<Policy>,
    pub tls: Arc<TlsSetup>,
    /// Increases with every swap; recorded per connection.
    pub generation: u64,
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
pub fn load_candidate(path: &Path) -> Result<(Policy, TlsSetup), LoadError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: display.clone(),
        source,
    })?;
    let policy = sekisho_policy::parse(&display, &text).map_err(LoadError::Policy)?;
    let tls = TlsSetup::build(&policy)?;
    Ok((policy, tls))
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
}

impl Gateway {
    pub fn new(policy_path: PathBuf, policy: Policy, tls: TlsSetup, clock: SharedClock, audit: AuditLog) -> Self {
        let upstreams = Upstreams::new(&policy.limits);
        let active = Active {
            policy: Arc::new(policy),
            tls: Arc::new(tls),
            generation: 1,
        };
        Gateway {
            policy_path,
            clock,
            upstreams,
            audit,
            active: ArcSwap::from_pointee(active),
            generations: AtomicU64::new(1),
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
        let (policy, tls) = load_candidate(&self.policy_path)?;
        let old = self.active();
        if policy.server.listen != old.policy.server.listen {
            tracing::warn!("listen addresses changed in the policy; they take effect at the next restart");
        }
        Ok(self.swap(Arc::new(policy), Arc::new(tls)))
    }

    /// Rebuilds the TLS configuration of the active policy (the device CRL changed).
    pub fn refresh_tls(&self) -> Result<Arc<Active>, TlsError> {
        let current = self.active();
        let tls = TlsSetup::build(&current.policy)?;
        Ok(self.swap(current.policy.clone(), Arc::new(tls)))
    }

    fn swap(&self, policy: Arc<Policy>, tls: Arc<TlsSetup>) -> Arc<Active> {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let next = Arc::new(Active {
            policy,
            tls,
            generation,
        });
        self.active.store(next.clone());
        next
    }
}
