//! An InstanceBinding's guardrails on what a SecurityProfile may ask for: allow-lists and a deny-list of
//! exact names and prefixes (`Users.*`), checked against `permissions`, every application's
//! `applicationPermissions`, `allowedFlowModules` and `allowedAIAgents`.
//!
//! Comparison is ASCII-case-insensitive. The API model (`SecurityProfilePermission`, `Permission`:
//! strings of 1-128 characters, no enum, no pattern) does not say how Connect compares names, so the
//! rule is the one that is safe either way: a case variant of a denied name is denied (a deny-list
//! that exact matching would let `basicagentaccess` through), and a case variant of an allowed name is
//! allowed (if Connect folds case it is the same permission; if not, Connect refuses it as unknown).

use std::collections::BTreeSet;

use crate::api::SecurityProfileSpec;

/// Exact names and prefixes (a pattern ending in `*`), folded to ASCII lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Patterns {
    exact: BTreeSet<String>,
    prefixes: Vec<String>,
}

impl Patterns {
    pub fn new<'a>(items: impl IntoIterator<Item = &'a String>) -> Self {
        let mut patterns = Patterns::default();
        for item in items {
            let folded = item.to_ascii_lowercase();
            match folded.strip_suffix('*') {
                Some(prefix) => patterns.prefixes.push(prefix.to_string()),
                None => {
                    patterns.exact.insert(folded);
                }
            }
        }
        patterns
    }

    pub fn matches(&self, value: &str) -> bool {
        let folded = value.to_ascii_lowercase();
        self.exact.contains(&folded) || self.prefixes.iter().any(|p| folded.starts_with(p.as_str()))
    }
}

/// What a binding allows: `None` allow-lists allow anything; the deny-list wins over the allow-list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Guardrails {
    pub allowed_permissions: Option<Patterns>,
    pub denied_permissions: Patterns,
    pub allowed_flow_modules: Option<Patterns>,
    pub allowed_ai_agents: Option<Patterns>,
}

/// What a spec asks for that the guardrails do not allow, list by list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Violations {
    pub permissions: Vec<String>,
    /// `(application namespace, permission)`.
    pub application_permissions: Vec<(String, String)>,
    /// Flow module IDs (`(none)` for an entry without one).
    pub flow_modules: Vec<String>,
    /// AI agent ARNs (`(none)` for an entry without one).
    pub ai_agents: Vec<String>,
}

impl Violations {
    pub fn is_empty(&self) -> bool {
        self.permissions.is_empty()
            && self.application_permissions.is_empty()
            && self.flow_modules.is_empty()
            && self.ai_agents.is_empty()
    }

    /// `permissions [A, B]; applicationPermissions [app: X]; ...`, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.permissions.is_empty() {
            parts.push(format!("permissions {:?}", self.permissions));
        }
        if !self.application_permissions.is_empty() {
            let apps: Vec<String> = self.application_permissions.iter().map(|(ns, p)| format!("{ns}: {p}")).collect();
            parts.push(format!("applicationPermissions {apps:?}"));
        }
        if !self.flow_modules.is_empty() {
            parts.push(format!("allowedFlowModules {:?}", self.flow_modules));
        }
        if !self.ai_agents.is_empty() {
            parts.push(format!("allowedAIAgents {:?}", self.ai_agents));
        }
        parts.join("; ")
    }
}

impl Guardrails {
    fn permission_allowed(&self, permission: &str) -> bool {
        !self.denied_permissions.matches(permission)
            && self.allowed_permissions.as_ref().is_none_or(|a| a.matches(permission))
    }

    fn listed(allow: &Option<Patterns>, value: Option<&str>) -> bool {
        match (allow, value) {
            (None, _) => true,
            (Some(allow), Some(v)) => allow.matches(v),
            (Some(_), None) => false,
        }
    }

    /// Everything in `spec` these guardrails do not allow.
    pub fn violations(&self, spec: &SecurityProfileSpec) -> Violations {
        let permissions = spec.permissions.iter().flatten().filter(|p| !self.permission_allowed(p)).cloned().collect();
        let application_permissions = spec
            .applications
            .iter()
            .flatten()
            .flat_map(|app| app.application_permissions.iter().map(move |p| (app.namespace.clone(), p.clone())))
            .filter(|(_, p)| !self.permission_allowed(p))
            .collect();
        let flow_modules = spec
            .allowed_flow_modules
            .iter()
            .flatten()
            .filter(|m| !Self::listed(&self.allowed_flow_modules, m.flow_module_id.as_deref()))
            .map(|m| m.flow_module_id.clone().unwrap_or_else(|| "(none)".into()))
            .collect();
        let ai_agents = spec
            .allowed_ai_agents
            .iter()
            .flatten()
            .filter(|a| !Self::listed(&self.allowed_ai_agents, a.arn.as_deref()))
            .map(|a| a.arn.clone().unwrap_or_else(|| "(none)".into()))
            .collect();
        Violations { permissions, application_permissions, flow_modules, ai_agents }
    }

    /// `spec` without what these guardrails do not allow (an application left with no permission goes
    /// too): what `onRevoke: Enforce` brings the profile in Connect to.
    pub fn within(&self, spec: &SecurityProfileSpec) -> SecurityProfileSpec {
        let mut narrowed = spec.clone();
        if let Some(permissions) = &mut narrowed.permissions {
            permissions.retain(|p| self.permission_allowed(p));
        }
        if let Some(apps) = &mut narrowed.applications {
            for app in apps.iter_mut() {
                app.application_permissions.retain(|p| self.permission_allowed(p));
            }
            apps.retain(|app| !app.application_permissions.is_empty());
        }
        if let Some(modules) = &mut narrowed.allowed_flow_modules {
            modules.retain(|m| Self::listed(&self.allowed_flow_modules, m.flow_module_id.as_deref()));
        }
        if let Some(agents) = &mut narrowed.allowed_ai_agents {
            agents.retain(|a| Self::listed(&self.allowed_ai_agents, a.arn.as_deref()));
        }
        narrowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SecurityProfileSpec {
        serde_saphyr::from_str(yaml).expect("spec parses")
    }

    fn patterns(items: &[&str]) -> Patterns {
        let owned: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        Patterns::new(&owned)
    }

    #[test]
    fn patterns_match_exact_names_and_prefixes_case_insensitively() {
        let p = patterns(&["BasicAgentAccess", "Users.*"]);
        assert!(p.matches("BasicAgentAccess"));
        assert!(p.matches("basicagentaccess"), "case variants are the same name");
        assert!(p.matches("Users.View") && p.matches("users.edit"));
        assert!(!p.matches("BasicAgentAccessPlus"), "an exact name is not a prefix");
        assert!(!p.matches("UsersView"), "the prefix includes the dot");
        assert!(!p.matches("AccessMetrics"));
    }

    #[test]
    fn every_list_is_checked_and_the_deny_list_wins() {
        let rails = Guardrails {
            allowed_permissions: Some(patterns(&["BasicAgentAccess", "Users.*", "MCP.*"])),
            denied_permissions: patterns(&["users.edit"]),
            allowed_flow_modules: Some(patterns(&["fm-team-a-*"])),
            allowed_ai_agents: Some(patterns(&["arn:aws:connect:eu-west-2:111122223333:instance/i-1/ai-agent/ok"])),
        };
        let asks = spec(
            r#"
instanceId: i-1
securityProfileName: p
permissions: [BasicAgentAccess, Users.View, USERS.EDIT, AccessMetrics]
applications:
  - namespace: app-1
    applicationPermissions: [MCP.Read, Admin.Everything]
  - namespace: app-2
    applicationPermissions: [Admin.Everything]
allowedFlowModules:
  - {type: MCP, flowModuleId: fm-team-a-1}
  - {type: MCP, flowModuleId: fm-team-b-1}
  - {type: MCP}
allowedAIAgents:
  - {type: THIRD_PARTY, arn: "arn:aws:connect:eu-west-2:111122223333:instance/i-1/ai-agent/ok"}
  - {type: THIRD_PARTY, arn: "arn:aws:connect:eu-west-2:111122223333:instance/i-1/ai-agent/other"}
"#,
        );
        let v = rails.violations(&asks);
        assert_eq!(v.permissions, ["USERS.EDIT", "AccessMetrics"]);
        assert_eq!(
            v.application_permissions,
            [("app-1".to_string(), "Admin.Everything".to_string()), ("app-2".into(), "Admin.Everything".into())]
        );
        assert_eq!(v.flow_modules, ["fm-team-b-1", "(none)"]);
        assert_eq!(v.ai_agents, ["arn:aws:connect:eu-west-2:111122223333:instance/i-1/ai-agent/other"]);

        let narrowed = rails.within(&asks);
        assert!(rails.violations(&narrowed).is_empty(), "within() leaves nothing to refuse");
        assert_eq!(narrowed.permissions.unwrap(), ["BasicAgentAccess", "Users.View"]);
        let apps = narrowed.applications.unwrap();
        assert_eq!(apps.len(), 1, "an application left with no permission goes");
        assert_eq!(apps[0].application_permissions, ["MCP.Read"]);
        assert_eq!(narrowed.allowed_flow_modules.unwrap().len(), 1);
        assert_eq!(narrowed.allowed_ai_agents.unwrap().len(), 1);
        assert_eq!(narrowed.description, asks.description, "nothing else changes");
    }

    #[test]
    fn unset_allow_lists_allow_anything_but_the_deny_list() {
        let rails = Guardrails { denied_permissions: patterns(&["AccessMetrics"]), ..Default::default() };
        let asks = spec("instanceId: i-1\nsecurityProfileName: p\npermissions: [Anything, accessmetrics]\n");
        assert_eq!(rails.violations(&asks).permissions, ["accessmetrics"]);
        assert!(Guardrails::default().violations(&asks).is_empty());
    }
}
