//! The harness itself: a real apiserver, a namespace per test, the emulator binary on a free port.

use connect_operator::connect::client_for_endpoint;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::harness::{INSTANCE, TestEnv};

#[tokio::test]
async fn the_cluster_and_the_emulator_binary_serve_a_test() {
    let env = TestEnv::new("harness", &["--throttle-rate", "0"]).await;
    // A real apiserver: resourceVersion, uid and generation are assigned by the server.
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "probe"}, "data": {"k": "v"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.expect("create configmap");
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    // The CRD is installed and served: the short name resolves.
    let out = env.kubectl(&["get", "csp"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The emulator binary answers the unmodified SDK and records the call.
    let connect = client_for_endpoint(&env.emulator.endpoint(), "us-east-1", 1);
    let instance = connect.describe_instance().instance_id(INSTANCE).send().await.expect("DescribeInstance");
    assert_eq!(instance.instance().and_then(|i| i.id()), Some(INSTANCE));
    let calls = env.emulator.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].operation, "DescribeInstance");
    // Faults are set at run time through the control API.
    env.emulator.set_faults(json!({"throttleRate": 0, "errorRate": 1.0}));
    let err = connect.describe_instance().instance_id(INSTANCE).send().await.expect_err("injected 500");
    assert_eq!(aws_sdk_connect::error::ProvideErrorMetadata::code(&err), Some("InternalServiceException"));
}

/// What users type, as they type it: `kubectl apply` and `kubectl apply --server-side` of a SecurityProfile
/// work with kubectl's default validation (no `--validate=false`), and a field the schema does not know is
/// refused by the API server's strict field validation instead of being dropped.
#[tokio::test]
async fn client_side_and_server_side_apply_work_with_default_validation() {
    let env = TestEnv::new("ssa", &["--throttle-rate", "0"]).await;
    let client_side = crate::harness::manifest("csa", json!({"securityProfileName": "csa", "permissions": ["A"]}));
    env.apply_ok(&client_side);
    let server_side = crate::harness::manifest("ssa", json!({"securityProfileName": "ssa", "permissions": ["A"]}));
    let out = crate::harness::kubectl(&["apply", "--server-side", "-n", &env.ns, "-f", "-"], Some(&server_side));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A second server-side apply by the same field manager changes the list it owns.
    let changed = crate::harness::manifest("ssa", json!({"securityProfileName": "ssa", "permissions": ["A", "B"]}));
    let out = crate::harness::kubectl(&["apply", "--server-side", "-n", &env.ns, "-f", "-"], Some(&changed));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let api = env.api();
    assert_eq!(api.get("ssa").await.unwrap().spec.permissions, Some(vec!["A".to_string(), "B".to_string()]));
    let managers: Vec<String> = api
        .get("ssa")
        .await
        .unwrap()
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager.filter(|_| m.operation.as_deref() == Some("Apply")))
        .collect();
    assert_eq!(managers, ["kubectl"], "one Apply field manager");
    // Unknown fields: refused, naming the field, by both kinds of apply.
    let unknown = crate::harness::manifest("csa", json!({"securityProfileName": "csa", "permisions": ["B"]}));
    for args in [&["apply", "-n", &env.ns, "-f", "-"][..], &["apply", "--server-side", "-n", &env.ns, "-f", "-"]] {
        let out = crate::harness::kubectl(args, Some(&unknown));
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Client-side apply: strict decoding ("unknown field"); server-side: the typed patch ("not declared").
        let named = stderr.contains("unknown field \"spec.permisions\"")
            || stderr.contains(".spec.permisions: field not declared in schema");
        assert!(!out.status.success() && named, "{args:?}: {stderr}");
    }
}
