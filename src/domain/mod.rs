//! Pure domain types and rules: no I/O, no Kubernetes client, no AWS SDK. The Connect seam
//! ([`crate::connect`]) and the reconciler ([`crate::reconcile`]) both depend on this module; it depends
//! only on the API types ([`crate::api`]) and the model's limits ([`crate::constraints`]).

pub mod allowlist;
pub mod diff;
pub mod jitter;
pub mod listing;
pub mod plan;
pub mod profile;
pub mod state;
pub mod validate;

pub use jitter::jitter;
pub use listing::{Expectation, ListedProfile, Listing, Verdict, content_digest};
pub use plan::{ProfileUpdate, TagPlan, UpdatePlan, plan_tags, plan_update};
pub use profile::{
    FoundProfile, OBSERVER_SESSION_NAME, ObservedProfile, Priority, ProfileRef, ProfileSummary, SESSION_NAME_MAX,
    Target, binding_session_name, instance_of_arn, region_of_arn, session_name, tags_with_owner,
};
pub use state::{ListedMembers, ProfileState};
