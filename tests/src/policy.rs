//! Sekisho policies (format 1) for tests, written as TOML text from a small builder.
//!
//! The builder knows the files a test gateway needs (certificates, CRL, state and log
//! directories, a free port); tests state only what they care about: routes, proxies, limits.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

/// One `[[route]]`.
#[derive(Clone, Debug)]
pub struct Route {
    pub name: String,
    pub paths: Vec<String>,
    pub hosts: Vec<String>,
    pub upstream: Option<String>,
    pub access: Access,
    pub allow_ips: Vec<String>,
    pub require_device: bool,
}

/// A route's `access`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Needs the second factor (`webauthn`, `totp`) and group `admins`.
    Protected,
    Deny,
}

impl Route {
    fn new(name: &str, access: Access, paths: &[&str]) -> Route {
        Route {
            name: name.to_string(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            hosts: Vec::new(),
            upstream: None,
            access,
            allow_ips: Vec::new(),
            require_device: false,
        }
    }

    /// A public route.
    pub fn public(name: &str, paths: &[&str]) -> Route {
        Route::new(name, Access::Public, paths)
    }

    /// A protected route (second factor webauthn or totp, group `admins`).
    pub fn protected(name: &str, paths: &[&str]) -> Route {
        Route::new(name, Access::Protected, paths)
    }

    /// A deny route (never forwarded).
    pub fn deny(name: &str, paths: &[&str]) -> Route {
        Route::new(name, Access::Deny, paths)
    }

    /// Only for these hostnames.
    pub fn on(mut self, hosts: &[&str]) -> Route {
        self.hosts = hosts.iter().map(|h| h.to_string()).collect();
        self
    }

    /// Forwarded to the upstream named `name`.
    pub fn to(mut self, upstream: &str) -> Route {
        self.upstream = Some(upstream.to_string());
        self
    }

    /// Only from these networks.
    pub fn allow(mut self, cidrs: &[&str]) -> Route {
        self.allow_ips = cidrs.iter().map(|c| c.to_string()).collect();
        self
    }

    /// Needs a valid device certificate.
    pub fn with_device(mut self) -> Route {
        self.require_device = true;
        self
    }
}

/// A whole policy, before the files are known.
#[derive(Clone, Debug)]
pub struct PolicySpec {
    pub client_certificates: String,
    pub trusted_proxies: Vec<String>,
    /// (name, url, case_insensitive)
    pub upstreams: Vec<(String, String, Option<bool>)>,
    pub routes: Vec<Route>,
    /// Extra `[limits]` entries, as TOML values (`"1s"`, `4096`).
    pub limits: Vec<(String, String)>,
    /// `[notify]` entries, as TOML values; no table when empty.
    pub notify: Vec<(String, String)>,
    /// Further `[server]` entries, as TOML values (e.g. `metrics`).
    pub server: Vec<(String, String)>,
    /// `[log]` entries, as TOML values; no table when empty.
    pub log: Vec<(String, String)>,
    /// `[log.remote]` entries, as TOML values; no table when empty.
    pub log_remote: Vec<(String, String)>,
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            client_certificates: "request".to_string(),
            trusted_proxies: Vec::new(),
            upstreams: Vec::new(),
            routes: Vec::new(),
            limits: Vec::new(),
            notify: Vec::new(),
            server: Vec::new(),
            log: Vec::new(),
            log_remote: Vec::new(),
        }
    }
}

impl PolicySpec {
    /// Adds an upstream.
    pub fn upstream(mut self, name: &str, url: &str) -> PolicySpec {
        self.upstreams.push((name.to_string(), url.to_string(), None));
        self
    }

    /// Adds a route.
    pub fn route(mut self, route: Route) -> PolicySpec {
        self.routes.push(route);
        self
    }

    /// Sets a `[limits]` key (value as TOML, e.g. `"\"2s\""` or `"4096"`).
    pub fn limit(mut self, key: &str, toml_value: &str) -> PolicySpec {
        self.limits.retain(|(k, _)| k != key);
        self.limits.push((key.to_string(), toml_value.to_string()));
        self
    }

    /// Sets a `[notify]` key (value as TOML, e.g. `"\"127.0.0.1\""` or `"2525"`).
    pub fn notify(mut self, key: &str, toml_value: &str) -> PolicySpec {
        self.notify.retain(|(k, _)| k != key);
        self.notify.push((key.to_string(), toml_value.to_string()));
        self
    }

    /// Sets a further `[server]` key (value as TOML, e.g. `"\"127.0.0.1:9901\""`).
    pub fn server_key(mut self, key: &str, toml_value: &str) -> PolicySpec {
        self.server.retain(|(k, _)| k != key);
        self.server.push((key.to_string(), toml_value.to_string()));
        self
    }

    /// Sets a `[log]` key (value as TOML, e.g. `"\"200ms\""` or `"400"`).
    pub fn log(mut self, key: &str, toml_value: &str) -> PolicySpec {
        self.log.retain(|(k, _)| k != key);
        self.log.push((key.to_string(), toml_value.to_string()));
        self
    }

    /// Sets a `[log.remote]` key (value as TOML).
    pub fn log_remote(mut self, key: &str, toml_value: &str) -> PolicySpec {
        self.log_remote.retain(|(k, _)| k != key);
        self.log_remote.push((key.to_string(), toml_value.to_string()));
        self
    }

    /// Believes X-Forwarded-For from these peers.
    pub fn trusting(mut self, cidrs: &[&str]) -> PolicySpec {
        self.trusted_proxies = cidrs.iter().map(|c| c.to_string()).collect();
        self
    }

    /// `client_certificates = "require" | "request" | "off"`.
    pub fn client_certificates(mut self, mode: &str) -> PolicySpec {
        self.client_certificates = mode.to_string();
        self
    }
}

/// The files and address a policy refers to.
#[derive(Clone, Debug)]
pub struct PolicyFiles {
    pub listen: SocketAddr,
    pub hostnames: Vec<String>,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub device_ca: PathBuf,
    pub device_crl: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
}

/// The limits every test gateway gets unless the test overrides them: fast CRL polling,
/// timeouts long enough that they never decide a test by accident, and no bans (the corpus
/// and log tests send hundreds of refused requests from one address on purpose; the ban
/// tests in `tests/abuse.rs` set their own).
const DEFAULT_LIMITS: [(&str, &str); 5] = [
    ("revocation_poll_interval", "\"1s\""),
    ("header_read_timeout", "\"10s\""),
    ("idle_timeout", "\"60s\""),
    ("upstream_connect_timeout", "\"2s\""),
    ("ban_after_denials", "0"),
];

/// Renders `spec` with `files` as policy TOML.
pub fn render(spec: &PolicySpec, files: &PolicyFiles) -> String {
    let mut out = String::new();
    let list = |items: &[String]| {
        let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
        format!("[{}]", quoted.join(", "))
    };
    let path = |p: &PathBuf| quote(&p.to_string_lossy());
    let _ = writeln!(out, "version = 1\n\n[server]");
    let _ = writeln!(out, "listen = [{}]", quote(&files.listen.to_string()));
    let _ = writeln!(out, "hostnames = {}", list(&files.hostnames));
    let _ = writeln!(out, "tls_cert = {}", path(&files.tls_cert));
    let _ = writeln!(out, "tls_key = {}", path(&files.tls_key));
    let _ = writeln!(out, "device_ca = {}", path(&files.device_ca));
    let _ = writeln!(out, "device_crl = {}", path(&files.device_crl));
    let _ = writeln!(out, "client_certificates = {}", quote(&spec.client_certificates));
    let _ = writeln!(out, "trusted_proxies = {}", list(&spec.trusted_proxies));
    let _ = writeln!(out, "state_dir = {}", path(&files.state_dir));
    let _ = writeln!(out, "log_dir = {}", path(&files.log_dir));
    for (key, value) in &spec.server {
        let _ = writeln!(out, "{key} = {value}");
    }
    let _ = writeln!(out, "\n[session]\nidle_timeout = \"15m\"\nabsolute_timeout = \"8h\"");
    let _ = writeln!(
        out,
        "\n[lockout]\nmax_failures = 5\nwindow = \"15m\"\nduration = \"30m\""
    );
    if !spec.notify.is_empty() {
        let _ = writeln!(out, "\n[notify]");
        for (key, value) in &spec.notify {
            let _ = writeln!(out, "{key} = {value}");
        }
    }
    if !spec.log.is_empty() {
        let _ = writeln!(out, "\n[log]");
        for (key, value) in &spec.log {
            let _ = writeln!(out, "{key} = {value}");
        }
    }
    if !spec.log_remote.is_empty() {
        let _ = writeln!(out, "\n[log.remote]");
        for (key, value) in &spec.log_remote {
            let _ = writeln!(out, "{key} = {value}");
        }
    }
    let _ = writeln!(out, "\n[limits]");
    for (key, value) in DEFAULT_LIMITS {
        if !spec.limits.iter().any(|(k, _)| k == key) {
            let _ = writeln!(out, "{key} = {value}");
        }
    }
    for (key, value) in &spec.limits {
        let _ = writeln!(out, "{key} = {value}");
    }
    for (name, url, case_insensitive) in &spec.upstreams {
        let _ = writeln!(out, "\n[[upstream]]\nname = {}\nurl = {}", quote(name), quote(url));
        if let Some(ci) = case_insensitive {
            let _ = writeln!(out, "case_insensitive = {ci}");
        }
    }
    for route in &spec.routes {
        let _ = writeln!(out, "\n[[route]]\nname = {}", quote(&route.name));
        let _ = writeln!(out, "paths = {}", list(&route.paths));
        if !route.hosts.is_empty() {
            let _ = writeln!(out, "hosts = {}", list(&route.hosts));
        }
        if let Some(upstream) = &route.upstream {
            let _ = writeln!(out, "upstream = {}", quote(upstream));
        }
        let access = match route.access {
            Access::Public => "public",
            Access::Protected => "protected",
            Access::Deny => "deny",
        };
        let _ = writeln!(out, "access = {}", quote(access));
        if !route.allow_ips.is_empty() {
            let _ = writeln!(out, "allow_ips = {}", list(&route.allow_ips));
        }
        if route.require_device {
            let _ = writeln!(out, "require_device = true");
        }
        if route.access == Access::Protected {
            let _ = writeln!(out, "second_factor = [\"webauthn\", \"totp\"]");
            let _ = writeln!(out, "groups = [\"admins\"]");
        }
    }
    let _ = writeln!(
        out,
        "\n[[user]]\nname = \"alice\"\nemail = \"alice@gw.test\"\ngroups = [\"admins\"]"
    );
    out
}

/// A TOML basic string (JSON string escapes are a subset TOML accepts).
fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_policy_that_parses_as_toml_with_every_route() {
        let spec = PolicySpec::default()
            .upstream("app", "http://127.0.0.1:1")
            .route(
                Route::protected("admin", &["/admin"])
                    .on(&["admin.gw.test"])
                    .to("app")
                    .allow(&["127.0.0.10/32"])
                    .with_device(),
            )
            .route(Route::deny("blocked", &["/.git"]))
            .limit("max_body_bytes", "4096");
        let files = PolicyFiles {
            listen: "127.0.0.1:1".parse().unwrap(),
            hostnames: vec!["admin.gw.test".into()],
            tls_cert: "/t/c\"q.pem".into(),
            tls_key: "/t/k.pem".into(),
            device_ca: "/t/ca.pem".into(),
            device_crl: "/t/crl.pem".into(),
            state_dir: "/t/state".into(),
            log_dir: "/t/log".into(),
        };
        let text = render(&spec, &files);
        let value: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(value["server"]["tls_cert"].as_str(), Some("/t/c\"q.pem"));
        assert_eq!(value["limits"]["max_body_bytes"].as_integer(), Some(4096));
        assert_eq!(value["limits"]["revocation_poll_interval"].as_str(), Some("1s"));
        let routes = value["route"].as_array().unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0]["require_device"].as_bool(), Some(true));
        assert!(routes[1].get("upstream").is_none());
    }
}
