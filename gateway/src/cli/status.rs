//! `sekisho status`: asks the running gateway over its control socket what it serves and
//! whether anything needs attention (bans are shown, not judged: being attacked is normal). Exit 0 healthy, 1 something needs attention (the
//! device CRL or the server certificate expires within [`WARN_DAYS`], or the access log
//! cannot be written), 3 no gateway is running.

use crate::auth::admin::{self, Request, Status};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// How close an expiry may come before it needs attention.
pub const WARN_DAYS: i64 = 30;

/// The exit code when no gateway answers on the control socket.
pub const NOT_RUNNING: u8 = 3;

const DAY: i64 = 86_400;

pub fn run(policy_path: &Path) -> anyhow::Result<ExitCode> {
    let display = policy_path.display().to_string();
    let text = std::fs::read_to_string(policy_path).map_err(|e| anyhow::anyhow!("{display}: {e}"))?;
    let policy = sekisho_policy::parse(&display, &text).map_err(|d| anyhow::anyhow!("{d}"))?;
    let socket = admin::socket_path(&policy);
    let Some(reply) = admin::send(&policy, &Request::Status) else {
        // Tell "not running" apart from "not allowed to ask".
        if let Err(e) = std::os::unix::net::UnixStream::connect(&socket)
            && e.kind() == std::io::ErrorKind::PermissionDenied
        {
            anyhow::bail!("{}: {e} (run `sekisho status` as the gateway's user)", socket.display());
        }
        println!(
            "sekisho: no gateway is running for {display} (nothing answers on {})",
            socket.display()
        );
        return Ok(ExitCode::from(NOT_RUNNING));
    };
    let reply = reply.map_err(|e| anyhow::anyhow!("the running gateway did not answer: {e}"))?;
    let status = match reply.status {
        Some(s) if reply.ok => s,
        _ => anyhow::bail!("the running gateway did not report its status: {}", reply.text),
    };
    let (report, attention) = render(&status);
    print!("{report}");
    if attention.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for a in &attention {
            println!("attention: {a}");
        }
        Ok(ExitCode::from(1))
    }
}

/// The report, and what needs attention (empty when healthy).
fn render(s: &Status) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut attention = Vec::new();
    let _ = writeln!(
        out,
        "running since   {} ({} ago), pid {}, sekisho {}",
        when(s.started),
        span(s.now - s.started),
        s.pid,
        s.version
    );
    let listeners = if s.listeners.is_empty() {
        "(none bound yet)".to_owned()
    } else {
        s.listeners.join(", ")
    };
    let _ = writeln!(out, "listeners       {listeners}");
    let _ = writeln!(out, "policy          {}", s.policy_path);
    let _ = writeln!(out, "  sha256        {}", s.policy_sha256);
    let _ = writeln!(
        out,
        "  git commit    {}",
        s.policy_commit.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(
        out,
        "  generation    {}, activated {} ({} ago)",
        s.generation,
        when(s.activated),
        span(s.now - s.activated)
    );
    match &s.crl {
        None => {
            let _ = writeln!(out, "device CRL      (client certificates are off)");
        }
        Some(crl) => {
            let next = match crl.next_update {
                None => "no nextUpdate".to_owned(),
                Some(t) => {
                    if let Some(a) = expiry_attention("the device CRL", "nextUpdate", t, s.now) {
                        attention.push(a);
                    }
                    format!("nextUpdate {} ({})", when(t), relative(t, s.now))
                }
            };
            let _ = writeln!(out, "device CRL      {} revoked, {next}; {}", crl.revoked, crl.path);
        }
    }
    match s.server_cert_not_after {
        None => {
            let _ = writeln!(out, "server cert     notAfter unknown");
        }
        Some(t) => {
            if let Some(a) = expiry_attention("the server certificate", "notAfter", t, s.now) {
                attention.push(a);
            }
            let _ = writeln!(out, "server cert     notAfter {} ({})", when(t), relative(t, s.now));
        }
    }
    if let Some(a) = &s.acme {
        match (&a.serial, a.renew_at) {
            (Some(serial), Some(renew)) => {
                let _ = writeln!(
                    out,
                    "acme            {} via {}; serial {serial}, renewal due {} ({})",
                    a.directory,
                    a.challenge,
                    when(renew),
                    relative(renew, s.now)
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "acme            {} via {}; no certificate yet",
                    a.directory, a.challenge
                );
                attention.push("no ACME certificate yet: TLS serves nothing until one is obtained".to_owned());
            }
        }
        if let (Some(error), true) = (&a.last_error, a.failures > 0) {
            let at = a.last_error_at.map_or_else(|| "?".to_owned(), when);
            let next = a
                .next_attempt
                .map_or_else(|| "?".to_owned(), |t| format!("{} ({})", when(t), relative(t, s.now)));
            let _ = writeln!(
                out,
                "  ACME FAILING  {} failure(s), last {at}: {error}; next attempt {next}",
                a.failures
            );
            attention.push(format!(
                "the ACME certificate could not be obtained or renewed ({} failure(s)): {error}",
                a.failures
            ));
        }
    }
    let _ = writeln!(out, "connections     {} open", s.connections);
    match s.sessions {
        Some(n) => {
            let _ = writeln!(out, "sessions        {n} active");
        }
        None => {
            let _ = writeln!(out, "sessions        unknown (the state could not be read)");
        }
    }
    if let Some(a) = &s.abuse {
        let _ = writeln!(
            out,
            "abuse           {} banned now ({} since start), {} rate-limited, {} of {} addresses tracked",
            a.banned, a.bans_total, a.rate_limited_total, a.tracked, a.max_tracked
        );
    }
    let seq = s
        .audit_last_seq
        .map_or_else(|| "no record yet".to_owned(), |n| format!("last seq {n}"));
    if s.audit_writable {
        let _ = writeln!(out, "audit log       writable, {seq}; {}", s.audit_dir);
    } else {
        let _ = writeln!(out, "audit log       FAILING, {seq}; {}", s.audit_dir);
        attention.push(format!(
            "the audit log in {} cannot be written: protected requests are refused (503) until it can",
            s.audit_dir
        ));
    }
    (out, attention)
}

fn expiry_attention(what: &str, field: &str, at: i64, now: i64) -> Option<String> {
    if at <= now {
        Some(format!("{what} has expired ({field} {})", when(at)))
    } else if at - now <= WARN_DAYS * DAY {
        Some(format!(
            "{what} expires within {WARN_DAYS} days ({field} {}, {})",
            when(at),
            relative(at, now)
        ))
    } else {
        None
    }
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC`.
fn when(unix: i64) -> String {
    crate::clock::format_utc(unix, ' ', " UTC")
}

fn relative(at: i64, now: i64) -> String {
    if at >= now {
        format!("in {}", span(at - now))
    } else {
        format!("{} ago", span(now - at))
    }
}

/// A duration in the largest unit that fits: `3d 4h`, `5h 2m`, `7m 1s`, `9s`.
fn span(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (secs / DAY, secs % DAY / 3600, secs % 3600 / 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::admin::CrlStatus;

    fn healthy(now: i64) -> Status {
        Status {
            now,
            started: now - 90,
            pid: 7,
            version: "0.0.0".into(),
            listeners: vec!["127.0.0.1:8443".into()],
            policy_path: "/etc/sekisho/policy.toml".into(),
            policy_sha256: "ab".repeat(32),
            policy_commit: None,
            generation: 2,
            activated: now - 30,
            crl: Some(CrlStatus {
                path: "/etc/sekisho/device-ca.crl.pem".into(),
                revoked: 1,
                next_update: Some(now + 300 * DAY),
            }),
            server_cert_not_after: Some(now + 90 * DAY),
            connections: 3,
            sessions: Some(1),
            audit_dir: "/var/log/sekisho".into(),
            audit_writable: true,
            audit_last_seq: Some(41),
            acme: None,
            abuse: Some(crate::auth::admin::AbuseStatus {
                banned: 2,
                bans_total: 5,
                rate_limited_total: 9,
                tracked: 12,
                max_tracked: 10_000,
            }),
        }
    }

    #[test]
    fn a_healthy_gateway_needs_no_attention() {
        let (out, attention) = render(&healthy(1_700_000_000));
        assert!(attention.is_empty(), "{attention:?}");
        assert!(out.contains(&"ab".repeat(32)), "{out}");
        assert!(out.contains("1 revoked"), "{out}");
        assert!(out.contains("last seq 41"), "{out}");
        assert!(out.contains("3 open"), "{out}");
        assert!(out.contains("2 banned now (5 since start), 9 rate-limited"), "{out}");
    }

    #[test]
    fn near_expiries_and_a_failing_log_need_attention() {
        let now = 1_700_000_000;
        let mut s = healthy(now);
        s.crl = Some(CrlStatus {
            path: "c".into(),
            revoked: 0,
            next_update: Some(now + 29 * DAY),
        });
        s.server_cert_not_after = Some(now - 1);
        s.audit_writable = false;
        let (_, attention) = render(&s);
        assert_eq!(attention.len(), 3, "{attention:?}");
        assert!(attention[0].contains("device CRL expires within 30 days"));
        assert!(attention[1].contains("server certificate has expired"));
        assert!(attention[2].contains("audit log"));
    }

    #[test]
    fn a_failing_acme_renewal_needs_attention() {
        let now = 1_700_000_000;
        let mut s = healthy(now);
        s.acme = Some(crate::acme::AcmeStatus {
            directory: "https://ca.example/dir".into(),
            challenge: "http-01".into(),
            serial: Some("0a1b".into()),
            not_after: Some(now + 60 * DAY),
            renew_at: Some(now - DAY),
            installed_at: Some(now - 30 * DAY),
            failures: 2,
            last_error: Some("new order: connection refused".into()),
            last_error_at: Some(now - 60),
            next_attempt: Some(now + 120),
        });
        let (out, attention) = render(&s);
        assert!(out.contains("serial 0a1b"), "{out}");
        assert!(out.contains("ACME FAILING  2 failure(s)"), "{out}");
        assert_eq!(attention.len(), 1, "{attention:?}");
        assert!(attention[0].contains("connection refused"), "{attention:?}");
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(9), "9s");
        assert_eq!(span(421), "7m 1s");
        assert_eq!(span(3 * DAY + 4 * 3600 + 5), "3d 4h");
    }
}
