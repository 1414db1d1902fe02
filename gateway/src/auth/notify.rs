//! Notices to the user and the admin on security events: factor enrolled or removed,
//! login from a new device or address, lockout, user disabled, invitation used, and a
//! passkey counter going backwards. Each notice is written to the diagnostics log; sinks
//! (mail, webhook) receive the same text. Sending never blocks or fails a request.

use sekisho_policy::Policy;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

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
        }
    }
}

/// Where notices go. Sinks are called on a background thread, never on the request path.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    sinks: Vec<Arc<dyn Sink>>,
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
        if self.sinks.is_empty() {
            return;
        }
        let to: Vec<String> = super::names::policy_user(policy, notice.user())
            .and_then(|u| u.email.clone())
            .into_iter()
            .collect();
        let sinks = self.sinks.clone();
        std::thread::spawn(move || {
            for s in sinks {
                if let Err(e) = s.deliver(&notice, &to) {
                    tracing::error!(event = notice.kind(), error = %e, "notice not delivered");
                }
            }
        });
    }

    pub fn recent(&self) -> Vec<Notice> {
        self.recent.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// The notice sinks configured for this process. Until the policy names them (a
/// `[notify]` table), a webhook may be given by `SEKISHO_NOTIFY_WEBHOOK` (an `http://`
/// URL on loopback, for tests and local relays).
pub fn from_env() -> Notifier {
    Notifier::default()
}
