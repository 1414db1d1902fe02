//! Properties over random policies and requests, with a small deterministic PRNG (no
//! proptest): `explain` and `decide` agree; the test runner's decide and explain agree; lint
//! never panics and only points inside the file.

use std::fmt::Write as _;
use std::net::IpAddr;

use sekisho_policy::{
    DeviceFacts, Factor, Facts, SessionFacts, TestDevice, TestRequest, canonicalize_target, decide, decide_request,
    explain, lint, parse,
};

/// xorshift64*: deterministic, good enough to spread cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const SEGMENTS: &[&str] = &[
    "admin",
    "Admin",
    "wp-admin",
    "api",
    "public",
    "x",
    ".git",
    "%2e",
    "a b",
    "é",
    "login.php",
];
const NETS: &[&str] = &[
    "203.0.113.0/24",
    "2001:db8::/32",
    "0.0.0.0/0",
    "198.51.100.7",
    "::/0",
    "10.0.0.0/8",
];
const IPS: &[&str] = &[
    "203.0.113.9",
    "2001:db8::1",
    "198.51.100.7",
    "10.1.2.3",
    "::ffff:203.0.113.9",
    "192.0.2.1",
];
const GROUPS: &[&str] = &["admins", "staff", "noc"];
const USERS: &[&str] = &["tanaka", "sato", "ghost"];

fn random_path(rng: &mut Rng, raw: bool) -> String {
    let mut p = String::new();
    for _ in 0..=rng.below(3) {
        p.push('/');
        p.push_str(rng.pick::<&str>(SEGMENTS));
    }
    if raw && rng.chance(20) {
        p.push_str(rng.pick::<&str>(&["/", "?q=1", "/../x", "//", "%2Fx", "/%41"]));
    }
    p
}

fn random_policy(rng: &mut Rng) -> String {
    let mut t = String::from(
        "version = 1\n[server]\nlisten = [\"0.0.0.0:8443\", \"[::]:8443\"]\nhostnames = [\"a.test\", \"b.test\"]\n\
         tls_cert = \"/c\"\ntls_key = \"/k\"\ndevice_ca = \"/ca\"\nclient_certificates = \"request\"\n\
         [[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:1\"\n[[upstream]]\nname = \"cs\"\nurl = \"http://10.0.0.1:1\"\ncase_insensitive = false\n",
    );
    for u in USERS.iter().take(2) {
        let _ = write!(t, "[[user]]\nname = \"{u}\"\ngroups = [\"{}\"]\n", rng.pick(GROUPS));
    }
    for i in 0..=rng.below(6) {
        let access = *rng.pick(&["public", "protected", "deny"]);
        let paths: Vec<String> = (0..=rng.below(2))
            .map(|_| format!("{:?}", random_path(rng, false)))
            .collect();
        let _ = write!(
            t,
            "[[route]]\nname = \"r{i}\"\npaths = [{}]\naccess = \"{access}\"\n",
            paths.join(", ")
        );
        if rng.chance(30) {
            let _ = writeln!(t, "hosts = [\"{}\"]", rng.pick(&["a.test", "b.test"]));
        }
        if access != "deny" {
            let _ = writeln!(t, "upstream = \"{}\"", rng.pick(&["app", "cs"]));
            if rng.chance(60) {
                let _ = writeln!(t, "allow_ips = [\"{}\", \"{}\"]", rng.pick(NETS), rng.pick(NETS));
            }
            if rng.chance(40) {
                t.push_str("require_device = true\n");
            }
        }
        if access == "protected" {
            t.push_str(rng.pick::<&str>(&[
                "second_factor = [\"totp\"]\n",
                "second_factor = [\"webauthn\", \"totp\"]\n",
            ]));
            if rng.chance(60) {
                let _ = writeln!(t, "groups = [\"{}\"]", rng.pick(GROUPS));
            }
        }
    }
    t
}

#[test]
fn explain_and_decide_agree_and_lint_never_panics() {
    let mut rng = Rng(0x5EC1_5140_0000_0001);
    let (mut policies, mut requests) = (0, 0);
    for _ in 0..400 {
        let text = random_policy(&mut rng);
        let Ok(policy) = parse("rand.toml", &text) else {
            continue;
        };
        policies += 1;
        for f in lint(&policy, "rand.toml", &text) {
            assert!(f.line >= 1 && f.line <= text.lines().count() + 1, "{f}\n{text}");
        }
        for _ in 0..50 {
            let raw = random_path(&mut rng, true);
            let ip: IpAddr = rng.pick(IPS).parse().unwrap();
            let host = *rng.pick(&["a.test", "b.test"]);
            let device = match rng.below(3) {
                0 => None,
                1 => Some(DeviceFacts {
                    fingerprint: "f".into(),
                    user: None,
                    name: "d".into(),
                }),
                _ => Some(DeviceFacts {
                    fingerprint: "f".into(),
                    user: Some(rng.pick(USERS).to_string()),
                    name: "d".into(),
                }),
            };
            let session = rng.chance(50).then(|| SessionFacts {
                user: rng.pick(USERS).to_string(),
                factors: vec![*rng.pick(&[Factor::Webauthn, Factor::Totp])],
            });
            if let Ok(target) = canonicalize_target(&raw) {
                let facts = Facts {
                    host,
                    path: &target.path,
                    client_ip: ip,
                    device: device.as_ref(),
                    session: session.as_ref(),
                };
                let d = decide(&policy, &facts);
                let e = explain(&policy, &facts);
                assert_eq!(d, e.decision, "{raw} from {ip}\n{e}\n{text}");
                assert!(!e.steps.is_empty());
                requests += 1;
            }
            let request = TestRequest {
                ip,
                path: raw.clone(),
                host: Some(host.to_string()),
                device: match &device {
                    None => TestDevice::None,
                    Some(DeviceFacts { user: None, .. }) => TestDevice::Anonymous,
                    Some(DeviceFacts { user: Some(u), .. }) => TestDevice::Of(u.clone()),
                },
                user: session.as_ref().map(|s| s.user.clone()),
                factors: session.as_ref().map(|s| s.factors.clone()),
            };
            let quick = decide_request(&policy, &request, false);
            let told = decide_request(&policy, &request, true);
            assert_eq!((quick.0, &quick.1), (told.0, &told.1), "{raw}\n{}", told.2);
        }
    }
    assert!(policies >= 100, "only {policies} random policies parsed");
    assert!(requests >= 2000, "only {requests} requests decided");
}
