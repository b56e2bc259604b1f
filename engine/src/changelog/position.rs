//! A position in the changelog: every change with a sequence number up to
//! `high` has been seen, except the `gaps`.
//!
//! Sequence numbers are handed out when a trigger runs, not when its
//! transaction commits, so a reader can see change 101 while change 100 is
//! still uncommitted: 100 is a *gap*. It may be an open transaction that will
//! commit later (and must then be read) or a rolled-back one (and never
//! appear). A position therefore carries its gaps, a reader looks for them
//! again on every read, and a gap is given up only after the gap timeout
//! (see [`crate::relay`]).
//!
//! Text form, stored by the control plane as a bucket's `watermark`:
//! `high` or `high/gaps`, gaps being comma-separated `seq` or `lo-hi`
//! (inclusive): `1520/1490-1495,1501`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A changelog position: all of `..=high` seen except the `gaps`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    /// The highest sequence number seen.
    pub high: i64,
    /// Inclusive ranges of sequence numbers at or below `high` not seen yet,
    /// ascending and disjoint.
    pub gaps: Vec<(i64, i64)>,
}

impl Position {
    /// The very beginning: nothing seen.
    pub fn start() -> Position {
        Position::default()
    }

    /// A position with no gaps.
    pub fn at(high: i64) -> Position {
        Position {
            high,
            gaps: Vec::new(),
        }
    }

    /// Everything at or below this sequence number has been seen.
    pub fn low(&self) -> i64 {
        self.gaps.first().map_or(self.high, |(lo, _)| lo - 1)
    }

    /// Whether a change with this sequence number has been seen.
    pub fn has_seen(&self, seq: i64) -> bool {
        seq <= self.high && !self.gaps.iter().any(|&(lo, hi)| lo <= seq && seq <= hi)
    }

    /// Number of sequence numbers in the gaps.
    pub fn gap_count(&self) -> i64 {
        self.gaps.iter().map(|(lo, hi)| hi - lo + 1).sum()
    }

    /// Sorts and merges the gaps, drops empty ones and those above `high`.
    pub(crate) fn normalize(&mut self) {
        let high = self.high;
        self.gaps.retain(|(lo, hi)| lo <= hi && *lo <= high);
        for g in &mut self.gaps {
            g.1 = g.1.min(high);
        }
        self.gaps.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(self.gaps.len());
        for (lo, hi) in self.gaps.drain(..) {
            match merged.last_mut() {
                Some(last) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        self.gaps = merged;
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.high)?;
        for (i, (lo, hi)) in self.gaps.iter().enumerate() {
            f.write_str(if i == 0 { "/" } else { "," })?;
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Position {
    type Err = String;

    fn from_str(s: &str) -> Result<Position, String> {
        let bad = || {
            format!(
                "`{s}` is not a changelog position: expected `high` or `high/gaps` like `1520/1490-1495,1501`"
            )
        };
        let s = s.trim();
        let (high, gaps) = match s.split_once('/') {
            Some((h, g)) => (h, Some(g)),
            None => (s, None),
        };
        let high: i64 = high.trim().parse().map_err(|_| bad())?;
        let mut p = Position::at(high);
        for part in gaps
            .into_iter()
            .flat_map(|g| g.split(','))
            .map(str::trim)
            .filter(|g| !g.is_empty())
        {
            // A range `lo-hi`; sequence numbers are positive, so `-` only separates.
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim(), hi.trim()),
                None => (part, part),
            };
            let lo: i64 = lo.parse().map_err(|_| bad())?;
            let hi: i64 = hi.parse().map_err(|_| bad())?;
            if lo > hi || hi > high {
                return Err(bad());
            }
            p.gaps.push((lo, hi));
        }
        p.normalize();
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn positions_print_and_parse() {
        let p = Position {
            high: 1520,
            gaps: vec![(1490, 1495), (1501, 1501)],
        };
        assert_eq!(p.to_string(), "1520/1490-1495,1501");
        assert_eq!("1520/1490-1495,1501".parse::<Position>(), Ok(p.clone()));
        assert_eq!("42".parse::<Position>(), Ok(Position::at(42)));
        assert!("x".parse::<Position>().is_err());
        assert!("10/11".parse::<Position>().is_err(), "a gap above high");
        assert_eq!(p.low(), 1489);
        assert!(p.has_seen(1489) && !p.has_seen(1490) && p.has_seen(1496));
        assert!(!p.has_seen(1501) && p.has_seen(1520) && !p.has_seen(1521));
    }

    proptest! {
        #[test]
        fn text_form_round_trips(high in 0i64..1_000_000, raw in proptest::collection::vec((0i64..1_000_000, 0i64..50), 0..8)) {
            let mut p = Position { high, gaps: raw.into_iter().map(|(lo, n)| (lo, lo + n)).collect() };
            p.normalize();
            prop_assert_eq!(p.to_string().parse::<Position>(), Ok(p.clone()));
        }
    }
}
