//! Policy tests: `[[test]]` tables (in the policy itself or in a side file) that state a
//! request and the decision expected, run through the very `decide` the gateway runs, after
//! the same canonicalisation and the same host and listener checks. Pure: text in, results
//! out; `sekisho policy test` does the file reading and the printing.

use std::net::IpAddr;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::decide::{DeviceFacts, Facts, Outcome, Reason, SessionFacts, decide, explain};
use crate::model::{ClientCertMode, Factor, Policy};
use crate::parse::keys;
use crate::parse::{Diagnostics, Sink, Table, position};

/// One `[[test]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTest {
    /// The test's `name`, or `test N` (1-based) when it has none.
    pub name: String,
    /// Where the test is written: `file:line:column`.
    pub place: String,
    pub request: TestRequest,
    pub expect: Outcome,
    /// The reason expected, when the test names one (a [`Reason`] name, or one of the
    /// gateway-level reasons in [`GATEWAY_REASONS`]).
    pub reason: Option<String>,
}

/// The request of a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRequest {
    pub ip: IpAddr,
    /// As a client would send it: canonicalised before anything else.
    pub path: String,
    /// `None`: the policy's first hostname.
    pub host: Option<String>,
    pub device: TestDevice,
    /// A session of this user with a completed second factor.
    pub user: Option<String>,
    /// The session's factors; `None` means every factor.
    pub factors: Option<Vec<Factor>>,
}

/// The device certificate a test request presents (assumed valid and unrevoked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestDevice {
    None,
    /// A device enrolled for nobody in particular (`device = true`).
    Anonymous,
    /// A device enrolled for this user (`device = "tanaka"`).
    Of(String),
}

/// Reasons the gateway gives before `decide` is asked (a test may expect them).
pub const GATEWAY_REASONS: &[&str] = &[
    "ambiguous_target",
    "host_not_served",
    "reserved_path",
    "device_required_by_listener",
];

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub name: String,
    pub place: String,
    pub passed: bool,
    pub got: Outcome,
    pub reason: String,
    /// Why the gateway decides so, step by step (the `explain` output), for failures.
    pub explanation: String,
}

/// Reads the `[[test]]` tables of a policy file (`side_file = false`: other root keys are the
/// policy's, checked by [`crate::parse`]) or of a side file (`side_file = true`: only
/// `[[test]]` is allowed). Every problem is reported at once.
pub fn read_tests(file_name: &str, text: &str, side_file: bool) -> Result<Vec<PolicyTest>, Diagnostics> {
    let mut sink = Sink::new(file_name, text);
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        for e in syntax_errors {
            sink.error_help(
                e.span().unwrap_or(0..0),
                format!("TOML syntax: {}", e.message()),
                "fix the TOML syntax",
            );
        }
        return Err(sink.finish());
    }
    let root = Table::new(root.get_ref(), 0..0, "the test file");
    if side_file {
        root.check_keys(&mut sink, &keys::ROOT[keys::ROOT.len() - 1..]);
    }
    let tables = root.tables(&mut sink, "test", "[[test]]");
    let tests = read(&mut sink, file_name, text, &tables);
    if sink.is_empty() { Ok(tests) } else { Err(sink.finish()) }
}

/// Reads `[[test]]` tables, reporting problems to `sink` (also used by [`crate::parse`], so
/// `sekisho policy check` catches a mistyped test).
pub(crate) fn read(sink: &mut Sink<'_>, file_name: &str, text: &str, tables: &[Table<'_, '_>]) -> Vec<PolicyTest> {
    let mut out = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        t.check_keys(sink, keys::TEST);
        let (line, column) = position(text, t.span.start);
        let place = format!("{file_name}:{line}:{column}");
        let name = t
            .string(sink, "name")
            .map_or_else(|| format!("test {}", i + 1), |s| s.value);
        let expect = match t.required_string(sink, "expect", "add `expect = \"allow\"`, \"login\" or \"deny\"") {
            Some(s) => match s.value.as_str() {
                "allow" => Some(Outcome::Allow),
                "login" => Some(Outcome::Login),
                "deny" => Some(Outcome::Deny),
                other => {
                    sink.error_help(
                        s.span,
                        format!("unknown outcome `{}`", other.escape_debug()),
                        "write \"allow\", \"login\" or \"deny\"",
                    );
                    None
                }
            },
            None => None,
        };
        let reason = t.string(sink, "reason").and_then(|s| {
            let known =
                Reason::ALL.iter().any(|r| r.as_str() == s.value) || GATEWAY_REASONS.contains(&s.value.as_str());
            if known {
                Some(s.value)
            } else {
                let mut all: Vec<&str> = Reason::ALL.iter().map(Reason::as_str).collect();
                all.extend(GATEWAY_REASONS);
                sink.error_help(
                    s.span,
                    format!("unknown reason `{}`", s.value.escape_debug()),
                    format!("use one of: {}", all.join(", ")),
                );
                None
            }
        });
        let request = match t.table(sink, "request", "the test's `request`") {
            Some(r) => read_request(sink, &r),
            None => {
                if t.table.get("request").is_none() {
                    t.missing(
                        sink,
                        "request",
                        "add `request = { ip = \"203.0.113.5\", path = \"/admin/\" }`",
                    );
                }
                None
            }
        };
        if let (Some(request), Some(expect)) = (request, expect) {
            out.push(PolicyTest {
                name,
                place,
                request,
                expect,
                reason,
            });
        }
    }
    out
}

fn read_request(sink: &mut Sink<'_>, r: &Table<'_, '_>) -> Option<TestRequest> {
    r.check_keys(sink, keys::TEST_REQUEST);
    let ip = r
        .required_string(sink, "ip", "add `ip = \"203.0.113.5\"`")
        .and_then(|s| match s.value.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                sink.error_help(
                    s.span,
                    format!("`{}` is not an IP address", s.value.escape_debug()),
                    "write an address such as \"203.0.113.5\" or \"2001:db8::5\"",
                );
                None
            }
        });
    let path = r.required_string(sink, "path", "add `path = \"/admin/\"`");
    let host = r.string(sink, "host").map(|s| s.value.to_ascii_lowercase());
    let device = match r.table.get("device").map(|v| (v.get_ref(), v.span())) {
        None | Some((DeValue::Boolean(false), _)) => TestDevice::None,
        Some((DeValue::Boolean(true), _)) => TestDevice::Anonymous,
        Some((DeValue::String(s), _)) if !s.is_empty() => TestDevice::Of(s.to_string()),
        Some((_, span)) => {
            bad_device(sink, span);
            TestDevice::None
        }
    };
    let user = r.string(sink, "user").map(|s| s.value);
    let mut factors = None;
    if let Some(list) = r.string_list(sink, "factors") {
        let mut fs = Vec::new();
        for s in list {
            match s.value.as_str() {
                "webauthn" => fs.push(Factor::Webauthn),
                "totp" => fs.push(Factor::Totp),
                other => sink.error_help(
                    s.span,
                    format!("unknown factor `{}`", other.escape_debug()),
                    "write \"webauthn\" or \"totp\"",
                ),
            }
        }
        if user.is_none() {
            sink.error_help(
                r.span_of("factors"),
                "`factors` without `user`",
                "a session belongs to a user: add `user = \"NAME\"`",
            );
        } else if fs.is_empty() {
            sink.error_help(
                r.span_of("factors"),
                "`factors` is empty",
                "a session exists only after a second factor: list one, or remove `user` and `factors`",
            );
        }
        factors = Some(fs);
    }
    Some(TestRequest {
        ip: ip?,
        path: path?.value,
        host,
        device,
        user,
        factors,
    })
}

fn bad_device(sink: &mut Sink<'_>, span: Range<usize>) {
    sink.error_help(
        span,
        "`device` must be true, false or the name of the device's user",
        "write `device = true` or `device = \"tanaka\"`",
    );
}

/// What the gateway decides for a test request: the host check, the canonicalisation, the
/// reserved prefix and the listener's device requirement, then [`decide`]. Returns the
/// outcome, its reason and (when `explain_it`) the explanation.
pub fn decide_request(policy: &Policy, request: &TestRequest, explain_it: bool) -> (Outcome, String, String) {
    let host = match &request.host {
        Some(h) => h.clone(),
        None => policy.server.hostnames.first().cloned().unwrap_or_default(),
    };
    if !policy.serves_host(&host) {
        let why = format!("host {host:?} is not served by this policy (421)");
        return (Outcome::Deny, "host_not_served".into(), why);
    }
    let target = match crate::canon::canonicalize_target(&request.path) {
        Ok(t) => t,
        Err(e) => {
            let why = format!("the path is refused before any route is looked at (400): {e}");
            return (Outcome::Deny, "ambiguous_target".into(), why);
        }
    };
    let lower = target.path.to_lowercase();
    if lower == crate::RESERVED_PREFIX || lower.starts_with(&format!("{}/", crate::RESERVED_PREFIX)) {
        let why = format!(
            "{} is the gateway's own prefix; nothing under it is forwarded (404)",
            crate::RESERVED_PREFIX
        );
        return (Outcome::Deny, "reserved_path".into(), why);
    }
    let device = match &request.device {
        TestDevice::None => None,
        TestDevice::Anonymous => Some(DeviceFacts {
            fingerprint: "test-device".into(),
            user: None,
            name: "test-device".into(),
        }),
        TestDevice::Of(user) => Some(DeviceFacts {
            fingerprint: "test-device".into(),
            user: Some(user.clone()),
            name: format!("{user}-device"),
        }),
    };
    if policy.server.client_certificates == ClientCertMode::Require && device.is_none() {
        let why = "the listener requires a device certificate for every request (403)".to_string();
        return (Outcome::Deny, "device_required_by_listener".into(), why);
    }
    let session = request.user.as_ref().map(|user| SessionFacts {
        user: user.clone(),
        factors: request
            .factors
            .clone()
            .unwrap_or_else(|| vec![Factor::Webauthn, Factor::Totp]),
    });
    let facts = Facts {
        host: &host,
        path: &target.path,
        client_ip: crate::model::canonical_ip(request.ip),
        device: device.as_ref(),
        session: session.as_ref(),
    };
    if explain_it {
        let e = explain(policy, &facts);
        (e.decision.outcome, e.decision.reason.as_str().into(), e.to_string())
    } else {
        let d = decide(policy, &facts);
        (d.outcome, d.reason.as_str().into(), String::new())
    }
}

/// Runs tests against a policy.
pub fn run_tests(policy: &Policy, tests: &[PolicyTest]) -> Vec<TestResult> {
    tests
        .iter()
        .map(|t| {
            let (got, reason, _) = decide_request(policy, &t.request, false);
            let passed = got == t.expect && t.reason.as_ref().is_none_or(|r| *r == reason);
            let explanation = if passed {
                String::new()
            } else {
                decide_request(policy, &t.request, true).2
            };
            TestResult {
                name: t.name.clone(),
                place: t.place.clone(),
                passed,
                got,
                reason,
                explanation,
            }
        })
        .collect()
}
