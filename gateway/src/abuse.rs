//! Abuse resistance per client address: temporary bans after repeated denials
//! (fail2ban-like) and token-bucket rate limits, kept in one bounded table.
//!
//! - **Denials** are the refusals the pipeline records that a well-behaved client does not
//!   make ([`counts_as_denial`]). `ban_after_denials` of them within `ban_window` (a sliding
//!   window, estimated from this window's and the previous window's counts) ban the address
//!   for `ban_duration`, doubled when the ban follows the previous one within a
//!   `ban_duration` of its end (up to 32×).
//! - **Rate limits**: a token bucket per address for POSTs to the gateway's own pages
//!   (`login_rate_per_minute`, `login_burst`) and, when enabled, for every request
//!   (`request_rate_per_second`, `request_burst`).
//! - **Bounded**: at most `max_tracked_addresses` entries. A full table first forgets the
//!   entries whose counters have expired, then the least recently seen eighth (unbanned
//!   before banned); it never grows. IPv6 addresses are tracked by their /64, so one host
//!   cannot spread itself over 2^64 entries.
//!
//! This module must never: allocate per request beyond one table entry, ban or limit a
//! trusted proxy (the callers pass only client addresses that are not trusted proxies),
//! or do IO. Time is an [`Instant`] passed in by the caller (monotonic, so a clock step
//! neither lifts nor stretches a ban); audit events are the caller's.

use sekisho_policy::Limits;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The most a ban is doubled: 2^5.
pub const MAX_BACKOFF_SHIFT: u32 = 5;

/// The statuses that count as a denial (when the gateway, not the upstream, answered):
/// malformed or ambiguous requests, policy refusals, unknown paths, wrong hosts, oversized
/// or too slow requests, and failed or refused logins on the gateway's own pages. Not
/// counted: the 401/302 that sends a client to the login (every admin meets it), 429
/// (already limited), and 5xx (the gateway's or the upstream's fault, not the client's).
pub const DENIAL_STATUSES: &[u16] = &[400, 401, 403, 404, 405, 408, 413, 414, 421, 431];

/// Whether a recorded answer counts as a denial: `outcome` is the access record's
/// (`deny`, `gateway` for the gateway's own pages, `login`, `allow`).
pub fn counts_as_denial(outcome: &str, status: u16) -> bool {
    matches!(outcome, "deny" | "gateway") && DENIAL_STATUSES.contains(&status)
}

/// The unit an address is tracked by: the address itself for IPv4, its /64 for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subject(IpAddr);

impl Subject {
    pub fn of(ip: IpAddr) -> Subject {
        match crate::forwarded::canonical(ip) {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                Subject(IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
            }
            v4 => Subject(v4),
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// A ban that began just now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub subject: Subject,
    pub duration: Duration,
    /// How many bans in a row this is (0 for the first).
    pub repeat: u32,
}

/// A ban that ended: it expired, or its entry was evicted from a full table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unban {
    pub subject: Subject,
    pub reason: &'static str,
}

/// Why a request was refused with 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Banned,
    LoginRate,
    RequestRate,
}

impl Limited {
    pub fn reason(self) -> &'static str {
        match self {
            Limited::Banned => "banned",
            Limited::LoginRate => "login_rate_limited",
            Limited::RequestRate => "request_rate_limited",
        }
    }
}

/// The table of tracked addresses, shared by the listeners and the pipeline.
#[derive(Debug, Default)]
pub struct Guard {
    table: Mutex<HashMap<Subject, Entry>>,
    /// The table's length as of its last change, so that the common case — nobody tracked,
    /// nothing to count — costs one atomic load and no lock on every request.
    tracked: AtomicUsize,
    bans: AtomicU64,
    limited_login: AtomicU64,
    limited_requests: AtomicU64,
    closed_at_accept: AtomicU64,
}

/// Counts for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardStats {
    pub tracked: usize,
    pub banned: usize,
    pub bans_total: u64,
    pub login_limited_total: u64,
    pub request_limited_total: u64,
    pub closed_at_accept_total: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    seen: Instant,
    window_start: Instant,
    current: u32,
    previous: u32,
    banned_until: Option<Instant>,
    last_ban_end: Option<Instant>,
    bans_in_a_row: u32,
    login: Bucket,
    requests: Bucket,
}

/// A token bucket; `tokens` is `None` while full (not yet drawn from).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: Option<f64>,
    at: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket { tokens: None, at: now }
    }

    /// Takes one token at `per_second` refill and `burst` capacity; false when empty.
    fn take(&mut self, per_second: f64, burst: u32, now: Instant) -> bool {
        let burst = f64::from(burst.max(1));
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let tokens = self.tokens.map_or(burst, |t| (t + elapsed * per_second).min(burst));
        self.at = now;
        if tokens >= 1.0 {
            self.tokens = Some(tokens - 1.0);
            true
        } else {
            self.tokens = Some(tokens);
            false
        }
    }
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            seen: now,
            window_start: now,
            current: 0,
            previous: 0,
            banned_until: None,
            last_ban_end: None,
            bans_in_a_row: 0,
            login: Bucket::new(now),
            requests: Bucket::new(now),
        }
    }

    fn banned(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|until| until > now)
    }

    /// Moves the window on and returns the sliding estimate of denials in the last window.
    fn estimate(&mut self, window: Duration, now: Instant) -> f64 {
        let window = window.max(Duration::from_millis(1));
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= window * 2 {
            self.previous = 0;
            self.current = 0;
            self.window_start = now;
        } else if elapsed >= window {
            self.previous = self.current;
            self.current = 0;
            self.window_start += window;
        }
        let into = now.saturating_duration_since(self.window_start).as_secs_f64() / window.as_secs_f64();
        f64::from(self.previous) * (1.0 - into).max(0.0) + f64::from(self.current)
    }

    /// Whether everything this entry remembers has expired (nothing lost by forgetting it).
    fn expired(&self, limits: &Limits, now: Instant) -> bool {
        if self.banned_until.is_some() {
            return false;
        }
        let memory = limits
            .ban_window
            .max(limits.ban_duration)
            .max(refill_time(
                limits.login_burst,
                f64::from(limits.login_rate_per_minute) / 60.0,
            ))
            .max(refill_time(
                limits.request_burst,
                f64::from(limits.request_rate_per_second),
            ));
        now.saturating_duration_since(self.seen) > memory
    }
}

fn refill_time(burst: u32, per_second: f64) -> Duration {
    if per_second <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(f64::from(burst) / per_second).unwrap_or(Duration::MAX)
}

impl Guard {
    /// Whether `ip` is banned now. Never adds an entry.
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        if self.tracked.load(Ordering::Acquire) == 0 {
            return false;
        }
        lock(&self.table).get(&Subject::of(ip)).is_some_and(|e| e.banned(now))
    }

    /// Notes a connection closed at accept because its address is banned.
    pub fn closed_at_accept(&self) {
        self.closed_at_accept.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one denial against `ip`; returns the ban that began, if this one began it.
    /// The second value is an entry evicted while banned (its ban ended early).
    pub fn deny(&self, ip: IpAddr, limits: &Limits, now: Instant) -> (Option<Ban>, Vec<Unban>) {
        if limits.ban_after_denials == 0 {
            return (None, Vec::new());
        }
        let subject = Subject::of(ip);
        let mut table = lock(&self.table);
        let mut ended = make_room(&mut table, subject, limits, now);
        table.entry(subject).or_insert_with(|| Entry::new(now));
        self.tracked.store(table.len(), Ordering::Release);
        let Some(entry) = table.get_mut(&subject) else {
            return (None, ended);
        };
        entry.seen = now;
        if entry.banned(now) {
            return (None, ended);
        }
        if let Some(until) = entry.banned_until.take() {
            // Ended since the last sweep: end it here, so the next ban can double and the
            // end is still recorded.
            entry.last_ban_end = Some(until);
            ended.push(Unban {
                subject,
                reason: "expired",
            });
        }
        let evicted = ended;
        let estimate = entry.estimate(limits.ban_window, now);
        entry.current = entry.current.saturating_add(1);
        if estimate + 1.0 < f64::from(limits.ban_after_denials) {
            return (None, evicted);
        }
        let repeat = match entry.last_ban_end {
            Some(end) if now.saturating_duration_since(end) < limits.ban_duration => entry.bans_in_a_row + 1,
            _ => 0,
        };
        let duration = limits.ban_duration.saturating_mul(1 << repeat.min(MAX_BACKOFF_SHIFT));
        entry.banned_until = Some(now + duration);
        entry.bans_in_a_row = repeat;
        entry.current = 0;
        entry.previous = 0;
        entry.window_start = now;
        self.bans.fetch_add(1, Ordering::Relaxed);
        (
            Some(Ban {
                subject,
                duration,
                repeat,
            }),
            evicted,
        )
    }

    /// Admits one request from `ip` against the ban and the rate limits; `own_page_post`
    /// is a POST to the gateway's own pages (logins). Returns why it is refused, if it is,
    /// and the entries evicted while banned.
    pub fn admit(
        &self,
        ip: IpAddr,
        own_page_post: bool,
        limits: &Limits,
        now: Instant,
    ) -> (Result<(), Limited>, Vec<Unban>) {
        let login = own_page_post && limits.login_rate_per_minute > 0;
        let requests = limits.request_rate_per_second > 0;
        if !login && !requests {
            // Nothing to count: look only, never add an entry.
            let banned = self.is_banned(ip, now);
            return (if banned { Err(Limited::Banned) } else { Ok(()) }, Vec::new());
        }
        let subject = Subject::of(ip);
        let mut table = lock(&self.table);
        let evicted = make_room(&mut table, subject, limits, now);
        table.entry(subject).or_insert_with(|| Entry::new(now));
        self.tracked.store(table.len(), Ordering::Release);
        let Some(entry) = table.get_mut(&subject) else {
            return (Ok(()), evicted);
        };
        entry.seen = now;
        let verdict = if entry.banned(now) {
            Err(Limited::Banned)
        } else if requests
            && !entry
                .requests
                .take(f64::from(limits.request_rate_per_second), limits.request_burst, now)
        {
            self.limited_requests.fetch_add(1, Ordering::Relaxed);
            Err(Limited::RequestRate)
        } else if login
            && !entry
                .login
                .take(f64::from(limits.login_rate_per_minute) / 60.0, limits.login_burst, now)
        {
            self.limited_login.fetch_add(1, Ordering::Relaxed);
            Err(Limited::LoginRate)
        } else {
            Ok(())
        };
        (verdict, evicted)
    }

    /// Ends the bans that expired and forgets entries whose counters expired; returns the
    /// bans that ended. Called about once a second.
    pub fn sweep(&self, limits: &Limits, now: Instant) -> Vec<Unban> {
        let mut table = lock(&self.table);
        let mut ended = Vec::new();
        for (subject, entry) in table.iter_mut() {
            if let Some(until) = entry.banned_until
                && until <= now
            {
                entry.banned_until = None;
                entry.last_ban_end = Some(until);
                entry.seen = entry.seen.max(until);
                ended.push(Unban {
                    subject: *subject,
                    reason: "expired",
                });
            }
        }
        table.retain(|_, e| !e.expired(limits, now));
        self.tracked.store(table.len(), Ordering::Release);
        ended
    }

    /// The numbers behind the metrics.
    pub fn stats(&self, now: Instant) -> GuardStats {
        let table = lock(&self.table);
        GuardStats {
            tracked: table.len(),
            banned: table.values().filter(|e| e.banned(now)).count(),
            bans_total: self.bans.load(Ordering::Relaxed),
            login_limited_total: self.limited_login.load(Ordering::Relaxed),
            request_limited_total: self.limited_requests.load(Ordering::Relaxed),
            closed_at_accept_total: self.closed_at_accept.load(Ordering::Relaxed),
        }
    }
}

/// Makes room for `subject` in a full table: first the expired entries go, then the least
/// recently seen eighth (unbanned ones before banned ones). Returns bans ended by eviction.
fn make_room(table: &mut HashMap<Subject, Entry>, subject: Subject, limits: &Limits, now: Instant) -> Vec<Unban> {
    let cap = limits.max_tracked_addresses.max(1);
    if table.len() < cap || table.contains_key(&subject) {
        return Vec::new();
    }
    table.retain(|_, e| !e.expired(limits, now));
    if table.len() < cap {
        return Vec::new();
    }
    let mut order: Vec<(bool, Instant, Subject)> = table.iter().map(|(s, e)| (e.banned(now), e.seen, *s)).collect();
    let n = (cap / 8).max(1).min(order.len());
    if n < order.len() {
        order.select_nth_unstable_by_key(n, |(banned, seen, _)| (*banned, *seen));
    }
    let mut ended = Vec::new();
    for (banned, _, s) in order.into_iter().take(n) {
        table.remove(&s);
        if banned {
            ended.push(Unban {
                subject: s,
                reason: "evicted",
            });
        }
    }
    ended
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            ban_after_denials: 3,
            ban_window: Duration::from_secs(10),
            ban_duration: Duration::from_secs(5),
            max_tracked_addresses: 16,
            login_rate_per_minute: 60,
            login_burst: 2,
            ..Limits::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_nth_denial_within_the_window_bans_and_the_ban_expires() {
        let (l, g, t0) = (limits(), Guard::default(), Instant::now());
        assert_eq!(g.deny(ip("192.0.2.1"), &l, t0).0, None);
        assert_eq!(g.deny(ip("192.0.2.1"), &l, t0).0, None);
        let ban = g.deny(ip("192.0.2.1"), &l, t0).0.unwrap();
        assert_eq!((ban.duration, ban.repeat), (Duration::from_secs(5), 0));
        assert!(g.is_banned(ip("192.0.2.1"), t0));
        assert!(!g.is_banned(ip("192.0.2.2"), t0), "another address is not");
        let later = t0 + Duration::from_secs(6);
        assert!(!g.is_banned(ip("192.0.2.1"), later));
        let ended = g.sweep(&l, later);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].reason, "expired");
    }

    #[test]
    fn denials_spread_wider_than_the_window_do_not_ban() {
        let (l, g, t0) = (limits(), Guard::default(), Instant::now());
        for i in 0..10 {
            let (ban, _) = g.deny(ip("192.0.2.1"), &l, t0 + Duration::from_secs(11 * i));
            assert_eq!(ban, None, "denial {i}");
        }
    }

    #[test]
    fn a_repeat_ban_soon_after_the_last_one_doubles() {
        let (l, g, t0) = (limits(), Guard::default(), Instant::now());
        for _ in 0..3 {
            g.deny(ip("192.0.2.1"), &l, t0);
        }
        let t1 = t0 + Duration::from_secs(5);
        g.sweep(&l, t1);
        let mut last = None;
        for _ in 0..3 {
            last = g.deny(ip("192.0.2.1"), &l, t1 + Duration::from_secs(1)).0.or(last);
        }
        let ban = last.unwrap();
        assert_eq!((ban.duration, ban.repeat), (Duration::from_secs(10), 1));
    }

    #[test]
    fn a_ban_that_ended_before_the_sweep_still_doubles_and_is_recorded_once() {
        let (l, g, t0) = (limits(), Guard::default(), Instant::now());
        for _ in 0..3 {
            g.deny(ip("192.0.2.1"), &l, t0);
        }
        let t1 = t0 + Duration::from_secs(6);
        let (ban, ended) = g.deny(ip("192.0.2.1"), &l, t1);
        assert_eq!((ban, ended.len()), (None, 1), "the old ban's end");
        g.deny(ip("192.0.2.1"), &l, t1);
        let ban = g.deny(ip("192.0.2.1"), &l, t1).0.unwrap();
        assert_eq!(ban.repeat, 1);
        assert!(g.sweep(&l, t1).is_empty(), "no second unban for the first ban");
    }

    #[test]
    fn ipv6_addresses_are_tracked_by_their_64() {
        let (l, g, t0) = (limits(), Guard::default(), Instant::now());
        g.deny(ip("2001:db8::1"), &l, t0);
        g.deny(ip("2001:db8::2"), &l, t0);
        let ban = g.deny(ip("2001:db8::ffff:3"), &l, t0).0.unwrap();
        assert_eq!(ban.subject.to_string(), "2001:db8::/64");
        assert!(g.is_banned(ip("2001:db8::9"), t0));
        assert!(!g.is_banned(ip("2001:db8:0:1::9"), t0));
    }

    #[test]
    fn the_table_never_grows_past_its_bound_and_keeps_bans_longest() {
        let (l, g, t0) = (limits(), Guard::default(), Instant::now());
        for _ in 0..3 {
            g.deny(ip("198.51.100.1"), &l, t0);
        }
        for i in 0..1000u32 {
            let a = IpAddr::from((0xC000_0200u32 + i).to_be_bytes());
            g.deny(a, &l, t0 + Duration::from_millis(u64::from(i)));
            assert!(g.stats(t0).tracked <= l.max_tracked_addresses);
        }
        assert!(g.is_banned(ip("198.51.100.1"), t0 + Duration::from_secs(1)));
    }

    #[test]
    fn the_login_bucket_refuses_beyond_its_burst_and_refills() {
        let (l, g, t0) = (limits(), Guard::default(), Instant::now());
        let a = ip("192.0.2.1");
        assert_eq!(g.admit(a, true, &l, t0).0, Ok(()));
        assert_eq!(g.admit(a, true, &l, t0).0, Ok(()));
        assert_eq!(g.admit(a, true, &l, t0).0, Err(Limited::LoginRate));
        assert_eq!(g.admit(a, false, &l, t0).0, Ok(()), "other requests are not limited");
        assert_eq!(g.admit(a, true, &l, t0 + Duration::from_secs(1)).0, Ok(()));
    }

    #[test]
    fn requests_that_count_nothing_add_no_entry() {
        let (l, g, t0) = (limits(), Guard::default(), Instant::now());
        assert_eq!(g.admit(ip("192.0.2.1"), false, &l, t0).0, Ok(()));
        assert_eq!(g.stats(t0).tracked, 0);
    }

    #[test]
    fn denial_statuses_are_the_clients_fault_only() {
        assert!(counts_as_denial("deny", 403));
        assert!(counts_as_denial("gateway", 401));
        assert!(!counts_as_denial("login", 401));
        assert!(!counts_as_denial("allow", 404), "the upstream's 404 is not ours");
        assert!(!counts_as_denial("deny", 429));
        assert!(!counts_as_denial("deny", 503));
    }
}
