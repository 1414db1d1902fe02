//! Every bypass-corpus case of the replayed classes, one named test each, against the real
//! binary: the request bytes go out verbatim from the case's source address with its SNI
//! and client certificate; the verdict is what the echo upstreams received (the paranoid
//! oracle) plus the case's assert keys. Scenario cases are written by hand at the bottom.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step must stop the test with its message"
)]

use std::time::Duration;

use sekisho_tests::assert_eventually_async;
use sekisho_tests::client::tls_config;
use sekisho_tests::contexts::{ADMIN_HOST, ADMIN_IP, Context, OUTSIDER_IP, PUBLIC_HOST, Stack, pki};
use sekisho_tests::corpus::{self, judge};
use sekisho_tests::h2raw::{self, Frame, fields};

/// One test per listed case, and the list itself for the coverage test.
macro_rules! corpus_cases {
    ($($name:ident => $id:literal,)*) => {
        /// The replayed (byte-stream) cases.
        const REPLAYED: &[&str] = &[$($id),*];
        $(
            #[tokio::test]
            async fn $name() {
                corpus::check($id).await;
            }
        )*
    };
}

corpus_cases! {
    path_001 => "PATH-001",
    path_003 => "PATH-003",
    path_004 => "PATH-004",
    path_005 => "PATH-005",
    path_006 => "PATH-006",
    path_008 => "PATH-008",
    path_009 => "PATH-009",
    path_010 => "PATH-010",
    path_012 => "PATH-012",
    path_014 => "PATH-014",
    path_015 => "PATH-015",
    path_016 => "PATH-016",
    path_018 => "PATH-018",
    path_020 => "PATH-020",
    path_021 => "PATH-021",
    path_022 => "PATH-022",
    path_023 => "PATH-023",
    path_026 => "PATH-026",
    path_027 => "PATH-027",
    path_028 => "PATH-028",
    path_029 => "PATH-029",
    path_030 => "PATH-030",
    path_033 => "PATH-033",
    path_034 => "PATH-034",
    path_036 => "PATH-036",
    path_037 => "PATH-037",
    path_038 => "PATH-038",
    path_039 => "PATH-039",
    path_041 => "PATH-041",
    path_042 => "PATH-042",
    path_043 => "PATH-043",
    path_044 => "PATH-044",
    path_045 => "PATH-045",
    path_046 => "PATH-046",
    path_047 => "PATH-047",
    path_048 => "PATH-048",
    path_052 => "PATH-052",
    path_054 => "PATH-054",
    path_055 => "PATH-055",
    path_056 => "PATH-056",
    path_057 => "PATH-057",
    path_058 => "PATH-058",
    vpn_002 => "VPN-002",
    vpn_003 => "VPN-003",
    vpn_004 => "VPN-004",
    vpn_006 => "VPN-006",
    host_002 => "HOST-002",
    host_003 => "HOST-003",
    host_004 => "HOST-004",
    host_005 => "HOST-005",
    host_007 => "HOST-007",
    host_008 => "HOST-008",
    host_009 => "HOST-009",
    hdr_001 => "HDR-001",
    hdr_002 => "HDR-002",
    hdr_003 => "HDR-003",
    hdr_004 => "HDR-004",
    hdr_005 => "HDR-005",
    hdr_006 => "HDR-006",
    hdr_009 => "HDR-009",
    hdr_010 => "HDR-010",
    hdr_011 => "HDR-011",
    hdr_016 => "HDR-016",
    hdr_018 => "HDR-018",
    hdr_019 => "HDR-019",
    hdr_020 => "HDR-020",
    hdr_021 => "HDR-021",
    hdr_022 => "HDR-022",
    hdr_023 => "HDR-023",
    crlf_003 => "CRLF-003",
    crlf_005 => "CRLF-005",
    crlf_006 => "CRLF-006",
    crlf_007 => "CRLF-007",
    smug_001 => "SMUG-001",
    smug_002 => "SMUG-002",
    smug_003 => "SMUG-003",
    smug_004 => "SMUG-004",
    smug_006 => "SMUG-006",
    smug_007 => "SMUG-007",
    smug_008 => "SMUG-008",
    smug_009 => "SMUG-009",
    smug_011 => "SMUG-011",
    smug_012 => "SMUG-012",
    smug_014 => "SMUG-014",
    smug_015 => "SMUG-015",
    smug_016 => "SMUG-016",
    smug_017 => "SMUG-017",
    smug_019 => "SMUG-019",
    smug_020 => "SMUG-020",
    smug_022 => "SMUG-022",
    smug_023 => "SMUG-023",
    mtls_001 => "MTLS-001",
    mtls_003 => "MTLS-003",
    mtls_004 => "MTLS-004",
    mtls_006 => "MTLS-006",
    mtls_007 => "MTLS-007",
    mtls_008 => "MTLS-008",
    mtls_012 => "MTLS-012",
    sess_004 => "SESS-004",
}

/// Scenario cases, each a hand-written test below.
const SCENARIOS: &[&str] = &[
    "HOST-012", "SMUG-024", "SMUG-025", "SMUG-026", "SMUG-027", "SMUG-028", "MTLS-009",
];

#[test]
fn every_case_of_the_replayed_classes_has_a_test() {
    let mut missing = Vec::new();
    for case in corpus::in_scope() {
        let listed = if corpus::is_scenario(case) {
            SCENARIOS.contains(&case.id.as_str())
        } else {
            REPLAYED.contains(&case.id.as_str())
        };
        if !listed {
            missing.push(case.id.clone());
        }
    }
    assert!(missing.is_empty(), "corpus cases without a test: {missing:?}");
    let known: Vec<&str> = corpus::in_scope().iter().map(|c| c.id.as_str()).collect();
    for id in REPLAYED.iter().chain(SCENARIOS) {
        assert!(
            known.contains(id) || ELSEWHERE.iter().any(|(e, _, _)| e == id),
            "{id} is listed but not in the corpus's replayed classes"
        );
    }
}

/// Cases of the other classes (second factor, sessions, redirects, the log, the policy),
/// each with the test that covers it: (case, file from the workspace root, test function).
/// Byte cases among them are also replayed above when the runner can send them as they
/// are (SESS-004); the rest need a login, a test clock or the policy library.
const ELSEWHERE: &[(&str, &str, &str)] = &[
    (
        "REDIR-001",
        SECOND_FACTOR,
        "open_redirect_corpus_cases_land_inside_the_gateway",
    ),
    (
        "REDIR-004",
        SECOND_FACTOR,
        "open_redirect_corpus_cases_land_inside_the_gateway",
    ),
    (
        "REDIR-005",
        SECOND_FACTOR,
        "open_redirect_corpus_cases_land_inside_the_gateway",
    ),
    (
        "REDIR-006",
        SECOND_FACTOR,
        "open_redirect_corpus_cases_land_inside_the_gateway",
    ),
    (
        "REDIR-007",
        SECOND_FACTOR,
        "open_redirect_corpus_cases_land_inside_the_gateway",
    ),
    (
        "REDIR-008",
        SECOND_FACTOR,
        "open_redirect_corpus_cases_land_inside_the_gateway",
    ),
    (
        "REDIR-009",
        SECOND_FACTOR,
        "open_redirect_corpus_cases_land_inside_the_gateway",
    ),
    (
        "REDIR-010",
        SECOND_FACTOR,
        "open_redirect_corpus_cases_land_inside_the_gateway",
    ),
    (
        "REDIR-011",
        SECOND_FACTOR,
        "open_redirect_corpus_cases_land_inside_the_gateway",
    ),
    (
        "REDIR-014",
        SECOND_FACTOR,
        "open_redirect_corpus_cases_land_inside_the_gateway",
    ),
    (
        "MFA-001",
        AUTH,
        "totp_valid_code_from_oathtool_logs_in_and_its_replay_is_refused",
    ),
    (
        "MFA-004",
        AUTH,
        "totp_skew_of_one_step_is_accepted_and_two_steps_refused",
    ),
    (
        "MFA-005",
        AUTH,
        "lockout_shares_one_counter_across_spellings_and_locks_the_address_too",
    ),
    (
        "MFA-006",
        AUTH,
        "a_claimed_invitation_is_no_session_until_its_factor_is_proven",
    ),
    (
        "MFA-007",
        AUTH,
        "unknown_users_and_users_without_factors_are_counted_and_refused_alike",
    ),
    ("MFA-008", AUTH, "webauthn_look_alike_origins_and_rp_ids_are_refused"),
    ("MFA-009", AUTH, "webauthn_look_alike_origins_and_rp_ids_are_refused"),
    (
        "MFA-010",
        AUTH,
        "webauthn_a_counter_that_goes_back_is_refused_and_alerted",
    ),
    ("MFA-011", AUTH, "webauthn_without_user_verification_is_refused"),
    ("MFA-012", AUTH, "webauthn_a_replayed_assertion_is_refused"),
    ("SESS-001", AUTH, "a_planted_or_malformed_cookie_names_no_session"),
    ("SESS-004", AUTH, "a_planted_or_malformed_cookie_names_no_session"),
    (
        "SESS-005",
        AUTH,
        "a_store_that_stops_answering_fails_closed_and_a_session_returns_with_it",
    ),
    (
        "SESS-008",
        SECOND_FACTOR,
        "login_failures_look_the_same_for_every_user_name",
    ),
    (
        "SESS-009",
        SECOND_FACTOR,
        "no_internal_endpoint_is_reachable_on_the_listener",
    ),
    (
        "SESS-011",
        POLICY_DIAGNOSTICS,
        "corpus_sess_011_an_address_with_two_at_signs_is_refused",
    ),
    (
        "LOG-003",
        AUDIT_LOG,
        "log_003_a_newline_in_a_login_form_field_forges_nothing",
    ),
    (
        "LOG-004",
        AUDIT_LOG,
        "log_004_del_and_high_bytes_in_a_header_stay_one_valid_record",
    ),
    (
        "LOG-006",
        AUDIT_LOG,
        "log_006_tampering_with_the_gateways_own_log_is_found_at_the_record",
    ),
    ("POL-001", POLICY_AS_CODE, "pol_001_host_names_match_literally"),
    ("POL-003", POLICY_AS_CODE, "pol_003_routes_see_only_the_canonical_path"),
    ("POL-004", POLICY_AS_CODE, "pol_004_an_empty_group_entry_is_refused"),
    ("POL-005", POLICY_AS_CODE, "pol_005_invalid_pushes_are_refused_whole"),
];
const SECOND_FACTOR: &str = "tests/tests/second_factor.rs";
const AUTH: &str = "gateway/tests/auth.rs";
const AUDIT_LOG: &str = "tests/tests/audit_log.rs";
const POLICY_AS_CODE: &str = "policy/tests/suite/as_code.rs";
const POLICY_DIAGNOSTICS: &str = "policy/tests/suite/diagnostics.rs";

#[test]
fn every_case_of_the_other_classes_names_a_test_that_exists_and_cites_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut problems = Vec::new();
    for case in &corpus::corpus().case {
        if corpus::CLASSES.contains(&case.class.as_str()) {
            continue;
        }
        let listed: Vec<_> = ELSEWHERE.iter().filter(|(id, _, _)| *id == case.id).collect();
        if listed.is_empty() {
            problems.push(format!("{} ({}) has no test listed", case.id, case.class));
        }
        for (id, file, test) in listed {
            let text = std::fs::read_to_string(root.join(file)).unwrap_or_default();
            if !text.contains(&format!("fn {test}(")) {
                problems.push(format!("{id}: no `fn {test}` in {file}"));
            }
            // The class-wide redirect test reads the class; the others cite their case.
            if !text.contains(*id) && !text.contains(&format!("\"{}\"", case.class)) {
                problems.push(format!("{id}: {file} does not cite it"));
            }
        }
    }
    for (id, _, _) in ELSEWHERE {
        if !corpus::corpus().case.iter().any(|c| c.id == *id) {
            problems.push(format!("{id} is listed but not in the corpus"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Scenarios (HTTP/2, TLS resumption, revocation), written by hand.

const H2_WAIT: Duration = Duration::from_secs(5);

/// Sends raw HTTP/2 `frames` (stream 1) to the shared CTX-A stack with SNI `sni` and judges
/// the upstreams by the case's asserts and the oracle.
async fn h2_case(id: &str, sni: &str, frames: &[Frame]) {
    let case = corpus::case(id);
    let stack = Stack::shared(Context::A);
    let _serial = stack.lock.lock().await;
    let client = stack
        .client(&case.source_ip, sni)
        .with_config(tls_config(pki(), None, &[b"h2"], None));
    let (admin_mark, public_mark) = (stack.admin.recorded.mark(), stack.public.recorded.mark());
    let outcome = h2raw::exchange(&client, frames, H2_WAIT).await;
    assert!(
        outcome.error.is_none(),
        "{id}: no HTTP/2 exchange with the gateway: {:?}",
        outcome.error
    );
    let seen = corpus::Observation {
        sent: format!("{frames:?}").into_bytes(),
        device: None,
        exchange: Default::default(),
        admin_hits: stack.admin.recorded.since(admin_mark),
        public_hits: stack.public.recorded.since(public_mark),
    };
    let failures = judge(Context::A, &case.assert(), &seen);
    assert!(failures.is_empty(), "{id}: {outcome:?}\n{}", failures.join("\n"));
}

fn request_headers(method: &str, path: &str, authority: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    fields(&[
        (":method", method),
        (":scheme", "https"),
        (":path", path),
        (":authority", authority),
    ])
}

const SMUGGLED: &[u8] =
    b"GET /admin/ HTTP/1.1\r\nHost: admin.gw.test\r\nX-Sekisho-Smuggled: 1\r\nX-Smuggled: 1\r\n\r\n";

#[tokio::test]
async fn smug_024_h2_transfer_encoding_chunked_is_never_reframed_upstream() {
    let mut headers = request_headers("POST", "/public/", ADMIN_HOST);
    headers.extend(fields(&[("transfer-encoding", "chunked")]));
    let mut body = b"0\r\n\r\n".to_vec();
    body.extend_from_slice(SMUGGLED);
    h2_case(
        "SMUG-024",
        ADMIN_HOST,
        &[Frame::Headers(headers, false), Frame::Data(body, true)],
    )
    .await;
}

#[tokio::test]
async fn smug_025_h2_body_longer_than_content_length_zero_is_not_a_second_request() {
    let mut headers = request_headers("POST", "/public/", ADMIN_HOST);
    headers.extend(fields(&[("content-length", "0")]));
    h2_case(
        "SMUG-025",
        ADMIN_HOST,
        &[Frame::Headers(headers, false), Frame::Data(SMUGGLED.to_vec(), true)],
    )
    .await;
}

#[tokio::test]
async fn smug_026_h2_crlf_in_a_header_value_never_becomes_a_header() {
    let mut headers = request_headers("GET", "/public/", ADMIN_HOST);
    headers.push((
        b"foo".to_vec(),
        b"bar\r\nTransfer-Encoding: chunked\r\nX-Smuggled: 1".to_vec(),
    ));
    h2_case("SMUG-026", ADMIN_HOST, &[Frame::Headers(headers, true)]).await;
}

#[tokio::test]
async fn smug_027_h2_dot_segments_and_relative_paths_do_not_reach_admin() {
    let headers = request_headers("GET", "/public/../admin/", ADMIN_HOST);
    h2_case("SMUG-027", ADMIN_HOST, &[Frame::Headers(headers, true)]).await;
    let headers = request_headers("GET", "admin/", ADMIN_HOST);
    h2_case("SMUG-027", ADMIN_HOST, &[Frame::Headers(headers, true)]).await;
}

#[tokio::test]
async fn smug_027_through_a_real_h2_client_the_traversal_is_refused() {
    let stack = Stack::shared(Context::A);
    let _serial = stack.lock.lock().await;
    let client = stack
        .client(OUTSIDER_IP, ADMIN_HOST)
        .with_config(tls_config(pki(), None, &[b"h2"], None));
    let mark = stack.admin.recorded.mark();
    let result = h2raw::request(&client, "GET", "https://admin.gw.test/public/../admin/", &[], b"").await;
    let (status, _) = result.expect("an HTTP/2 answer");
    assert!([400, 401, 302, 403].contains(&status), "status {status}");
    let hits = stack.admin.recorded.since(mark);
    assert!(hits.is_empty(), "forwarded: {hits:?}");
}

#[tokio::test]
async fn smug_028_h2_authority_and_host_disagreeing_never_reach_admin() {
    let mut headers = request_headers("GET", "/admin/", PUBLIC_HOST);
    headers.extend(fields(&[("host", ADMIN_HOST)]));
    h2_case("SMUG-028", ADMIN_HOST, &[Frame::Headers(headers, true)]).await;
}

/// A session store that offers any ticket to any server name: the client side of
/// "resume a session made for another SNI" (HOST-012).
#[derive(Debug)]
struct AnyNameSessions(rustls::client::ClientSessionMemoryCache);

fn one_name() -> rustls_pki_types::ServerName<'static> {
    rustls_pki_types::ServerName::try_from("any.gw.test").unwrap()
}

impl rustls::client::ClientSessionStore for AnyNameSessions {
    fn set_kx_hint(&self, _: rustls_pki_types::ServerName<'static>, group: rustls::NamedGroup) {
        self.0.set_kx_hint(one_name(), group);
    }
    fn kx_hint(&self, _: &rustls_pki_types::ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.0.kx_hint(&one_name())
    }
    fn set_tls12_session(
        &self,
        _: rustls_pki_types::ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.0.set_tls12_session(one_name(), value);
    }
    fn tls12_session(&self, _: &rustls_pki_types::ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.0.tls12_session(&one_name())
    }
    fn remove_tls12_session(&self, _: &rustls_pki_types::ServerName<'static>) {
        self.0.remove_tls12_session(&one_name());
    }
    fn insert_tls13_ticket(
        &self,
        _: rustls_pki_types::ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.0.insert_tls13_ticket(one_name(), value);
    }
    fn take_tls13_ticket(
        &self,
        _: &rustls_pki_types::ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.0.take_tls13_ticket(&one_name())
    }
}

#[tokio::test]
async fn host_012_a_ticket_from_the_public_name_grants_nothing_on_the_admin_name() {
    let stack = Stack::shared(Context::A);
    let _serial = stack.lock.lock().await;
    let sessions = std::sync::Arc::new(AnyNameSessions(rustls::client::ClientSessionMemoryCache::new(64)));
    let config = tls_config(pki(), None, &[b"http/1.1"], Some(sessions));
    // 1. Full handshake with SNI public.gw.test; a request makes the client read the tickets.
    let public = stack.client(ADMIN_IP, PUBLIC_HOST).with_config(config.clone());
    let mut first = public.connect().await.expect("public handshake");
    let answer = first.request(b"GET / HTTP/1.1\r\nHost: public.gw.test\r\n\r\n").await;
    assert_eq!(answer.status(), Some(200), "{}", answer.describe());
    // 2. Same tickets offered to SNI admin.gw.test, from the allow-listed address.
    let admin = stack.client(ADMIN_IP, ADMIN_HOST).with_config(config);
    let mark = stack.admin.recorded.mark();
    let case = corpus::case("HOST-012");
    for (target, refused) in [("/admin/", &[401, 302, 403][..]), ("/device/", &[403][..])] {
        let Ok(mut second) = admin.connect().await else {
            continue; // refusing the resumption outright is also safe
        };
        let request = corpus::map_bytes(
            format!("GET {target} HTTP/1.1\r\nHost: admin.gw.test\r\nCookie: {{{{SESSION}}}}\r\n\r\n").as_bytes(),
        );
        let answer = second.request(&request).await;
        let resumed = second.tls.get_ref().1.handshake_kind();
        assert!(
            answer.status().is_none_or(|s| refused.contains(&s)),
            "{target} on a connection resumed ({resumed:?}) from the public name: {}",
            answer.describe()
        );
    }
    let hits = stack.admin.recorded.since(mark);
    let seen = corpus::Observation {
        sent: b"resumed".to_vec(),
        device: None,
        exchange: Default::default(),
        admin_hits: hits.clone(),
        public_hits: Vec::new(),
    };
    let failures = judge(Context::A, &case.assert(), &seen);
    assert!(
        failures.is_empty() && hits.is_empty(),
        "forwarded: {hits:?} {failures:?}"
    );
}

#[tokio::test]
async fn mtls_009_a_device_revoked_while_connected_loses_access_on_the_same_connection() {
    let pki = pki();
    let stack = Stack::start(Context::A, |spec| spec);
    let doomed = pki.issue_device("laptop-doomed");
    let get_device = b"GET /device/ HTTP/1.1\r\nHost: admin.gw.test\r\n\r\n";
    let mut holder = stack
        .client(ADMIN_IP, ADMIN_HOST)
        .with_device(pki, &doomed)
        .connect()
        .await
        .expect("the doomed device connects");
    let mut bystander = stack
        .client(ADMIN_IP, ADMIN_HOST)
        .with_device(pki, &pki.second_device)
        .connect()
        .await
        .expect("the second device connects");
    let before = holder.request(get_device).await;
    assert_eq!(before.status(), Some(200), "before revocation: {}", before.describe());
    let mut revoked = pki.initially_revoked();
    revoked.push(doomed.serial);
    pki.device_ca.write_crl(&stack.gateway.crl_path, &revoked);
    assert_eventually_async!(
        Duration::from_secs(15),
        {
            let answer = holder.request(get_device).await;
            answer.status() != Some(200)
        },
        "the revoked device still passes on its open connection; stderr:\n{}",
        stack.gateway.stderr_text()
    );
    let answer = bystander.request(get_device).await;
    assert_eq!(answer.status(), Some(200), "the other device: {}", answer.describe());
    // The corpus request itself: /admin/ with a session cookie and the revoked device.
    let case = corpus::case("MTLS-009");
    let mark = stack.admin.recorded.mark();
    for payload in corpus::payloads(case) {
        if let Ok(mut connection) = stack
            .client(ADMIN_IP, ADMIN_HOST)
            .with_device(pki, &doomed)
            .connect()
            .await
        {
            let answer = connection.request(&payload).await;
            assert_ne!(answer.status(), Some(200), "{}", answer.describe());
        }
    }
    let hits = stack.admin.recorded.since(mark);
    assert!(hits.is_empty(), "forwarded after revocation: {hits:?}");
}
