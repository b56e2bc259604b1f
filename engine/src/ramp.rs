//! The ramp for applications that dual-write themselves, and the relay's
//! percentage ramp: for a key and a percentage, on or off. A thin layer over
//! the dependency-free [`tern_ramp`] crate (which services may embed directly),
//! so that the engine, the control plane's routing API and every client give
//! the same answer for the same key, in every process, on every run.
//!
//! # The rule (stable: changing it would re-route live traffic)
//!
//! ```text
//! position = splitmix64(FNV-1a-64(salt ‖ 0x1F ‖ key)) mod 100_000
//! on       = position < percent × 1000
//! ```
//!
//! The *key* is the text of the value ramps are decided by (the spec's bucket
//! column, e.g. a member id: `42`), as [`Value::canonical_text`] renders it; the
//! *salt* keeps ramps independent (the dual-write ramp of a migration uses the
//! migration's name, a client's read ramp `migration/client`). Raising the
//! percentage only turns keys on, never off: a key on at 10% is on at 25%.
//!
//! ```
//! use tern_engine::ramp::{Ramp, is_on};
//! let ten = Ramp::parse("10%").unwrap();
//! let twenty_five = Ramp::parse("25%").unwrap();
//! for member in 0..1000 {
//!     let key = member.to_string();
//!     if is_on("contacts", &key, ten) {
//!         assert!(is_on("contacts", &key, twenty_five));
//!     }
//! }
//! ```

pub use tern_ramp::{Ramp, RampError, SCALE, position};

use crate::value::Value;

/// Whether `key` (its text, e.g. `"42"` for member 42) is on at `ramp` under
/// `salt`. The function applications that dual-write themselves call.
pub fn is_on(salt: &str, key: &str, ramp: Ramp) -> bool {
    ramp.is_on(salt, key.as_bytes())
}

/// [`is_on`] for an engine value (a bucket column value read from a source
/// row), by its canonical text: `Value::Int(42)` and `"42"` decide alike.
pub fn value_is_on(salt: &str, key: &Value, ramp: Ramp) -> bool {
    ramp.is_on(salt, key.canonical_text().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn values_and_their_text_decide_alike() {
        let r = Ramp::parse("30%").unwrap_or_default();
        for k in 0..2000i64 {
            assert_eq!(
                value_is_on("m", &Value::Int(k), r),
                is_on("m", &k.to_string(), r)
            );
        }
    }

    proptest! {
        /// Sticky: every key on at 10% is still on at 25% (and at any higher ramp).
        #[test]
        fn a_key_on_at_ten_percent_stays_on_at_twenty_five(key in any::<i64>(), salt in "[a-z/]{0,12}") {
            let v = Value::Int(key);
            let ten = Ramp::from_millipercent(10_000);
            let quarter = Ramp::from_millipercent(25_000);
            if value_is_on(&salt, &v, ten) {
                prop_assert!(value_is_on(&salt, &v, quarter));
            }
        }
    }
}
