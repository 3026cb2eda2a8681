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
    doc = "Grants the SecurityProfiles of the selected namespaces access to one Amazon Connect instance. Cluster-scoped; owned by cluster admins.",
    printcolumn = r#"{"name":"Instance","type":"string","jsonPath":".spec.instanceId"}"#,
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Role","type":"string","priority":1,"jsonPath":".spec.roleArn"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Bound","type":"integer","jsonPath":".status.boundProfiles"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct InstanceBindingSpec {
    /// The identifier of the Amazon Connect instance (as in the instance ARN) this binding grants.
    #[schemars(length(min = 1, max = 100))]
    pub instance_id: String,

    /// The AWS Region of the instance, for example eu-west-2. A SecurityProfile that sets spec.region must
    /// name the same one.
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[a-z]{2}(-[a-z]+)+-\d+$"))]
    pub region: String,

    /// An IAM role to assume for every Connect call of the bound profiles; the AssumeRole session is
    /// named after the profile's namespace (csp-<namespace>) so that CloudTrail attributes each call.
    /// Unset: the operator's own identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$"))]
    pub role_arn: Option<String>,

    /// The namespaces whose SecurityProfiles may use this instance (a standard label selector; {} selects
    /// every namespace).
    pub namespace_selector: LabelSelector,

    /// Whether the adopt annotation (connect.cloud-operators.dev/adopt) may take over profiles of this
    /// instance that no SecurityProfile owns. Default false.
    #[serde(default)]
    pub allow_adoption: bool,

    /// Whether the instance's default profiles (Admin, Agent, CallCenterManager, QualityAnalyst) may be
    /// adopted, changed or deleted at all. Default false.
    #[serde(default)]
    pub allow_default_profiles: bool,

    /// Permissions no bound SecurityProfile may ask for; a spec that lists one is refused
    /// (PermissionNotAllowed) and nothing is sent to Connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 500), inner(length(min = 1, max = 128)))]
    pub denied_permissions: Option<Vec<String>>,
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
    /// Ready: the operator reached the instance with the binding's identity (ListSecurityProfiles).
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
        for field in ["instanceId", "region", "namespaceSelector"] {
            assert!(required.contains(&serde_json::json!(field)), "{field} is required");
        }
        assert_eq!(crd["spec"]["scope"], "Cluster");
    }
}
