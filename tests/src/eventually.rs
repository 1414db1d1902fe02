//! Polling with a deadline: the only way tests wait for something to become true.
//!
//! A test never sleeps to "let things settle"; it states the condition it waits for and
//! how long that may take, and fails with the condition's text when the deadline passes.

use std::time::Duration;

/// How long to pause between two polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `$cond` (a `bool` expression) until it is true or `$timeout` has passed, then
/// panics naming the condition. For synchronous code (blocks the thread between polls).
#[macro_export]
macro_rules! assert_eventually {
    ($timeout:expr, $cond:expr $(,)?) => {
        $crate::assert_eventually!($timeout, $cond, "{}", stringify!($cond))
    };
    ($timeout:expr, $cond:expr, $($msg:tt)+) => {{
        let deadline = ::std::time::Instant::now() + $timeout;
        loop {
            if $cond {
                break;
            }
            if ::std::time::Instant::now() >= deadline {
                panic!("not true within {:?}: {}", $timeout, format!($($msg)+));
            }
            ::std::thread::sleep($crate::eventually::POLL_INTERVAL);
        }
    }};
}

/// As [`assert_eventually!`], for async tests: `$cond` may contain `.await`, and the pause
/// between polls yields to the runtime.
#[macro_export]
macro_rules! assert_eventually_async {
    ($timeout:expr, $cond:expr $(,)?) => {
        $crate::assert_eventually_async!($timeout, $cond, "{}", stringify!($cond))
    };
    ($timeout:expr, $cond:expr, $($msg:tt)+) => {{
        let deadline = ::std::time::Instant::now() + $timeout;
        loop {
            if $cond {
                break;
            }
            if ::std::time::Instant::now() >= deadline {
                panic!("not true within {:?}: {}", $timeout, format!($($msg)+));
            }
            ::tokio::time::sleep($crate::eventually::POLL_INTERVAL).await;
        }
    }};
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[test]
    fn passes_once_the_condition_holds() {
        let polls = AtomicU32::new(0);
        assert_eventually!(Duration::from_secs(2), polls.fetch_add(1, Ordering::SeqCst) >= 3);
    }

    #[test]
    #[should_panic(expected = "not true within")]
    fn fails_with_the_condition_after_the_deadline() {
        assert_eventually!(Duration::from_millis(50), 1 + 1 == 3);
    }
}
