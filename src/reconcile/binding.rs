//! The bind step: which InstanceBinding lets this SecurityProfile act on its instance, and what it
//! grants: the Target (Region, instance, role and session) and the guardrails. Fails closed: no
//! binding, two bindings, or a namespace that cannot be read means nothing is called.

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use super::context::Context;
use super::error::Error;
use crate::api::{InstanceBinding, SecurityProfile};
use crate::constraints::DEFAULT_PROFILE_NAMES;
use crate::domain::{Priority, Target, session_name};

/// What the binding grants one SecurityProfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub target: Target,
    /// The binding's name; None in single-team mode (`--allow-unbound`, no binding).
    pub binding: Option<String>,
    pub allow_adoption: bool,
    pub allow_default_profiles: bool,
    pub denied_permissions: BTreeSet<String>,
}

impl Grant {
    pub fn binding_name(&self) -> String {
        self.binding.clone().unwrap_or_else(|| "(none: --allow-unbound)".into())
    }
}

/// The grant for `profile` on `instance_id` (the spec's, or for a deletion the one in the status ARN).
pub async fn resolve<C>(profile: &SecurityProfile, instance_id: &str, ctx: &Context<C>) -> Result<Grant, Error> {
    let namespace = profile.namespace().unwrap_or_default();
    let labels = ctx
        .namespace_labels(&namespace)
        .await
        .map_err(|source| Error::NamespaceUnreadable { namespace: namespace.clone(), source })?;
    let bindings: Vec<_> =
        ctx.bindings.state().into_iter().filter(|b| b.spec.instance_id == instance_id && selects(b, &labels)).collect();
    let binding = match bindings.as_slice() {
        [one] => one.clone(),
        [] if ctx.settings.allow_unbound => return unbound(profile, instance_id, ctx),
        [] => return Err(Error::NoInstanceBinding { instance: instance_id.to_string(), namespace }),
        many => {
            let mut names: Vec<String> = many.iter().map(|b| b.name_any()).collect();
            names.sort();
            return Err(Error::AmbiguousInstanceBinding {
                instance: instance_id.to_string(),
                namespace,
                bindings: names,
            });
        }
    };
    let spec = &binding.spec;
    Ok(Grant {
        target: Target {
            region: spec.region.clone(),
            instance_id: instance_id.to_string(),
            role_arn: spec.role_arn.clone(),
            session_name: Some(session_name(&namespace)),
            priority: Priority::User,
        },
        binding: Some(binding.name_any()),
        allow_adoption: spec.allow_adoption,
        allow_default_profiles: spec.allow_default_profiles,
        denied_permissions: spec.denied_permissions.iter().flatten().cloned().collect(),
    })
}

/// Single-team mode: the spec's Region (else the operator's), the operator's identity, no guardrails.
fn unbound<C>(profile: &SecurityProfile, instance_id: &str, ctx: &Context<C>) -> Result<Grant, Error> {
    let region = profile.spec.region.clone().or_else(|| ctx.default_region.clone()).ok_or(Error::NoRegion)?;
    Ok(Grant {
        target: Target { region, instance_id: instance_id.to_string(), ..Default::default() },
        binding: None,
        allow_adoption: true,
        allow_default_profiles: true,
        denied_permissions: BTreeSet::new(),
    })
}

impl<C> super::Step<'_, C> {
    /// Refuses to take over the profile named `name` unless the binding allows it.
    pub fn may_adopt(&self, name: &str) -> Result<(), Error> {
        let what = |kind: &str| format!("{kind} {name:?} of instance {}", self.target.instance_id);
        if DEFAULT_PROFILE_NAMES.contains(&name) && !self.grant.allow_default_profiles {
            return Err(Error::AdoptionNotAllowed {
                what: what("the default profile"),
                binding: self.grant.binding_name(),
                setting: "allowDefaultProfiles",
            });
        }
        if !self.grant.allow_adoption {
            return Err(Error::AdoptionNotAllowed {
                what: what("the existing profile"),
                binding: self.grant.binding_name(),
                setting: "allowAdoption",
            });
        }
        Ok(())
    }
}

/// Whether the binding's namespaceSelector selects a namespace with `labels`. A selector that does not
/// parse selects nothing.
pub fn selects(binding: &InstanceBinding, labels: &std::collections::BTreeMap<String, String>) -> bool {
    Selector::try_from(binding.spec.namespace_selector.clone()).is_ok_and(|s| s.matches(labels))
}

/// spec.region, when set, must be the binding's.
pub fn check_region(profile: &SecurityProfile, grant: &Grant) -> Result<(), Error> {
    match (&profile.spec.region, &grant.binding) {
        (Some(region), Some(binding)) if *region != grant.target.region => Err(Error::RegionNotBound {
            spec_region: region.clone(),
            binding: binding.clone(),
            binding_region: grant.target.region.clone(),
        }),
        _ => Ok(()),
    }
}

/// The permissions of `profile` that the grant denies.
pub fn denied(profile: &SecurityProfile, grant: &Grant) -> Vec<String> {
    profile.spec.permissions.iter().flatten().filter(|p| grant.denied_permissions.contains(*p)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::InstanceBindingSpec;
    use std::collections::BTreeMap;

    fn binding(selector: serde_json::Value) -> InstanceBinding {
        let spec: InstanceBindingSpec = serde_json::from_value(serde_json::json!({
            "instanceId": "i-1", "region": "eu-west-2", "namespaceSelector": selector,
        }))
        .unwrap();
        InstanceBinding::new("b", spec)
    }

    #[test]
    fn selectors_match_like_kubernetes() {
        let team_a = BTreeMap::from([("team".to_string(), "a".to_string())]);
        assert!(selects(&binding(serde_json::json!({})), &team_a), "{{}} selects every namespace");
        assert!(selects(&binding(serde_json::json!({"matchLabels": {"team": "a"}})), &team_a));
        assert!(!selects(&binding(serde_json::json!({"matchLabels": {"team": "b"}})), &team_a));
        let expr = serde_json::json!({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "c"]}]});
        assert!(selects(&binding(expr), &team_a));
        let bad = serde_json::json!({"matchExpressions": [{"key": "team", "operator": "Sometimes"}]});
        assert!(!selects(&binding(bad), &team_a), "an invalid selector selects nothing");
    }
}
