//! Pure status computation: the conditions for an outcome, and whether a new status differs from the
//! current one in anything but timestamps (no write when it does not).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::SecurityProfileStatus;

pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";
pub const IN_SYNC: &str = "InSync";

/// Reasons of the in-sync and progressing outcomes (failure reasons come from [`super::error::Error`]).
pub mod reason {
    pub const AVAILABLE: &str = "Available";
    pub const RECONCILE_SUCCEEDED: &str = "ReconcileSucceeded";
    pub const PROGRESSING: &str = "Progressing";
    pub const ADOPTING: &str = "Adopting";
    pub const RECOVERING: &str = "Recovering";
    pub const IN_SYNC: &str = "InSync";
    pub const DRIFTED: &str = "Drifted";
    pub const OBSERVING: &str = "Observing";
    pub const CREATING: &str = "Creating";
    pub const PAUSED: &str = "ReconcilePaused";
    pub const UPDATING: &str = "Updating";
}

/// What a reconcile concluded, in the terms of the two conditions: in sync, progressing (a step of a
/// longer change, such as an adoption recorded before the profile is brought to the spec), or failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ready: bool,
    pub ready_reason: String,
    pub ready_message: String,
    /// "True", "False", or "Unknown" while progressing.
    pub synced: &'static str,
    pub synced_reason: String,
    pub synced_message: String,
    /// What Connect holds compared with the spec: Some(diff) records it (empty: in sync) and sets the
    /// InSync condition; None keeps what the status says.
    pub diff: Option<Vec<crate::api::DiffEntry>>,
}

impl Outcome {
    /// The profile exists and matches the spec.
    pub fn in_sync(name: &str, id: &str, generation: i64) -> Self {
        Self {
            ready: true,
            ready_reason: reason::AVAILABLE.into(),
            ready_message: format!("Security profile {name:?} ({id}) matches generation {generation}"),
            synced: "True",
            synced_reason: reason::RECONCILE_SUCCEEDED.into(),
            synced_message: "The last reconcile succeeded".into(),
            diff: Some(Vec::new()),
        }
    }

    /// Observe: the profile was read; `diff` says how it differs from the spec (nothing was written).
    pub fn observed(name: &str, id: &str, generation: i64, diff: Vec<crate::api::DiffEntry>) -> Self {
        if diff.is_empty() {
            return Self::in_sync(name, id, generation);
        }
        let message = format!(
            "Security profile {name:?} ({id}) differs from generation {generation} in {} field(s), see status.diff; Observe writes nothing: switch managementPolicy to Manage to apply the spec",
            diff.len()
        );
        Self {
            ready: false,
            ready_reason: reason::DRIFTED.into(),
            ready_message: message,
            synced: "True",
            synced_reason: reason::RECONCILE_SUCCEEDED.into(),
            synced_message: "The last reconcile succeeded".into(),
            diff: Some(diff),
        }
    }

    /// Work in progress, not a failure: Ready False with `reason`, Synced Unknown.
    pub fn progressing(reason: &str, message: &str) -> Self {
        Self {
            ready: false,
            ready_reason: reason.into(),
            ready_message: message.into(),
            synced: "Unknown",
            synced_reason: reason::PROGRESSING.into(),
            synced_message: message.into(),
            diff: None,
        }
    }

    /// The reconcile failed with `reason`; `profile_ready` says whether a matching profile still exists.
    pub fn failed(reason: &str, message: &str, profile_ready: bool) -> Self {
        Self {
            ready: profile_ready,
            ready_reason: if profile_ready { reason::AVAILABLE.into() } else { reason.into() },
            ready_message: if profile_ready {
                "The profile exists in Connect and matched the spec when last synced".into()
            } else {
                message.into()
            },
            synced: "False",
            synced_reason: reason.into(),
            synced_message: message.into(),
            diff: None,
        }
    }

    pub fn is_failure(&self) -> bool {
        self.synced == "False"
    }
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, generation: Option<i64>, now: &Time) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// Which profile the status names.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    /// As the current status says.
    Keep,
    /// This profile, read in full at Connect's `last_modified` (None: read it in full next time).
    Set { id: String, arn: String, last_modified: Option<String> },
    /// An existing profile the adopt annotation took over: recorded as adopted (its deletionPolicy
    /// defaults to Retain), to be read in full.
    Adopted { id: String, arn: String },
}

/// The next status: identity per `identity`, conditions from `outcome`.
/// A condition whose status does not change keeps its lastTransitionTime.
pub fn next_status(
    current: Option<&SecurityProfileStatus>,
    identity: Identity,
    generation: Option<i64>,
    outcome: &Outcome,
    now: Time,
) -> SecurityProfileStatus {
    let current = current.cloned().unwrap_or_default();
    let adopted = match &identity {
        Identity::Adopted { .. } => Some(true),
        // The same profile stays adopted; another one (created again after it vanished) is not.
        Identity::Set { id, .. } if current.security_profile_id.as_ref() != Some(id) => None,
        Identity::Set { .. } | Identity::Keep => current.adopted,
    };
    let (id, arn, last_modified) = match identity {
        Identity::Set { id, arn, last_modified } => (Some(id), Some(arn), last_modified),
        Identity::Adopted { id, arn } => (Some(id), Some(arn), None),
        Identity::Keep => (
            current.security_profile_id.clone(),
            current.security_profile_arn.clone(),
            current.connect_last_modified_time.clone(),
        ),
    };
    let mut conditions = vec![
        condition(
            READY,
            if outcome.ready { "True" } else { "False" },
            &outcome.ready_reason,
            &outcome.ready_message,
            generation,
            &now,
        ),
        condition(SYNCED, outcome.synced, &outcome.synced_reason, &outcome.synced_message, generation, &now),
    ];
    let (diff_count, diff) = match &outcome.diff {
        Some(diff) => {
            let (status, reason, message) = if diff.is_empty() {
                ("True", reason::IN_SYNC, "Connect holds what the spec says".to_string())
            } else {
                (
                    "False",
                    reason::DRIFTED,
                    format!("{} field(s) differ between Connect and the spec, see status.diff", diff.len()),
                )
            };
            conditions.push(condition(IN_SYNC, status, reason, &message, generation, &now));
            let listed = diff.iter().take(crate::domain::diff::MAX_ENTRIES).cloned().collect();
            (Some(diff.len() as i32), listed)
        }
        None => {
            conditions.extend(current.conditions.iter().find(|c| c.type_ == IN_SYNC).cloned());
            (current.diff_count, current.diff.clone())
        }
    };
    for c in &mut conditions {
        if let Some(old) = current.conditions.iter().find(|o| o.type_ == c.type_)
            && old.status == c.status
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
    SecurityProfileStatus {
        security_profile_id: id,
        security_profile_arn: arn,
        connect_last_modified_time: last_modified,
        adopted,
        last_handled_reconcile_at: current.last_handled_reconcile_at.clone(),
        observed_generation: generation,
        diff_count,
        diff,
        conditions,
    }
}

/// True when `next` would change nothing but timestamps.
pub fn unchanged(current: Option<&SecurityProfileStatus>, next: &SecurityProfileStatus) -> bool {
    let Some(current) = current else { return false };
    let strip = |s: &SecurityProfileStatus| {
        let mut s = s.clone();
        s.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
        for c in &mut s.conditions {
            c.last_transition_time = Time(jiff::Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(current) == strip(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let first = next_status(
            None,
            Identity::Set { id: "id".into(), arn: "arn".into(), last_modified: None },
            Some(1),
            &Outcome::failed("ThrottlingException", "slow down", false),
            at(10),
        );
        let same = next_status(
            Some(&first),
            Identity::Keep,
            Some(1),
            &Outcome::failed("ThrottlingException", "slow down", false),
            at(20),
        );
        assert!(unchanged(Some(&first), &same));
        assert_eq!(same.conditions[0].last_transition_time, at(10));
        let ready = next_status(Some(&same), Identity::Keep, Some(1), &Outcome::in_sync("n", "id", 1), at(30));
        assert!(!unchanged(Some(&same), &ready));
        assert_eq!(ready.conditions[0].last_transition_time, at(30));
        assert_eq!(ready.security_profile_id.as_deref(), Some("id"), "identity is kept");
    }
}
