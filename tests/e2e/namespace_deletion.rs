//! Deleting a namespace that holds SecurityProfiles, through the cluster's namespace controller
//! (kube-controller-manager of tests/cluster/up.sh): every profile is deleted in Connect exactly once and
//! the namespace goes; with the operator stopped the namespace waits on the finalizers, and the README's
//! way of releasing them works.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{INSTANCE, TestEnv, kubectl, manifest};

const T: Duration = Duration::from_secs(60);

/// `kubectl get namespace NAME -o json`, or None once it is gone.
fn namespace(name: &str) -> Option<Value> {
    let out = kubectl(&["get", "namespace", name, "-o", "json", "--ignore-not-found"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (!out.stdout.is_empty()).then(|| serde_json::from_slice(&out.stdout).expect("namespace JSON"))
}

impl TestEnv {
    /// How many DeleteSecurityProfile calls the emulator answered, per profile ID.
    fn deletes(&self) -> BTreeMap<String, usize> {
        let mut by_id = BTreeMap::new();
        for c in self.emulator.calls().iter().filter(|c| c.operation == "DeleteSecurityProfile") {
            *by_id.entry(c.params["labels"][1].as_str().unwrap().to_string()).or_default() += 1;
        }
        by_id
    }

    /// Applies `n` profiles `name-0`.. in one `kubectl apply` and waits until each is Ready; returns
    /// their Connect IDs.
    async fn apply_ready(&self, name: &str, n: usize) -> Vec<String> {
        let docs: Vec<String> = (0..n)
            .map(|i| manifest(&format!("{name}-{i}"), json!({"securityProfileName": format!("{name}-{i}")})))
            .collect();
        self.apply_ok(&docs.join("\n---\n"));
        let mut ids = Vec::new();
        for i in 0..n {
            let sp = self.wait_condition(&format!("{name}-{i}"), "Ready", "True", T).await;
            ids.push(sp.status.unwrap().security_profile_id.unwrap());
        }
        ids
    }
}

#[tokio::test]
async fn deleting_a_namespace_deletes_each_of_its_profiles_in_connect_exactly_once() {
    let mut env = TestEnv::new("nsdel", &["--throttle-rate", "0"]).await;
    env.start_operator(&[]);
    let ids = env.apply_ready("team", 20).await;

    let out = env.kubectl(&["delete", "namespace", &env.ns, "--wait=true", "--timeout=120s"]);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), env.operator_log_tail());
    assert!(namespace(&env.ns).is_none(), "namespace {} is still there", env.ns);

    let deletes = env.deletes();
    let held: Vec<String> =
        env.emulator.profiles(INSTANCE).iter().filter_map(|p| p["Id"].as_str().map(str::to_string)).collect();
    for id in &ids {
        assert_eq!(deletes.get(id), Some(&1), "profile {id}: DeleteSecurityProfile calls {deletes:?}");
        assert!(!held.contains(id), "profile {id} is still in Connect");
    }
    assert_eq!(deletes.len(), 20, "{deletes:?}");
    eprintln!("namespace deletion: 20 profiles, {} DeleteSecurityProfile calls", deletes.values().sum::<usize>());
}

#[tokio::test]
async fn with_the_operator_stopped_a_namespace_waits_on_the_finalizers_until_they_are_released() {
    let mut env = TestEnv::new("nswait", &["--throttle-rate", "0"]).await;
    env.start_operator(&[]);
    let ids = env.apply_ready("held", 2).await;
    env.operator.take().expect("the operator").kill();

    assert!(env.kubectl(&["delete", "namespace", &env.ns, "--wait=false"]).status.success());
    // The namespace controller deletes the profiles (deletionTimestamp set), then reports that their
    // finalizers remain: the namespace stays Terminating and nothing happens in Connect.
    let ns = env
        .wait_for("the namespace's NamespaceFinalizersRemaining condition", T, async || {
            let ns = namespace(&env.ns)?;
            let conditions = ns["status"]["conditions"].as_array()?;
            conditions
                .iter()
                .any(|c| c["type"] == "NamespaceFinalizersRemaining" && c["status"] == "True")
                .then_some(ns)
        })
        .await;
    assert_eq!(ns["status"]["phase"], "Terminating");
    let message = ns["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "NamespaceFinalizersRemaining")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("connect.cloud-operators.dev/finalizer in 2 resource instances"), "{message}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(namespace(&env.ns).is_some(), "the namespace went while its profiles' finalizers remain");
    assert!(env.deletes().is_empty(), "no DeleteSecurityProfile without the operator");

    // Released by hand (README: "Namespaces stuck in Terminating"): the profile stays in Connect.
    let out = env.kubectl(&[
        "patch",
        "csp",
        "held-0",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The operator back: it deletes the other one in Connect, and the namespace completes.
    env.start_operator(&[]);
    env.wait_for("the namespace to be gone", T, async || namespace(&env.ns).is_none().then_some(())).await;
    let deletes = env.deletes();
    assert_eq!(deletes, BTreeMap::from([(ids[1].clone(), 1)]), "only held-1 is deleted in Connect, once");
    let held: Vec<String> =
        env.emulator.profiles(INSTANCE).iter().filter_map(|p| p["Id"].as_str().map(str::to_string)).collect();
    assert!(held.contains(&ids[0]), "the profile released by hand stays in Connect");
}
