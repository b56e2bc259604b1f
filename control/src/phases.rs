//! The bucket lifecycle as an explicit state machine: the one set of rules the
//! UI, the JSON API, the CLI and the workers all go through.
//!
//! ```text
//! planned → bulk-loading → loaded → catching-up → caught-up → verifying → verified
//!         → reads-switching → switched → done
//! ```
//! Running phases (bulk-loading, catching-up, verifying) may be paused or fail;
//! paused and failed buckets go back to the phase they left. A loaded bucket may
//! be loaded again (a re-bootstrap), verification that finds mismatches sends
//! the bucket back to caught-up (repair, then verify again), and switching
//! reads can be rolled back to verified.

use serde::{Deserialize, Serialize};

use crate::error::{ControlError, Result};

/// Where a bucket stands in the playbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Planned,
    BulkLoading,
    Loaded,
    CatchingUp,
    CaughtUp,
    Verifying,
    Verified,
    ReadsSwitching,
    Switched,
    Done,
    Paused,
    Failed,
}

impl Phase {
    /// Every phase, in playbook order, then paused and failed.
    pub const ALL: [Phase; 12] = [
        Phase::Planned,
        Phase::BulkLoading,
        Phase::Loaded,
        Phase::CatchingUp,
        Phase::CaughtUp,
        Phase::Verifying,
        Phase::Verified,
        Phase::ReadsSwitching,
        Phase::Switched,
        Phase::Done,
        Phase::Paused,
        Phase::Failed,
    ];

    /// The phase's name as stored and shown (`bulk-loading`).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Planned => "planned",
            Phase::BulkLoading => "bulk-loading",
            Phase::Loaded => "loaded",
            Phase::CatchingUp => "catching-up",
            Phase::CaughtUp => "caught-up",
            Phase::Verifying => "verifying",
            Phase::Verified => "verified",
            Phase::ReadsSwitching => "reads-switching",
            Phase::Switched => "switched",
            Phase::Done => "done",
            Phase::Paused => "paused",
            Phase::Failed => "failed",
        }
    }

    /// Parses a stored phase name.
    pub fn parse(s: &str) -> Result<Phase> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ControlError::Invalid(format!("unknown bucket phase `{s}`")))
    }
}

crate::db::stored_as_text!(Phase);

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The phases a bucket in `phase` may move to. `resume` is the phase a paused
/// or failed bucket left (where resuming or retrying takes it).
pub fn legal_moves(phase: Phase, resume: Option<Phase>) -> Vec<Phase> {
    use Phase::*;
    match phase {
        Planned => vec![BulkLoading],
        BulkLoading => vec![Loaded, Paused, Failed],
        Loaded => vec![CatchingUp, BulkLoading],
        CatchingUp => vec![CaughtUp, Paused, Failed],
        CaughtUp => vec![Verifying, CatchingUp],
        Verifying => vec![Verified, CaughtUp, Paused, Failed],
        Verified => vec![ReadsSwitching, Verifying, CatchingUp],
        ReadsSwitching => vec![Switched, Verified],
        Switched => vec![Done, ReadsSwitching],
        Done => vec![],
        Paused => resume.into_iter().chain([Failed]).collect(),
        Failed => resume.into_iter().chain([Planned]).collect(),
    }
}

/// True for phases in which a job is working on the bucket.
pub fn is_running(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::BulkLoading | Phase::CatchingUp | Phase::Verifying
    )
}

fn list(phases: &[Phase]) -> String {
    match phases {
        [] => "nowhere: it is finished".to_string(),
        [one] => one.as_str().to_string(),
        [init @ .., last] => format!(
            "{} or {}",
            init.iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            last.as_str()
        ),
    }
}

/// True when a job's end may move its bucket from `from` to `next`: a legal
/// move, or out of paused (a job paused at its checkpoint ends). A bucket a
/// person moved elsewhere meanwhile is left where it is.
pub fn job_may_move(from: Phase, next: Phase) -> bool {
    legal_moves(from, None).contains(&next) || from == Phase::Paused
}

/// Refuses an illegal move with a message that says which moves are allowed.
pub fn check_move(what: &str, from: Phase, resume: Option<Phase>, to: Phase) -> Result<()> {
    let legal = legal_moves(from, resume);
    if legal.contains(&to) {
        Ok(())
    } else {
        Err(ControlError::Conflict(format!(
            "{what} is {from}: it can move to {}, not to {to}",
            list(&legal)
        )))
    }
}

/// Where a bucket returns to when it leaves paused or failed, given the move
/// into that state: a running phase remembers itself; a retry from failed
/// starts the failed step over.
pub fn resume_phase_after(from: Phase, to: Phase, current_resume: Option<Phase>) -> Option<Phase> {
    match to {
        Phase::Paused | Phase::Failed if is_running(from) => Some(from),
        Phase::Failed if from == Phase::Paused => current_resume,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Phase::*;

    /// Every (from, to) pair: legal exactly when listed here.
    #[test]
    fn every_transition_is_legal_or_refused_as_the_table_says() {
        let legal: &[(Phase, Phase)] = &[
            (Planned, BulkLoading),
            (BulkLoading, Loaded),
            (BulkLoading, Paused),
            (BulkLoading, Failed),
            (Loaded, CatchingUp),
            (Loaded, BulkLoading),
            (CatchingUp, CaughtUp),
            (CatchingUp, Paused),
            (CatchingUp, Failed),
            (CaughtUp, Verifying),
            (CaughtUp, CatchingUp),
            (Verifying, Verified),
            (Verifying, CaughtUp),
            (Verifying, Paused),
            (Verifying, Failed),
            (Verified, ReadsSwitching),
            (Verified, Verifying),
            (Verified, CatchingUp),
            (ReadsSwitching, Switched),
            (ReadsSwitching, Verified),
            (Switched, Done),
            (Switched, ReadsSwitching),
        ];
        for from in Phase::ALL {
            if matches!(from, Paused | Failed) {
                continue;
            }
            for to in Phase::ALL {
                let expected = legal.contains(&(from, to));
                let got = check_move("bucket 1", from, None, to).is_ok();
                assert_eq!(got, expected, "{from} → {to}");
            }
        }
    }

    #[test]
    fn paused_and_failed_buckets_return_where_they_left() {
        for running in [BulkLoading, CatchingUp, Verifying] {
            let resume = resume_phase_after(running, Paused, None);
            assert_eq!(resume, Some(running));
            assert!(check_move("b", Paused, resume, running).is_ok());
            assert!(check_move("b", Paused, resume, Done).is_err());
            assert!(check_move("b", Paused, resume, Failed).is_ok());
            let failed_resume = resume_phase_after(Paused, Failed, resume);
            assert_eq!(failed_resume, Some(running));
            assert!(check_move("b", Failed, failed_resume, running).is_ok());
            assert!(check_move("b", Failed, failed_resume, Planned).is_ok());
        }
    }

    #[test]
    fn a_jobs_end_moves_its_bucket_only_along_a_legal_move() {
        assert!(job_may_move(BulkLoading, Loaded));
        assert!(job_may_move(Verifying, CaughtUp));
        assert!(job_may_move(Paused, Failed));
        assert!(
            !job_may_move(Done, Failed),
            "a finished bucket stays finished"
        );
        assert!(
            !job_may_move(Planned, Loaded),
            "a bucket re-planned meanwhile stays planned"
        );
    }

    #[test]
    fn an_illegal_move_says_what_is_allowed() {
        let err = check_move("bucket 3 of contacts", BulkLoading, None, Verified)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "bucket 3 of contacts is bulk-loading: it can move to loaded, paused or failed, not to verified"
        );
        let done = check_move("bucket 1", Done, None, Planned)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(done.contains("nowhere: it is finished"), "{done}");
    }
}
