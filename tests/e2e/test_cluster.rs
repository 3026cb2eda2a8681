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
