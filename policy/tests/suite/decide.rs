//! decide and explain: the pipeline order, each reason, and agreement between the two.

use sekisho_policy::{DeviceFacts, Factor, Facts, Outcome, Policy, Reason, SessionFacts, decide, explain, parse};

use crate::REFERENCE;

fn reference() -> Policy {
    let extra = "\n[[user]]\nname = \"suzuki\"\ngroups = [\"staff\"]\n";
    parse("ref.toml", &format!("{REFERENCE}{extra}")).unwrap_or_else(|d| panic!("{d}"))
}

fn device(user: Option<&str>) -> DeviceFacts {
    DeviceFacts {
        fingerprint: "ab:cd".into(),
        user: user.map(str::to_string),
        name: "laptop-1".into(),
    }
}

fn session(user: &str, factors: &[Factor]) -> SessionFacts {
    SessionFacts {
        user: user.into(),
        factors: factors.to_vec(),
    }
}

#[test]
fn decisions_in_pipeline_order() {
    let p = reference();
    let inside = "203.0.113.9";
    let outside = "198.51.100.7";
    let tanaka_dev = device(Some("tanaka"));
    let other_dev = device(Some("sato"));
    let anon_dev = device(None);
    let tanaka_webauthn = session("tanaka", &[Factor::Webauthn]);
    let ghost = session("ghost", &[Factor::Totp]);
    let suzuki = session("suzuki", &[Factor::Totp]);
    let no_factor = session("tanaka", &[]);

    // (path, ip, device, session, outcome, reason, route name)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a DeviceFacts>,
        Option<&'a SessionFacts>,
        Outcome,
        Reason,
        Option<&'a str>,
    );
    let cases: &[Case<'_>] = &[
        (
            "/",
            outside,
            None,
            None,
            Outcome::Allow,
            Reason::Public,
            Some("storefront"),
        ),
        (
            "/wp-config.php",
            inside,
            Some(&tanaka_dev),
            Some(&tanaka_webauthn),
            Outcome::Deny,
            Reason::DenyRoute,
            Some("blocked"),
        ),
        (
            "/.git/HEAD",
            inside,
            None,
            None,
            Outcome::Deny,
            Reason::DenyRoute,
            Some("blocked"),
        ),
        (
            "/wp-admin/",
            outside,
            Some(&tanaka_dev),
            Some(&tanaka_webauthn),
            Outcome::Deny,
            Reason::AddressNotAllowed,
            Some("wordpress-admin"),
        ),
        (
            "/wp-admin/",
            "2001:db8:1::5",
            None,
            None,
            Outcome::Deny,
            Reason::DeviceRequired,
            Some("wordpress-admin"),
        ),
        (
            "/wp-admin/",
            inside,
            None,
            Some(&tanaka_webauthn),
            Outcome::Deny,
            Reason::DeviceRequired,
            Some("wordpress-admin"),
        ),
        (
            "/wp-admin/",
            inside,
            Some(&tanaka_dev),
            None,
            Outcome::Login,
            Reason::SecondFactorRequired,
            Some("wordpress-admin"),
        ),
        (
            "/wp-admin/",
            inside,
            Some(&anon_dev),
            Some(&ghost),
            Outcome::Deny,
            Reason::UnknownUser,
            Some("wordpress-admin"),
        ),
        (
            "/wp-admin/",
            inside,
            Some(&anon_dev),
            Some(&suzuki),
            Outcome::Deny,
            Reason::NotInGroup,
            Some("wordpress-admin"),
        ),
        (
            "/wp-admin/",
            inside,
            Some(&tanaka_dev),
            Some(&no_factor),
            Outcome::Login,
            Reason::FactorNotAccepted,
            Some("wordpress-admin"),
        ),
        (
            "/wp-admin/",
            inside,
            Some(&other_dev),
            Some(&tanaka_webauthn),
            Outcome::Deny,
            Reason::DeviceUserMismatch,
            Some("wordpress-admin"),
        ),
        (
            "/wp-admin/",
            inside,
            Some(&tanaka_dev),
            Some(&tanaka_webauthn),
            Outcome::Allow,
            Reason::Authenticated,
            Some("wordpress-admin"),
        ),
        (
            "/WP-LOGIN.PHP",
            inside,
            Some(&anon_dev),
            Some(&tanaka_webauthn),
            Outcome::Allow,
            Reason::Authenticated,
            Some("wordpress-admin"),
        ),
        (
            "/wp-admin",
            "::ffff:203.0.113.9",
            Some(&tanaka_dev),
            Some(&tanaka_webauthn),
            Outcome::Allow,
            Reason::Authenticated,
            Some("wordpress-admin"),
        ),
    ];
    for &(path, ip, device, session, outcome, reason, route) in cases {
        let facts = Facts {
            host: "shop.example.jp",
            path,
            client_ip: ip.parse().unwrap(),
            device,
            session,
        };
        let d = decide(&p, &facts);
        let label = format!("{path} from {ip}");
        assert_eq!((d.outcome, d.reason), (outcome, reason), "{label}");
        assert_eq!(d.route.map(|r| p.route(r).name.as_str()), route, "{label}");
        let e = explain(&p, &facts);
        assert_eq!(e.decision, d, "explain disagrees with decide for {label}");
        let text = e.to_string();
        if let Some(route) = route {
            assert!(text.contains(&format!("route '{route}'")), "{label}: {text}");
        }
        assert!(text.contains(reason.as_str()), "{label}: {text}");
    }
}

#[test]
fn no_route_is_deny() {
    let p = parse("p.toml", &REFERENCE.replace("paths = [\"/\"]", "paths = [\"/shop\"]")).unwrap();
    let facts = Facts {
        host: "shop.example.jp",
        path: "/elsewhere",
        client_ip: "203.0.113.9".parse().unwrap(),
        device: None,
        session: None,
    };
    let d = decide(&p, &facts);
    assert_eq!((d.outcome, d.reason, d.route), (Outcome::Deny, Reason::NoRoute, None));
    assert_eq!(explain(&p, &facts).decision, d);
}

#[test]
fn explain_reads_like_sentences() {
    let p = reference();
    let dev = device(Some("tanaka"));
    let s = session("tanaka", &[Factor::Totp]);
    let facts = Facts {
        host: "shop.example.jp",
        path: "/wp-admin/options.php",
        client_ip: "203.0.113.9".parse().unwrap(),
        device: Some(&dev),
        session: Some(&s),
    };
    let text = explain(&p, &facts).to_string();
    for part in [
        "decision: allow (authenticated)",
        "route 'wordpress-admin' matched by /wp-admin (longest of 2 candidates)",
        "client 203.0.113.9 is inside allow_ips 203.0.113.0/24",
        "user 'tanaka' is in group 'shop-admins'",
        "session completed totp, which the route accepts",
    ] {
        assert!(text.contains(part), "missing {part:?} in:\n{text}");
    }
    let facts = Facts {
        device: None,
        session: None,
        ..facts
    };
    let text = explain(&p, &facts).to_string();
    assert!(
        text.contains("no device certificate, but the route requires one → deny"),
        "{text}"
    );
}

#[test]
fn reason_names_are_stable() {
    let all = [
        (Reason::NoRoute, "no_route"),
        (Reason::DenyRoute, "deny_route"),
        (Reason::AddressNotAllowed, "address_not_allowed"),
        (Reason::DeviceRequired, "device_required"),
        (Reason::SecondFactorRequired, "second_factor_required"),
        (Reason::FactorNotAccepted, "factor_not_accepted"),
        (Reason::NotInGroup, "not_in_group"),
        (Reason::UnknownUser, "unknown_user"),
        (Reason::DeviceUserMismatch, "device_user_mismatch"),
        (Reason::Public, "public"),
        (Reason::Authenticated, "authenticated"),
    ];
    for (reason, name) in all {
        assert_eq!(reason.as_str(), name);
    }
}
