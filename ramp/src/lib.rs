//! The sticky ramp: decides, for a key and a percentage, whether the key is
//! *on* (dual-written, or read from the new system) — the same answer in the
//! engine, the control plane's routing API and every client that embeds this
//! crate, in every process and on every run.
//!
//! # The rule
//!
//! A key's **position** is a number in `0..100_000`:
//!
//! ```text
//! h        = FNV-1a-64(salt bytes ‖ 0x1F ‖ key bytes)
//! position = splitmix64(h) mod 100_000
//! ```
//!
//! FNV-1a-64 starts from offset basis `0xcbf29ce484222325` and multiplies by the
//! prime `0x100000001b3` (wrapping) after XOR-ing each byte; splitmix64 is
//! `z = h + 0x9e3779b97f4a7c15; z = (z ^ z>>30)·0xbf58476d1ce4e5b9;
//! z = (z ^ z>>27)·0x94d049bb133111eb; z ^ z>>31` (wrapping). The *salt* keeps
//! ramps independent: the engine's dual-write ramp uses the migration's name,
//! a client's read ramp uses `migration/client`.
//!
//! A **ramp** is kept in thousandths of a percent (`Ramp::from_percent(25.0)`
//! is 25,000). A key is on when `position < ramp`. Raising a ramp therefore
//! only ever turns keys on: a key on at 10% is on at 25% (stickiness), and at
//! p% about p% of keys are on.

pub mod buckets;

/// Positions run from 0 to `SCALE - 1`; 100,000 = 0.001% steps.
pub const SCALE: u32 = 100_000;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[inline]
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

#[inline]
fn splitmix64(h: u64) -> u64 {
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key's position in `0..SCALE` under `salt`.
#[inline]
pub fn position(salt: &str, key: &[u8]) -> u32 {
    let h = fnv1a(fnv1a(FNV_OFFSET, salt.as_bytes()), &[0x1f]);
    (splitmix64(fnv1a(h, key)) % u64::from(SCALE)) as u32
}

/// A ramp: how much of the key space is on, in thousandths of a percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ramp(u32);

/// A percentage that is not a ramp.
#[derive(Debug, Clone, PartialEq)]
pub struct RampError(pub String);

impl std::fmt::Display for RampError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RampError {}

impl Ramp {
    pub const OFF: Ramp = Ramp(0);
    pub const FULL: Ramp = Ramp(SCALE);

    /// A ramp from thousandths of a percent (`25_000` = 25%), capped at 100%.
    pub const fn from_millipercent(m: u32) -> Ramp {
        Ramp(if m > SCALE { SCALE } else { m })
    }

    /// A ramp from a percentage between 0 and 100, rounded to 0.001%.
    pub fn from_percent(p: f64) -> Result<Ramp, RampError> {
        if !(0.0..=100.0).contains(&p) || p.is_nan() {
            return Err(RampError(format!(
                "a ramp of {p}% is not valid: use a percentage from 0 to 100"
            )));
        }
        Ok(Ramp((p * 1000.0).round() as u32))
    }

    /// Parses `25%`, `25`, `0.5%` or `100%`.
    pub fn parse(s: &str) -> Result<Ramp, RampError> {
        let t = s.trim().trim_end_matches('%').trim();
        let p: f64 = t.parse().map_err(|_| {
            RampError(format!(
                "`{s}` is not a ramp: write a percentage like `25%` or `0.5%`"
            ))
        })?;
        Ramp::from_percent(p)
    }

    pub fn millipercent(self) -> u32 {
        self.0
    }

    pub fn percent(self) -> f64 {
        f64::from(self.0) / 1000.0
    }

    /// Whether a key at `position` is on.
    #[inline]
    pub fn covers(self, position: u32) -> bool {
        position < self.0
    }

    /// Whether `key` is on under `salt`.
    #[inline]
    pub fn is_on(self, salt: &str, key: &[u8]) -> bool {
        self.0 >= SCALE || (self.0 > 0 && self.covers(position(salt, key)))
    }
}

impl std::fmt::Display for Ramp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.percent();
        if p.fract() == 0.0 {
            write!(f, "{p:.0}%")
        } else {
            write!(f, "{}%", format!("{p:.3}").trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Fixed vectors: changing the hash would re-route live traffic, so these
    /// values may never change.
    #[test]
    fn positions_are_stable_across_versions() {
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(position("contacts", b"42"), 84_914);
        assert_eq!(position("messages/inbox-service", b"member-7"), 87_463);
        assert_eq!(position("", b""), 59_409);
        assert_ne!(
            position("contacts", b"42"),
            position("contacts/inbox", b"42")
        );
    }

    #[test]
    fn ramps_parse_and_print() {
        assert_eq!(Ramp::parse("25%"), Ok(Ramp(25_000)));
        assert_eq!(Ramp::parse(" 0.1 % "), Ok(Ramp(100)));
        assert_eq!(Ramp::parse("100"), Ok(Ramp::FULL));
        assert!(Ramp::parse("101%").is_err());
        assert!(Ramp::parse("-1").is_err());
        assert!(Ramp::parse("lots").is_err());
        assert_eq!(Ramp(25_000).to_string(), "25%");
        assert_eq!(Ramp(100).to_string(), "0.1%");
        assert_eq!(Ramp(12_345).to_string(), "12.345%");
    }

    #[test]
    fn off_is_off_and_full_is_full() {
        for k in 0..1000u32 {
            let key = k.to_string();
            assert!(!Ramp::OFF.is_on("m", key.as_bytes()));
            assert!(Ramp::FULL.is_on("m", key.as_bytes()));
        }
    }

    #[test]
    fn about_p_percent_of_keys_are_on() {
        let keys: Vec<String> = (0..200_000u32).map(|k| format!("member-{k}")).collect();
        for p in [0.1, 1.0, 10.0, 25.0, 50.0, 90.0] {
            let ramp = Ramp::from_percent(p).expect("valid");
            let on = keys
                .iter()
                .filter(|k| ramp.is_on("contacts", k.as_bytes()))
                .count();
            let share = on as f64 * 100.0 / keys.len() as f64;
            // Binomial standard deviation at n = 200,000 is at most 0.11 points.
            assert!((share - p).abs() < 0.5, "{p}%: {share:.3}% of keys on");
        }
    }

    proptest! {
        /// Raising the ramp never turns a key off.
        #[test]
        fn raising_a_ramp_only_turns_keys_on(key in proptest::collection::vec(any::<u8>(), 0..40),
                                             salt in "[a-z/]{0,20}",
                                             low in 0u32..=SCALE, high in 0u32..=SCALE) {
            let (low, high) = (low.min(high), low.max(high));
            if Ramp(low).is_on(&salt, &key) {
                prop_assert!(Ramp(high).is_on(&salt, &key));
            }
        }

        /// The same key under the same salt always lands at the same position.
        #[test]
        fn a_key_has_one_position(key in proptest::collection::vec(any::<u8>(), 0..40), salt in ".{0,20}") {
            prop_assert_eq!(position(&salt, &key), position(&salt, &key));
            prop_assert!(position(&salt, &key) < SCALE);
        }
    }
}
