//! The validated policy model. Values of these types only come out of [`crate::parse`], so
//! downstream code never re-checks them. No parsing and no IO here: only the types and the
//! cheap queries the gateway asks of them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::limits::{Limits, LogSettings};
use crate::matcher::Matcher;

/// A validated policy (format 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Always 1 for this crate.
    pub version: u32,
    pub server: Server,
    pub session: SessionSettings,
    pub lockout: LockoutSettings,
    pub notify: NotifySettings,
    pub limits: Limits,
    /// The `[log]` table.
    pub log: LogSettings,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
    pub users: Vec<User>,
    /// Lower-case hex SHA-256 of the policy text, for audit records and reload logs.
    pub id: String,
    pub(crate) matcher: Matcher,
    /// True when some non-deny route has no `allow_ips`: every address may reach it.
    pub(crate) open_to_all: bool,
}

impl Policy {
    /// The upstream with this name.
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// The route a [`RouteId`] names. Ids come from this policy ([`Policy::route_for`],
    /// [`crate::Decision::route`]); an id from another policy is a caller bug.
    ///
    /// # Panics
    /// When `id` is out of range, i.e. it was not made by this policy.
    #[allow(
        clippy::indexing_slicing,
        reason = "RouteId values are only created by this policy's matcher"
    )]
    pub fn route(&self, id: RouteId) -> &Route {
        &self.routes[id.0]
    }

    /// The user with this name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// May a peer at `ip` reach anything at all? Used to close connections at accept time,
    /// before TLS. True when the peer is a trusted proxy, when some non-deny route has no
    /// address restriction, or when some non-deny route's `allow_ips` contains it.
    pub fn admits_peer(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.open_to_all
            || self.server.trusted_proxies.iter().any(|n| n.contains(&ip))
            || self
                .routes
                .iter()
                .filter(|r| r.access != Access::Deny)
                .any(|r| r.allows_ip(ip))
    }

    /// Is `ip` in an admin network: named in the `allow_ips` of a protected route? The
    /// gateway lets such addresses past `max_connections` (up to twice it, each still within
    /// `max_connections_per_ip`), so a flood from elsewhere that takes every connection
    /// cannot lock the owner out.
    pub fn is_admin_address(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.routes
            .iter()
            .filter(|r| r.access == Access::Protected)
            .any(|r| r.allow_ips.iter().any(|n| n.contains(&ip)))
    }

    /// Is `host` (lower-case, without port) one of `server.hostnames`?
    pub fn serves_host(&self, host: &str) -> bool {
        self.server.hostnames.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// The route for a canonical path on a served host: whole-segment prefixes, longest wins,
    /// case-insensitive where the route's upstream is (and always for deny routes).
    /// `None` when the host is not served or no route matches (the gateway denies).
    pub fn route_for(&self, host: &str, path: &str) -> Option<RouteId> {
        self.matcher.lookup(host, path)
    }

    /// Every route matching `path` on `host`, longest first (for `explain`).
    pub(crate) fn route_candidates(&self, host: &str, path: &str) -> Vec<RouteId> {
        self.matcher.candidates(host, path)
    }
}

/// Maps IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) to IPv4, so a dual-stack listener
/// cannot dodge an IPv4 allowlist (nor miss one).
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The `[server]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Socket addresses to listen on (at least one).
    pub listen: Vec<SocketAddr>,
    /// Host / SNI names served (lower-case ASCII DNS names, at least one); others get 421.
    pub hostnames: Vec<String>,
    /// Where the server certificate comes from: files, or an ACME CA.
    pub certificate: ServerCertificate,
    /// Plain-HTTP listeners (`http_listen`): they answer ACME http-01 challenges and
    /// redirect everything else to https. Empty: none. With `acme` and `challenge =
    /// "http-01"` it defaults to `0.0.0.0:80`.
    pub http_listen: Vec<SocketAddr>,
    /// CA whose certificates identify devices.
    pub device_ca: Option<String>,
    /// CRL for the device CA; see [`Server::device_crl_path`] for the default.
    pub device_crl: Option<String>,
    pub client_certificates: ClientCertMode,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Where browsers reach the gateway when that differs from `listen` (a port mapping, a
    /// load balancer): one of `hostnames` and a port. Invitation links use it.
    pub public_url: Option<PublicUrl>,
    pub state_dir: String,
    pub log_dir: String,
    /// Where Prometheus metrics are served, if anywhere: loopback or a Unix socket only.
    pub metrics: Option<MetricsListen>,
}

/// The metrics listener: never reachable from the network by construction (the parser
/// refuses any address that is not loopback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsListen {
    /// A loopback socket address (`127.0.0.1:9901`, `[::1]:9901`).
    Tcp(SocketAddr),
    /// An absolute path of a Unix socket.
    Unix(String),
}

/// `https://HOST[:PORT]`, HOST one of the served hostnames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    pub host: String,
    pub port: u16,
}

impl PublicUrl {
    /// `https://host` (port 443) or `https://host:port`.
    pub fn origin(&self) -> String {
        if self.port == 443 {
            format!("https://{}", self.host)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

/// The server certificate: `tls_cert` + `tls_key`, or `acme` (exactly one of the two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCertificate {
    /// PEM files named in the policy (paths as written).
    Files { cert: String, key: String },
    /// Obtained and renewed by the gateway from an ACME CA.
    Acme(Acme),
}

/// `[server] acme = { directory = "…", contact = "mailto:…", challenge = "http-01" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acme {
    /// The CA's directory URL (`https://…`).
    pub directory: String,
    /// Contact URIs for the account (`mailto:…`); may be empty.
    pub contact: Vec<String>,
    pub challenge: AcmeChallenge,
    /// A PEM file of CA certificates to trust for the directory's own TLS (a private or test
    /// CA); `None`: the system's roots.
    pub directory_ca: Option<String>,
}

/// How the ACME CA is shown that we control the hostnames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// A token served over plain HTTP on port 80 (`http_listen`).
    Http01,
    /// A special certificate served on the TLS listener to ALPN `acme-tls/1`.
    TlsAlpn01,
}

impl AcmeChallenge {
    /// The policy (and RFC) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AcmeChallenge::Http01 => "http-01",
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

impl Server {
    /// The ACME settings, when the certificate comes from ACME.
    pub fn acme(&self) -> Option<&Acme> {
        match &self.certificate {
            ServerCertificate::Acme(a) => Some(a),
            ServerCertificate::Files { .. } => None,
        }
    }

    /// The device CRL path: `device_crl` if set, else `device_ca` with a trailing `.pem`
    /// replaced by `.crl.pem` (or `.crl.pem` appended). `None` without a device CA.
    pub fn device_crl_path(&self) -> Option<String> {
        if let Some(crl) = &self.device_crl {
            return Some(crl.clone());
        }
        let ca = self.device_ca.as_deref()?;
        Some(match ca.strip_suffix(".pem") {
            Some(stem) => format!("{stem}.crl.pem"),
            None => format!("{ca}.crl.pem"),
        })
    }
}

/// How the TLS listener treats client (device) certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertMode {
    /// Handshake fails without a valid device certificate.
    Require,
    /// Asked for; routes decide (`require_device`).
    Request,
    /// Never asked for.
    Off,
}

/// The `[session]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// Default 15 minutes.
    pub idle_timeout: Duration,
    /// Default 8 hours.
    pub absolute_timeout: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(15 * 60),
            absolute_timeout: Duration::from_secs(8 * 3600),
        }
    }
}

/// The `[notify]` table: where notices go besides the diagnostics log. Paths stay strings
/// (this crate does no IO); the gateway reads the password file when it sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifySettings {
    /// Receives every notice (the user's own `email` receives theirs).
    pub admin_email: Option<String>,
    /// Mail delivery, when `smtp_host` is set.
    pub smtp: Option<Smtp>,
    /// `http://` (loopback only) or `https://` URL receiving a JSON POST per notice.
    pub webhook_url: Option<String>,
}

/// The mail server of `[notify]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    /// A DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// Login name; always set together with `password_file`.
    pub user: Option<String>,
    /// Path of the file holding the password.
    pub password_file: Option<String>,
    /// Sender address.
    pub from: String,
}

/// `smtp_tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded by STARTTLS (required, never optional).
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No TLS: only for a loopback host (a local relay).
    None,
}

impl SmtpTls {
    /// The port used when `smtp_port` is not given.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// `[log.remote]`: where the access log is shipped off the host, so that deleting the
/// whole local log is noticed. Paths stay strings (this crate does no IO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRemote {
    pub target: RemoteTarget,
    /// PEM file of the CA that the receiver's certificate must chain to (default: the
    /// system's roots).
    pub ca_file: Option<String>,
    /// What is shipped.
    pub ship: Ship,
}

/// The receiver of `[log.remote]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteTarget {
    /// RFC 5424 syslog over TLS with RFC 5425 octet-counting framing.
    Syslog {
        /// A DNS name or an IP address (IPv6 without brackets); also the TLS server name.
        host: String,
        /// Default 6514 (RFC 5425).
        port: u16,
    },
    /// HTTPS POST of JSON batches: `{"gateway": HOST, "records": ["<line>", …]}`, each
    /// record as a string holding its exact line; a 2xx answer acknowledges the batch.
    Https {
        /// `https://host[:port]/path`, as written.
        url: String,
    },
}

/// `ship`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ship {
    /// Every record (default): the remote copy is the whole log.
    Records,
    /// Only the log's own records: checkpoints (seals), file headers, retention and drop
    /// notes. Enough to show that records up to the last checkpoint existed.
    Checkpoints,
}

/// The `[lockout]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutSettings {
    /// Failed second-factor attempts (default 5) …
    pub max_failures: u32,
    /// … within this window (default 15 minutes) …
    pub window: Duration,
    /// … lock the user and the source address for this long (default 30 minutes).
    pub duration: Duration,
}

impl Default for LockoutSettings {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            duration: Duration::from_secs(30 * 60),
        }
    }
}

/// An `[[upstream]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    /// As written, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// True for `https://` upstreams.
    pub scheme_https: bool,
    /// `host:port` (the port made explicit; IPv6 hosts in brackets).
    pub authority: String,
    /// Paths of routes to this upstream match case-insensitively (default true: fail closed).
    pub case_insensitive: bool,
}

/// Index of a route in [`Policy::routes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId(pub usize);

/// A `[[route]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub id: RouteId,
    pub name: String,
    /// Canonical paths (whole-segment prefixes).
    pub paths: Vec<String>,
    /// Hosts this route applies to; empty means every server hostname.
    pub hosts: Vec<String>,
    /// `None` exactly for deny routes.
    pub upstream: Option<String>,
    pub access: Access,
    /// Empty means no address restriction.
    pub allow_ips: Vec<IpNet>,
    pub require_device: bool,
    /// Accepted factors; non-empty exactly for protected routes.
    pub second_factor: Vec<Factor>,
    /// Groups allowed through; empty means any known user.
    pub groups: Vec<String>,
}

impl Route {
    /// Is `ip` allowed by `allow_ips` (an empty list allows every address)?
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.allow_ips.is_empty() || self.allow_ips.iter().any(|n| n.contains(&ip))
    }
}

/// What a route demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Passes without identity.
    Public,
    /// Needs a second-factor session (and whatever else the route says).
    Protected,
    /// Never forwarded.
    Deny,
}

/// A second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Factor {
    Webauthn,
    Totp,
}

impl Factor {
    /// The policy spelling (`"webauthn"`, `"totp"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Factor::Webauthn => "webauthn",
            Factor::Totp => "totp",
        }
    }
}

/// A `[[user]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
}
