//! Kubernetes Events (events.k8s.io/v1) about SecurityProfiles. The operator reports changes only (a
//! create, an adoption, a repair, a new failure reason), so it posts Events directly: kube's
//! `Recorder` keeps every Event it sent (to count repeats as a series) and the memory that takes.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Resource;
use kube::api::{Api, PostParams};
use tracing::warn;

use super::context::Context;
use crate::api::SecurityProfile;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventType {
    Normal,
    Warning,
}

/// The API server's limit on an Event's note.
const MAX_EVENT_NOTE: usize = 1024;

/// Posts an Event about `profile`; a failure to post is logged, never fails the reconcile.
pub async fn publish<C>(ctx: &Context<C>, profile: &SecurityProfile, type_: EventType, reason: &str, note: String) {
    publish_about(ctx, profile.object_ref(&()), type_, reason, note).await
}

/// Posts an Event about `regarding`.
pub async fn publish_about<C>(
    ctx: &Context<C>,
    regarding: ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let ns = regarding.namespace.clone().unwrap_or_else(|| "default".into());
    let now = jiff::Timestamp::now();
    let event = KubeEvent {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("{}.{:x}", regarding.name.as_deref().unwrap_or("object"), now.as_nanosecond())),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(format!("{type_:?}")),
        reason: Some(reason.into()),
        note: Some(truncate(note, MAX_EVENT_NOTE)),
        action: Some("Reconcile".into()),
        reporting_controller: Some(ctx.reporter.controller.into()),
        reporting_instance: Some(ctx.reporter.instance.clone()),
        regarding: Some(regarding),
        ..Default::default()
    };
    let api: Api<KubeEvent> = Api::namespaced(ctx.client.clone(), &ns);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        warn!(error = %e, reason, "could not publish event");
    }
}

/// `note` cut to at most `max` bytes at a character boundary, ending in `...` when cut.
fn truncate(mut note: String, max: usize) -> String {
    if note.len() > max {
        let mut end = max - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_notes_are_cut_at_a_character_boundary() {
        let cut = super::truncate("é".repeat(600), 1024);
        assert!(cut.len() <= 1024 && cut.ends_with("..."), "{}", cut.len());
        assert_eq!(super::truncate("short".into(), 1024), "short");
    }
}
