//! The second factor in-process: ceremonies against the library with a test clock, TOTP
//! codes from Debian's `oathtool` (an independent implementation), WebAuthn against
//! webauthn-authenticator-rs's `SoftPasskey`. No sockets, no sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use sekisho::auth::crypto::StateKey;
use sekisho::auth::{Auth, Client, Origin};
use sekisho::clock::FixedClock;
use sekisho::store::SledStore;
use sekisho_policy::{DeviceFacts, Policy};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use webauthn_authenticator_rs::WebauthnAuthenticator as _;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

/// 2025-01-01T00:00:15Z: inside a 30-second step, 15 s from its edges.
const T0: u64 = 1_735_689_615;

const POLICY: &str = r#"
version = 1
[server]
listen = ["127.0.0.1:8443"]
hostnames = ["localhost"]
tls_cert = "/nonexistent/cert.pem"
tls_key = "/nonexistent/key.pem"
client_certificates = "off"
state_dir = "/nonexistent/state"
log_dir = "/nonexistent/log"

[session]
idle_timeout = "15m"
absolute_timeout = "8h"

[lockout]
max_failures = 3
window = "15m"
duration = "30m"

[[upstream]]
name = "admin"
url = "http://127.0.0.1:9000"

[[route]]
name = "admin"
paths = ["/admin"]
upstream = "admin"
access = "protected"
allow_ips = ["127.0.0.0/8"]
second_factor = ["webauthn", "totp"]
groups = ["admins"]

[[user]]
name = "alice"
email = "alice@gw.test"
groups = ["admins"]

[[user]]
name = "bob"
groups = ["admins"]
"#;

struct World {
    auth: Auth,
    clock: Arc<FixedClock>,
    policy: Policy,
    _dir: Dir,
}

struct Dir(std::path::PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn world() -> World {
    world_with(|store| Arc::new(store))
}

/// A world whose store is `wrap` of a fresh sled store (a test may put a fault in front).
fn world_with(wrap: impl FnOnce(SledStore) -> Arc<dyn sekisho::store::Store>) -> World {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sekisho-auth-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = wrap(SledStore::open(&dir).unwrap());
    let clock = FixedClock::at_unix(T0);
    let auth = Auth::new(store, StateKey::from_bytes(&[42u8; 64]).unwrap(), clock.clone());
    World {
        auth,
        clock,
        policy: sekisho_policy::parse("test.toml", POLICY).unwrap(),
        _dir: Dir(dir),
    }
}

fn here() -> Client {
    Client {
        ip: "127.0.0.1".parse().unwrap(),
        device: None,
    }
}

fn origin() -> Origin {
    Origin {
        host: "localhost".into(),
        port: 8443,
    }
}

fn now(w: &World) -> i64 {
    w.auth.now()
}

/// `oathtool --totp -b --now=@T SECRET`: the code an independent implementation makes.
fn oathtool(secret_b32: &str, at: i64) -> String {
    let out = Command::new("oathtool")
        .args(["--totp", "-b", &format!("--now=@{at}"), secret_b32])
        .output()
        .expect("oathtool must be installed (Debian package oathtool); .ci/run installs it");
    assert!(
        out.status.success(),
        "oathtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn secret_of(otpauth: &str) -> String {
    let q = otpauth.split_once('?').unwrap().1;
    q.split('&')
        .find_map(|kv| kv.strip_prefix("secret="))
        .unwrap()
        .to_owned()
}

/// Invites alice and enrols TOTP with oathtool's code; returns the base32 secret.
fn enrol_totp(w: &World) -> String {
    let (token, _) = w.auth.invite(&w.policy, "alice", 15 * 60).unwrap();
    let e = w.auth.claim_invitation(&w.policy, &token, &here()).unwrap();
    let secret = secret_of(&e.otpauth);
    let code = oathtool(&secret, now(w));
    w.auth.enrol_totp(&w.policy, &e.id, &code, &here()).unwrap();
    secret
}

fn step(w: &World) {
    w.clock.advance(Duration::from_secs(30));
}

#[test]
fn totp_valid_code_from_oathtool_logs_in_and_its_replay_is_refused() {
    let w = world();
    let secret = enrol_totp(&w);
    step(&w);
    let code = oathtool(&secret, now(&w));
    let s = w.auth.login_totp(&w.policy, "alice", &code, &here()).unwrap();
    assert_eq!(s.user, "alice");
    // MFA-001: the same code again, within its step, after logging out.
    w.auth.end_session(&s.token).unwrap();
    let again = w.auth.login_totp(&w.policy, "alice", &code, &here());
    assert_eq!(again.unwrap_err().0, "totp_replayed");
}

#[test]
fn totp_the_enrolment_code_cannot_be_used_again_to_log_in() {
    let w = world();
    let secret = enrol_totp(&w);
    let code = oathtool(&secret, now(&w));
    assert_eq!(
        w.auth.login_totp(&w.policy, "alice", &code, &here()).unwrap_err().0,
        "totp_replayed"
    );
}

#[test]
fn totp_two_concurrent_uses_of_one_code_one_wins() {
    for _ in 0..20 {
        let w = Arc::new(world());
        let secret = enrol_totp(&w);
        step(&w);
        let code = oathtool(&secret, now(&w));
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (w, code, barrier) = (w.clone(), code.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    w.auth.login_totp(&w.policy, "alice", &code, &here()).is_ok()
                })
            })
            .collect();
        let wins: usize = handles.into_iter().map(|h| usize::from(h.join().unwrap())).sum();
        assert_eq!(wins, 1, "exactly one of two concurrent uses of one code must win");
    }
}

#[test]
fn totp_skew_of_one_step_is_accepted_and_two_steps_refused() {
    // MFA-004: codes for t-60, t+60 refused; t-30 and t+30 accepted (each once).
    for off in [-90, -60, 60, 90] {
        // A fresh world each: four failures would lock alice (max_failures = 3).
        let w = world();
        let secret = enrol_totp(&w);
        w.clock.advance(Duration::from_secs(300));
        let code = oathtool(&secret, now(&w) + off);
        let r = w.auth.login_totp(&w.policy, "alice", &code, &here());
        assert_eq!(r.unwrap_err().0, "totp_wrong_code", "offset {off}");
    }
    let w = world();
    let secret = enrol_totp(&w);
    w.clock.advance(Duration::from_secs(300));
    let t = now(&w);
    assert!(
        w.auth
            .login_totp(&w.policy, "alice", &oathtool(&secret, t - 30), &here())
            .is_ok(),
        "t-30"
    );
    assert!(
        w.auth
            .login_totp(&w.policy, "alice", &oathtool(&secret, t + 30), &here())
            .is_ok(),
        "t+30"
    );
    // After t+30 was used, the code for t (an earlier step) is a replay.
    assert_eq!(
        w.auth
            .login_totp(&w.policy, "alice", &oathtool(&secret, t), &here())
            .unwrap_err()
            .0,
        "totp_replayed"
    );
}

#[test]
fn lockout_shares_one_counter_across_spellings_and_locks_the_address_too() {
    // MFA-005: 'alice', 'Alice', ' alice' and 'ALICE' are one user.
    let w = world();
    let secret = enrol_totp(&w);
    for typed in ["alice", "Alice", " ALICE"] {
        step(&w);
        assert!(w.auth.login_totp(&w.policy, typed, "000000", &here()).is_err());
    }
    step(&w);
    let good = oathtool(&secret, now(&w));
    assert_eq!(
        w.auth.login_totp(&w.policy, "alice", &good, &here()).unwrap_err().0,
        "locked_out"
    );
    // The address is locked as well: bob from the same address is refused.
    assert_eq!(
        w.auth.login_totp(&w.policy, "bob", "123456", &here()).unwrap_err().0,
        "locked_out"
    );
    // From another address, alice is still locked.
    let other = Client {
        ip: "127.0.0.2".parse().unwrap(),
        device: None,
    };
    assert_eq!(
        w.auth.login_totp(&w.policy, "alice", &good, &other).unwrap_err().0,
        "locked_out"
    );
    // After the lock's duration (30 min), a fresh code works.
    w.clock.advance(Duration::from_secs(30 * 60 + 30));
    let good = oathtool(&secret, now(&w));
    assert!(w.auth.login_totp(&w.policy, "alice", &good, &other).is_ok());
}

#[test]
fn lockout_backs_off_doubling_the_duration() {
    let w = world();
    let secret = enrol_totp(&w);
    let fail3 = |w: &World| {
        for _ in 0..3 {
            let _ = w.auth.login_totp(&w.policy, "alice", "000000", &here());
        }
    };
    fail3(&w);
    w.clock.advance(Duration::from_secs(30 * 60 + 1));
    fail3(&w);
    // The second lock lasts 60 minutes: still locked after 45.
    w.clock.advance(Duration::from_secs(45 * 60));
    let good = oathtool(&secret, now(&w));
    assert_eq!(
        w.auth.login_totp(&w.policy, "alice", &good, &here()).unwrap_err().0,
        "locked_out"
    );
    w.clock.advance(Duration::from_secs(16 * 60));
    let good = oathtool(&secret, now(&w));
    assert!(w.auth.login_totp(&w.policy, "alice", &good, &here()).is_ok());
}

#[test]
fn unknown_users_and_users_without_factors_are_counted_and_refused_alike() {
    // MFA-007 and SESS-008: no session without a completed factor; every name counts.
    let w = world();
    for typed in ["nobody", "bob"] {
        let r = w.auth.login_totp(&w.policy, typed, "123456", &here());
        assert!(r.is_err(), "{typed}");
    }
    // nobody got three failures' worth of lock too (no difference between names).
    for _ in 0..2 {
        let _ = w.auth.login_totp(&w.policy, "nobody", "123456", &here());
    }
    assert_eq!(
        w.auth.login_totp(&w.policy, "nobody", "123456", &here()).unwrap_err().0,
        "locked_out"
    );
}

#[test]
fn invitations_are_single_use_expire_and_only_work_from_where_the_user_may_reach() {
    let w = world();
    let (token, _) = w.auth.invite(&w.policy, "alice", 15 * 60).unwrap();
    let outside = Client {
        ip: "192.0.2.7".parse().unwrap(),
        device: None,
    };
    assert_eq!(
        w.auth.claim_invitation(&w.policy, &token, &outside).unwrap_err().0,
        "invitation_from_elsewhere"
    );
    // Another user's device certificate cannot use alice's invitation.
    let bobs_laptop = Client {
        ip: "127.0.0.1".parse().unwrap(),
        device: Some(DeviceFacts {
            fingerprint: "ab".into(),
            user: Some("bob".into()),
            name: "bob-laptop".into(),
        }),
    };
    assert!(w.auth.claim_invitation(&w.policy, &token, &bobs_laptop).is_err());
    assert!(w.auth.claim_invitation(&w.policy, &token, &here()).is_ok());
    assert_eq!(
        w.auth.claim_invitation(&w.policy, &token, &here()).unwrap_err().0,
        "invitation_used"
    );

    let (late, _) = w.auth.invite(&w.policy, "alice", 15 * 60).unwrap();
    w.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        w.auth.claim_invitation(&w.policy, &late, &here()).unwrap_err().0,
        "invitation_expired"
    );

    assert!(
        w.auth.invite(&w.policy, "mallory", 15 * 60).is_err(),
        "only policy users"
    );
}

#[test]
fn two_concurrent_claims_of_one_invitation_one_wins() {
    let w = Arc::new(world());
    let (token, _) = w.auth.invite(&w.policy, "alice", 15 * 60).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (w, token) = (w.clone(), token.clone());
            std::thread::spawn(move || w.auth.claim_invitation(&w.policy, &token, &here()).is_ok())
        })
        .collect();
    let wins: usize = handles.into_iter().map(|h| usize::from(h.join().unwrap())).sum();
    assert_eq!(wins, 1);
}

fn session_of(w: &World, token: &str, client: &Client) -> Option<sekisho::auth::Live> {
    let mut h = http::HeaderMap::new();
    h.insert(http::header::COOKIE, format!("__Host-sekisho={token}").parse().unwrap());
    w.auth.session(&w.policy, &h, client)
}

#[test]
fn sessions_end_on_idle_and_absolute_timeouts() {
    let w = world();
    let secret = enrol_totp(&w);
    step(&w);
    let s = w
        .auth
        .login_totp(&w.policy, "alice", &oathtool(&secret, now(&w)), &here())
        .unwrap();
    assert!(session_of(&w, &s.token, &here()).is_some());
    w.clock.advance(Duration::from_secs(14 * 60));
    assert!(
        session_of(&w, &s.token, &here()).is_some(),
        "active within the idle timeout"
    );
    w.clock.advance(Duration::from_secs(15 * 60));
    assert!(session_of(&w, &s.token, &here()).is_none(), "idle for 15 minutes");

    step(&w);
    let s = w
        .auth
        .login_totp(&w.policy, "alice", &oathtool(&secret, now(&w)), &here())
        .unwrap();
    for _ in 0..(8 * 6 - 1) {
        w.clock.advance(Duration::from_secs(10 * 60));
        assert!(session_of(&w, &s.token, &here()).is_some());
    }
    w.clock.advance(Duration::from_secs(10 * 60));
    assert!(session_of(&w, &s.token, &here()).is_none(), "8 hours after login");
}

#[test]
fn a_session_is_bound_to_its_device_and_ends_when_the_user_is_disabled_or_leaves() {
    let w = world();
    let secret = enrol_totp(&w);
    step(&w);
    let s = w
        .auth
        .login_totp(&w.policy, "alice", &oathtool(&secret, now(&w)), &here())
        .unwrap();
    let elsewhere = Client {
        ip: "127.0.0.1".parse().unwrap(),
        device: Some(DeviceFacts {
            fingerprint: "cd".into(),
            user: None,
            name: "other".into(),
        }),
    };
    assert!(session_of(&w, &s.token, &elsewhere).is_none(), "another device");
    assert!(session_of(&w, &s.token, &here()).is_none(), "and then it is gone");

    step(&w);
    let s = w
        .auth
        .login_totp(&w.policy, "alice", &oathtool(&secret, now(&w)), &here())
        .unwrap();
    let r = sekisho::auth::admin::execute(
        &w.auth,
        &w.policy,
        &sekisho::auth::admin::Request::Disable { user: "Alice".into() },
    );
    assert!(r.ok, "{}", r.text);
    assert!(session_of(&w, &s.token, &here()).is_none(), "disabled");
    step(&w);
    assert_eq!(
        w.auth
            .login_totp(&w.policy, "alice", &oathtool(&secret, now(&w)), &here())
            .unwrap_err()
            .0,
        "user_disabled"
    );
    let r = sekisho::auth::admin::execute(
        &w.auth,
        &w.policy,
        &sekisho::auth::admin::Request::Enable { user: "alice".into() },
    );
    assert!(r.ok);
    step(&w);
    let s = w
        .auth
        .login_totp(&w.policy, "alice", &oathtool(&secret, now(&w)), &here())
        .unwrap();
    // Alice leaves the policy, then loses her group: either ends the session.
    let without = sekisho_policy::parse("t.toml", &POLICY.replace("name = \"alice\"", "name = \"carol\"")).unwrap();
    assert!(w.auth.session(&without, &cookie(&s.token), &here()).is_none());
    step(&w);
    let s = w
        .auth
        .login_totp(&w.policy, "alice", &oathtool(&secret, now(&w)), &here())
        .unwrap();
    let demoted = sekisho_policy::parse(
        "t.toml",
        &POLICY.replace(
            "email = \"alice@gw.test\"\ngroups = [\"admins\"]",
            "email = \"alice@gw.test\"\ngroups = [\"staff\"]",
        ),
    )
    .unwrap();
    assert!(w.auth.session(&demoted, &cookie(&s.token), &here()).is_none());
}

fn cookie(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(http::header::COOKIE, format!("__Host-sekisho={token}").parse().unwrap());
    h
}

#[test]
fn a_planted_or_malformed_cookie_names_no_session() {
    // SESS-001 / SESS-004: a value the server never issued, duplicates, junk.
    let w = world();
    for v in [
        "__Host-sekisho=%%%%",
        "__Host-sekisho=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "__Host-sekisho=a; __Host-sekisho=b",
    ] {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::COOKIE, v.parse().unwrap());
        assert!(w.auth.session(&w.policy, &h, &here()).is_none(), "{v}");
    }
}

#[test]
fn every_login_makes_a_fresh_session_id() {
    let w = world();
    let secret = enrol_totp(&w);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5 {
        step(&w);
        let s = w
            .auth
            .login_totp(&w.policy, "alice", &oathtool(&secret, now(&w)), &here())
            .unwrap();
        assert!(seen.insert(s.token));
    }
}

// ---- WebAuthn with a software authenticator ---------------------------------------------

fn url() -> url::Url {
    url::Url::parse(&origin().url()).unwrap()
}

/// Invites alice and registers a SoftPasskey (user verification claimed).
/// Starts a passkey login for alice from here.
fn login_start(w: &World) -> (String, webauthn_rs::prelude::RequestChallengeResponse) {
    w.auth
        .webauthn_login_start(&w.policy, "alice", &here(), &origin())
        .unwrap()
}

/// Finishes a passkey login from here.
fn login_finish(
    w: &World,
    id: &str,
    answer: &webauthn_rs::prelude::PublicKeyCredential,
) -> Result<sekisho::auth::NewSession, sekisho::auth::Refused> {
    w.auth.webauthn_login_finish(&w.policy, id, answer, &here(), &origin())
}

fn enrol_passkey(w: &World) -> SoftPasskey {
    let (token, _) = w.auth.invite(&w.policy, "alice", 15 * 60).unwrap();
    let e = w.auth.claim_invitation(&w.policy, &token, &here()).unwrap();
    let (reg_id, ccr) = w.auth.webauthn_enrol_start(&e.id, &here(), &origin()).unwrap();
    let mut key = SoftPasskey::new(true);
    let answer = key.do_registration(url(), ccr).unwrap();
    w.auth
        .webauthn_enrol_finish(&w.policy, &reg_id, &answer, &here(), &origin())
        .unwrap();
    key
}

#[test]
fn webauthn_register_then_login() {
    let w = world();
    let mut key = enrol_passkey(&w);
    let (id, rcr) = login_start(&w);
    let answer = key.do_authentication(url(), rcr).unwrap();
    let s = login_finish(&w, &id, &answer).unwrap();
    let live = session_of(&w, &s.token, &here()).unwrap();
    assert_eq!(live.facts.factors, vec![sekisho_policy::Factor::Webauthn]);
}

#[test]
fn webauthn_a_replayed_assertion_is_refused() {
    // MFA-012: the same answer, to the same ceremony and to a new one.
    let w = world();
    let mut key = enrol_passkey(&w);
    let (id, rcr) = login_start(&w);
    let answer = key.do_authentication(url(), rcr).unwrap();
    assert!(login_finish(&w, &id, &answer).is_ok());
    assert_eq!(login_finish(&w, &id, &answer).unwrap_err().0, "ceremony_unknown");
    let (id2, _) = login_start(&w);
    assert_eq!(
        login_finish(&w, &id2, &answer).unwrap_err().0,
        "webauthn_assertion_invalid"
    );
}

#[test]
fn webauthn_a_counter_that_goes_back_is_refused_and_alerted() {
    // MFA-010: an assertion made earlier (lower counter) presented after a later one.
    let w = world();
    let mut key = enrol_passkey(&w);
    let (early_id, early_rcr) = login_start(&w);
    let early = key.do_authentication(url(), early_rcr).unwrap();
    let (late_id, late_rcr) = login_start(&w);
    let late = key.do_authentication(url(), late_rcr).unwrap();
    assert!(login_finish(&w, &late_id, &late).is_ok());
    assert_eq!(
        login_finish(&w, &early_id, &early).unwrap_err().0,
        "webauthn_counter_regression"
    );
    assert!(
        w.auth.notices().iter().any(|n| n.kind() == "counter_regression"),
        "an alert was raised"
    );
    // The stored counter was not lowered: the next real assertion still works.
    let (id, rcr) = login_start(&w);
    let next = key.do_authentication(url(), rcr).unwrap();
    assert!(login_finish(&w, &id, &next).is_ok());
}

#[test]
fn webauthn_without_user_verification_is_refused() {
    // MFA-011: the authenticator answers with UP only (the RP asked for UV).
    let w = world();
    let mut key = enrol_passkey(&w);
    let (id, mut rcr) = login_start(&w);
    rcr.public_key.user_verification = webauthn_rs_proto::UserVerificationPolicy::Discouraged_DO_NOT_USE;
    let answer = key.do_authentication(url(), rcr).unwrap();
    let r = login_finish(&w, &id, &answer);
    assert!(r.is_err(), "an assertion without UV must not log in");
    // Registration without UV is refused too.
    let (token, _) = w.auth.invite(&w.policy, "alice", 15 * 60).unwrap();
    let e = w.auth.claim_invitation(&w.policy, &token, &here()).unwrap();
    let (reg_id, mut ccr) = w.auth.webauthn_enrol_start(&e.id, &here(), &origin()).unwrap();
    if let Some(sel) = ccr.public_key.authenticator_selection.as_mut() {
        sel.user_verification = webauthn_rs_proto::UserVerificationPolicy::Discouraged_DO_NOT_USE;
    }
    let mut plain = SoftPasskey::new(false);
    let answer = plain.do_registration(url(), ccr).unwrap();
    assert!(
        w.auth
            .webauthn_enrol_finish(&w.policy, &reg_id, &answer, &here(), &origin())
            .is_err()
    );
}

#[test]
fn webauthn_look_alike_origins_and_rp_ids_are_refused() {
    // MFA-008 / MFA-009: the authenticator signs for another origin or rp id.
    let w = world();
    let mut key = enrol_passkey(&w);
    for evil in [
        "https://localhost.evil.example:8443",
        "https://evillocalhost:8443",
        "https://localhost:8444",
    ] {
        let (id, rcr) = login_start(&w);
        let answer = key.do_authentication(url::Url::parse(evil).unwrap(), rcr);
        if let Ok(answer) = answer {
            assert!(login_finish(&w, &id, &answer).is_err(), "{evil}");
        }
    }
    let (id, mut rcr) = login_start(&w);
    rcr.public_key.rp_id = "evil.example".into();
    if let Ok(answer) = key.do_authentication(url::Url::parse("https://evil.example").unwrap(), rcr) {
        assert!(login_finish(&w, &id, &answer).is_err());
    }
}

#[test]
fn webauthn_ceremonies_are_bound_to_the_client_and_expire() {
    let w = world();
    let mut key = enrol_passkey(&w);
    let (id, rcr) = login_start(&w);
    let answer = key.do_authentication(url(), rcr).unwrap();
    let other = Client {
        ip: "127.0.0.3".parse().unwrap(),
        device: None,
    };
    assert_eq!(
        w.auth
            .webauthn_login_finish(&w.policy, &id, &answer, &other, &origin())
            .unwrap_err()
            .0,
        "ceremony_other_client"
    );
    let (id, rcr) = login_start(&w);
    let answer = key.do_authentication(url(), rcr).unwrap();
    w.clock.advance(Duration::from_secs(5 * 60));
    assert_eq!(login_finish(&w, &id, &answer).unwrap_err().0, "ceremony_expired");
}

#[test]
fn webauthn_start_looks_the_same_for_unknown_users() {
    let w = world();
    let _key = enrol_passkey(&w);
    let (_, real) = login_start(&w);
    let (_, decoy) = w
        .auth
        .webauthn_login_start(&w.policy, "nobody", &here(), &origin())
        .unwrap();
    let shape = |r: &webauthn_rs::prelude::RequestChallengeResponse| {
        (
            r.public_key.allow_credentials.len(),
            r.public_key.rp_id.clone(),
            r.public_key.user_verification,
        )
    };
    assert_eq!(shape(&real), shape(&decoy));
}

#[test]
fn removing_the_last_factor_ends_sessions_and_blocks_login() {
    let w = world();
    let secret = enrol_totp(&w);
    step(&w);
    let s = w
        .auth
        .login_totp(&w.policy, "alice", &oathtool(&secret, now(&w)), &here())
        .unwrap();
    let rec = sekisho::auth::records::load(w.auth.store(), "alice").unwrap().unwrap();
    let id = rec.factors[0].id.clone();
    let r = sekisho::auth::admin::execute(
        &w.auth,
        &w.policy,
        &sekisho::auth::admin::Request::RemoveFactor {
            user: "alice".into(),
            id,
        },
    );
    assert!(r.ok, "{}", r.text);
    assert!(session_of(&w, &s.token, &here()).is_none());
    step(&w);
    assert_eq!(
        w.auth
            .login_totp(&w.policy, "alice", &oathtool(&secret, now(&w)), &here())
            .unwrap_err()
            .0,
        "no_factor_enrolled"
    );
}

#[test]
fn totp_secrets_are_sealed_at_rest() {
    let w = world();
    let secret = enrol_totp(&w);
    let raw = w
        .auth
        .store()
        .get(sekisho::store::Tree::Users, b"alice")
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains(&secret), "the base32 secret is not stored in clear");
}

// ---- The store failing under a live session (corpus SESS-005) ----------------------------

/// The real sled store, with a switch that makes every operation fail, as a disk or
/// storage engine that stops answering would.
#[derive(Debug)]
struct Failing {
    inner: SledStore,
    broken: std::sync::atomic::AtomicBool,
}

impl Failing {
    fn check(&self) -> Result<(), sekisho::store::StoreError> {
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            Err(sekisho::store::StoreError("injected: the store does not answer".into()))
        } else {
            Ok(())
        }
    }
}

impl sekisho::store::Store for Failing {
    fn get(&self, tree: sekisho::store::Tree, key: &[u8]) -> Result<Option<Vec<u8>>, sekisho::store::StoreError> {
        self.check()?;
        self.inner.get(tree, key)
    }
    fn put(&self, tree: sekisho::store::Tree, key: &[u8], value: &[u8]) -> Result<(), sekisho::store::StoreError> {
        self.check()?;
        self.inner.put(tree, key, value)
    }
    fn take(&self, tree: sekisho::store::Tree, key: &[u8]) -> Result<Option<Vec<u8>>, sekisho::store::StoreError> {
        self.check()?;
        self.inner.take(tree, key)
    }
    fn compare_and_swap(
        &self,
        tree: sekisho::store::Tree,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, sekisho::store::StoreError> {
        self.check()?;
        self.inner.compare_and_swap(tree, key, old, new)
    }
    fn scan_prefix(
        &self,
        tree: sekisho::store::Tree,
        prefix: &[u8],
    ) -> Result<sekisho::store::Entries, sekisho::store::StoreError> {
        self.check()?;
        self.inner.scan_prefix(tree, prefix)
    }
    fn flush(&self) -> Result<(), sekisho::store::StoreError> {
        self.check()?;
        self.inner.flush()
    }
    fn snapshot(
        &self,
        trees: &[sekisho::store::Tree],
    ) -> Result<Vec<(sekisho::store::Tree, sekisho::store::Entries)>, sekisho::store::StoreError> {
        self.check()?;
        self.inner.snapshot(trees)
    }
}

#[test]
fn a_store_that_stops_answering_fails_closed_and_a_session_returns_with_it() {
    // SESS-005: a previously valid cookie while the session store is unavailable names no
    // session (the pipeline then answers the login redirect or 401, never the upstream), and
    // no login can make one; when the store answers again the session is still there.
    let mut failing = None;
    let w = world_with(|inner| {
        let store = Arc::new(Failing {
            inner,
            broken: false.into(),
        });
        failing = Some(store.clone());
        store
    });
    let store = failing.unwrap();
    let secret = enrol_totp(&w);
    step(&w);
    let s = w
        .auth
        .login_totp(&w.policy, "alice", &oathtool(&secret, now(&w)), &here())
        .unwrap();
    assert!(session_of(&w, &s.token, &here()).is_some());

    store.broken.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(session_of(&w, &s.token, &here()).is_none(), "fail closed");
    step(&w);
    assert!(
        w.auth
            .login_totp(&w.policy, "alice", &oathtool(&secret, now(&w)), &here())
            .is_err(),
        "no login while the store cannot record it"
    );

    store.broken.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(session_of(&w, &s.token, &here()).is_some(), "the session survived");
}

#[test]
fn a_claimed_invitation_is_no_session_until_its_factor_is_proven() {
    // MFA-006: Sekisho has no password stage; its only "pending" state is an enrolment that
    // was started but not proven. Its id is not a session, and a wrong code makes none.
    let w = world();
    let (token, _) = w.auth.invite(&w.policy, "alice", 15 * 60).unwrap();
    let e = w.auth.claim_invitation(&w.policy, &token, &here()).unwrap();
    assert!(
        session_of(&w, &e.id, &here()).is_none(),
        "the enrolment id is not a cookie"
    );
    assert!(session_of(&w, &token, &here()).is_none(), "nor is the invitation token");
    assert!(w.auth.enrol_totp(&w.policy, &e.id, "000000", &here()).is_err());
    assert_eq!(w.auth.count_sessions(&w.policy).unwrap(), 0);
}

#[test]
fn the_sweep_forgets_expired_ceremonies_and_spent_lockout_counters_only() {
    use sekisho::auth::sweep::Swept;
    use sekisho::store::Tree;
    let w = world();
    for name in ["mallory", "eve", "trudy"] {
        w.auth
            .webauthn_login_start(&w.policy, name, &here(), &origin())
            .unwrap();
    }
    // A failed login for a made-up name: counters for the name and for the address.
    assert!(w.auth.login_totp(&w.policy, "nobody", "000000", &here()).is_err());
    let count = |tree| w.auth.store().scan_prefix(tree, b"").unwrap().len();
    assert_eq!((count(Tree::Ceremonies), count(Tree::Lockout)), (3, 2));
    assert_eq!(
        w.auth.sweep(&w.policy).unwrap(),
        Swept::default(),
        "nothing expired yet"
    );
    // Past the ceremonies' 5 minutes, inside the lockout's 15-minute window.
    w.clock.advance(Duration::from_secs(6 * 60));
    let swept = w.auth.sweep(&w.policy).unwrap();
    assert_eq!((swept.ceremonies, swept.lockout_counters), (3, 0));
    w.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(w.auth.sweep(&w.policy).unwrap().lockout_counters, 2);
    assert_eq!((count(Tree::Ceremonies), count(Tree::Lockout)), (0, 0));
}

#[test]
fn the_sweep_keeps_a_lock_and_its_backoff_until_they_cannot_matter() {
    let w = world();
    for _ in 0..3 {
        assert!(w.auth.login_totp(&w.policy, "nobody", "000000", &here()).is_err());
    }
    let locked = |w: &World| w.auth.login_totp(&w.policy, "nobody", "000000", &here()).unwrap_err().0;
    assert_eq!(locked(&w), "locked_out");
    assert_eq!(
        w.auth.sweep(&w.policy).unwrap().lockout_counters,
        0,
        "a running lock stays"
    );
    // The lock (30 minutes) has ended, but a lock soon after would double: remembered.
    w.clock.advance(Duration::from_secs(31 * 60));
    assert_eq!(w.auth.sweep(&w.policy).unwrap().lockout_counters, 0);
    // Longer than the longest doubled lock (32 × 30 minutes) after it ended: forgotten.
    w.clock.advance(Duration::from_secs(17 * 3600));
    assert_eq!(w.auth.sweep(&w.policy).unwrap().lockout_counters, 2);
}
