//! End to end: update, tags, delete, drift repair, crash-safe create, adoption, steady state.

use std::time::Duration;

use connect_operator::connect::client_for_endpoint;
use serde_json::{Value, json};

use crate::harness::{INSTANCE, TestEnv, manifest};

const T: Duration = Duration::from_secs(30);

impl TestEnv {
    /// The profile named `name` as the emulator holds it (with its members).
    pub fn held(&self, name: &str) -> Option<Value> {
        self.emulator.profiles(INSTANCE).into_iter().find(|p| p["SecurityProfileName"] == name)
    }

    pub async fn wait_held(&self, what: &str, name: &str, check: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(what, T, async || self.held(name).filter(|p| check(p))).await
    }

    pub fn ops(&self) -> Vec<String> {
        self.emulator.calls().iter().map(|c| c.operation.clone()).collect()
    }

    pub fn connect(&self) -> aws_sdk_connect::Client {
        client_for_endpoint(&self.emulator.endpoint(), "us-east-1", 1)
    }
}

#[tokio::test]
async fn each_updatable_field_is_changed_and_cleared_with_update_only() {
    let mut env = TestEnv::new("update", &["--throttle-rate", "0"]).await;
    env.start_operator(&[]);
    env.apply_ok(&manifest("upd", json!({"securityProfileName": "upd"})));
    env.wait_condition("upd", "Ready", "True", T).await;
    let full = json!({
        "securityProfileName": "upd",
        "description": "now described",
        "permissions": ["BasicAgentAccess"],
        "allowedAccessControlTags": {"dept": "sales"},
        "allowedAccessControlHierarchyGroupId": "hg-9",
        "tagRestrictedResources": ["User"],
        "hierarchyRestrictedResources": ["User"],
        "applications": [{"namespace": "crm", "applicationPermissions": ["ACCESS"]}],
        "allowedFlowModules": [{"type": "MCP", "flowModuleId": "fm-1"}],
        "allowedAIAgents": [{"arn": "arn:aws:wisdom:us-east-1:123456789012:ai-agent/a", "type": "THIRD_PARTY"}],
        "granularAccessControlConfiguration": {"dataTableAccessControlConfiguration": {"primaryAttributeAccessControlConfiguration": {
            "primaryAttributeValues": [{"accessType": "ALLOW", "attributeName": "region", "values": ["emea"]}]}}},
    });
    env.apply_ok(&manifest("upd", full));
    let p = env
        .wait_held("every field set", "upd", |p| {
            p["Description"] == "now described" && p["AllowedFlowModules"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(p["Permissions"], json!(["BasicAgentAccess"]));
    assert_eq!(p["AllowedAccessControlTags"], json!({"dept": "sales"}));
    assert_eq!(p["AllowedAccessControlHierarchyGroupId"], "hg-9");
    assert_eq!(p["TagRestrictedResources"], json!(["User"]));
    assert_eq!(p["HierarchyRestrictedResources"], json!(["User"]));
    assert_eq!(p["Applications"][0]["Namespace"], "crm");
    assert_eq!(p["AllowedAIAgents"][0]["Type"], "THIRD_PARTY");
    assert_eq!(
        p["GranularAccessControlConfiguration"]["DataTableAccessControlConfiguration"]["PrimaryAttributeAccessControlConfiguration"]
            ["PrimaryAttributeValues"][0]["AttributeName"],
        "region"
    );
    env.wait_condition("upd", "Ready", "True", T).await;

    // Remove every field again: each is cleared in Connect.
    env.apply_ok(&manifest("upd", json!({"securityProfileName": "upd"})));
    let p = env
        .wait_held("every field cleared", "upd", |p| p.get("Description").is_none() && p["Permissions"] == json!([]))
        .await;
    for member in ["AllowedAccessControlTags", "Applications", "AllowedFlowModules", "AllowedAIAgents"] {
        assert!(
            p[member].as_array().map(Vec::is_empty).or(p[member].as_object().map(|o| o.is_empty())).unwrap_or(true),
            "{member} not cleared: {p}"
        );
    }
    assert!(p["TagRestrictedResources"] == json!([]) && p["HierarchyRestrictedResources"] == json!([]));
    assert!(
        p.get("AllowedAccessControlHierarchyGroupId").is_none()
            && p.get("GranularAccessControlConfiguration").is_none(),
        "{p}"
    );
    env.wait_condition("upd", "Ready", "True", T).await;
    let ops = env.ops();
    assert_eq!(ops.iter().filter(|o| *o == "CreateSecurityProfile").count(), 1, "one create: {ops:?}");
    assert!(ops.iter().filter(|o| *o == "UpdateSecurityProfile").count() >= 2, "{ops:?}");
    // Updates carry only the members that differ.
    let calls = env.emulator.calls();
    let clear = calls.iter().rfind(|c| c.operation == "UpdateSecurityProfile").unwrap();
    assert!(clear.params["body"].get("Tags").is_none() && clear.params["body"].get("SecurityProfileName").is_none());
}

#[tokio::test]
async fn name_and_instance_cannot_change_and_reverting_recovers() {
    let mut env = TestEnv::new("immutable", &["--throttle-rate", "0"]).await;
    env.start_operator(&[]);
    env.apply_ok(&manifest("imm", json!({"securityProfileName": "original"})));
    env.wait_condition("imm", "Ready", "True", T).await;
    // The CRD's CEL transition rule refuses the change at apply ...
    let out = env.apply(&manifest("imm", json!({"securityProfileName": "renamed"})));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("securityProfileName is immutable"), "{stderr}");
    // ... and where an API server lets it through (no CEL before 1.25), the controller refuses it.
    crate::bad_input::edit_in_etcd(&env.ns, "imm", |spec| spec["securityProfileName"] = json!("renamed"));
    let sp = env.wait_reason("imm", "ValidationFailed", T).await;
    assert!(sp.condition("Synced").unwrap().message.contains("securityProfileName: is immutable"));
    assert!(env.held("original").is_some() && env.held("renamed").is_none(), "nothing renamed or created");
    // Not sticky: setting it back clears the error (the CEL rule would refuse any change, this one too).
    crate::bad_input::edit_in_etcd(&env.ns, "imm", |spec| spec["securityProfileName"] = json!("original"));
    env.wait_condition("imm", "Synced", "True", T).await;
    crate::bad_input::edit_in_etcd(&env.ns, "imm", |spec| spec["instanceId"] = json!("other"));
    let sp = env.wait_reason("imm", "ValidationFailed", T).await;
    assert!(sp.condition("Synced").unwrap().message.contains("spec.instanceId: is immutable"));
    assert_eq!(env.ops().iter().filter(|o| *o == "CreateSecurityProfile").count(), 1);
}

#[tokio::test]
async fn tags_change_through_tag_and_untag_only() {
    let mut env = TestEnv::new("tags", &["--throttle-rate", "0"]).await;
    env.start_operator(&[]);
    env.apply_ok(&manifest(
        "tagged",
        json!({"securityProfileName": "tagged", "tags": {"keep": "1", "change": "old", "drop": "x"}}),
    ));
    env.wait_condition("tagged", "Ready", "True", T).await;
    env.emulator.control("DELETE", "calls", None);
    env.apply_ok(&manifest(
        "tagged",
        json!({"securityProfileName": "tagged", "tags": {"keep": "1", "change": "new", "add": "y"}}),
    ));
    let p = env
        .wait_held("tags applied", "tagged", |p| p["Tags"]["change"] == "new" && p["Tags"].get("drop").is_none())
        .await;
    assert_eq!(p["Tags"]["add"], "y");
    assert_eq!(p["Tags"]["keep"], "1");
    assert!(p["Tags"]["connect.cloud-operators.dev/owner-uid"].is_string(), "the owner tag stays");
    env.wait_condition("tagged", "Ready", "True", T).await;
    let calls = env.emulator.calls();
    let writes: Vec<&str> = calls
        .iter()
        .filter(|c| {
            !c.operation.starts_with("Describe")
                && !c.operation.starts_with("List")
                && !c.operation.starts_with("Search")
        })
        .map(|c| c.operation.as_str())
        .collect();
    assert_eq!(writes, ["TagResource", "UntagResource"], "tags move only through TagResource/UntagResource");
    let tag = calls.iter().find(|c| c.operation == "TagResource").unwrap();
    assert_eq!(tag.params["body"]["tags"], json!({"add": "y", "change": "new"}), "only the keys that differ");
    let untag = calls.iter().find(|c| c.operation == "UntagResource").unwrap();
    assert_eq!(untag.params["query"]["tagKeys"], json!(["drop"]));
}

#[tokio::test]
async fn delete_honours_the_policy_and_waits_for_in_use_profiles() {
    let mut env = TestEnv::new("delete", &["--throttle-rate", "0"]).await;
    env.start_operator(&[]);
    env.apply_ok(&manifest("gone", json!({"securityProfileName": "gone"})));
    env.apply_ok(&manifest("kept", json!({"securityProfileName": "kept", "deletionPolicy": "Retain"})));
    env.apply_ok(&manifest("busy", json!({"securityProfileName": "busy"})));
    env.apply_ok(&manifest("vanished", json!({"securityProfileName": "vanished"})));
    for n in ["gone", "kept", "busy", "vanished"] {
        env.wait_condition(n, "Ready", "True", T).await;
    }
    // Delete policy: the profile goes.
    assert!(env.kubectl(&["delete", "csp", "gone", "--timeout=30s"]).status.success());
    assert!(env.held("gone").is_none());
    // Retain: the profile stays, no DeleteSecurityProfile call.
    let kept_id = env.held("kept").unwrap()["Id"].as_str().unwrap().to_string();
    assert!(env.kubectl(&["delete", "csp", "kept", "--timeout=30s"]).status.success());
    assert!(env.held("kept").is_some());
    // In use: the resource stays with DeleteBlocked until the profile is freed.
    let busy = env.held("busy").unwrap();
    let busy_id = busy["Id"].as_str().unwrap().to_string();
    env.emulator.control("PATCH", &format!("profiles/{INSTANCE}/{busy_id}"), Some(json!({"inUse": true})));
    assert!(env.kubectl(&["delete", "csp", "busy", "--wait=false"]).status.success());
    let sp = env.wait_reason("busy", "DeleteBlocked", T).await;
    assert!(sp.condition("Synced").unwrap().message.contains("still assigned"), "{:?}", sp.condition("Synced"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(env.api().get_opt("busy").await.unwrap().is_some(), "the finalizer holds the resource");
    env.emulator.control("PATCH", &format!("profiles/{INSTANCE}/{busy_id}"), Some(json!({"inUse": false})));
    env.wait_for("busy deleted", T, async || env.api().get_opt("busy").await.unwrap().is_none().then_some(())).await;
    assert!(env.held("busy").is_none());
    // Already gone in Connect: deletion is not blocked.
    let vanished = env.held("vanished").unwrap();
    env.connect()
        .delete_security_profile()
        .instance_id(INSTANCE)
        .security_profile_id(vanished["Id"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(env.kubectl(&["delete", "csp", "vanished", "--timeout=30s"]).status.success());
    let deleted: Vec<String> = env
        .emulator
        .calls()
        .iter()
        .filter(|c| c.operation == "DeleteSecurityProfile")
        .map(|c| c.params["labels"][1].as_str().unwrap().to_string())
        .collect();
    assert!(!deleted.contains(&kept_id), "Retain never calls DeleteSecurityProfile");
    assert!(deleted.iter().filter(|id| **id == busy_id).count() >= 2, "blocked, then deleted once freed");
}

#[tokio::test]
async fn drift_is_repaired_within_one_resync() {
    let mut env = TestEnv::new("drift", &["--throttle-rate", "0"]).await;
    env.start_operator(&["--resync", "2s"]);
    env.apply_ok(&manifest("drifty", json!({"securityProfileName": "drifty", "description": "as declared", "permissions": ["A", "B"], "tags": {"t": "1"}})));
    let sp = env.wait_condition("drifty", "Ready", "True", T).await;
    let first_id = sp.status.unwrap().security_profile_id.unwrap();
    let c = env.connect();
    // Changed outside: description, permissions and a tag.
    c.update_security_profile()
        .instance_id(INSTANCE)
        .security_profile_id(&first_id)
        .description("edited in the console")
        .permissions("C")
        .send()
        .await
        .unwrap();
    let arn = env.held("drifty").unwrap()["Arn"].as_str().unwrap().to_string();
    c.tag_resource().resource_arn(&arn).tags("t", "tampered").tags("extra", "x").send().await.unwrap();
    let p = env
        .wait_held("drift reverted", "drifty", |p| {
            p["Description"] == "as declared" && p["Tags"]["t"] == "1" && p["Tags"].get("extra").is_none()
        })
        .await;
    assert_eq!(p["Permissions"], json!(["A", "B"]));
    // Deleted outside: created again, with an Event.
    c.delete_security_profile().instance_id(INSTANCE).security_profile_id(&first_id).send().await.unwrap();
    let sp = env
        .wait_for("profile re-created", T, async || {
            let sp = env.api().get("drifty").await.ok()?;
            let id = sp.status.as_ref()?.security_profile_id.clone()?;
            (id != first_id && sp.condition("Ready")?.status == "True").then_some(sp)
        })
        .await;
    let new_id = sp.status.unwrap().security_profile_id.unwrap();
    assert_eq!(env.held("drifty").unwrap()["Id"], new_id.as_str());
    let events = env.kubectl(&["get", "events", "--field-selector", "involvedObject.name=drifty", "-o", "json"]);
    let events: Value = serde_json::from_slice(&events.stdout).unwrap();
    let reasons: Vec<&str> = events["items"].as_array().unwrap().iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(reasons.contains(&"Recreating") && reasons.contains(&"DriftRepaired"), "{reasons:?}");
}

#[tokio::test]
async fn lost_create_answers_and_a_restart_leave_exactly_one_profile() {
    let mut env = TestEnv::new("crash", &["--throttle-rate", "0", "--lose-next-creates", "2"]).await;
    env.start_operator(&[]);
    for i in 0..3 {
        env.apply_ok(&manifest(&format!("c{i}"), json!({"securityProfileName": format!("c{i}")})));
    }
    for i in 0..3 {
        env.wait_condition(&format!("c{i}"), "Ready", "True", T).await;
    }
    // Kill the operator right after a create whose answer is lost, before it retries; restart it.
    if let Some(mut p) = env.operator.take() {
        p.kill();
    }
    env.start_operator(&["--retry-base", "10s", "--retry-max", "20s", "--sdk-max-attempts", "1"]);
    // The lost answer is held back long enough that the kill below lands while the operator still
    // waits for it: killed between the create and any status write, every time.
    env.emulator.set_faults(json!({"throttleRate": 0, "loseNextCreates": 1, "lostResponseHoldMs": 30000}));
    // With the finalizer already in place, only the operator's own (slow) retry would try again.
    let mut k: Value = serde_json::from_str(&manifest("k", json!({"securityProfileName": "k"}))).unwrap();
    k["metadata"]["finalizers"] = json!(["connect.cloud-operators.dev/finalizer"]);
    env.apply_ok(&k.to_string());
    env.wait_for("the lost create", T, async || {
        env.emulator
            .calls()
            .iter()
            .any(|c| c.outcome == "ok:response-lost" && c.params["body"]["SecurityProfileName"] == "k")
            .then_some(())
    })
    .await;
    if let Some(mut p) = env.operator.take() {
        p.kill();
    }
    assert!(
        env.api().get("k").await.unwrap().status.is_none_or(|s| s.security_profile_id.is_none()),
        "no status was written"
    );
    env.start_operator(&[]);
    let sp = env.wait_condition("k", "Ready", "True", T).await;
    let profiles = env.emulator.profiles(INSTANCE);
    for name in ["c0", "c1", "c2", "k"] {
        assert_eq!(profiles.iter().filter(|p| p["SecurityProfileName"] == name).count(), 1, "{name} exactly once");
    }
    assert_eq!(env.held("k").unwrap()["Id"].as_str(), sp.status.unwrap().security_profile_id.as_deref());
    let lost = env.emulator.calls().iter().filter(|c| c.outcome == "ok:response-lost").count();
    assert_eq!(lost, 3);
}

#[tokio::test]
async fn adoption_by_annotation_and_refusal_of_profiles_owned_elsewhere() {
    let mut env = TestEnv::new("adopt", &["--throttle-rate", "0"]).await;
    let c = env.connect();
    let made = c
        .create_security_profile()
        .instance_id(INSTANCE)
        .security_profile_name("Legacy")
        .description("made in the console")
        .permissions("X")
        .send()
        .await
        .unwrap();
    let legacy_id = made.security_profile_id().unwrap().to_string();
    env.start_operator(&[]);
    let mut m: Value = serde_json::from_str(&manifest(
        "legacy",
        json!({"securityProfileName": "Legacy", "description": "now managed", "permissions": ["Y"]}),
    ))
    .unwrap();
    m["metadata"]["annotations"] = json!({"connect.cloud-operators.dev/adopt": "true"});
    env.apply_ok(&m.to_string());
    let sp = env.wait_condition("legacy", "Ready", "True", T).await;
    assert_eq!(
        sp.status.as_ref().unwrap().security_profile_id.as_deref(),
        Some(legacy_id.as_str()),
        "adopted, not created"
    );
    let p = env.held("Legacy").unwrap();
    assert_eq!(p["Description"], "now managed");
    assert_eq!(p["Permissions"], json!(["Y"]));
    assert_eq!(p["Tags"]["connect.cloud-operators.dev/owner-uid"].as_str(), sp.metadata.uid.as_deref());
    // A second resource naming the same profile, even with the annotation, is refused.
    let mut thief: Value = serde_json::from_str(&manifest("thief", json!({"securityProfileName": "Legacy"}))).unwrap();
    thief["metadata"]["annotations"] = json!({"connect.cloud-operators.dev/adopt": "true"});
    env.apply_ok(&thief.to_string());
    let sp = env.wait_reason("thief", "ProfileOwnedElsewhere", T).await;
    assert!(sp.condition("Synced").unwrap().message.contains("never taken over"));
    assert_eq!(env.held("Legacy").unwrap()["Description"], "now managed", "the owner's profile is untouched");
    assert!(
        !env.ops().contains(&"CreateSecurityProfile".to_string())
            || env.ops().iter().filter(|o| *o == "CreateSecurityProfile").count() == 1
    );
}

#[tokio::test]
async fn steady_state_makes_only_instance_listings_and_no_status_writes() {
    let mut env = TestEnv::new("steady", &["--throttle-rate", "0"]).await;
    env.start_operator(&["--resync", "1s"]);
    env.apply_ok(&manifest("calm", json!({"securityProfileName": "calm", "permissions": ["A"], "tags": {"a": "b"}})));
    env.wait_condition("calm", "Ready", "True", T).await;
    // Let the first full read after the create settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rv = env.api().get("calm").await.unwrap().metadata.resource_version;
    env.emulator.control("DELETE", "calls", None);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let calls = env.emulator.calls();
    assert!(calls.len() >= 3, "several listings happened ({} calls)", calls.len());
    assert!(
        calls.iter().all(|c| c.operation == "ListSecurityProfiles" || c.operation == "SearchSecurityProfiles"),
        "only the instance's listings (one per --observe-interval), no read of the profile although its \
         resync (1s) came round several times: {:?}",
        calls.iter().map(|c| &c.operation).collect::<Vec<_>>()
    );
    assert_eq!(env.api().get("calm").await.unwrap().metadata.resource_version, rv, "no status write");
}
