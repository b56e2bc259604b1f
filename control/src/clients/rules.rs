//! The rules of read ramps and their gates, as plain functions: what a
//! migration's gates may be set to, when a ramp needs them, which gates do not
//! hold (and what to do about each), and what a ramp change must say. The
//! store (`gates.rs`, `ramps.rs`) reads the numbers and writes the result;
//! the rules themselves are here, without SQL.

use serde::{Deserialize, Serialize};
use tern_ramp::Ramp;

use crate::error::{ControlError, Result};

/// Per-migration limits for ramps and decommissioning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Gates {
    pub migration_id: i64,
    /// Ramps above this (millipercent) need the gates to hold.
    pub ramp_threshold: i64,
    /// The latest verification accuracy must be at least this (percent).
    pub min_accuracy: f64,
    /// The client's shadow mismatch rate must be at most this (percent).
    pub max_mismatch_rate: f64,
    /// The window the mismatch rate is measured over (ms).
    pub mismatch_window_ms: i64,
    /// Decommission: days every client must have sent no old traffic.
    pub quiet_days: i64,
    /// Days a dataset stays locked before it may be deleted.
    pub lock_days: i64,
}

impl Gates {
    /// A migration's gates until an engineer sets them: ramps above 10% need
    /// 99.9% accuracy and at most 0.1% shadow mismatches over a day.
    pub fn defaults(migration_id: i64) -> Gates {
        Gates {
            migration_id,
            ramp_threshold: 10_000,
            min_accuracy: 99.9,
            max_mismatch_rate: 0.1,
            mismatch_window_ms: 86_400_000,
            quiet_days: 7,
            lock_days: 30,
        }
    }

    /// Refuses gates that make no sense, saying what each may be.
    pub fn validate(&self) -> Result<()> {
        if !(0..=100_000).contains(&self.ramp_threshold)
            || !(0.0..=100.0).contains(&self.min_accuracy)
            || !(0.0..=100.0).contains(&self.max_mismatch_rate)
            || self.mismatch_window_ms < 60_000
            || self.quiet_days < 0
            || self.lock_days < 0
        {
            return Err(ControlError::Invalid(
                "gates need a threshold from 0% to 100%, an accuracy and a mismatch rate from 0 to \
                 100 percent, a mismatch window of at least a minute and no negative days"
                    .into(),
            ));
        }
        Ok(())
    }

    /// True when raising a client from `current` (millipercent) to `to` must
    /// pass the gates: above the threshold and upwards. Lowering never does.
    pub fn apply_to(&self, current: i64, to: Ramp) -> bool {
        let to = i64::from(to.millipercent());
        to > self.ramp_threshold && to > current
    }
}

/// What the gates are measured against for one client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateInputs<'a> {
    pub client: &'a str,
    /// The client's current ramp (millipercent).
    pub current: i64,
    /// The migration's latest verification accuracy (percent), if any run finished.
    pub accuracy: Option<f64>,
    /// The client's shadow mismatch rate (percent) over the gates' window, if
    /// it sent any comparison.
    pub mismatch_rate: Option<f64>,
}

/// One sentence per gate that does not hold for raising to `to`, each saying
/// what to do; empty when the ramp may go through.
pub fn gate_reasons(gates: &Gates, inputs: &GateInputs<'_>, to: Ramp) -> Vec<String> {
    let mut reasons = Vec::new();
    if !gates.apply_to(inputs.current, to) {
        return reasons;
    }
    let threshold = Ramp::from_millipercent(u32::try_from(gates.ramp_threshold).unwrap_or(0));
    let client = inputs.client;
    match inputs.accuracy {
        None => reasons.push(format!(
            "ramps above {threshold} need a verification run, and none has finished: \
             verify the migration's buckets first"
        )),
        Some(a) if a < gates.min_accuracy => reasons.push(format!(
            "the latest verification accuracy is {a:.3}%, below the {:.3}% ramps above \
             {threshold} need: repair and verify again",
            gates.min_accuracy
        )),
        _ => {}
    }
    let hours = gates.mismatch_window_ms as f64 / 3_600_000.0;
    match inputs.mismatch_rate {
        None => reasons.push(format!(
            "ramps above {threshold} need shadow comparisons, and `{client}` sent none in the \
             last {hours:.0} h: turn on shadow reads"
        )),
        Some(r) if r > gates.max_mismatch_rate => reasons.push(format!(
            "`{client}`'s shadow mismatch rate is {r:.3}% over the last {hours:.0} h, above the \
             {:.3}% limit: read the mismatch trees and fix the differences",
            gates.max_mismatch_rate
        )),
        _ => {}
    }
    reasons
}

/// The reason a ramp change is recorded with: refused when blank, because
/// it goes into the audit log.
pub fn ramp_reason(reason: &str) -> Result<&str> {
    match reason.trim() {
        "" => Err(ControlError::Invalid(
            "say why the ramp changes: the reason goes into the audit log".into(),
        )),
        r => Ok(r),
    }
}

/// The refusal of a gated ramp, with every reason; an admin is told they may
/// override.
pub fn ramp_refused(client: &str, to: Ramp, reasons: &[String], admin: bool) -> ControlError {
    ControlError::Conflict(format!(
        "raising `{client}` to {to} is refused: {}{}",
        reasons.join("; "),
        if admin {
            ". An admin may override with a written reason"
        } else {
            ""
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(p: f64) -> Ramp {
        Ramp::from_percent(p).expect("a valid ramp")
    }

    fn inputs(accuracy: Option<f64>, mismatch_rate: Option<f64>) -> GateInputs<'static> {
        GateInputs {
            client: "inbox-service",
            current: 5_000,
            accuracy,
            mismatch_rate,
        }
    }

    #[test]
    fn ramps_up_to_the_threshold_and_every_lowering_pass_without_gates() {
        let g = Gates::defaults(1);
        assert!(gate_reasons(&g, &inputs(None, None), pct(10.0)).is_empty());
        assert!(gate_reasons(&g, &inputs(None, None), pct(2.0)).is_empty());
        let high = GateInputs {
            current: 80_000,
            ..inputs(None, None)
        };
        assert!(
            gate_reasons(&g, &high, pct(50.0)).is_empty(),
            "lowering is never gated"
        );
        assert!(!gate_reasons(&g, &high, pct(90.0)).is_empty());
    }

    #[test]
    fn each_gate_that_does_not_hold_says_what_to_do() {
        let g = Gates::defaults(1);
        let none = gate_reasons(&g, &inputs(None, None), pct(50.0));
        assert_eq!(none.len(), 2, "{none:?}");
        assert!(
            none[0].contains("verify the migration's buckets first"),
            "{none:?}"
        );
        assert!(none[1].contains("turn on shadow reads"), "{none:?}");
        let low = gate_reasons(&g, &inputs(Some(99.0), Some(0.5)), pct(50.0));
        assert_eq!(
            low,
            vec![
                "the latest verification accuracy is 99.000%, below the 99.900% ramps above 10% \
                 need: repair and verify again"
                    .to_string(),
                "`inbox-service`'s shadow mismatch rate is 0.500% over the last 24 h, above the \
                 0.100% limit: read the mismatch trees and fix the differences"
                    .to_string(),
            ]
        );
        assert!(gate_reasons(&g, &inputs(Some(99.95), Some(0.05)), pct(100.0)).is_empty());
    }

    #[test]
    fn gates_are_checked_and_reasons_required() {
        assert!(Gates::defaults(1).validate().is_ok());
        let bad = Gates {
            mismatch_window_ms: 1_000,
            ..Gates::defaults(1)
        };
        assert!(bad.validate().is_err());
        let over = Gates {
            min_accuracy: 101.0,
            ..Gates::defaults(1)
        };
        assert!(over.validate().is_err());
        assert!(ramp_reason("  ").is_err());
        assert_eq!(ramp_reason(" canary ").ok(), Some("canary"));
        let refused = ramp_refused("a", pct(50.0), &["x".into(), "y".into()], true).to_string();
        assert_eq!(
            refused,
            "raising `a` to 50% is refused: x; y. An admin may override with a written reason"
        );
    }
}
