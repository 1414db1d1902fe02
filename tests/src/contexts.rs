//! The corpus's contexts (`CTX-A` …) as Sekisho policies, each a running stack: two echo
//! upstreams (admin app, public site) behind one gateway.
//!
//! Shared stacks start lazily, once per test binary, and serialise their users with a lock
//! so that "what the upstream received" belongs to exactly one test. Tests that change a
//! stack (rewrite its CRL, reload it) start their own with [`Stack::start`].

use std::sync::OnceLock;

use crate::gateway::Gateway;
use crate::oracle::Prefixes;
use crate::pki::Pki;
use crate::policy::{Access, PolicySpec, Route};
use crate::upstream::EchoUpstream;

/// The admin vhost (protected routes live here).
pub const ADMIN_HOST: &str = "admin.gw.test";
/// The public vhost (everything public, its own upstream).
pub const PUBLIC_HOST: &str = "public.gw.test";
/// The only source address protected routes admit.
pub const ADMIN_IP: &str = "127.0.0.10";
/// The trusted proxy of `CTX-TRUSTED-LB`.
pub const PROXY_IP: &str = "127.0.0.2";
/// A source address that is not special anywhere.
pub const OUTSIDER_IP: &str = "127.0.0.1";

/// A policy context of the corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Context {
    /// `CTX-A`: protected /admin; public /, /public, /healthz; and /device (public, device).
    A,
    /// `CTX-TRUSTED-LB`: `CTX-A` with 127.0.0.2 as a trusted proxy.
    TrustedLb,
    /// `CTX-WP`: `CTX-A` plus protected /wp-admin and /wp-login.php.
    Wp,
    /// `CTX-VPN`: `CTX-A` plus an appliance portal.
    Vpn,
    /// `CTX-A + rule '/a/b/**' protected`.
    AbRule,
    /// `CTX-API-STRIP`: Sekisho has no strip_prefix; a public /api to the admin upstream.
    ApiStrip,
}

impl Context {
    /// Every context.
    pub const ALL: [Context; 6] = [
        Context::A,
        Context::TrustedLb,
        Context::Wp,
        Context::Vpn,
        Context::AbRule,
        Context::ApiStrip,
    ];

    /// The context a corpus case names.
    pub fn from_corpus(name: &str) -> Option<Context> {
        Some(match name {
            "CTX-A" => Context::A,
            "CTX-TRUSTED-LB" => Context::TrustedLb,
            "CTX-WP" => Context::Wp,
            "CTX-VPN" => Context::Vpn,
            "CTX-A + rule '/a/b/**' protected" => Context::AbRule,
            "CTX-API-STRIP" => Context::ApiStrip,
            _ => return None,
        })
    }

    /// The routes of the admin vhost beyond `CTX-A`'s.
    fn extra_routes(self) -> Vec<Route> {
        let protected = |name: &str, paths: &[&str]| {
            Route::protected(name, paths)
                .on(&[ADMIN_HOST])
                .to("admin-app")
                .allow(&["127.0.0.10/32"])
                .with_device()
        };
        let public = |name: &str, paths: &[&str]| Route::public(name, paths).on(&[ADMIN_HOST]).to("admin-app");
        match self {
            Context::A | Context::TrustedLb => vec![],
            Context::Wp => vec![protected("wordpress-admin", &["/wp-admin", "/wp-login.php"])],
            Context::Vpn => vec![
                protected(
                    "portal",
                    &["/remote", "/vpns", "/dana", "/dana-na", "/tmui", "/mgmt", "/cgi-bin"],
                ),
                public("portal-public", &["/vpn", "/icons", "/tmui/login.jsp"]),
            ],
            Context::AbRule => vec![protected("a-b", &["/a/b"])],
            Context::ApiStrip => vec![public("api", &["/api"])],
        }
    }

    /// The policy for this context, given its upstreams' URLs.
    pub fn spec(self, admin_url: &str, public_url: &str) -> PolicySpec {
        let mut spec = PolicySpec::default()
            .upstream("admin-app", admin_url)
            .upstream("public-site", public_url)
            .route(
                Route::protected("admin", &["/admin"])
                    .on(&[ADMIN_HOST])
                    .to("admin-app")
                    .allow(&["127.0.0.10/32"])
                    .with_device(),
            )
            .route(
                Route::public("site", &["/", "/public", "/healthz"])
                    .on(&[ADMIN_HOST])
                    .to("admin-app"),
            )
            .route(
                Route::public("device-only", &["/device"])
                    .on(&[ADMIN_HOST])
                    .to("admin-app")
                    .with_device(),
            )
            .route(Route::deny("blocked", &["/.git", "/blocked"]).on(&[ADMIN_HOST]))
            .route(
                Route::public("public-site", &["/"])
                    .on(&[PUBLIC_HOST])
                    .to("public-site"),
            );
        for route in self.extra_routes() {
            spec = spec.route(route);
        }
        if self == Context::TrustedLb {
            spec = spec.trusting(&["127.0.0.2/32"]);
        }
        spec
    }

    /// The admin vhost's protected and public prefixes, for the oracle.
    pub fn prefixes(self) -> Prefixes {
        let spec = self.spec("http://127.0.0.1:1", "http://127.0.0.1:1");
        let mut prefixes = Prefixes::default();
        for route in spec.routes.iter().filter(|r| r.hosts.iter().any(|h| h == ADMIN_HOST)) {
            match route.access {
                Access::Protected => prefixes.protected.extend(route.paths.iter().cloned()),
                Access::Public => prefixes.public.extend(route.paths.iter().cloned()),
                // Deny routes are never forwarded; reaching one is a protected hit too.
                Access::Deny => prefixes.protected.extend(route.paths.iter().cloned()),
            }
        }
        prefixes
    }
}

/// The PKI of this test process (made once).
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(Pki::generate)
}

/// A gateway with its two echo upstreams.
#[derive(Debug)]
pub struct Stack {
    pub context: Context,
    pub admin: EchoUpstream,
    pub public: EchoUpstream,
    pub gateway: Gateway,
    /// Held while a test uses a shared stack, so upstream records are attributable.
    pub lock: tokio::sync::Mutex<()>,
}

impl Stack {
    /// Starts a private stack for `context`, letting the test adjust the policy first.
    pub fn start(context: Context, adjust: impl FnOnce(PolicySpec) -> PolicySpec) -> Stack {
        Stack::start_inner(context, None, adjust)
    }

    /// [`Stack::start`] with a gateway started as root that becomes `uid:gid` (`--user`).
    pub fn start_as(context: Context, uid: u32, gid: u32) -> Stack {
        Stack::start_inner(context, Some((uid, gid)), |spec| spec)
    }

    fn start_inner(context: Context, user: Option<(u32, u32)>, adjust: impl FnOnce(PolicySpec) -> PolicySpec) -> Stack {
        let admin = EchoUpstream::start("admin-app");
        let public = EchoUpstream::start("public-site");
        let spec = adjust(context.spec(&admin.url(), &public.url()));
        let gateway = match user {
            Some((uid, gid)) => Gateway::start_as(pki(), &spec, uid, gid),
            None => Gateway::start(pki(), &spec),
        };
        Stack {
            context,
            admin,
            public,
            gateway,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The shared stack for `context` (started on first use, never stopped before exit).
    pub fn shared(context: Context) -> &'static Stack {
        static STACKS: [OnceLock<Stack>; 6] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        let index = Context::ALL
            .iter()
            .position(|c| *c == context)
            .expect("every context is in ALL");
        STACKS[index].get_or_init(|| Stack::start(context, |spec| spec))
    }

    /// A client of this stack's gateway from `source` with SNI `sni`.
    pub fn client(&self, source: &str, sni: &str) -> crate::client::ClientSpec {
        crate::client::ClientSpec::new(pki(), self.gateway.addr, source, sni)
    }
}
