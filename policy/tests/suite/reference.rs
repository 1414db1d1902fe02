//! The reference policy parses, and every key keeps the meaning written beside it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use sekisho_policy::{Access, ClientCertMode, Factor, Limits, RouteId, parse};

use crate::REFERENCE;

#[test]
fn reference_policy_parses_with_every_meaning() {
    let p = parse("policy-reference.toml", REFERENCE).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(p.version, 1);
    let s = &p.server;
    assert_eq!(
        s.listen,
        vec![
            "0.0.0.0:8443".parse::<SocketAddr>().unwrap(),
            "[::]:8443".parse::<SocketAddr>().unwrap()
        ]
    );
    assert_eq!(s.hostnames, ["shop.example.jp"]);
    assert_eq!(
        s.certificate,
        sekisho_policy::ServerCertificate::Files {
            cert: "/etc/sekisho/tls/cert.pem".into(),
            key: "/etc/sekisho/tls/key.pem".into()
        }
    );
    assert!(s.http_listen.is_empty());
    assert_eq!(s.device_ca.as_deref(), Some("/etc/sekisho/device-ca.pem"));
    assert_eq!(s.device_crl, None);
    assert_eq!(s.device_crl_path().as_deref(), Some("/etc/sekisho/device-ca.crl.pem"));
    assert_eq!(s.client_certificates, ClientCertMode::Request);
    assert!(s.trusted_proxies.is_empty());
    assert_eq!(s.state_dir, "/var/lib/sekisho");
    assert_eq!(s.log_dir, "/var/log/sekisho");

    assert_eq!(p.session.idle_timeout, Duration::from_secs(15 * 60));
    assert_eq!(p.session.absolute_timeout, Duration::from_secs(8 * 3600));
    assert_eq!(p.lockout.max_failures, 5);
    assert_eq!(p.lockout.window, Duration::from_secs(15 * 60));
    assert_eq!(p.lockout.duration, Duration::from_secs(30 * 60));
    assert_eq!(p.limits, Limits::default());

    assert_eq!(p.upstreams.len(), 1);
    let shop = p.upstream("shop").unwrap();
    assert_eq!(shop.url, "http://127.0.0.1:8080");
    assert_eq!(shop.authority, "127.0.0.1:8080");
    assert!(!shop.scheme_https);
    assert!(shop.case_insensitive);

    assert_eq!(p.routes.len(), 3);
    let store = p.route(RouteId(0));
    assert_eq!(store.name, "storefront");
    assert_eq!(store.paths, ["/"]);
    assert_eq!(store.upstream.as_deref(), Some("shop"));
    assert_eq!(store.access, Access::Public);
    assert!(store.allow_ips.is_empty() && !store.require_device);
    assert!(store.second_factor.is_empty() && store.groups.is_empty() && store.hosts.is_empty());

    let wp = p.route(RouteId(1));
    assert_eq!(wp.id, RouteId(1));
    assert_eq!(wp.name, "wordpress-admin");
    assert_eq!(wp.paths, ["/wp-admin", "/wp-login.php", "/xmlrpc.php"]);
    assert_eq!(wp.access, Access::Protected);
    assert_eq!(
        wp.allow_ips,
        vec![
            "203.0.113.0/24".parse::<IpNet>().unwrap(),
            "2001:db8:1::/48".parse::<IpNet>().unwrap()
        ]
    );
    assert!(wp.require_device);
    assert_eq!(wp.second_factor, [Factor::Webauthn, Factor::Totp]);
    assert_eq!(wp.groups, ["shop-admins"]);

    let blocked = p.route(RouteId(2));
    assert_eq!(blocked.name, "blocked");
    assert_eq!(blocked.paths, ["/wp-config.php", "/.git"]);
    assert_eq!(blocked.access, Access::Deny);
    assert_eq!(blocked.upstream, None);

    let tanaka = p.user("tanaka").unwrap();
    assert_eq!(tanaka.email.as_deref(), Some("tanaka@shop.example.jp"));
    assert_eq!(tanaka.groups, ["shop-admins"]);

    assert_eq!(p.id.len(), 64);
    assert!(p.id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));

    // Meanings the comments promise.
    assert!(p.serves_host("shop.example.jp") && !p.serves_host("evil.example"));
    let host = "shop.example.jp";
    assert_eq!(p.route_for(host, "/wp-admin/x"), Some(RouteId(1)));
    assert_eq!(p.route_for(host, "/wp-adminx"), Some(RouteId(0)));
    assert_eq!(p.route_for(host, "/.git/config"), Some(RouteId(2)));
    // A public route with no allow_ips admits every peer at accept time.
    assert!(p.admits_peer("198.51.100.1".parse::<IpAddr>().unwrap()));
}

#[test]
fn policy_id_is_the_sha256_of_the_text() {
    let p = parse("p.toml", REFERENCE).unwrap();
    let q = parse("p.toml", &format!("{REFERENCE}\n# comment\n")).unwrap();
    assert_ne!(p.id, q.id);
    let empty_sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_ne!(p.id, empty_sha);
}
