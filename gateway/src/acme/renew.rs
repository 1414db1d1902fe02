//! The renewal task: one loop per gateway that keeps an ACME policy's certificate valid
//! and reports every outcome (diagnostics log, audit record, notice, status).

use super::issue::issue;
use super::{AcmeError, lock};
use crate::audit::{self, Event};
use crate::gateway::Gateway;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The wait after `failures` consecutive failures: `min` doubled per failure, at most `max`.
pub fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
    min.saturating_mul(factor).min(max)
}

/// Keeps the certificate of an ACME policy valid until `stop`: obtains the first one,
/// renews at `acme_renew_percent` of its lifetime (or at once when the hostnames changed),
/// and after a failure waits with exponential backoff while the old one keeps serving.
/// Idles while the active policy uses certificate files.
pub async fn maintain(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    let mut failures: u32 = 0;
    let mut next_attempt: Option<i64> = None;
    loop {
        let active = gw.active();
        let limits = active.policy.limits;
        let mut wait = limits.policy_poll_interval;
        if let Some(settings) = active.policy.server.acme() {
            let now = gw.clock.unix_seconds();
            let hostnames = &active.policy.server.hostnames;
            let due = match gw.acme.current() {
                Some(c) if c.covers(hostnames) => c.renew_at(limits.acme_renew_percent),
                _ => now,
            };
            let at = next_attempt.map_or(due, |n| n.max(due));
            if now >= at {
                let state_dir = PathBuf::from(&active.policy.server.state_dir);
                let started = std::time::Instant::now();
                let outcome = tokio::select! {
                    r = tokio::time::timeout(limits.acme_order_timeout, issue(settings, hostnames, &state_dir, &limits, &gw.acme)) => r,
                    _ = stop.changed() => return,
                };
                let outcome = outcome
                    .unwrap_or_else(|_| Err(AcmeError("the issuance took longer than acme_order_timeout".into())));
                let now = gw.clock.unix_seconds();
                match outcome {
                    Ok(issued) => {
                        failures = 0;
                        next_attempt = None;
                        let previous = gw.acme.current().map(|c| c.serial.clone());
                        tracing::info!(
                            serial = %issued.serial,
                            not_after = issued.not_after,
                            previous = previous.as_deref().unwrap_or("none"),
                            ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                            "ACME certificate installed"
                        );
                        gw.audit.record_detached(&Event::AcmeCertificateIssued {
                            serial: &issued.serial,
                            not_after: issued.not_after,
                            names: &issued.names,
                            challenge: settings.challenge.as_str(),
                            replaces: previous.as_deref(),
                        });
                        gw.acme.install(issued, now);
                        let mut r = lock(&gw.acme.report);
                        r.failures = 0;
                        r.next_attempt = None;
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        let delay = backoff(failures, limits.acme_retry_min, limits.acme_retry_max);
                        let retry = now.saturating_add(i64::try_from(delay.as_secs()).unwrap_or(i64::MAX).max(1));
                        next_attempt = Some(retry);
                        let serving = gw.acme.current().map(|c| c.serial.clone());
                        tracing::error!(
                            error = %e,
                            failures,
                            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            serving = serving.as_deref().unwrap_or("none"),
                            "ACME certificate not obtained; the current certificate keeps serving"
                        );
                        let text = e.to_string();
                        let error = audit::clip(&text);
                        gw.audit.record_detached(&Event::AcmeFailed {
                            error,
                            failures,
                            retry_at: retry,
                            serving: serving.as_deref(),
                        });
                        {
                            let mut r = lock(&gw.acme.report);
                            r.failures = failures;
                            r.last_error = Some(e.to_string());
                            r.last_error_at = Some(now);
                            r.next_attempt = Some(retry);
                        }
                        if let Some(auth) = gw.auth.get() {
                            auth.notify(
                                &active.policy,
                                crate::auth::notify::Notice::AcmeFailed {
                                    error: e.to_string(),
                                    failures,
                                    serving_until: gw.acme.current().map(|c| c.not_after),
                                },
                            );
                        }
                    }
                }
                continue;
            }
            let left = Duration::from_secs(u64::try_from(at - now).unwrap_or(1).max(1));
            wait = wait.min(left);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(600));
        assert_eq!(backoff(1, min, max), Duration::from_secs(60));
        assert_eq!(backoff(2, min, max), Duration::from_secs(120));
        assert_eq!(backoff(4, min, max), Duration::from_secs(480));
        assert_eq!(backoff(5, min, max), max);
        assert_eq!(backoff(u32::MAX, min, max), max);
    }
}
