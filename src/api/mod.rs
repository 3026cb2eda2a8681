//! The `SecurityProfile` custom resource (`connect.cloud-operators.dev/v1alpha1`).
//!
//! The spec mirrors the body of Amazon Connect's CreateSecurityProfile request, camelCased, with every
//! constraint of the API model in the schema. Rules a schema cannot state are CEL rules
//! (`x-kubernetes-validations`, in [`cel`]); clusters older than 1.25 ignore those, so the controller
//! re-checks every one of them in [`crate::domain::validate`] before anything reaches Connect. Every
//! limit is a constant of [`crate::constraints`], which the controller's checks use too.

pub mod cel;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod binding;
use crate::constraints as c;
pub use binding::{AdoptionGrant, InstanceBinding, InstanceBindingSpec, InstanceBindingStatus, OnRevoke, binding_crd};

/// The API group of both kinds. The `#[kube(group, version)]` attributes take only literals; a test
/// checks that they say [`API_VERSION`].
pub const GROUP: &str = "connect.cloud-operators.dev";
/// The version both kinds are served and stored at.
pub const VERSION: &str = "v1alpha1";
/// The `apiVersion` of both kinds: `{GROUP}/{VERSION}`.
pub const API_VERSION: &str = {
    const LEN: usize = GROUP.len() + 1 + VERSION.len();
    const BYTES: [u8; LEN] = {
        let (group, version) = (GROUP.as_bytes(), VERSION.as_bytes());
        let mut out = [b'/'; LEN];
        let mut i = 0;
        while i < LEN {
            if i < group.len() {
                out[i] = group[i];
            } else if i > group.len() {
                out[i] = version[i - group.len() - 1];
            }
            i += 1;
        }
        out
    };
    match std::str::from_utf8(&BYTES) {
        Ok(s) => s,
        Err(_) => panic!("GROUP and VERSION are UTF-8"),
    }
};

/// The prefix of the operator's own tag keys (the API group and a slash): users may not set these keys.
pub fn operator_tag_prefix() -> String {
    format!("{GROUP}/")
}
/// The finalizer that keeps a resource until its profile is deleted (or retained) in Connect.
pub const FINALIZER: &str = "connect.cloud-operators.dev/finalizer";
/// The tag every profile the operator creates carries: the UID of the owning resource.
pub const OWNER_UID_TAG: &str = "connect.cloud-operators.dev/owner-uid";
/// The tag every profile the operator creates carries beside the owner tag: the owning resource's
/// namespace, which a binding role's IAM policy compares with its session's `namespace` tag.
pub const NAMESPACE_TAG: &str = "connect.cloud-operators.dev/namespace";
/// Annotation that allows adopting an existing profile of the same name that no resource owns.
pub const ADOPT_ANNOTATION: &str = "connect.cloud-operators.dev/adopt";
/// Annotation that pauses reconciliation of one resource (value "true"): no Connect call while it is
/// set; the Synced condition says ReconcilePaused.
pub const PAUSED_ANNOTATION: &str = "connect.cloud-operators.dev/paused";
/// Annotation that requests a reconcile now (any new value, e.g. a timestamp, as Flux's
/// `reconcile.fluxcd.io/requestedAt`): the profile is read from Connect at once, whatever its schedule;
/// status.lastHandledReconcileAt records the value handled.
pub const RECONCILE_REQUESTED_ANNOTATION: &str = "connect.cloud-operators.dev/reconcile-requested-at";

/// Desired state of an Amazon Connect security profile. Field names and constraints follow the
/// CreateSecurityProfile API (https://docs.aws.amazon.com/connect/latest/APIReference/API_CreateSecurityProfile.html).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "connect.cloud-operators.dev",
    version = "v1alpha1",
    kind = "SecurityProfile",
    plural = "securityprofiles",
    singular = "securityprofile",
    shortname = "csp",
    category = "connect",
    namespaced,
    status = "SecurityProfileStatus",
    cel,
    doc = "An Amazon Connect security profile, managed by connect-operator.",
    printcolumn = r#"{"name":"Profile","type":"string","jsonPath":".spec.securityProfileName"}"#,
    printcolumn = r#"{"name":"Policy","type":"string","jsonPath":".spec.managementPolicy"}"#,
    printcolumn = r#"{"name":"ID","type":"string","priority":1,"jsonPath":".status.securityProfileId"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].reason"}"#,
    printcolumn = r#"{"name":"InSync","type":"string","jsonPath":".status.conditions[?(@.type==\"InSync\")].status"}"#,
    printcolumn = r#"{"name":"Diffs","type":"integer","priority":1,"jsonPath":".status.diffCount"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SecurityProfileSpec {
    /// The identifier of the Amazon Connect instance (as in the instance ARN). Immutable.
    #[schemars(length(min = 1, max = c::INSTANCE_ID_MAX))]
    #[x_kube(validation = cel::INSTANCE_ID_IMMUTABLE.rule())]
    pub instance_id: String,

    /// The name of the security profile: 1-127 characters of letters, digits, spaces and _ @ -. Immutable
    /// (Connect cannot rename a profile through its API).
    #[schemars(length(min = 1, max = c::PROFILE_NAME_MAX), regex(pattern = c::PROFILE_NAME_PATTERN))]
    #[x_kube(validation = cel::PROFILE_NAME_IMMUTABLE.rule())]
    pub security_profile_name: String,

    /// The description of the security profile (at most 250 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = c::DESCRIPTION_MAX))]
    pub description: Option<String>,

    /// Permissions assigned to the security profile, by their API names (at most 500, each 1-128
    /// characters). See "List of security profile permissions" in the Connect Administrator Guide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = c::PERMISSIONS_MAX_ITEMS), inner(length(min = 1, max = c::PERMISSION_MAX)))]
    pub permissions: Option<Vec<String>>,

    /// Tags a security profile uses to restrict access to resources (at most 4 entries; keys 1-128
    /// characters, values at most 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = c::ACCESS_CONTROL_TAGS_MAX_ENTRIES, "additionalProperties" = {"type": "string", "maxLength": c::TAG_VALUE_MAX}))]
    #[x_kube(validation = cel::ACCESS_CONTROL_TAG_KEYS.rule())]
    pub allowed_access_control_tags: Option<BTreeMap<String, String>>,

    /// The identifier of the hierarchy group that the profile uses to restrict access to resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_access_control_hierarchy_group_id: Option<String>,

    /// Resources to which tag restrictions apply (at most 10): User, SecurityProfile, Queue, RoutingProfile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = c::TAG_RESTRICTED_RESOURCES_MAX_ITEMS))]
    pub tag_restricted_resources: Option<Vec<TagRestrictedResource>>,

    /// Resources to which hierarchy restrictions apply: User.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hierarchy_restricted_resources: Option<Vec<HierarchyRestrictedResource>>,

    /// Third-party applications and MCP servers the profile gives access to (at most 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = c::APPLICATIONS_MAX_ITEMS))]
    pub applications: Option<Vec<Application>>,

    /// Flow modules the profile may use (at most 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = c::FLOW_MODULES_MAX_ITEMS))]
    pub allowed_flow_modules: Option<Vec<FlowModule>>,

    /// AI agents the profile may use (at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "allowedAIAgents")]
    #[schemars(length(max = c::AI_AGENTS_MAX_ITEMS))]
    pub allowed_ai_agents: Option<Vec<AiAgent>>,

    /// Granular access control: which data-table rows, by primary attribute value, the profile may access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granular_access_control_configuration: Option<GranularAccessControlConfiguration>,

    /// Tags of the profile itself (at most 49: Connect allows 50, and the operator adds its own owner tag,
    /// `connect.cloud-operators.dev/owner-uid`; keys 1-128 characters, not starting with "aws:" or
    /// "connect.cloud-operators.dev/"; values at most 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = c::SPEC_TAGS_MAX_ENTRIES, "additionalProperties" = {"type": "string", "maxLength": c::TAG_VALUE_MAX}))]
    #[x_kube(validation = cel::TAG_KEYS_NOT_RESERVED.rule())]
    #[x_kube(validation = cel::TAG_KEYS_NOT_OPERATOR_RESERVED.rule())]
    #[x_kube(validation = cel::TAG_KEYS.rule())]
    pub tags: Option<BTreeMap<String, String>>,

    /// AWS Region of the instance. With an InstanceBinding (the default) it must be the binding's, or
    /// unset; in single-team mode (--allow-unbound) it defaults to the operator's (AWS_REGION). Immutable
    /// once set: the controller also refuses a Region other than the one in the status ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = c::REGION_PATTERN))]
    #[x_kube(validation = cel::REGION_IMMUTABLE.rule())]
    pub region: Option<String>,

    /// What happens to the Connect profile when this resource is deleted: Delete or Retain. Default:
    /// Delete for a profile this resource created, Retain for one it adopted (status.adopted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// Manage (default): the operator brings the profile to this spec. Observe: it only reads the
    /// profile (found by the ID in status, else by exact name) and shows in status.diff how it differs
    /// from this spec; it never creates, changes, tags or deletes it. Switching to Manage applies the diff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_policy: Option<ManagementPolicy>,
}

/// Whether the operator writes to Connect for this resource.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum ManagementPolicy {
    /// Create the profile, keep it as the spec says, delete it per deletionPolicy.
    #[default]
    Manage,
    /// Read only: report the difference between Connect and the spec, write nothing.
    Observe,
}

/// One field in which Connect and the spec differ.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiffEntry {
    /// The spec field (`description`, `permissions`, `tags[team]`, ...).
    pub field: String,
    /// What Connect holds (JSON, shortened).
    pub connect: String,
    /// What the spec says (JSON, shortened).
    pub spec: String,
}

/// A resource type tag restrictions apply to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, PartialOrd, Ord)]
pub enum TagRestrictedResource {
    User,
    SecurityProfile,
    Queue,
    RoutingProfile,
}

/// A resource type hierarchy restrictions apply to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, PartialOrd, Ord)]
pub enum HierarchyRestrictedResource {
    User,
}

/// What to do with the Connect profile when the resource is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum DeletionPolicy {
    /// Delete the profile in Connect (the default).
    #[default]
    Delete,
    /// Leave the profile in Connect; only the Kubernetes resource goes away.
    Retain,
}

/// An application (third-party app or MCP server) and the permissions the profile has on it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// Namespace of the application (1-128 characters).
    #[schemars(length(min = 1, max = c::APPLICATION_NAMESPACE_MAX))]
    pub namespace: String,
    /// Permissions granted on the application (1-50, each 1-128 characters).
    #[schemars(length(min = 1, max = c::APPLICATION_PERMISSIONS_MAX_ITEMS), inner(length(min = 1, max = c::PERMISSION_MAX)))]
    pub application_permissions: Vec<String>,
    /// Type of the application.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub application_type: Option<ApplicationType>,
}

/// The kind of an application.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ApplicationType {
    #[serde(rename = "MCP")]
    Mcp,
    #[serde(rename = "THIRD_PARTY_APPLICATION")]
    ThirdPartyApplication,
}

/// A flow module the profile may use.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlowModule {
    /// Type of the flow module.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub module_type: Option<FlowModuleType>,
    /// Identifier of the flow module (1-128 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = c::FLOW_MODULE_ID_MAX))]
    pub flow_module_id: Option<String>,
}

/// The kind of a flow module.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FlowModuleType {
    #[serde(rename = "MCP")]
    Mcp,
}

/// An AI agent the profile may use.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AiAgent {
    /// ARN of the AI agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// Type of the AI agent.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub agent_type: Option<AiAgentType>,
}

/// The kind of an AI agent.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AiAgentType {
    #[serde(rename = "THIRD_PARTY")]
    ThirdParty,
}

/// Granular access control settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct GranularAccessControlConfiguration {
    /// Access control for data tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_table_access_control_configuration: Option<DataTableAccessControlConfiguration>,
}

/// Access control for data tables.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataTableAccessControlConfiguration {
    /// Restriction by primary attribute values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_attribute_access_control_configuration: Option<PrimaryAttributeAccessControlConfiguration>,
}

/// Restriction of data-table access by primary attribute values.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryAttributeAccessControlConfiguration {
    /// Allowed primary attribute values (at most 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = c::PRIMARY_ATTRIBUTE_VALUES_MAX_ITEMS))]
    pub primary_attribute_values: Option<Vec<PrimaryAttributeValue>>,
}

/// One allowed primary attribute and its values.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryAttributeValue {
    /// The access granted: ALLOW.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_type: Option<AccessType>,
    /// Name of the attribute: 1-127 printable Latin-1 characters, not starting with "aws:" or "connect:".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = c::PRIMARY_ATTRIBUTE_NAME_MAX), regex(pattern = c::LATIN1_PRINTABLE_PATTERN))]
    #[x_kube(validation = cel::ATTRIBUTE_NAME_NOT_RESERVED.rule())]
    pub attribute_name: Option<String>,
    /// Allowed values (at most 2, printable Latin-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = c::PRIMARY_VALUES_MAX_ITEMS), inner(regex(pattern = c::LATIN1_PRINTABLE_PATTERN)))]
    pub values: Option<Vec<String>>,
}

/// The access a primary attribute value grants.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AccessType {
    #[serde(rename = "ALLOW")]
    Allow,
}

/// Observed state of the security profile.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityProfileStatus {
    /// The identifier Connect gave the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_profile_id: Option<String>,
    /// The ARN of the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_profile_arn: Option<String>,
    /// Connect's LastModifiedTime of the profile when it was last read in full; while it is unchanged a
    /// resync reads only DescribeSecurityProfile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_last_modified_time: Option<String>,
    /// True when the profile existed before this resource and was adopted (the adopt annotation): its
    /// deletionPolicy then defaults to Retain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<bool>,
    /// The value of the reconcile-requested-at annotation the last completed reconcile handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many fields differ between Connect and the spec (after the last read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_count: Option<i32>,
    /// The fields that differ, field by field (at most 20, values shortened); in Observe the pending
    /// change that switching to Manage would apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<DiffEntry>,
    /// Ready: the profile exists in Connect and matches the spec of observedGeneration.
    /// Synced: whether the last reconcile succeeded; its reason names the error when it did not.
    /// InSync: whether Connect holds what the spec says (reason InSync or Drifted; see diff).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The CustomResourceDefinition as installed: the derived one, with `null` removed from the enums of
/// optional members (the derive lists it; the apiserver needs only `nullable`).
pub fn crd() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut value = serde_json::to_value(SecurityProfile::crd()).expect("CRD serializes");
    strip_null_from_enums(&mut value);
    serde_json::from_value(value).expect("CRD deserializes")
}

fn strip_null_from_enums(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(items)) = map.get_mut("enum") {
                items.retain(|i| !i.is_null());
            }
            map.values_mut().for_each(strip_null_from_enums);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_null_from_enums),
        _ => {}
    }
}

impl SecurityProfile {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn committed_crd_matches_the_generated_one() {
        let generated = crate::yaml::to_string(&crd()).expect("CRD serializes");
        let committed = include_str!("../../crds/securityprofile.yaml");
        assert!(
            generated == committed,
            "crds/securityprofile.yaml is stale: run `make crd` (or `connect-operator crd > crds/securityprofile.yaml`) and commit it"
        );
    }

    fn object(spec: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": API_VERSION, "kind": "SecurityProfile",
               "metadata": {"name": "x"}, "spec": spec})
    }

    #[test]
    fn api_version_is_the_one_of_both_kinds() {
        use kube::Resource;
        assert_eq!(SecurityProfile::api_version(&()), API_VERSION);
        assert_eq!(InstanceBinding::api_version(&()), API_VERSION);
    }

    fn profile(spec: serde_json::Value) -> SecurityProfile {
        serde_json::from_value(object(spec)).expect("valid shape")
    }

    #[test]
    fn cel_rules_refuse_reserved_tag_keys_and_renames() {
        let ok = profile(json!({"instanceId": "i", "securityProfileName": "a", "tags": {"team": "x"}}));
        assert!(ok.validate_cel().is_ok(), "{:?}", ok.validate_cel());
        let aws = profile(json!({"instanceId": "i", "securityProfileName": "a", "tags": {"aws:owner": "x"}}));
        let err = format!("{:?}", aws.validate_cel().expect_err("aws: prefix"));
        assert!(err.contains("reserved prefix aws:"), "{err}");
        let star = profile(json!({"instanceId": "i", "securityProfileName": "a", "tags": {"a*b": "x"}}));
        assert!(star.validate_cel().is_err());
        let renamed = profile(json!({"instanceId": "i", "securityProfileName": "b"}));
        let err = format!("{:?}", renamed.validate_cel_update(&ok).expect_err("rename"));
        assert!(err.contains("securityProfileName is immutable"), "{err}");
        let moved = profile(json!({"instanceId": "j", "securityProfileName": "a", "tags": {"team": "x"}}));
        assert!(format!("{:?}", moved.validate_cel_update(&ok)).contains("instanceId is immutable"));
        assert!(ok.validate_cel_update(&ok).is_ok());
        let attr =
            profile(json!({"instanceId": "i", "securityProfileName": "a", "granularAccessControlConfiguration": {
            "dataTableAccessControlConfiguration": {"primaryAttributeAccessControlConfiguration": {
                "primaryAttributeValues": [{"attributeName": "connect:x"}]}}}}));
        assert!(attr.validate_cel().is_err());
    }

    #[test]
    fn the_schema_takes_its_limits_and_rules_from_the_constraints() {
        let crd = serde_json::to_value(crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        assert_eq!(spec["tags"]["maxProperties"], json!(crate::constraints::SPEC_TAGS_MAX_ENTRIES));
        assert_eq!(spec["tags"]["maxProperties"], json!(48), "Connect's 50 less the owner and namespace tags");
        assert_eq!(spec["instanceId"]["maxLength"], json!(crate::constraints::INSTANCE_ID_MAX));
        assert_eq!(spec["region"]["pattern"], json!(crate::constraints::REGION_PATTERN));
        let text = crd.to_string();
        for rule in cel::all() {
            let rule = serde_json::to_string(&rule.expression).unwrap();
            assert!(text.contains(&rule), "{rule} is not in the CRD");
        }
        // The controller allows as many tags as the schema.
        let tags = |n: usize| (0..n).map(|i| (format!("t{i}"), json!("v"))).collect::<serde_json::Map<_, _>>();
        let ok = profile(json!({"instanceId": "i", "securityProfileName": "a", "tags": tags(48)}));
        assert!(crate::domain::validate::validate_spec(&ok.spec, None).is_ok());
        let over = profile(json!({"instanceId": "i", "securityProfileName": "a", "tags": tags(49)}));
        assert!(crate::domain::validate::validate_spec(&over.spec, None).is_err());
    }

    #[test]
    fn the_controller_refuses_everything_cel_refuses() {
        // Every CEL-only rule must also be enforced by the controller's own validation.
        for spec in [
            json!({"instanceId": "i", "securityProfileName": "a", "tags": {"aws:owner": "x"}}),
            json!({"instanceId": "i", "securityProfileName": "a", "tags": {"a*b": "x"}}),
            json!({"instanceId": "i", "securityProfileName": "a", "allowedAccessControlTags": {"": "x"}}),
            json!({"instanceId": "i", "securityProfileName": "a", "granularAccessControlConfiguration": {
                "dataTableAccessControlConfiguration": {"primaryAttributeAccessControlConfiguration": {
                    "primaryAttributeValues": [{"attributeName": "aws:x"}]}}}}),
        ] {
            let p = profile(spec.clone());
            assert!(p.validate_cel().is_err(), "CEL accepts {spec}");
            assert!(crate::domain::validate::validate_spec(&p.spec, None).is_err(), "controller accepts {spec}");
        }
    }
}
