//! `connect-operator export`: every security profile of an instance as a SecurityProfile manifest with
//! the adopt annotation, so that an existing instance is onboarded with `kubectl apply`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::Path;

use serde_json::{Value, json};

use crate::api::{ADOPT_ANNOTATION, SecurityProfileSpec};
use crate::connect::{ConnectApi, ConnectError};
use crate::constraints::{DEFAULT_PROFILE_NAMES, RESERVED_TAG_PREFIX};
use crate::domain::{ObservedProfile, ProfileState, ProfileSummary, Target};

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub namespace: Option<String>,
    pub region: Option<String>,
    pub include_defaults: bool,
    /// Write `managementPolicy: Observe`: applying the manifests changes nothing in Connect.
    pub observe: bool,
}

/// One exported manifest: its file name (without extension) and YAML.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub yaml: String,
}

/// A Kubernetes object name (RFC 1123 label, at most 63 characters) derived from a profile name.
pub fn k8s_name(profile_name: &str) -> String {
    let mut out = String::new();
    for c in profile_name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed: String = out.trim_matches('-').chars().take(63).collect();
    let trimmed = trimmed.trim_end_matches('-').to_string();
    if trimmed.is_empty() { "profile".to_string() } else { trimmed }
}

/// Names for all profiles: the derived name, and for collisions (after sorting by profile name) a
/// suffix from the profile ID, so that the result depends only on the profiles themselves.
pub fn assign_names(profiles: &[(String, String)]) -> BTreeMap<String, String> {
    let mut by_base: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (id, name) in profiles {
        by_base.entry(k8s_name(name)).or_default().push((name.clone(), id.clone()));
    }
    let mut out = BTreeMap::new();
    let mut taken: BTreeSet<String> = by_base.keys().cloned().collect();
    for (base, mut members) in by_base {
        members.sort();
        for (i, (_, id)) in members.iter().enumerate() {
            if i == 0 {
                out.insert(id.clone(), base.clone());
                continue;
            }
            let short: String =
                id.chars().filter(|c| c.is_ascii_alphanumeric()).take(8).collect::<String>().to_lowercase();
            let stem: String = base.chars().take(63 - short.len() - 1).collect();
            let mut candidate = format!("{}-{short}", stem.trim_end_matches('-'));
            let mut n = 2;
            while taken.contains(&candidate) {
                candidate = format!("{}-{short}-{n}", stem.trim_end_matches('-'));
                n += 1;
            }
            taken.insert(candidate.clone());
            out.insert(id.clone(), candidate);
        }
    }
    out
}

fn enum_values<T: serde::de::DeserializeOwned>(names: &BTreeSet<String>) -> Option<Vec<T>> {
    let values: Vec<T> = names.iter().filter_map(|n| serde_json::from_value(Value::String(n.clone())).ok()).collect();
    (!values.is_empty()).then_some(values)
}

/// The spec that describes `observed` exactly (operator and AWS tags left out).
pub fn spec_of(instance_id: &str, region: Option<&str>, observed: &ObservedProfile) -> SecurityProfileSpec {
    let s: &ProfileState = &observed.state;
    let listed = s.listed.clone().unwrap_or_default();
    let tags: BTreeMap<String, String> = observed
        .tags
        .iter()
        // The operator's own tags (owner, namespace) are written by the operator, never by a spec.
        .filter(|(k, _)| !k.starts_with(&crate::api::operator_tag_prefix()) && !k.starts_with(RESERVED_TAG_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    SecurityProfileSpec {
        instance_id: instance_id.to_string(),
        security_profile_name: observed.name.clone(),
        description: (!s.description.is_empty()).then(|| s.description.clone()),
        permissions: (!listed.permissions.is_empty()).then(|| listed.permissions.iter().cloned().collect()),
        allowed_access_control_tags: (!s.allowed_access_control_tags.is_empty())
            .then(|| s.allowed_access_control_tags.clone()),
        allowed_access_control_hierarchy_group_id: (!s.allowed_access_control_hierarchy_group_id.is_empty())
            .then(|| s.allowed_access_control_hierarchy_group_id.clone()),
        tag_restricted_resources: enum_values(&s.tag_restricted_resources),
        hierarchy_restricted_resources: enum_values(&s.hierarchy_restricted_resources),
        applications: (!listed.applications.is_empty()).then(|| listed.applications.clone()),
        allowed_flow_modules: (!listed.allowed_flow_modules.is_empty()).then(|| listed.allowed_flow_modules.clone()),
        allowed_ai_agents: (!listed.allowed_ai_agents.is_empty()).then(|| listed.allowed_ai_agents.clone()),
        granular_access_control_configuration: s.granular_access_control_configuration.clone(),
        tags: (!tags.is_empty()).then_some(tags),
        region: region.map(str::to_string),
        // The profile existed before the operator: pruning the manifest must not delete it.
        deletion_policy: Some(crate::api::DeletionPolicy::Retain),
        management_policy: None,
    }
}

/// The manifest YAML of one exported profile.
pub fn manifest_yaml(name: &str, namespace: Option<&str>, spec: &SecurityProfileSpec) -> String {
    let mut metadata = json!({"name": name, "annotations": {ADOPT_ANNOTATION: "true"}});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    let object = json!({
        "apiVersion": crate::api::API_VERSION,
        "kind": "SecurityProfile",
        "metadata": metadata,
        "spec": spec,
    });
    crate::yaml::to_string(&object).expect("manifest serializes")
}

struct Progress {
    enabled: bool,
    total: usize,
}

impl Progress {
    fn show(&self, done: usize, what: &str) {
        if !self.enabled {
            return;
        }
        let width = 30;
        let filled = (done * width).checked_div(self.total).unwrap_or(width);
        let mut err = std::io::stderr();
        let _ =
            write!(err, "\r[{}{}] {done}/{} {what:<40.40}", "#".repeat(filled), " ".repeat(width - filled), self.total);
        if done == self.total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

/// Reads every profile of the instance in full and returns one manifest per profile, ordered by name.
pub async fn export<C: ConnectApi>(
    connect: &C,
    target: &Target,
    opts: &ExportOptions,
) -> Result<Vec<Manifest>, ConnectError> {
    let summaries = connect.list_profiles(target).await?;
    let selected: Vec<ProfileSummary> = summaries
        .into_iter()
        .filter(|s| opts.include_defaults || !DEFAULT_PROFILE_NAMES.contains(&s.name.as_str()))
        .collect();
    let names = assign_names(&selected.iter().map(|s| (s.id.clone(), s.name.clone())).collect::<Vec<_>>());
    let progress = Progress { enabled: std::io::stderr().is_terminal(), total: selected.len() };
    let mut out = Vec::new();
    for (i, ProfileSummary { id, name, .. }) in selected.iter().enumerate() {
        progress.show(i, name);
        let observed = connect.observe_profile(target, id, true).await?;
        let mut spec = spec_of(&target.instance_id, opts.region.as_deref(), &observed);
        if opts.observe {
            spec.management_policy = Some(crate::api::ManagementPolicy::Observe);
        }
        let object_name = names[id].clone();
        out.push(Manifest { yaml: manifest_yaml(&object_name, opts.namespace.as_deref(), &spec), name: object_name });
    }
    progress.show(selected.len(), "done");
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Writes the manifests to `dir` (one `<name>.yaml` each) or, for `-`, to stdout as one stream.
pub fn write(manifests: &[Manifest], output: &str) -> std::io::Result<()> {
    if output == "-" {
        let mut stdout = std::io::stdout().lock();
        for m in manifests {
            writeln!(stdout, "---")?;
            stdout.write_all(m.yaml.as_bytes())?;
        }
        return Ok(());
    }
    let dir = Path::new(output);
    std::fs::create_dir_all(dir)?;
    for m in manifests {
        std::fs::write(dir.join(format!("{}.yaml", m.name)), &m.yaml)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OWNER_UID_TAG;

    #[test]
    fn names_are_valid_kubernetes_names() {
        assert_eq!(k8s_name("Tier 1 Agents"), "tier-1-agents");
        assert_eq!(k8s_name("  @@Admin__ops--"), "admin-ops");
        assert_eq!(k8s_name("@@@"), "profile");
        assert_eq!(k8s_name(&"x".repeat(100)).len(), 63);
    }

    /// `export` reads through the [`ConnectApi`] seam: against the in-memory fake, one listing and one
    /// full read per exported profile, defaults left out, manifests ordered by name and adoptable.
    #[tokio::test]
    async fn exports_an_instance_through_the_seam() {
        use crate::connect::fake::{FakeConnect, INSTANCE};
        let fake = FakeConnect::default();
        let spec = |name: &str| -> SecurityProfileSpec {
            serde_json::from_value(json!({
                "instanceId": INSTANCE,
                "securityProfileName": name,
                "description": format!("{name} profile"),
                "permissions": ["BasicAgentAccess"],
            }))
            .unwrap()
        };
        let tags = BTreeMap::from([
            ("team".to_string(), "ops".to_string()),
            (OWNER_UID_TAG.to_string(), "u".into()),
            (crate::api::NAMESPACE_TAG.to_string(), "team-a".into()),
        ]);
        fake.insert("sp-2", &spec("Tier 2"), tags);
        fake.insert("sp-1", &spec("Tier 1"), BTreeMap::new());
        fake.insert("sp-0", &spec("Admin"), BTreeMap::new());
        let target = Target {
            region: "eu-west-2".into(),
            instance_id: INSTANCE.into(),
            role_arn: None,
            session_name: None,
            ..Default::default()
        };
        let opts =
            ExportOptions { namespace: Some("cc".into()), region: None, include_defaults: false, observe: false };

        let manifests = export(&fake, &target, &opts).await.expect("exported");
        assert_eq!(manifests.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["tier-1", "tier-2"]);
        assert_eq!(
            fake.calls(),
            [
                "ListSecurityProfiles",
                "DescribeSecurityProfile",
                "ListSecurityProfilePermissions",
                "DescribeSecurityProfile",
                "ListSecurityProfilePermissions"
            ],
            "one listing, then one full read per exported profile; the default Admin is not read"
        );
        let tier2 = &manifests[1].yaml;
        assert!(tier2.contains(ADOPT_ANNOTATION) && tier2.contains("namespace: cc"), "{tier2}");
        assert!(tier2.contains("securityProfileName: Tier 2") && tier2.contains("BasicAgentAccess"), "{tier2}");
        assert!(tier2.contains("team: ops") && !tier2.contains(OWNER_UID_TAG), "the owner tag is left out: {tier2}");
        assert!(!tier2.contains(crate::api::NAMESPACE_TAG), "the namespace tag is left out: {tier2}");
    }

    #[test]
    fn collisions_are_resolved_deterministically() {
        let profiles = vec![
            ("id-bbbbbbbb".to_string(), "Sales Team".to_string()),
            ("id-aaaaaaaa".to_string(), "sales_team".to_string()),
            ("id-cccccccc".to_string(), "Other".to_string()),
        ];
        let names = assign_names(&profiles);
        let mut reversed = profiles.clone();
        reversed.reverse();
        assert_eq!(names, assign_names(&reversed), "order of input does not matter");
        assert_eq!(names["id-bbbbbbbb"], "sales-team", "'Sales Team' sorts first and keeps the plain name");
        assert_eq!(names["id-aaaaaaaa"], "sales-team-idaaaaaa");
        assert_eq!(names["id-cccccccc"], "other");
    }
}
