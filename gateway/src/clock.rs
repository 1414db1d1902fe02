//! The one home of wall-clock time. Everything that needs "now" asks a [`Clock`], so tests
//! can drive time and so no other module calls `SystemTime::now` (clippy bans it elsewhere).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Seconds since the Unix epoch.
    fn now(&self) -> SystemTime;

    /// Seconds since the Unix epoch, saturating at zero for a clock set before 1970.
    fn unix_seconds(&self) -> i64 {
        match self.now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(_) => 0,
        }
    }
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods, reason = "the one place that reads the system clock")]
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that tests set by hand.
#[derive(Debug)]
pub struct FixedClock(std::sync::Mutex<SystemTime>);

impl FixedClock {
    pub fn at_unix(secs: u64) -> Arc<Self> {
        Arc::new(Self(std::sync::Mutex::new(UNIX_EPOCH + Duration::from_secs(secs))))
    }

    pub fn advance(&self, by: Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        match self.0.lock() {
            Ok(t) => *t,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

/// The clock shared by the whole process.
pub type SharedClock = Arc<dyn Clock>;

pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// `unix` as a UTC date and time: `YYYY-MM-DD{sep}HH:MM:SS{suffix}` (`'T'`, `"Z"`: RFC 3339;
/// `' '`, `" UTC"`: for people). Out-of-range times print as the epoch.
pub fn format_utc(unix: i64, sep: char, suffix: &str) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}{suffix}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
