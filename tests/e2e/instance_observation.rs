//! End to end, spending Connect's quota frugally: drift is found by listing the instance, and only the
//! profiles that changed are read; Connect that stops answering shows in status and heals.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{INSTANCE, TestEnv, manifest};

const T: Duration = Duration::from_secs(60);
/// With `--connect-attempt-timeout 2s`: the timed-out call's attempt timeout, plus the four applies, the
/// pending status and the wait for a token (measured 4.3-5.1 s; repeated in place, it took 9.7 s).
const ATTEMPT_TIMEOUT_SAID_WITHIN: Duration = Duration::from_secs(8);

/// The profile IDs each DescribeSecurityProfile (and List*Members read) of the call log was about.
fn read_ids(env: &TestEnv) -> BTreeSet<String> {
    env.emulator
        .calls()
        .iter()
        .filter(|c| {
            c.operation == "DescribeSecurityProfile"
                || c.operation.starts_with("ListSecurityProfile") && c.operation != "ListSecurityProfiles"
        })
        .filter_map(|c| c.params["labels"][1].as_str().map(str::to_string))
        .collect()
}

fn held_by_name(env: &TestEnv, name: &str) -> Vec<Value> {
    env.emulator.profiles(INSTANCE).into_iter().filter(|p| p["SecurityProfileName"] == name).collect()
}

#[tokio::test]
async fn console_edits_are_repaired_and_only_the_edited_profiles_are_read() {
    let mut env = TestEnv::new("observe", &["--throttle-rate", "0"]).await;
    env.start_operator(&[]);
    let names = ["obs-desc", "obs-perms", "obs-tag", "obs-gone", "obs-calm-1", "obs-calm-2"];
    for n in names {
        env.apply_ok(&manifest(
            n,
            json!({"securityProfileName": n, "description": "as declared", "permissions": ["BasicAgentAccess"], "tags": {"team": "a"}}),
        ));
    }
    let mut ids = std::collections::BTreeMap::new();
    for n in names {
        // Ready, and the instance listing has recorded what Connect holds (no read of the new profile).
        let sp = env
            .wait_for(&format!("{n} baseline"), T, async || {
                let sp = env.api().get(n).await.ok()?;
                sp.status.as_ref()?.connect_last_modified_time.as_ref()?;
                Some(sp)
            })
            .await;
        ids.insert(n, sp.status.unwrap().security_profile_id.unwrap());
    }
    assert!(read_ids(&env).is_empty(), "no profile was read after its create: {:?}", read_ids(&env));

    // A person edits four profiles in the console; two stay as they are.
    let path = |n: &str| format!("profiles/{INSTANCE}/{}", ids[n]);
    env.emulator.control("PATCH", &path("obs-desc"), Some(json!({"description": "edited in the console"})));
    env.emulator.control(
        "PATCH",
        &path("obs-perms"),
        Some(json!({"permissions": ["BasicAgentAccess", "AccessMetrics"]})),
    );
    env.emulator.control("PATCH", &path("obs-tag"), Some(json!({"tags": {"added-by": "another-tool"}})));
    env.emulator.control("DELETE", &path("obs-gone"), None);

    env.wait_held("description restored", "obs-desc", |p| p["Description"] == "as declared").await;
    env.wait_held("permissions restored", "obs-perms", |p| p["Permissions"] == json!(["BasicAgentAccess"])).await;
    env.wait_held("foreign tag removed", "obs-tag", |p| p["Tags"].get("added-by").is_none()).await;
    env.wait_for("deleted profile created again", T, async || {
        (held_by_name(&env, "obs-gone").len() == 1).then_some(())
    })
    .await;

    let read = read_ids(&env);
    for calm in ["obs-calm-1", "obs-calm-2"] {
        assert!(!read.contains(&ids[calm]), "{calm} was read although unchanged: {read:?}");
    }
    for edited in ["obs-desc", "obs-perms", "obs-tag"] {
        assert!(read.contains(&ids[edited]), "{edited} was read to repair it: {read:?}");
    }
    for n in names {
        assert_eq!(held_by_name(&env, n).len(), 1, "{n} exactly once");
    }
}

#[tokio::test]
async fn connect_not_answering_shows_in_status_and_heals_without_duplicates() {
    let mut env = TestEnv::new("frozen", &["--throttle-rate", "0"]).await;
    env.start_operator(&["--connect-attempt-timeout", "2s", "--retry-max", "2s"]);
    for i in 0..3 {
        let n = format!("early-{i}");
        env.apply_ok(&manifest(&n, json!({"securityProfileName": n})));
        env.wait_condition(&n, "Ready", "True", T).await;
    }
    // Connect stops answering for 20 s in the middle of the rollout.
    env.emulator.set_faults(json!({"throttleRate": 0, "holdAnswersMs": 20000}));
    let applied = std::time::Instant::now();
    for i in 0..4 {
        let n = format!("late-{i}");
        env.apply_ok(&manifest(&n, json!({"securityProfileName": n})));
    }
    for i in 0..4 {
        let sp = env
            .wait_for(&format!("late-{i} says why it waits"), T, async || {
                let sp = env.api().get(&format!("late-{i}")).await.ok()?;
                let synced = sp.condition("Synced")?;
                (synced.status == "False" && ["RequestTimeout", "ConnectionFailure"].contains(&synced.reason.as_str()))
                    .then_some(sp)
            })
            .await;
        let synced = sp.condition("Synced").unwrap();
        assert!(synced.message.contains("Retrying"), "{}", synced.message);
        // An attempt that timed out is not repeated in place, read or write: the status says so one
        // attempt timeout (2 s) after the call, not after the hold ends.
        let said = applied.elapsed();
        println!("late-{i}: Synced {} {said:?} after apply (attempt timeout 2 s)", synced.reason);
        assert!(said < ATTEMPT_TIMEOUT_SAID_WITHIN, "late-{i} said it only after {said:?}");
    }
    env.emulator.set_faults(json!({"throttleRate": 0}));
    for i in 0..4 {
        env.wait_condition(&format!("late-{i}"), "Ready", "True", Duration::from_secs(120)).await;
    }
    for n in (0..3).map(|i| format!("early-{i}")).chain((0..4).map(|i| format!("late-{i}"))) {
        assert_eq!(held_by_name(&env, &n).len(), 1, "{n} exactly once");
    }
}
