//! End to end: a SecurityProfile applied with kubectl becomes a Connect profile, or a precise
//! error in its status.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{INSTANCE, TestEnv, manifest};

const T: Duration = Duration::from_secs(30);

fn full_spec() -> Value {
    json!({
        "securityProfileName": "Tier 2 Agents",
        "description": "Second-line agents",
        "permissions": ["BasicAgentAccess", "OutboundCallAccess"],
        "allowedAccessControlTags": {"department": "sales"},
        "allowedAccessControlHierarchyGroupId": "hg-1234",
        "tagRestrictedResources": ["User", "Queue"],
        "hierarchyRestrictedResources": ["User"],
        "applications": [{"namespace": "com.example.crm", "applicationPermissions": ["ACCESS"], "type": "THIRD_PARTY_APPLICATION"}],
        "allowedFlowModules": [{"type": "MCP", "flowModuleId": "fm-1"}],
        "allowedAIAgents": [{"arn": "arn:aws:wisdom:us-east-1:123456789012:ai-agent/a1", "type": "THIRD_PARTY"}],
        "granularAccessControlConfiguration": {"dataTableAccessControlConfiguration": {"primaryAttributeAccessControlConfiguration": {
            "primaryAttributeValues": [{"accessType": "ALLOW", "attributeName": "region", "values": ["emea"]}]}}},
        "tags": {"team": "contact-center", "cost-center": "cc:42"},
        "region": "us-east-1",
    })
}

#[tokio::test]
async fn a_valid_profile_becomes_ready_with_every_field_sent_to_connect() {
    let mut env = TestEnv::new("ready", &["--throttle-rate", "0"]).await;
    env.start_operator(&[]);
    env.apply_ok(&manifest("tier2", full_spec()));
    let sp = env.wait_condition("tier2", "Ready", "True", T).await;
    let status = sp.status.clone().unwrap();
    let synced = sp.condition("Synced").unwrap();
    assert_eq!(synced.status, "True");
    assert_eq!(status.observed_generation, sp.metadata.generation);
    assert!(sp.metadata.finalizers.as_ref().unwrap().contains(&"connect.cloud-operators.dev/finalizer".to_string()));

    // Status identity equals what Connect holds.
    let profiles = env.emulator.profiles(INSTANCE);
    let held: Vec<&Value> = profiles.iter().filter(|p| p["SecurityProfileName"] == "Tier 2 Agents").collect();
    assert_eq!(held.len(), 1);
    assert_eq!(status.security_profile_id.as_deref(), held[0]["Id"].as_str());
    assert_eq!(status.security_profile_arn.as_deref(), held[0]["Arn"].as_str());
    // The owner tag carries the resource's UID.
    assert_eq!(held[0]["Tags"]["connect.cloud-operators.dev/owner-uid"].as_str(), sp.metadata.uid.as_deref());

    // The emulator saw every field of the spec in the create call.
    let calls = env.emulator.calls();
    let create: Vec<_> = calls.iter().filter(|c| c.operation == "CreateSecurityProfile").collect();
    assert_eq!(create.len(), 1, "exactly one create");
    let body = &create[0].params["body"];
    assert_eq!(create[0].params["labels"][0], INSTANCE);
    let spec = full_spec();
    assert_eq!(body["SecurityProfileName"], spec["securityProfileName"]);
    assert_eq!(body["Description"], spec["description"]);
    assert_eq!(body["Permissions"], spec["permissions"]);
    assert_eq!(body["AllowedAccessControlTags"], spec["allowedAccessControlTags"]);
    assert_eq!(body["AllowedAccessControlHierarchyGroupId"], spec["allowedAccessControlHierarchyGroupId"]);
    assert_eq!(body["TagRestrictedResources"], spec["tagRestrictedResources"]);
    assert_eq!(body["HierarchyRestrictedResources"], spec["hierarchyRestrictedResources"]);
    assert_eq!(body["Applications"][0]["Namespace"], "com.example.crm");
    assert_eq!(body["Applications"][0]["ApplicationPermissions"], json!(["ACCESS"]));
    assert_eq!(body["Applications"][0]["Type"], "THIRD_PARTY_APPLICATION");
    assert_eq!(body["AllowedFlowModules"], json!([{"Type": "MCP", "FlowModuleId": "fm-1"}]));
    assert_eq!(
        body["AllowedAIAgents"],
        json!([{"Arn": "arn:aws:wisdom:us-east-1:123456789012:ai-agent/a1", "Type": "THIRD_PARTY"}])
    );
    assert_eq!(
        body["GranularAccessControlConfiguration"],
        json!({"DataTableAccessControlConfiguration": {"PrimaryAttributeAccessControlConfiguration": {
            "PrimaryAttributeValues": [{"AccessType": "ALLOW", "AttributeName": "region", "Values": ["emea"]}]}}})
    );
    assert_eq!(body["Tags"]["team"], "contact-center");
    assert_eq!(body["Tags"]["cost-center"], "cc:42");

    // Printer columns show the profile name and readiness; -o wide the ID too.
    let out = env.kubectl(&["get", "csp", "tier2", "-o", "wide"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("Tier 2 Agents")
            && table.contains(status.security_profile_id.as_deref().unwrap())
            && table.contains("True"),
        "{table}"
    );

    // Deleting the resource (deletionPolicy Delete by default) deletes the profile.
    let out = env.kubectl(&["delete", "csp", "tier2", "--wait=true", "--timeout=30s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(env.emulator.profiles(INSTANCE).iter().all(|p| p["SecurityProfileName"] != "Tier 2 Agents"));
}

#[tokio::test]
async fn schema_constraints_are_refused_by_kubectl_naming_the_field() {
    let env = TestEnv::new("schema", &["--throttle-rate", "0"]).await;
    let cases = [
        (json!({"securityProfileName": "a/b"}), "spec.securityProfileName"),
        (json!({"securityProfileName": "x".repeat(128)}), "spec.securityProfileName"),
        (json!({"securityProfileName": ""}), "spec.securityProfileName"),
        (json!({"securityProfileName": "ok", "instanceId": "i".repeat(101)}), "spec.instanceId"),
        (json!({"securityProfileName": "ok", "description": "d".repeat(251)}), "spec.description"),
        (json!({"securityProfileName": "ok", "permissions": [""]}), "spec.permissions"),
        (
            json!({"securityProfileName": "ok", "permissions": (0..501).map(|i| format!("P{i}")).collect::<Vec<_>>()}),
            "spec.permissions",
        ),
        (
            json!({"securityProfileName": "ok", "allowedAccessControlTags": {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}}),
            "spec.allowedAccessControlTags",
        ),
        (json!({"securityProfileName": "ok", "tagRestrictedResources": ["Printer"]}), "spec.tagRestrictedResources"),
        (
            json!({"securityProfileName": "ok", "hierarchyRestrictedResources": ["Queue"]}),
            "spec.hierarchyRestrictedResources",
        ),
        (
            json!({"securityProfileName": "ok", "applications": [{"namespace": "n", "applicationPermissions": []}]}),
            "spec.applications",
        ),
        (
            json!({"securityProfileName": "ok", "applications": [{"namespace": "n", "applicationPermissions": ["A"], "type": "ROBOT"}]}),
            "spec.applications",
        ),
        (json!({"securityProfileName": "ok", "allowedFlowModules": [{"type": "LAMBDA"}]}), "spec.allowedFlowModules"),
        (json!({"securityProfileName": "ok", "tags": {"k": "v".repeat(257)}}), "spec.tags"),
        (json!({"securityProfileName": "ok", "deletionPolicy": "Orphan"}), "spec.deletionPolicy"),
        (json!({"securityProfileName": "ok", "region": "Mars"}), "spec.region"),
        (json!({"securityProfileName": "ok", "permissions": "BasicAgentAccess"}), "spec.permissions"),
        (json!({"description": "no name"}), "securityProfileName"),
    ];
    for (i, (spec, field)) in cases.into_iter().enumerate() {
        let out = env.apply(&manifest(&format!("bad-{i}"), spec.clone()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} ({spec}) was accepted");
        assert!(stderr.contains(field), "case {i}: error should name {field}: {stderr}");
    }
    assert!(env.emulator.calls().is_empty(), "nothing reached Connect");
}

#[tokio::test]
async fn cel_rules_refuse_at_apply_and_the_controller_rechecks_them_for_older_api_servers() {
    let mut env = TestEnv::new("cel", &["--throttle-rate", "0"]).await;
    env.start_operator(&[]);
    let cases = [
        (
            "aws-tag",
            json!({"securityProfileName": "aws-tag", "tags": {"aws:createdBy": "me"}}),
            "tag keys must not begin with the reserved prefix aws:",
            "spec.tags key \"aws:createdBy\"",
        ),
        (
            "owner-tag",
            json!({"securityProfileName": "owner-tag", "tags": {"connect.cloud-operators.dev/owner-uid": "x"}}),
            "reserved for the operator",
            "reserved for the operator",
        ),
        (
            "attr",
            json!({"securityProfileName": "attr", "granularAccessControlConfiguration": {"dataTableAccessControlConfiguration": {"primaryAttributeAccessControlConfiguration": {"primaryAttributeValues": [{"accessType": "ALLOW", "attributeName": "connect:x"}]}}}}),
            "attributeName must not begin with aws: or connect:",
            "attributeName",
        ),
    ];
    // The API server evaluates the CRD's CEL rules (x-kubernetes-validations) at `kubectl apply`.
    for (name, spec, rule, _) in &cases {
        let out = env.apply(&manifest(name, spec.clone()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(rule), "{name}: {stderr}");
    }
    // An API server without CEL (before 1.25) would store them; the controller checks the same rules. Such
    // an object is written straight into etcd, where the API server reads it from.
    let etcd = crate::bad_input::etcd_address();
    for (name, spec, _, _) in &cases {
        crate::bad_input::store_in_etcd(&etcd, &env.ns, name, spec.clone());
    }
    for (name, _, _, field) in &cases {
        let sp = env.wait_reason(name, "ValidationFailed", T).await;
        let synced = sp.condition("Synced").unwrap();
        assert_eq!(synced.status, "False");
        assert!(synced.message.contains(field), "{name}: {}", synced.message);
        let ready = sp.condition("Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "ValidationFailed"));
    }
    // A valid profile next to them is served.
    env.apply_ok(&manifest("fine", json!({"securityProfileName": "fine"})));
    let fine = env.wait_condition("fine", "Ready", "True", T).await;
    // instanceId is immutable: CEL's transition rule refuses the change at apply ...
    let id = fine.status.unwrap().security_profile_id.unwrap();
    let out = env.apply(&manifest("fine", json!({"securityProfileName": "fine", "instanceId": "another-instance"})));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("instanceId is immutable"), "{stderr}");
    // ... and the controller refuses it too (from the ARN in status), for an API server that would not.
    crate::bad_input::edit_in_etcd(&env.ns, "fine", |spec| spec["instanceId"] = json!("another-instance"));
    let sp = env.wait_reason("fine", "ValidationFailed", T).await;
    assert!(sp.condition("Synced").unwrap().message.contains("spec.instanceId: is immutable"));
    assert_eq!(sp.status.unwrap().security_profile_id.as_deref(), Some(id.as_str()), "the profile's identity is kept");
    let creates: Vec<String> = env
        .emulator
        .calls()
        .iter()
        .filter(|c| c.operation == "CreateSecurityProfile")
        .map(|c| c.params["body"]["SecurityProfileName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(creates, ["fine"], "no invalid spec reached Connect");
}

#[tokio::test]
async fn unknown_instance_duplicate_name_and_quota_end_in_the_documented_status() {
    // 4 default profiles + room for 2 more.
    let mut env = TestEnv::new("errors", &["--throttle-rate", "0", "--profile-limit", "6"]).await;
    env.start_operator(&[]);
    // Unknown instance: says which, retried slowly, recovers when the instance appears.
    env.apply_ok(&manifest("lost", json!({"securityProfileName": "lost", "instanceId": "no-such-instance"})));
    let sp = env.wait_reason("lost", "ResourceNotFoundException", T).await;
    let msg = &sp.condition("Synced").unwrap().message;
    assert!(msg.contains("\"no-such-instance\"") && msg.contains("us-east-1") && msg.contains("Retrying"), "{msg}");
    env.emulator.control("POST", "instances/no-such-instance", Some(json!({})));
    env.wait_condition("lost", "Ready", "True", T).await;

    // Duplicate name: a profile made outside the operator (here: the default Admin profile).
    env.apply_ok(&manifest("admin", json!({"securityProfileName": "Admin"})));
    let sp = env.wait_reason("admin", "DuplicateResourceException", T).await;
    let msg = &sp.condition("Synced").unwrap().message;
    assert!(msg.contains("\"Admin\"") && msg.contains("already exists in instance") && msg.contains(INSTANCE), "{msg}");
    assert_eq!(sp.condition("Ready").unwrap().status, "False");

    // Quota: two fit, the third waits (LimitExceeded is never terminal) and goes through once room is made.
    env.apply_ok(&manifest("q1", json!({"securityProfileName": "q1"})));
    env.wait_condition("q1", "Ready", "True", T).await;
    env.apply_ok(&manifest("q2", json!({"securityProfileName": "q2"})));
    env.wait_condition("q2", "Ready", "True", T).await;
    env.apply_ok(&manifest("q3", json!({"securityProfileName": "q3"})));
    let sp = env.wait_reason("q3", "LimitExceededException", T).await;
    assert!(sp.condition("Synced").unwrap().message.contains("quota"), "{:?}", sp.condition("Synced"));
    let out = env.kubectl(&["delete", "csp", "q1", "--wait=true", "--timeout=30s"]);
    assert!(out.status.success());
    env.wait_condition("q3", "Ready", "True", T).await;
    // Exactly one profile per resource.
    let names: Vec<String> = env
        .emulator
        .profiles(INSTANCE)
        .iter()
        .map(|p| p["SecurityProfileName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.iter().filter(|n| n.starts_with('q')).count(), 2, "{names:?}");
}

#[tokio::test]
async fn a_throttling_storm_ends_with_every_profile_ready_once() {
    // 1 request/s with a burst of 2, and 8 profiles at once.
    let mut env = TestEnv::new("storm", &["--throttle-rate", "1", "--throttle-burst", "2"]).await;
    // The instance listing at its default pace: at the harness's 1s it alone would exceed 1 request/s.
    env.start_operator(&["--concurrency", "8", "--observe-interval", "2m"]);
    for i in 0..8 {
        env.apply_ok(&manifest(&format!("storm-{i}"), json!({"securityProfileName": format!("storm-{i}")})));
    }
    for i in 0..8 {
        env.wait_condition(&format!("storm-{i}"), "Ready", "True", Duration::from_secs(90)).await;
    }
    let calls = env.emulator.calls();
    assert!(calls.iter().any(|c| c.outcome == "ThrottlingException"), "the storm met throttling");
    let profiles = env.emulator.profiles(INSTANCE);
    for i in 0..8 {
        let name = format!("storm-{i}");
        assert_eq!(
            profiles.iter().filter(|p| p["SecurityProfileName"] == name.as_str()).count(),
            1,
            "{name} exactly once"
        );
    }
    // Once recovered, Synced is True again: the stale ThrottlingException is cleared.
    for i in 0..8 {
        let sp = env.wait_condition(&format!("storm-{i}"), "Synced", "True", Duration::from_secs(60)).await;
        assert_eq!(sp.condition("Synced").unwrap().reason, "ReconcileSucceeded");
    }
}
