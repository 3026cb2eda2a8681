//! The `InstanceBinding` custom resource (`connect.cloud-operators.dev/v1alpha1`, cluster-scoped): a
//! cluster admin's grant that lets the SecurityProfiles of some namespaces act on one Connect instance,
//! in one Region, with one identity, under guardrails. Anchors: ACK's IAMRoleSelector/CARM and
//! Crossplane's ProviderConfig.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which namespaces may manage security profiles of one Amazon Connect instance, and how.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "connect.cloud-operators.dev",
    version = "v1alpha1",
    kind = "InstanceBinding",
    plural = "instancebindings",
    singular = "instancebinding",
    shortname = "cib",
    category = "connect",
    status = "InstanceBindingStatus",
    doc = "Grants the SecurityProfiles of the named (or selected) namespaces access to one Amazon Connect instance. Cluster-scoped; owned by cluster admins.",
    printcolumn = r#"{"name":"Instance","type":"string","jsonPath":".spec.instanceId"}"#,
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Role","type":"string","priority":1,"jsonPath":".spec.roleArn"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Bound","type":"integer","jsonPath":".status.boundProfiles"}"#,
    printcolumn = r#"{"name":"Revoked","type":"integer","priority":1,"jsonPath":".status.revokedProfiles"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.namespaces) || has(self.namespaceSelector)").message("set namespaces (recommended), namespaceSelector, or both: a binding must say which namespaces it grants"))]
pub struct InstanceBindingSpec {
    /// The identifier of the Amazon Connect instance (as in the instance ARN) this binding grants.
    #[schemars(length(min = 1, max = 100))]
    pub instance_id: String,

    /// The AWS Region of the instance, for example eu-west-2. A SecurityProfile that sets spec.region must
    /// name the same one.
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[a-z]{2}(-[a-z]+)+-\d+$"))]
    pub region: String,

    /// An IAM role to assume for every Connect call of the bound profiles. The AssumeRole session is
    /// named after the profile's namespace (csp-<namespace>, shortened with a hash past 64 characters)
    /// and carries the session tags `namespace` and `binding`, so that CloudTrail attributes each call
    /// and the role's policies can condition on them (deploy/iam/). Unset: the operator's own identity.
    /// The operator's --allowed-role-arns flag may restrict which roles bindings may name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$"))]
    pub role_arn: Option<String>,

    /// The namespaces, by name, whose SecurityProfiles may use this instance. Recommended over
    /// namespaceSelector: a name cannot be taken by relabelling a namespace. A namespace is bound when
    /// it is listed here or selected by namespaceSelector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 1000),
        inner(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub namespaces: Option<Vec<String>>,

    /// The namespaces whose SecurityProfiles may use this instance, by label ({} selects every
    /// namespace). Whoever may label namespaces can join a selector: prefer `namespaces`, or select on
    /// `kubernetes.io/metadata.name`, which the API server sets to the namespace's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Which existing profiles of the instance that no SecurityProfile owns the adopt annotation
    /// (connect.cloud-operators.dev/adopt) may take over: false (default, none), true (all), or a list
    /// of exact names and prefixes ending in `*` (for example ["team-a-*", "Supervisors"]). An adopted
    /// profile is retained in Connect when its SecurityProfile is deleted unless its spec says
    /// deletionPolicy: Delete.
    #[serde(default)]
    #[schemars(schema_with = "AdoptionGrant::schema")]
    pub allow_adoption: AdoptionGrant,

    /// Whether the instance's default profiles (Admin, Agent, CallCenterManager, QualityAnalyst) may be
    /// adopted, changed or deleted at all. Default false.
    #[serde(default)]
    pub allow_default_profiles: bool,

    /// Whether SecurityProfiles in Observe mode may read profiles that another SecurityProfile owns and
    /// the default profiles into their status. Default false: Observe honours the same ownership and
    /// default-profile rules as Manage.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub observe_any_profile: bool,

    /// The permissions a bound SecurityProfile may ask for, in `permissions` and in every application's
    /// `applicationPermissions`: exact names, or prefixes ending in `*` (for example "Users.*").
    /// Compared case-insensitively (see the README). Unset: any permission (the deny-list still applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 500), inner(length(min = 1, max = 128)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(p, !p.substring(0, size(p) - 1).contains('*'))").message("a * may only end a pattern (a prefix), as in Users.*"))]
    pub allowed_permissions: Option<Vec<String>>,

    /// The flow modules (flowModuleId: exact IDs, or prefixes ending in `*`) a bound SecurityProfile may
    /// list in allowedFlowModules. Unset: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 500), inner(length(min = 1, max = 128)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(p, !p.substring(0, size(p) - 1).contains('*'))").message("a * may only end a pattern (a prefix)"))]
    pub allowed_flow_modules: Option<Vec<String>>,

    /// The AI agents (ARNs: exact, or prefixes ending in `*`) a bound SecurityProfile may list in
    /// allowedAIAgents. Unset: any.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "allowedAIAgents")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 2048)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(p, !p.substring(0, size(p) - 1).contains('*'))").message("a * may only end a pattern (a prefix)"))]
    pub allowed_ai_agents: Option<Vec<String>>,

    /// Permissions no bound SecurityProfile may ask for (exact names or prefixes ending in `*`,
    /// compared case-insensitively), in `permissions` and every `applicationPermissions`; a spec that
    /// lists one is refused (PermissionNotAllowed) and nothing is sent to Connect. The deny-list wins
    /// over allowedPermissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 500), inner(length(min = 1, max = 128)))]
    pub denied_permissions: Option<Vec<String>>,

    /// What happens to a profile that exists in Connect and that this binding no longer allows (a
    /// permission, application permission, flow module or AI agent taken off the allow-lists, or put
    /// on the deny-list). Report (default): its SecurityProfile reports PermissionRevoked, an Event and
    /// the revoked-profiles metric; Connect keeps the profile as it is. Enforce: the operator also
    /// removes what is no longer allowed from the profile in Connect (only that), and records it.
    #[serde(default)]
    pub on_revoke: OnRevoke,
}

/// What the operator does with a profile that its binding no longer allows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum OnRevoke {
    /// Report it (status reason PermissionRevoked, an Event, the metric); change nothing in Connect.
    #[default]
    Report,
    /// Report it and remove what is no longer allowed from the profile in Connect.
    Enforce,
}

/// `allowAdoption`: none, all, or the profiles with these names or name prefixes (ending in `*`).
/// A bool or a list is not a structural schema type, so the field preserves what it is given and the
/// API server's CEL cannot type it: the operator parses it leniently, and a value of another shape
/// grants nothing and turns the binding's Ready condition False (InvalidAllowAdoption).
#[derive(Clone, Debug, PartialEq, Default)]
pub enum AdoptionGrant {
    #[default]
    None,
    All,
    Names(Vec<String>),
    /// A value that is neither a bool nor a list of strings: grants nothing.
    Invalid(String),
}

impl AdoptionGrant {
    fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Which existing profiles of the instance that no SecurityProfile owns the adopt annotation (connect.cloud-operators.dev/adopt) may take over: false (default, none), true (all), or a list of exact names and prefixes ending in `*`. An adopted profile is retained in Connect when its SecurityProfile is deleted unless its spec says deletionPolicy: Delete.",
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}

impl Serialize for AdoptionGrant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AdoptionGrant::None => s.serialize_bool(false),
            AdoptionGrant::All => s.serialize_bool(true),
            AdoptionGrant::Names(names) => names.serialize(s),
            AdoptionGrant::Invalid(raw) => {
                serde_json::from_str::<serde_json::Value>(raw).unwrap_or(serde_json::Value::Null).serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for AdoptionGrant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(match value {
            serde_json::Value::Bool(false) | serde_json::Value::Null => AdoptionGrant::None,
            serde_json::Value::Bool(true) => AdoptionGrant::All,
            serde_json::Value::Array(items) if items.iter().all(|i| i.as_str().is_some_and(|s| !s.is_empty())) => {
                AdoptionGrant::Names(items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect())
            }
            other => AdoptionGrant::Invalid(other.to_string()),
        })
    }
}

/// Observed state of the binding.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceBindingStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The number of SecurityProfiles this binding applies to (its instance, a selected namespace).
    #[serde(default)]
    pub bound_profiles: i32,
    /// How many of them exist in Connect with something this binding no longer allows (reason
    /// PermissionRevoked on the SecurityProfile).
    #[serde(default)]
    pub revoked_profiles: i32,
    /// Ready: the binding is usable: its role is allowed by the operator's --allowed-role-arns, its
    /// allowAdoption parses, and the operator reached the instance with its identity (ListSecurityProfiles).
    /// EventsQueue, only with the operator's --events-queue-url: True (Reading) while it reads Connect's
    /// CloudTrail events from the queue, False (QueueUnreadable, with SQS's error) while it cannot, and
    /// the instance listings fall back to --observe-interval.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The InstanceBinding CRD as installed.
pub fn binding_crd() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    InstanceBinding::crd()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crd_matches_the_generated_one() {
        let generated = crate::yaml::to_string(&binding_crd()).expect("CRD serializes");
        let committed = include_str!("../../crds/instancebinding.yaml");
        assert!(generated == committed, "crds/instancebinding.yaml is stale: run `make crd` and commit it");
    }

    /// `kubectl explain` shows each field's description: every property of the schema has one.
    #[test]
    fn every_field_is_documented() {
        let crd = serde_json::to_value(binding_crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        for part in ["spec", "status"] {
            let props = schema["properties"][part]["properties"].as_object().expect(part);
            for (name, prop) in props {
                assert!(
                    prop["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{part}.{name} has no description"
                );
            }
        }
        let required = schema["properties"]["spec"]["required"].as_array().unwrap();
        for field in ["instanceId", "region"] {
            assert!(required.contains(&serde_json::json!(field)), "{field} is required");
        }
        assert_eq!(crd["spec"]["scope"], "Cluster");
    }
}
