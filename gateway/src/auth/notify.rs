//! Notices to the user and the admin on security events: factor enrolled or removed,
//! login from a new device or address, lockout, user disabled, invitation used, and a
//! passkey counter going backwards. Each notice is written to the diagnostics log; the
//! `[notify]` table of the policy in force when it happened says where else it goes: mail
//! (SMTP through lettre, rustls with ring) to the user's `email` and to `admin_email`, and a
//! JSON POST to `webhook_url`. Sending never blocks or fails a request: notices wait in a
//! bounded queue (a full queue drops the notice and logs it) for one background task that
//! delivers each with a timeout and logs failures. No notice carries a secret (TOTP secrets
//! and codes, cookies, tokens, challenges are never part of a [`Notice`]).

mod deliver;

use sekisho_policy::{NotifySettings, Policy};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    FactorEnrolled {
        user: String,
        factor: &'static str,
        id: String,
    },
    FactorRemoved {
        user: String,
        id: String,
    },
    NewDevice {
        user: String,
        device: String,
        fingerprint: String,
    },
    NewAddress {
        user: String,
        ip: IpAddr,
    },
    Lockout {
        user: String,
        ip: IpAddr,
        until: i64,
    },
    UserDisabled {
        user: String,
    },
    InvitationUsed {
        user: String,
        ip: IpAddr,
    },
    CounterRegression {
        user: String,
    },
    /// A new policy file was refused; the previous policy keeps serving. Goes to the
    /// admin address only (it names no user).
    PolicyRejected {
        trigger: &'static str,
        error: String,
    },
    /// An ACME certificate could not be obtained or renewed; the current one (valid until
    /// `serving_until`, if any) keeps serving. Admin only.
    AcmeFailed {
        error: String,
        failures: u32,
        serving_until: Option<i64>,
    },
}

impl Notice {
    pub fn user(&self) -> &str {
        match self {
            Notice::FactorEnrolled { user, .. }
            | Notice::FactorRemoved { user, .. }
            | Notice::NewDevice { user, .. }
            | Notice::NewAddress { user, .. }
            | Notice::Lockout { user, .. }
            | Notice::UserDisabled { user }
            | Notice::InvitationUsed { user, .. }
            | Notice::CounterRegression { user } => user,
            Notice::PolicyRejected { .. } | Notice::AcmeFailed { .. } => "",
        }
    }

    /// A stable short word (mail subject, webhook `event`).
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::FactorEnrolled { .. } => "factor_enrolled",
            Notice::FactorRemoved { .. } => "factor_removed",
            Notice::NewDevice { .. } => "new_device",
            Notice::NewAddress { .. } => "new_address",
            Notice::Lockout { .. } => "lockout",
            Notice::UserDisabled { .. } => "user_disabled",
            Notice::InvitationUsed { .. } => "invitation_used",
            Notice::CounterRegression { .. } => "counter_regression",
            Notice::PolicyRejected { .. } => "policy_rejected",
            Notice::AcmeFailed { .. } => "acme_failed",
        }
    }

    /// One line of plain text for people.
    pub fn text(&self) -> String {
        match self {
            Notice::FactorEnrolled { user, factor, id } => format!("{user} enrolled a {factor} factor (id {id})."),
            Notice::FactorRemoved { user, id } => format!("Factor {id} of {user} was removed."),
            Notice::NewDevice {
                user,
                device,
                fingerprint,
            } => format!("{user} signed in from a new device certificate '{device}' ({fingerprint})."),
            Notice::NewAddress { user, ip } => format!("{user} signed in from a new address {ip}."),
            Notice::Lockout { user, ip, until } => {
                format!("Sign-in for '{user}' from {ip} is locked until {until} (unix time) after repeated failures.")
            }
            Notice::UserDisabled { user } => format!("{user} was disabled; their sessions have ended."),
            Notice::InvitationUsed { user, ip } => format!("An invitation for {user} was used from {ip}."),
            Notice::CounterRegression { user } => format!(
                "ALERT: a passkey of {user} presented a signature counter that did not increase (cloned authenticator?). The login was refused."
            ),
            Notice::PolicyRejected { trigger, error } => format!(
                "A new policy was refused ({trigger}); the previous policy keeps serving. First problems: {}",
                clip(error)
            ),
            Notice::AcmeFailed {
                error,
                failures,
                serving_until,
            } => match serving_until {
                Some(t) => format!(
                    "The server certificate could not be renewed ({failures} failed attempt(s)); the current one keeps serving until {t} (unix time). {}",
                    clip(error)
                ),
                None => format!(
                    "The server certificate could not be obtained ({failures} failed attempt(s)); TLS serves nothing until it is. {}",
                    clip(error)
                ),
            },
        }
    }

    /// The same in Japanese (mail bodies and webhooks carry both).
    pub fn text_ja(&self) -> String {
        match self {
            Notice::FactorEnrolled { user, factor, id } => {
                format!("{user} さんが二要素認証の {factor} を登録しました（ID {id}）。")
            }
            Notice::FactorRemoved { user, id } => format!("{user} さんの認証要素 {id} が削除されました。"),
            Notice::NewDevice {
                user,
                device,
                fingerprint,
            } => format!("{user} さんが新しい端末証明書「{device}」（{fingerprint}）からログインしました。"),
            Notice::NewAddress { user, ip } => format!("{user} さんが新しいアドレス {ip} からログインしました。"),
            Notice::Lockout { user, ip, until } => {
                format!("「{user}」の {ip} からのログインは、失敗が続いたため {until}（UNIX 時刻）までロックされます。")
            }
            Notice::UserDisabled { user } => format!("{user} さんは無効化され、セッションは終了しました。"),
            Notice::InvitationUsed { user, ip } => format!("{user} さんへの招待が {ip} から使われました。"),
            Notice::CounterRegression { user } => format!(
                "警告: {user} さんのパスキーの署名カウンタが増えていません（認証器の複製の疑い）。ログインを拒否しました。"
            ),
            Notice::PolicyRejected { trigger, .. } => {
                format!("新しいポリシーは拒否されました（{trigger}）。以前のポリシーで運用を続けています。")
            }
            Notice::AcmeFailed {
                failures,
                serving_until,
                ..
            } => match serving_until {
                Some(t) => format!(
                    "サーバ証明書を更新できませんでした（{failures} 回失敗）。現在の証明書で {t}（UNIX 時刻）まで運用を続けます。"
                ),
                None => format!(
                    "サーバ証明書を取得できませんでした（{failures} 回失敗）。取得できるまで TLS は応答しません。"
                ),
            },
        }
    }
}

/// The first few lines of an error for a notice (diagnostics can be long).
fn clip(error: &str) -> String {
    const MAX: usize = 600;
    let mut out: String = error.lines().take(6).collect::<Vec<_>>().join(" / ");
    if out.len() > MAX {
        let mut cut = MAX;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// Notices waiting for delivery; beyond this, new ones are dropped (and logged).
pub const QUEUE: usize = 256;

/// Time allowed for one delivery (one mail, one webhook call).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// One notice on its way, with the settings of the policy it happened under.
#[derive(Debug)]
struct Job {
    notice: Notice,
    /// Mail recipients: the user's address (when the policy has one), then the admin's.
    to: Vec<String>,
    settings: NotifySettings,
    /// The gateway's first hostname (SMTP greeting, webhook `gateway`).
    gateway: String,
}

/// Where notices go. Delivery happens on a background task, never on the request path.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    sinks: Vec<Arc<dyn Sink>>,
    /// The delivery task's queue; `None` outside a running gateway (log only, plus sinks).
    queue: Option<tokio::sync::mpsc::Sender<Job>>,
    /// Every notice sent (kept for tests and `sekisho user show`), bounded.
    recent: Arc<Mutex<Vec<Notice>>>,
}

/// The most recent notices kept in memory.
pub const RECENT: usize = 256;

/// A destination for notices (mail, webhook).
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Delivers `notice` to `to` (the user's address, then the admin's), or explains why not.
    fn deliver(&self, notice: &Notice, to: &[String]) -> Result<(), String>;
}

impl Notifier {
    pub fn with_sink(mut self, sink: Arc<dyn Sink>) -> Self {
        self.sinks.push(sink);
        self
    }

    pub fn send(&self, policy: &Policy, notice: Notice) {
        tracing::warn!(event = notice.kind(), user = %notice.user(), "notice: {}", notice.text());
        if let Ok(mut r) = self.recent.lock() {
            if r.len() >= RECENT {
                r.remove(0);
            }
            r.push(notice.clone());
        }
        let settings = &policy.notify;
        let wanted = settings.smtp.is_some() || settings.webhook_url.is_some();
        if !wanted && self.sinks.is_empty() {
            return;
        }
        let mut to: Vec<String> = super::names::policy_user(policy, notice.user())
            .and_then(|u| u.email.clone())
            .into_iter()
            .collect();
        if let Some(admin) = &settings.admin_email
            && !to.contains(admin)
        {
            to.push(admin.clone());
        }
        if !self.sinks.is_empty() {
            let sinks = self.sinks.clone();
            let (notice, to) = (notice.clone(), to.clone());
            std::thread::spawn(move || {
                for s in sinks {
                    if let Err(e) = s.deliver(&notice, &to) {
                        tracing::error!(event = notice.kind(), error = %e, "notice not delivered");
                    }
                }
            });
        }
        if !wanted {
            return;
        }
        let Some(queue) = &self.queue else {
            tracing::warn!(
                event = notice.kind(),
                "notice only logged: no delivery task in this process"
            );
            return;
        };
        let job = Job {
            notice,
            to,
            settings: settings.clone(),
            gateway: policy.server.hostnames.first().cloned().unwrap_or_default(),
        };
        match queue.try_send(job) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(job)) => {
                tracing::error!(event = job.notice.kind(), user = %job.notice.user(), "notice queue full; notice dropped");
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(job)) => {
                tracing::error!(event = job.notice.kind(), user = %job.notice.user(), "notice delivery task gone; notice dropped");
            }
        }
    }

    /// Starts the delivery task (mail and webhook, as each notice's policy says). Call inside
    /// the runtime.
    pub fn start_delivery(mut self) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(QUEUE);
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                deliver::job(&job).await;
            }
        });
        self.queue = Some(tx);
        self
    }

    pub fn recent(&self) -> Vec<Notice> {
        self.recent.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// The notifier of a running gateway: the `[notify]` table of the policy in force when a
/// notice happens decides where it goes (so a reload changes it). Call inside the runtime.
pub fn from_env() -> Notifier {
    Notifier::default().start_delivery()
}
