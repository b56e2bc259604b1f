//! Backoff between attempts of a batch the relay or catch-up must not drop:
//! doubling from `initial` up to `max`, with ±20% jitter so that several
//! relays do not retry in step.

use std::time::Duration;

use crate::error::EngineError;

/// Exponential backoff state.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        let seed = crate::connector::process_clock_micros() as u64 | 1;
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
            seed,
        }
    }

    /// The wait before the next attempt; doubles the one after.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        // xorshift: jitter needs no quality, only spread.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let factor = 0.8 + (self.seed % 401) as f64 / 1000.0;
        base.mul_f64(factor)
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Whether an error may go away by itself (a database that cannot be reached
/// or refused a batch, e.g. a killed connection or a lock timeout), so the
/// batch is retried rather than the run failed. Spec, schema and row errors
/// need a person and are returned.
pub(crate) fn is_transient(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::Database { .. } | EngineError::Unreachable { .. } | EngineError::Apply { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<u128> = (0..6).map(|_| b.next_wait().as_millis()).collect();
        assert!((80..=120).contains(&waits[0]), "{waits:?}");
        assert!((160..=240).contains(&waits[1]), "{waits:?}");
        assert!((800..=1200).contains(&waits[5]), "{waits:?}");
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(120));
    }
}
