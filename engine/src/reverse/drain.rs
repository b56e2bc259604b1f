//! Draining a direction: waiting until a relay has applied everything up to
//! a changelog position (the head taken once writes are held), so that the
//! primary of a bucket can flip without losing a change. The relay itself
//! keeps running; this only watches the position it persists with every
//! batch (forward: `_tern_relay` in the target; reverse: `_tern_relay` in
//! the source).

use std::time::{Duration, Instant};

use crate::changelog::Position;
use crate::error::Result;
use crate::link::{Link, Side};
use crate::relay::store;

/// Which relay: source → target (dual write) or target → source (reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Forward,
    Reverse,
}

impl Direction {
    /// The side whose changelog the relay reads.
    pub fn reads(self) -> Side {
        match self {
            Direction::Forward => Side::Source,
            Direction::Reverse => Side::Target,
        }
    }

    /// The side it writes, where its position is stored.
    pub fn writes(self) -> Side {
        self.reads().other()
    }
}

/// How a [`drain`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Drain {
    /// The relay applied through the position; `position` is where it was.
    Reached {
        position: Position,
        waited: Duration,
    },
    /// The timeout passed first; `position` is the relay's last (`None`
    /// when it never stored one: it is not running, or never ran).
    TimedOut {
        position: Option<Position>,
        waited: Duration,
    },
}

/// Whether a relay at `applied` has seen every change `through` has seen.
pub fn covers(applied: &Position, through: &Position) -> bool {
    // Every sequence number in `lo..=hi` is one `through` has not seen.
    let unseen = |lo: i64, hi: i64| {
        let mut next = lo;
        for &(glo, ghi) in &through.gaps {
            if ghi < next {
                continue;
            }
            if glo > next {
                return false;
            }
            next = ghi + 1;
            if next > hi {
                return true;
            }
        }
        next > hi
    };
    if applied.high < through.high && !unseen(applied.high + 1, through.high) {
        return false;
    }
    applied
        .gaps
        .iter()
        .filter(|(lo, _)| *lo <= through.high)
        .all(|&(lo, hi)| unseen(lo, hi.min(through.high)))
}

/// The position relay `name` of `direction` has applied through (and
/// stored, in the database it writes), `None` if it never ran.
pub async fn applied_through(
    link: &Link,
    direction: Direction,
    name: &str,
) -> Result<Option<Position>> {
    store::load_if_any(link.connector(direction.writes()), name).await
}

/// Waits until relay `name` of `direction` has applied through `through`,
/// at most `timeout`, looking every 10 ms.
pub async fn drain(
    link: &Link,
    direction: Direction,
    name: &str,
    through: &Position,
    timeout: Duration,
) -> Result<Drain> {
    let started = Instant::now();
    loop {
        let at = applied_through(link, direction, name).await?;
        if let Some(p) = &at
            && covers(p, through)
        {
            return Ok(Drain::Reached {
                position: p.clone(),
                waited: started.elapsed(),
            });
        }
        if started.elapsed() >= timeout {
            return Ok(Drain::TimedOut {
                position: at,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Position {
        s.parse().expect("a position")
    }

    #[test]
    fn a_relay_covers_what_the_head_had_seen() {
        assert!(covers(&p("10"), &p("10")));
        assert!(covers(&p("12"), &p("10")));
        assert!(!covers(&p("9"), &p("10")));
        // The head's own gaps (open transactions then) need not be applied.
        assert!(covers(&p("8"), &p("10/9-10")));
        assert!(covers(&p("10/7"), &p("10/7")));
        assert!(!covers(&p("10/7"), &p("10")));
        assert!(covers(&p("12/7,11"), &p("10/6-7")));
        assert!(!covers(&p("12/5-7"), &p("10/6-7")));
    }
}
