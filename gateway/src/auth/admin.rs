//! Host-console user administration (`sekisho user …`): invitations, listing, removing a
//! factor, disabling and enabling. The state is locked by the running gateway, so the
//! command talks to it over a Unix socket in `state_dir` (0600, same user only); when no
//! gateway runs, the command opens the state itself. Both paths run [`execute`].

use super::records::{self, FactorKind};
use super::{Auth, names, notify::Notice};
use sekisho_policy::Policy;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The control socket's file name inside `state_dir`.
pub const SOCKET: &str = "control.sock";

/// The longest request line accepted on the control socket.
pub const MAX_REQUEST: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Invite {
        user: String,
        minutes: i64,
    },
    List,
    Show {
        user: String,
    },
    RemoveFactor {
        user: String,
        id: String,
    },
    Disable {
        user: String,
    },
    Enable {
        user: String,
    },
    /// The running gateway's state (`sekisho status`); only a running gateway answers it.
    Status,
    /// A consistent snapshot of the state for `sekisho state backup`; only a running
    /// gateway answers it (a stopped one's state is read directly).
    Backup,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reply {
    pub ok: bool,
    pub text: String,
    /// The answer to [`Request::Status`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<Status>>,
    /// The answer to [`Request::Backup`] (it holds the state key: the socket is 0600 and
    /// only the gateway's user and root may connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Box<crate::backup::Snapshot>>,
}

/// What a running gateway says about itself. Facts only: the caller judges them (times are
/// seconds since the epoch by the gateway's clock, `now` included).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub now: i64,
    pub started: i64,
    pub pid: u32,
    pub version: String,
    /// The addresses actually bound (empty until serving starts).
    pub listeners: Vec<String>,
    pub policy_path: String,
    pub policy_sha256: String,
    pub policy_commit: Option<String>,
    pub generation: u64,
    pub activated: i64,
    /// `None` when client certificates are off.
    pub crl: Option<CrlStatus>,
    pub server_cert_not_after: Option<i64>,
    pub connections: usize,
    /// Sessions within their timeouts; `None` when they could not be counted.
    pub sessions: Option<usize>,
    pub audit_dir: String,
    pub audit_writable: bool,
    pub audit_last_seq: Option<u64>,
    /// The ACME certificate's state, when the policy uses `acme`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<crate::acme::AcmeStatus>,
    /// Bans and rate limits (`None` from a gateway that predates them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abuse: Option<AbuseStatus>,
}

/// Bans and rate limits, as `sekisho status` shows them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AbuseStatus {
    pub banned: usize,
    pub bans_total: u64,
    pub rate_limited_total: u64,
    pub tracked: usize,
    pub max_tracked: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CrlStatus {
    pub path: String,
    pub revoked: usize,
    pub next_update: Option<i64>,
}

fn fail(text: impl Into<String>) -> Reply {
    Reply {
        ok: false,
        text: text.into(),
        status: None,
        backup: None,
    }
}

fn done(text: impl Into<String>) -> Reply {
    Reply {
        ok: true,
        text: text.into(),
        status: None,
        backup: None,
    }
}

/// Answers [`Request::Backup`]: a snapshot taken while no state write can land.
pub fn backup(gw: &crate::gateway::Gateway, auth: &Auth) -> Reply {
    let state_dir = gw.active().policy.server.state_dir.clone();
    match crate::backup::Snapshot::take(auth.store(), Path::new(&state_dir), gw.clock.unix_seconds()) {
        Ok(snapshot) => Reply {
            ok: true,
            text: snapshot.summary(),
            status: None,
            backup: Some(Box::new(snapshot)),
        },
        Err(e) => fail(e.to_string()),
    }
}

/// Answers [`Request::Status`] from the running gateway's state (read-only).
pub fn status(gw: &crate::gateway::Gateway, auth: &Auth) -> Reply {
    let active = gw.active();
    let audit = gw.audit.health();
    let crl = active.tls.crl_source.as_ref().map(|(path, _)| CrlStatus {
        path: path.clone(),
        revoked: active.tls.crl.len(),
        next_update: active.tls.crl.next_update(),
    });
    let report = Status {
        now: gw.clock.unix_seconds(),
        started: gw.started,
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        listeners: gw
            .listening
            .get()
            .map(|l| l.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        policy_path: gw.policy_path.display().to_string(),
        policy_sha256: active.version.sha256.clone(),
        policy_commit: active.version.git_commit.clone(),
        generation: active.generation,
        activated: active.activated,
        crl,
        server_cert_not_after: active
            .tls
            .server_not_after
            .or_else(|| gw.acme.current().map(|c| c.not_after)),
        connections: gw.conns.total(),
        sessions: auth.count_sessions(&active.policy).ok(),
        audit_dir: gw.audit.dir().display().to_string(),
        audit_writable: audit.writable,
        audit_last_seq: audit.last_seq,
        acme: active
            .policy
            .server
            .acme()
            .map(|a| gw.acme.status(a, &active.policy.limits)),
        abuse: {
            let g = gw.guard.stats(std::time::Instant::now());
            Some(AbuseStatus {
                banned: g.banned,
                bans_total: g.bans_total,
                rate_limited_total: g.login_limited_total + g.request_limited_total,
                tracked: g.tracked,
                max_tracked: active.policy.limits.max_tracked_addresses,
            })
        },
    };
    Reply {
        ok: true,
        text: "status".to_owned(),
        status: Some(Box::new(report)),
        backup: None,
    }
}

/// Runs one administrative request.
pub fn execute(auth: &Auth, policy: &Policy, req: &Request) -> Reply {
    match req {
        Request::Status | Request::Backup => fail("no gateway is running"),
        Request::Invite { user, minutes } => {
            if !(1..=24 * 60).contains(minutes) {
                return fail("--minutes must be between 1 and 1440");
            }
            match auth.invite(policy, user, minutes * 60) {
                Err(e) => fail(e),
                Ok((token, inv)) => done(format!(
                    "invitation for {} (valid {} minutes, usable once, only from where {} may reach a protected route):\n{}\n",
                    inv.user,
                    minutes,
                    inv.user,
                    invite_url(policy, &token)
                )),
            }
        }
        Request::List => {
            let mut out = String::new();
            for u in &policy.users {
                let name = u.name.to_ascii_lowercase();
                let rec = records::load(auth.store(), &name).ok().flatten().unwrap_or_default();
                let kinds: Vec<&str> = rec.factors.iter().map(|f| f.kind.factor().as_str()).collect();
                out.push_str(&format!(
                    "{name}\t{}\t{}\n",
                    if rec.disabled { "disabled" } else { "enabled" },
                    if kinds.is_empty() {
                        "no factor".to_string()
                    } else {
                        kinds.join(",")
                    }
                ));
            }
            done(out)
        }
        Request::Show { user } => {
            let Some(name) = names::canonical(user) else {
                return fail("not a valid user name");
            };
            let in_policy = names::policy_user(policy, &name).is_some();
            let rec = match records::load(auth.store(), &name) {
                Ok(r) => r.unwrap_or_default(),
                Err(e) => return fail(e.to_string()),
            };
            let mut out = format!(
                "user: {name}\nin policy: {in_policy}\nstate: {}\nfactors:\n",
                if rec.disabled { "disabled" } else { "enabled" }
            );
            for f in &rec.factors {
                let detail = match &f.kind {
                    FactorKind::Totp { .. } => "totp".to_string(),
                    FactorKind::Webauthn { passkey } => {
                        format!("webauthn credential {}", super::crypto::b64(passkey.cred_id()))
                    }
                };
                out.push_str(&format!("  {}\t{detail}\tenrolled {}\n", f.id, f.created));
            }
            if rec.factors.is_empty() {
                out.push_str("  (none: make an invitation with `sekisho user invite`)\n");
            }
            done(out)
        }
        Request::RemoveFactor { user, id } => {
            let Some(name) = names::canonical(user) else {
                return fail("not a valid user name");
            };
            let removed = records::update(auth.store(), &name, |r| {
                let before = r.factors.len();
                r.factors.retain(|f| &f.id != id);
                Ok::<_, crate::store::StoreError>(before != r.factors.len())
            });
            match removed {
                Err(e) => fail(e.to_string()),
                Ok(false) => fail(format!("{name} has no factor {id}")),
                Ok(true) => {
                    let ended = auth.end_sessions_of(&name).unwrap_or(0);
                    auth.notices.send(
                        policy,
                        Notice::FactorRemoved {
                            user: name.clone(),
                            id: id.clone(),
                        },
                    );
                    done(format!("removed factor {id} of {name}; {ended} session(s) ended\n"))
                }
            }
        }
        Request::Disable { user } | Request::Enable { user } => {
            let disable = matches!(req, Request::Disable { .. });
            let Some(name) = names::canonical(user) else {
                return fail("not a valid user name");
            };
            if let Err(e) = records::update(auth.store(), &name, |r| {
                r.disabled = disable;
                Ok::<_, crate::store::StoreError>(())
            }) {
                return fail(e.to_string());
            }
            if disable {
                let ended = auth.end_sessions_of(&name).unwrap_or(0);
                auth.notices.send(policy, Notice::UserDisabled { user: name.clone() });
                done(format!("{name} disabled; {ended} session(s) ended\n"))
            } else {
                done(format!("{name} enabled\n"))
            }
        }
    }
}

/// The invitation link: the first served host name on the first listener's port.
pub fn invite_url(policy: &Policy, token: &str) -> String {
    // `public_url` when the browser's address differs from ours (a port mapping, a load
    // balancer); else the first hostname and the first listen port.
    let origin = match &policy.server.public_url {
        Some(u) => u.origin(),
        None => {
            let host = policy.server.hostnames.first().map_or("localhost", String::as_str);
            let port = policy.server.listen.first().map_or(443, std::net::SocketAddr::port);
            super::Origin {
                host: host.to_owned(),
                port,
            }
            .url()
        }
    };
    format!("{origin}/.sekisho/invite?t={token}")
}

/// The control socket's path for a policy.
pub fn socket_path(policy: &Policy) -> PathBuf {
    Path::new(&policy.server.state_dir).join(SOCKET)
}

/// The bound control socket and the uid allowed to use it.
#[derive(Debug)]
pub struct ControlSocket {
    listener: tokio::net::UnixListener,
    owner: u32,
}

/// Binds the control socket (0600). Done before the gateway says it is ready, so that a
/// `sekisho user` run right after start finds the gateway rather than its locked state.
pub fn bind(policy: &Policy) -> std::io::Result<ControlSocket> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let path = socket_path(policy);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let owner = std::fs::metadata(&path)?.uid();
    Ok(ControlSocket { listener, owner })
}

/// Serves the control socket until the process ends. Only the gateway's own user may
/// connect (the socket is 0600 and the peer's uid is checked).
pub async fn serve(socket: ControlSocket, gw: Arc<crate::gateway::Gateway>, auth: Arc<Auth>) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
    let ControlSocket { listener, owner } = socket;
    loop {
        let (stream, _) = listener.accept().await?;
        // The gateway's own user, or root (who owns the host and could become that user).
        let peer = stream.peer_cred().map(|c| c.uid()).ok();
        if peer != Some(owner) && peer != Some(0) {
            continue;
        }
        let gw = gw.clone();
        let auth = auth.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(r.take(MAX_REQUEST as u64));
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let reply = match serde_json::from_str::<Request>(&line) {
                Err(_) => fail("unreadable request"),
                Ok(req) => tokio::task::spawn_blocking(move || match req {
                    Request::Status => status(&gw, &auth),
                    Request::Backup => backup(&gw, &auth),
                    req => execute(&auth, &gw.active().policy, &req),
                })
                .await
                .unwrap_or_else(|_| fail("the request failed")),
            };
            let mut text = serde_json::to_string(&reply).unwrap_or_default();
            text.push('\n');
            let _ = w.write_all(text.as_bytes()).await;
        });
    }
}

/// Sends a request to a running gateway. `None` when none listens.
pub fn send(policy: &Policy, req: &Request) -> Option<Result<Reply, String>> {
    use std::io::{BufRead as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket_path(policy)).ok()?;
    let mut run = || -> Result<Reply, String> {
        let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
        line.push('\n');
        stream.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
        let mut back = String::new();
        std::io::BufReader::new(&stream)
            .read_line(&mut back)
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&back).map_err(|e| format!("unreadable reply from the gateway: {e}"))
    };
    Some(run())
}
