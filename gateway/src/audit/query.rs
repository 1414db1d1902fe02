//! What `sekisho log export` and `sekisho log search` select: a time window and, for
//! search, a user, an address (or network), a route (by name, or a path prefix) and a kind.
//! Pure: values in, a yes or no out.

use ipnet::IpNet;
use std::net::IpAddr;

/// A selection of records.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub user: Option<String>,
    pub address: Option<IpNet>,
    pub route: Option<String>,
    pub kind: Option<String>,
}

impl Filter {
    /// Whether a record (its time and its parsed JSON) is selected.
    pub fn matches(&self, time: i64, record: &serde_json::Value) -> bool {
        let text = |field: &str| record.get(field).and_then(serde_json::Value::as_str);
        if self.since.is_some_and(|s| time < s) || self.until.is_some_and(|u| time >= u) {
            return false;
        }
        if let Some(kind) = &self.kind
            && text("kind") != Some(kind.as_str())
        {
            return false;
        }
        if let Some(user) = &self.user
            && text("user") != Some(user.as_str())
        {
            return false;
        }
        if let Some(net) = &self.address {
            let inside = |field: &str| {
                text(field)
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .is_some_and(|ip| net.contains(&ip))
            };
            if !inside("peer") && !inside("client") {
                return false;
            }
        }
        if let Some(route) = &self.route {
            let by_name = text("route") == Some(route.as_str());
            let by_path = route.starts_with('/')
                && text("path").is_some_and(|p| {
                    p.strip_prefix(route.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || route.ends_with('/'))
                });
            if !by_name && !by_path {
                return false;
            }
        }
        true
    }
}

/// An address or a network (`192.0.2.7`, `192.0.2.0/24`, `2001:db8::/32`).
pub fn parse_address(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A point in time: Unix seconds, `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS][Z]` (UTC), or an
/// age before `now` (`30m`, `24h`, `7d`).
pub fn parse_time(text: &str, now: i64) -> Option<i64> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<i64>() {
        return Some(secs);
    }
    if let Some((n, unit)) = t.split_at_checked(t.len().checked_sub(1)?)
        && let Ok(n) = n.parse::<i64>()
    {
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return None,
        };
        return Some(now - n.checked_mul(scale)?);
    }
    let t = t.strip_suffix('Z').unwrap_or(t);
    let (date, clock) = match t.split_once(['T', ' ']) {
        Some((d, c)) => (d, Some(c)),
        None => (t, None),
    };
    let day = super::files::day_start(date)?;
    let Some(clock) = clock else { return Some(day) };
    let mut parts = clock.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s: i64 = parts.next().map_or(Some(0), |s| s.parse().ok())?;
    if parts.next().is_some() || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(day + h * 3_600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_accepted_form() {
        assert_eq!(parse_time("86400", 0), Some(86_400));
        assert_eq!(parse_time("1970-01-02", 0), Some(86_400));
        assert_eq!(parse_time("1970-01-02T01:00Z", 0), Some(90_000));
        assert_eq!(parse_time("1970-01-02 00:00:05", 0), Some(86_405));
        assert_eq!(parse_time("7d", 700_000), Some(700_000 - 604_800));
        assert_eq!(parse_time("yesterday", 0), None);
    }

    #[test]
    fn filters_select_by_user_address_route_and_time() {
        let rec: serde_json::Value = serde_json::from_str(
            r#"{"kind":"access","user":"alice","peer":"127.0.0.2","client":"192.0.2.7","route":"admin","path":"/admin/users"}"#,
        )
        .unwrap();
        let f = |f: Filter| f.matches(100, &rec);
        assert!(f(Filter::default()));
        assert!(f(Filter {
            user: Some("alice".into()),
            address: parse_address("192.0.2.0/24"),
            route: Some("/admin".into()),
            since: Some(100),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            user: Some("bob".into()),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            route: Some("/adm".into()),
            ..Filter::default()
        }));
        assert!(f(Filter {
            route: Some("admin".into()),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            until: Some(100),
            ..Filter::default()
        }));
    }
}
