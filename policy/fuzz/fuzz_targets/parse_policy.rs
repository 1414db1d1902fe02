//! Fuzz target: any text given to `parse` yields a policy or diagnostics, never a panic; and a
//! policy that parses answers route and decision queries without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_policy::{Facts, decide, explain, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse("fuzz.toml", text) {
        Err(d) => {
            assert!(!d.is_empty());
            let _ = d.to_string();
        }
        Ok(p) => {
            for host in &p.server.hostnames {
                for route in &p.routes {
                    for path in &route.paths {
                        let facts = Facts {
                            host,
                            path,
                            client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
                            device: None,
                            session: None,
                        };
                        assert_eq!(decide(&p, &facts), explain(&p, &facts).decision);
                    }
                }
            }
        }
    }
});
