//! The bind step: which InstanceBinding lets this SecurityProfile act on its instance, and what it
//! grants: the Target (Region, instance, role and session) and the guardrails. Fails closed: no
//! binding, two bindings, or a namespace that cannot be read means nothing is called.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use super::context::Context;
use super::error::Error;
use crate::api::{AdoptionGrant, InstanceBinding, OnRevoke, SecurityProfile};
use crate::constraints::DEFAULT_PROFILE_NAMES;
use crate::domain::allowlist::{Guardrails, Patterns};
use crate::domain::{Priority, Target, session_name};

/// What the binding grants one SecurityProfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub target: Target,
    /// The binding's name; None in single-team mode (`--allow-unbound`, no binding).
    pub binding: Option<String>,
    pub adoption: AdoptionGrant,
    pub allow_default_profiles: bool,
    pub observe_any_profile: bool,
    pub guardrails: Guardrails,
    pub on_revoke: OnRevoke,
}

impl Grant {
    pub fn binding_name(&self) -> String {
        self.binding.clone().unwrap_or_else(|| "(none: --allow-unbound)".into())
    }

    /// Whether the profile `name` is one of the instance's default profiles, which the binding does not
    /// let the operator change, adopt, delete or (without observeAnyProfile) observe.
    pub fn default_profile_refused(&self, name: &str) -> bool {
        DEFAULT_PROFILE_NAMES.contains(&name) && !self.allow_default_profiles
    }

    /// Whether the adopt annotation may take over the unowned profile `name`.
    pub fn adoption_allows(&self, name: &str) -> bool {
        match &self.adoption {
            AdoptionGrant::All => true,
            AdoptionGrant::None | AdoptionGrant::Invalid(_) => false,
            AdoptionGrant::Names(names) => names.iter().any(|n| match n.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => n == name,
            }),
        }
    }
}

/// The grant for `profile` on `instance_id` (the spec's, or for a deletion the one in the status ARN).
pub async fn resolve<C>(profile: &SecurityProfile, instance_id: &str, ctx: &Context<C>) -> Result<Grant, Error> {
    let namespace = profile.namespace().unwrap_or_default();
    let labels = ctx
        .namespace_labels(&namespace)
        .await
        .map_err(|source| Error::NamespaceUnreadable { namespace: namespace.clone(), source })?;
    let of_instance: Vec<_> = ctx.bindings.state().into_iter().filter(|b| b.spec.instance_id == instance_id).collect();
    let bindings: Vec<_> = of_instance.iter().filter(|b| covers(b, &namespace, &labels)).collect();
    let binding = match bindings.as_slice() {
        [one] => (*one).clone(),
        [] if ctx.settings.allow_unbound => {
            let elsewhere = concerning_us(ctx, &of_instance).await;
            if elsewhere.is_empty() {
                return unbound(profile, instance_id, ctx);
            }
            return Err(Error::InstanceBoundElsewhere {
                instance: instance_id.to_string(),
                namespace,
                bindings: sorted_names(elsewhere.into_iter()),
            });
        }
        [] => return Err(Error::NoInstanceBinding { instance: instance_id.to_string(), namespace }),
        many => {
            return Err(Error::AmbiguousInstanceBinding {
                instance: instance_id.to_string(),
                namespace,
                bindings: sorted_names(many.iter().map(|b| b.as_ref())),
            });
        }
    };
    if let Some(role) = &binding.spec.role_arn
        && !ctx.settings.role_allowed(role)
    {
        return Err(Error::RoleNotAllowed { binding: binding.name_any(), role: role.clone() });
    }
    Ok(grant_of(&binding, &namespace, instance_id))
}

/// The bindings that grant one of the namespaces this operator watches (all of them when it watches
/// every namespace): single-team mode stays off the instances they name. An operator limited to some
/// namespaces leaves other namespaces' bindings to their own operator.
async fn concerning_us<'a, C>(
    ctx: &Context<C>,
    bindings: &'a [std::sync::Arc<InstanceBinding>],
) -> Vec<&'a InstanceBinding> {
    let watched = &ctx.settings.watched_namespaces;
    let mut found = Vec::new();
    for b in bindings {
        let mut ours = watched.is_empty();
        for ns in watched {
            // Unreadable labels: count it (fail closed).
            if ctx.namespace_labels(ns).await.map_or(true, |labels| covers(b, ns, &labels)) {
                ours = true;
                break;
            }
        }
        if ours {
            found.push(b.as_ref());
        }
    }
    found
}

fn sorted_names<'a>(bindings: impl Iterator<Item = &'a InstanceBinding>) -> Vec<String> {
    let mut names: Vec<String> = bindings.map(|b| b.name_any()).collect();
    names.sort();
    names
}

/// What `binding` grants the profiles of `namespace` on `instance_id`.
pub fn grant_of(binding: &InstanceBinding, namespace: &str, instance_id: &str) -> Grant {
    let spec = &binding.spec;
    let name = binding.name_any();
    Grant {
        target: Target {
            region: spec.region.clone(),
            instance_id: instance_id.to_string(),
            role_arn: spec.role_arn.clone(),
            session_name: Some(session_name(namespace)),
            session_tags: vec![("binding".into(), name.clone()), ("namespace".into(), namespace.to_string())],
            tenant: namespace.to_string(),
            priority: Priority::User,
        },
        binding: Some(name),
        adoption: spec.allow_adoption.clone(),
        allow_default_profiles: spec.allow_default_profiles,
        observe_any_profile: spec.observe_any_profile,
        guardrails: guardrails(binding),
        on_revoke: spec.on_revoke,
    }
}

/// The binding's allow-lists and deny-list.
pub fn guardrails(binding: &InstanceBinding) -> Guardrails {
    let spec = &binding.spec;
    Guardrails {
        allowed_permissions: spec.allowed_permissions.as_ref().map(Patterns::new),
        denied_permissions: Patterns::new(spec.denied_permissions.iter().flatten()),
        allowed_flow_modules: spec.allowed_flow_modules.as_ref().map(Patterns::new),
        allowed_ai_agents: spec.allowed_ai_agents.as_ref().map(Patterns::new),
    }
}

/// Single-team mode: the spec's Region (else the operator's), the operator's identity, no guardrails.
fn unbound<C>(profile: &SecurityProfile, instance_id: &str, ctx: &Context<C>) -> Result<Grant, Error> {
    let region = profile.spec.region.clone().or_else(|| ctx.default_region.clone()).ok_or(Error::NoRegion)?;
    Ok(Grant {
        target: Target {
            region,
            instance_id: instance_id.to_string(),
            tenant: profile.namespace().unwrap_or_default(),
            ..Default::default()
        },
        binding: None,
        adoption: AdoptionGrant::All,
        allow_default_profiles: true,
        observe_any_profile: true,
        guardrails: Guardrails::default(),
        on_revoke: OnRevoke::Report,
    })
}

impl<C> super::Step<'_, C> {
    /// Refuses to take over the profile named `name` unless the binding allows it.
    pub fn may_adopt(&self, name: &str) -> Result<(), Error> {
        let what = |kind: &str| format!("{kind} {name:?} of instance {}", self.target.instance_id);
        if self.grant.default_profile_refused(name) {
            return Err(Error::AdoptionNotAllowed {
                what: what("the default profile"),
                binding: self.grant.binding_name(),
                setting: "allowDefaultProfiles",
            });
        }
        if !self.grant.adoption_allows(name) {
            return Err(Error::AdoptionNotAllowed {
                what: what("the existing profile"),
                binding: self.grant.binding_name(),
                setting: "allowAdoption",
            });
        }
        Ok(())
    }

    /// Observe reads a profile into the status only if Manage could own it: not another resource's, not
    /// a default profile unless allowed, unless the binding sets observeAnyProfile.
    pub fn may_observe(&self, id: &str, name: &str, owner: Option<&str>) -> Result<(), Error> {
        if self.grant.observe_any_profile {
            return Ok(());
        }
        if let Some(owner) = owner
            && owner != self.uid()
        {
            return Err(Error::OwnedElsewhere {
                name: name.to_string(),
                id: id.to_string(),
                instance: self.target.instance_id.clone(),
                owner: owner.to_string(),
            });
        }
        if self.grant.default_profile_refused(name) {
            return Err(Error::DefaultProfileNotAllowed {
                name: name.to_string(),
                id: id.to_string(),
                binding: self.grant.binding_name(),
            });
        }
        Ok(())
    }
}

/// Whether the binding grants the namespace `namespace` with `labels`: listed in spec.namespaces, or
/// selected by spec.namespaceSelector. A selector that does not parse selects nothing.
pub fn covers(binding: &InstanceBinding, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
    let spec = &binding.spec;
    spec.namespaces.iter().flatten().any(|n| n == namespace)
        || spec
            .namespace_selector
            .as_ref()
            .is_some_and(|s| Selector::try_from(s.clone()).is_ok_and(|s| s.matches(labels)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::InstanceBindingSpec;
    use std::collections::BTreeMap;

    fn binding(selector: serde_json::Value) -> InstanceBinding {
        binding_from(serde_json::json!({"namespaceSelector": selector}))
    }

    fn binding_from(extra: serde_json::Value) -> InstanceBinding {
        let mut spec = serde_json::json!({"instanceId": "i-1", "region": "eu-west-2"});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        InstanceBinding::new("b", serde_json::from_value::<InstanceBindingSpec>(spec).unwrap())
    }

    #[test]
    fn selectors_match_like_kubernetes() {
        let team_a = BTreeMap::from([("team".to_string(), "a".to_string())]);
        let selects = |b: &InstanceBinding, labels: &BTreeMap<String, String>| covers(b, "ns", labels);
        assert!(selects(&binding(serde_json::json!({})), &team_a), "{{}} selects every namespace");
        assert!(selects(&binding(serde_json::json!({"matchLabels": {"team": "a"}})), &team_a));
        assert!(!selects(&binding(serde_json::json!({"matchLabels": {"team": "b"}})), &team_a));
        let expr = serde_json::json!({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "c"]}]});
        assert!(selects(&binding(expr), &team_a));
        let bad = serde_json::json!({"matchExpressions": [{"key": "team", "operator": "Sometimes"}]});
        assert!(!selects(&binding(bad), &team_a), "an invalid selector selects nothing");
    }

    #[test]
    fn named_namespaces_are_bound_whatever_their_labels() {
        let b = binding_from(serde_json::json!({"namespaces": ["team-a"]}));
        let team_a_labels = BTreeMap::from([("team".to_string(), "a".to_string())]);
        assert!(covers(&b, "team-a", &BTreeMap::new()));
        assert!(!covers(&b, "evil", &team_a_labels), "labels do not join a list of names");
        let both = binding_from(
            serde_json::json!({"namespaces": ["team-a"], "namespaceSelector": {"matchLabels": {"team": "a"}}}),
        );
        assert!(covers(&both, "team-a", &BTreeMap::new()) && covers(&both, "team-a2", &team_a_labels), "either binds");
        let none = binding_from(serde_json::json!({}));
        assert!(!covers(&none, "team-a", &team_a_labels), "a binding that names nothing binds nothing");
    }

    #[test]
    fn adoption_by_name_and_prefix() {
        let grant = |allow: serde_json::Value| {
            grant_of(&binding_from(serde_json::json!({"allowAdoption": allow})), "ns", "i-1")
        };
        assert!(!grant(serde_json::json!(false)).adoption_allows("Anything"));
        assert!(grant(serde_json::json!(true)).adoption_allows("Anything"));
        let list = grant(serde_json::json!(["Supervisors", "team-a-*"]));
        assert!(list.adoption_allows("Supervisors") && list.adoption_allows("team-a-agents"));
        assert!(!list.adoption_allows("supervisors") && !list.adoption_allows("team-b-agents"));
        assert!(!list.adoption_allows("Supervisors2"), "an exact name is not a prefix");
        assert!(!grant(serde_json::json!(7)).adoption_allows("Anything"), "another shape grants nothing");
        assert_eq!(grant(serde_json::json!(7)).adoption, AdoptionGrant::Invalid("7".into()));
    }

    #[test]
    fn the_session_carries_namespace_and_binding_tags() {
        let g = grant_of(&binding_from(serde_json::json!({"namespaces": ["team-a"]})), "team-a", "i-1");
        assert_eq!(g.target.session_name.as_deref(), Some("csp-team-a"));
        assert_eq!(
            g.target.session_tags,
            [("binding".to_string(), "b".to_string()), ("namespace".into(), "team-a".into())]
        );
    }
}
