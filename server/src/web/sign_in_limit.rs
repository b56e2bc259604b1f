//! Sign-in attempts are rate-limited per username and per client address
//! (governor's GCRA limiter), so guessing passwords is slow and a flood of
//! sign-ins is turned away before any Argon2 work is done. The limiters keep
//! one small cell per key; old keys are dropped as the maps grow.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Attempts per minute for one username (the first ten at once).
const PER_USER: NonZeroU32 = NonZeroU32::new(10).expect("ten");
/// Attempts per minute from one address (the first sixty at once).
const PER_ADDRESS: NonZeroU32 = NonZeroU32::new(60).expect("sixty");
/// Past this many keys, keys whose cells are full again are forgotten.
const MAX_KEYS: usize = 10_000;

/// The sign-in limiters, shared by every request.
#[derive(Clone)]
pub struct SignInLimits {
    by_user: Arc<DefaultKeyedRateLimiter<String>>,
    by_address: Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

impl Default for SignInLimits {
    fn default() -> Self {
        SignInLimits {
            by_user: Arc::new(RateLimiter::keyed(Quota::per_minute(PER_USER))),
            by_address: Arc::new(RateLimiter::keyed(Quota::per_minute(PER_ADDRESS))),
        }
    }
}

impl SignInLimits {
    /// Counts one attempt for `username` from `address`; `Err(wait)` when
    /// either has tried too often, with the time until the next attempt.
    pub fn attempt(&self, username: &str, address: Option<IpAddr>) -> Result<(), Duration> {
        let now = self.by_user.clock().now();
        if let Some(addr) = address {
            if self.by_address.len() > MAX_KEYS {
                self.by_address.retain_recent();
            }
            self.by_address
                .check_key(&addr)
                .map_err(|n| n.wait_time_from(now))?;
        }
        if self.by_user.len() > MAX_KEYS {
            self.by_user.retain_recent();
        }
        let key: String = username.trim().to_lowercase().chars().take(64).collect();
        self.by_user
            .check_key(&key)
            .map_err(|n| n.wait_time_from(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_attempt_in_a_minute_waits() {
        let limits = SignInLimits::default();
        let addr = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..10 {
            assert!(limits.attempt("admin", addr).is_ok());
        }
        let wait = limits.attempt("Admin ", addr).expect_err("slowed");
        assert!(
            wait > Duration::from_secs(1) && wait <= Duration::from_secs(6),
            "{wait:?}"
        );
        assert!(limits.attempt("someone-else", addr).is_ok(), "per user");
    }
}
